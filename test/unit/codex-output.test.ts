/** The bounds on what codex writes (codex/codex-output.ts) and on what its events add up to (turns/turn-state.ts). */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  EVENT_MAX_DEPTH,
  LineCapTransform,
  STDERR_TAIL_CHARS,
  StderrRelay,
  encodeCodexEvent,
  jsonDepth,
} from "../../src/codex/codex-output.js";
import {
  FINAL_RESPONSE_MAX_BYTES,
  RESULT_ITEMS_MAX,
  RESULT_ITEMS_MAX_BYTES,
  applyTurnEvent,
  newTurnState,
} from "../../src/turns/turn-state.js";
import { boundText, truncateUtf8 } from "../../src/shared/utf8.js";
import type { ThreadEvent } from "@openai/codex-sdk";

const MiB = 1024 * 1024;

/** A sink that counts what it is given and keeps the last bytes it saw. */
function counter(): Writable & { bytes: number; chunks: number; largest: number } {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      sink.bytes += chunk.length;
      sink.chunks += 1;
      sink.largest = Math.max(sink.largest, chunk.length);
      callback();
    },
  }) as Writable & { bytes: number; chunks: number; largest: number };
  sink.bytes = 0;
  sink.chunks = 0;
  sink.largest = 0;
  return sink;
}

describe("stdout line cap", () => {
  test("passes lines within the bound unchanged, however they are chunked", async () => {
    const overflows: number[] = [];
    const cap = new LineCapTransform(10, () => overflows.push(1));
    const out: Buffer[] = [];
    cap.on("data", (chunk: Buffer) => out.push(chunk));
    for (const piece of ["0123", "456789\n", "abcdefghij", "\nx\n\n", "0123456789"]) cap.write(Buffer.from(piece));
    cap.end();
    await new Promise((resolve) => cap.once("end", resolve));
    assert.equal(Buffer.concat(out).toString(), "0123456789\nabcdefghij\nx\n\n0123456789");
    assert.deepEqual(overflows, []);
    assert.equal(cap.overflowed, false);
  });

  test("a line one byte over fails once and nothing past the bound is passed on", async () => {
    let overflows = 0;
    const cap = new LineCapTransform(10, () => (overflows += 1));
    const out: Buffer[] = [];
    cap.on("data", (chunk: Buffer) => out.push(chunk));
    cap.write(Buffer.from('{"a":1}\n0123456'));
    cap.write(Buffer.from("789X\nmore lines\n"));
    cap.write(Buffer.from("and more\n"));
    cap.end();
    await new Promise((resolve) => cap.once("end", resolve));
    assert.equal(Buffer.concat(out).toString(), '{"a":1}\n0123456789');
    assert.equal(overflows, 1);
    assert.equal(cap.droppedBytes, "X\nmore lines\n".length + "and more\n".length);
  });

  test("a 600 MiB line without a newline is cut at the bound and never held: memory stays flat", async () => {
    const bound = 16 * MiB;
    let overflows = 0;
    const cap = new LineCapTransform(bound, () => (overflows += 1));
    const sink = counter();
    // One 1 MiB buffer written 600 times: the test itself allocates nothing per chunk.
    const chunk = Buffer.alloc(MiB, 0x61);
    let highWater = 0;
    const before = process.memoryUsage().arrayBuffers;
    async function* source(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 600; i += 1) {
        highWater = Math.max(highWater, cap.writableLength + cap.readableLength);
        yield chunk;
      }
    }
    await pipeline(source(), cap, sink);
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.equal(sink.bytes, bound, "exactly the bound reached the reader");
    assert.equal(overflows, 1);
    assert.equal(cap.droppedBytes, 600 * MiB - bound);
    assert.ok(highWater <= 2 * MiB, `the transform held ${highWater} bytes at most (two chunks)`);
    assert.ok(grown < 64 * MiB, `array buffers grew by ${grown} bytes while 600 MiB went through`);
  });
});

describe("stderr relay", () => {
  test("forwards the first bytes only, logs bounded lines up to a per-turn bound, keeps the tail", () => {
    const forwarded: Buffer[] = [];
    const logged: string[] = [];
    const relay = new StderrRelay({
      forward: (chunk) => forwarded.push(chunk),
      log: (line) => logged.push(line),
      maxForwardBytes: 100,
      maxLogLineBytes: 20,
      maxLogBytes: 200,
    });
    relay.write(Buffer.from("warning: short\n\n   \n"));
    relay.write(Buffer.from(`${"x".repeat(50)}`));
    relay.write(Buffer.from(`${"y".repeat(50)}\nlast`));
    relay.end();
    assert.equal(Buffer.concat(forwarded).length, 100);
    assert.equal(relay.notForwardedBytes, 20 + 50 + 55 - 100);
    assert.deepEqual(logged, ["warning: short", `${"x".repeat(20)} … (80 more bytes of this line not logged)`, "last"]);
    assert.ok(relay.tail.endsWith("y\nlast"));
  });

  test("a newline-less flood costs one line's worth, and lines past the turn's bound are counted in one note", () => {
    const logged: string[] = [];
    let forwarded = 0;
    const relay = new StderrRelay({
      forward: (chunk) => (forwarded += chunk.length),
      log: (line) => logged.push(line),
    });
    // Long enough lines that the byte bound comes first here; the line bound is checked below.
    const chunk = Buffer.alloc(64 * 1024, 0x7a);
    for (let i = 0; i < 1600; i += 1) relay.write(chunk); // 100 MiB, no newline
    relay.write(Buffer.from("\n"));
    for (let i = 0; i < 100_000; i += 1) relay.write(Buffer.from(`line ${i} ${"-".repeat(200)}\n`));
    relay.end();
    assert.equal(forwarded, MiB);
    assert.ok(relay.tail.length <= STDERR_TAIL_CHARS);
    assert.ok(logged[0]!.startsWith("z".repeat(4096) + " … ("), "the flood is one line, cut");
    const bytes = logged.reduce((sum, line) => sum + Buffer.byteLength(line), 0);
    assert.ok(bytes <= 256 * 1024 + 200, `logged ${bytes} bytes`);
    assert.ok(relay.unloggedLines > 0);
    assert.ok(bytes > 250 * 1024 && logged.length < 2000, `${logged.length} lines logged: the byte bound came first`);
    assert.equal(
      logged.at(-1),
      `${relay.unloggedLines} more stderr line(s) of this turn were not logged (over 2000 lines or ${256 * 1024} bytes)`,
    );
  });
});

test("stderr lines logged per turn are bounded in number too", () => {
  const logged: string[] = [];
  const relay = new StderrRelay({ forward: () => undefined, log: (line) => logged.push(line) });
  for (let i = 0; i < 10_000; i += 1) relay.write(Buffer.from(`w${i}\n`));
  relay.end();
  assert.equal(logged.length, 2001);
  assert.equal(relay.unloggedLines, 8000);
});

describe("codex's events checked before anyone sees them", () => {
  test("an event is a JSON object with a string type, nested at most EVENT_MAX_DEPTH deep, within the line bound once encoded", () => {
    assert.deepEqual(encodeCodexEvent({ type: "turn.started" }, MiB), { json: '{"type":"turn.started"}', bytes: 23 });
    for (const bad of [5, "x", null, [], { type: 1 }, {}])
      assert.match((encodeCodexEvent(bad, MiB) as { refused: string }).refused, /not an event/);
    const nest = (depth: number): unknown => {
      let value: unknown = 1;
      for (let i = 1; i < depth; i += 1) value = [value];
      return { type: "item.completed", item: value };
    };
    assert.ok("json" in encodeCodexEvent(nest(EVENT_MAX_DEPTH), MiB));
    assert.match(
      (encodeCodexEvent(nest(EVENT_MAX_DEPTH + 1), MiB) as { refused: string }).refused,
      /nested deeper than 128/,
    );
    // Deep enough to make JSON.stringify itself throw: refused, not thrown.
    const deep = JSON.parse(`{"type":"x","v":${"[".repeat(200_000)}${"]".repeat(200_000)}}`) as unknown;
    assert.match((encodeCodexEvent(deep, 64 * MiB) as { refused: string }).refused, /nested deeper/);
    // 1e20 is 4 bytes as codex writes it and 21 as JSON.stringify does.
    const grows = JSON.parse(`{"type":"x","v":[${Array(1000).fill("1e20").join(",")}]}`) as unknown;
    assert.match((encodeCodexEvent(grows, 10_000) as { refused: string }).refused, /encodes to over 10000 bytes/);
    assert.equal(jsonDepth('{"a":"[[[[","b":[{"c":"\\"]]"}]}'), 3);
  });
});

describe("turn state", () => {
  const item = (i: number, text = `item ${i}`) =>
    ({ type: "item.completed", item: { id: `i${i}`, type: "agent_message", text } }) as ThreadEvent;
  const apply = (state: ReturnType<typeof newTurnState>, event: ThreadEvent, requested?: string): void => {
    const encoded = encodeCodexEvent(event, 64 * MiB);
    assert.ok("json" in encoded);
    applyTurnEvent(event, state, requested, encoded.bytes);
  };

  test("keeps the first items up to the count bound and counts the rest", () => {
    const state = newTurnState(null);
    for (let i = 0; i < RESULT_ITEMS_MAX + 25; i += 1) apply(state, item(i));
    assert.equal(state.items.length, RESULT_ITEMS_MAX);
    assert.equal(state.itemsOmitted, 25);
    assert.equal(
      state.finalResponse,
      `item ${RESULT_ITEMS_MAX + 24}`,
      "the final response is the last message, kept or not",
    );
  });

  test("keeps items up to the byte bound; once one is left out, so are the later ones", () => {
    const state = newTurnState(null);
    const big = "b".repeat(5 * MiB);
    for (let i = 0; i < 3; i += 1) apply(state, item(i, big));
    apply(state, item(3, big));
    apply(state, item(4, "small"));
    assert.equal(state.items.length, 3);
    assert.ok(state.itemsBytes <= RESULT_ITEMS_MAX_BYTES);
    assert.equal(state.itemsOmitted, 2);
  });

  test("a final response over its bound is cut at a character boundary and marked", () => {
    const state = newTurnState(null);
    apply(state, item(1, "é".repeat(FINAL_RESPONSE_MAX_BYTES)));
    assert.equal(Buffer.byteLength(state.finalResponse), FINAL_RESPONSE_MAX_BYTES);
    assert.equal(state.finalResponseTruncated, true);
    apply(state, item(2, "short"));
    assert.deepEqual([state.finalResponse, state.finalResponseTruncated], ["short", false]);
  });

  test("events of the wrong shape fail the turn with codex_output instead of throwing", () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ type: "thread.started", thread_id: "not-a-uuid" }, /not a UUID/],
      [{ type: "thread.started", thread_id: { x: 1 } }, /not a UUID/],
      [{ type: "item.completed" }, /not an object with a type/],
      [{ type: "item.completed", item: "text" }, /not an object with a type/],
    ];
    for (const [event, message] of cases) {
      const state = newTurnState(null);
      apply(state, event as ThreadEvent);
      assert.equal(state.failure?.code, "codex_output", JSON.stringify(event));
      assert.match(state.failure?.message ?? "", message);
      assert.equal(state.threadId, null);
    }
    const failed = newTurnState(null);
    apply(failed, { type: "turn.failed", error: 42 } as unknown as ThreadEvent);
    assert.deepEqual(failed.failure, {
      code: "model_error",
      message: "codex reported a failed turn without a message",
    });
  });

  test("usage keeps numeric fields only, and looks at a bounded number of keys", () => {
    const state = newTurnState(null);
    const usage: Record<string, unknown> = {
      input_tokens: 10,
      cached_input_tokens: 2,
      output_tokens: 3,
      reasoning_output_tokens: 1,
      cache_write_input_tokens: 0,
      note: "x".repeat(1000),
      nested: { a: 1 },
    };
    for (let i = 0; i < 100_000; i += 1) usage[`k${i}`] = i;
    apply(state, { type: "turn.completed", usage } as unknown as ThreadEvent);
    assert.deepEqual(Object.keys(state.usage ?? {}).slice(0, 5), [
      "input_tokens",
      "cached_input_tokens",
      "output_tokens",
      "reasoning_output_tokens",
      "cache_write_input_tokens",
    ]);
    assert.ok(Object.keys(state.usage ?? {}).length <= 32);
    apply(state, { type: "turn.completed", usage: "lots" } as unknown as ThreadEvent);
    assert.equal(state.usage, null);
  });

  test("a resumed thread keeps its UUID; another one is a mismatch", () => {
    const id = "0199a9c2-1f2e-7c3d-8e4f-5a6b7c8d9e0f";
    const state = newTurnState(id);
    apply(state, { type: "thread.started", thread_id: id } as ThreadEvent, id);
    assert.equal(state.failure, null);
    apply(state, { type: "thread.started", thread_id: "0199a9c2-1f2e-7c3d-8e4f-000000000000" } as ThreadEvent, id);
    assert.equal((state.failure as { code: string } | null)?.code, "thread_mismatch");
  });
});

describe("UTF-8 bounds", () => {
  test("truncateUtf8 cuts at a character boundary; boundText says how much it left out", () => {
    assert.equal(truncateUtf8("abc", 3), "abc");
    assert.equal(truncateUtf8("aé€😀", 1), "a");
    assert.equal(truncateUtf8("aé€😀", 2), "a");
    assert.equal(truncateUtf8("aé€😀", 3), "aé");
    assert.equal(truncateUtf8("aé€😀", 9), "aé€");
    assert.equal(truncateUtf8("aé€😀", 10), "aé€😀");
    const bounded = boundText("m".repeat(10_000), 1000);
    assert.ok(Buffer.byteLength(bounded) <= 1000);
    assert.match(bounded, /^m+ … \(9\d\d\d more bytes not kept\)$/);
    assert.equal(boundText("short", 1000), "short");
  });
});
