/** Reading token usage off a Responses API SSE stream, chunk by chunk. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { SseUsageReader, readUsage, type TokenUsage } from "../../src/model-proxy/sse-usage.js";

const usage = {
  input_tokens: 120,
  input_tokens_details: { cached_tokens: 40 },
  output_tokens: 30,
  output_tokens_details: { reasoning_tokens: 12 },
  total_tokens: 150,
};
const expected: TokenUsage = {
  inputTokens: 120,
  cachedTokens: 40,
  outputTokens: 30,
  reasoningTokens: 12,
  totalTokens: 150,
};

const frame = (type: string, body: Record<string, unknown>, eol = "\n"): string =>
  `event: ${type}${eol}data: ${JSON.stringify({ type, ...body })}${eol}${eol}`;

/** A message turn as OpenAI streams it: created, text deltas (with a non-ASCII character), done, completed. */
function messageStream(eol = "\n"): string {
  return [
    frame("response.created", { response: { id: "r1", usage: null } }, eol),
    `: keep-alive comment${eol}${eol}`,
    frame("response.output_text.delta", { delta: "héllo – 🌍" }, eol),
    frame(
      "response.output_item.done",
      { item: { type: "message", content: [{ type: "output_text", text: "héllo – 🌍" }] } },
      eol,
    ),
    frame("response.completed", { response: { id: "r1", output: [{ text: "héllo – 🌍" }], usage } }, eol),
  ].join("");
}

/** Feeds `bytes` in the given chunk sizes (cycled) and collects what the reader found. */
function feed(bytes: Buffer, sizes: number[], reader = new SseUsageReader()): TokenUsage[] {
  const found: TokenUsage[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length] ?? 1;
    found.push(...reader.push(bytes.subarray(at, at + size)));
    at += size;
  }
  return found;
}

describe("SseUsageReader", () => {
  test("finds the usage of response.completed in one chunk", () => {
    assert.deepEqual(new SseUsageReader().push(Buffer.from(messageStream())), [expected]);
  });

  test("finds it whatever the chunk boundaries: inside lines, fields, multi-byte characters and CRLFs", () => {
    for (const eol of ["\n", "\r\n", "\r"]) {
      const bytes = Buffer.from(messageStream(eol));
      for (const sizes of [[1], [2], [3], [7], [64], [1, 5, 2], [bytes.length - 1, 1]]) {
        assert.deepEqual(feed(bytes, sizes), [expected], `eol ${JSON.stringify(eol)}, chunks ${sizes.join(",")}`);
      }
    }
  });

  test("takes any Uint8Array, not only Buffers", () => {
    const bytes = new TextEncoder().encode(messageStream());
    const reader = new SseUsageReader();
    const found = [...reader.push(bytes.subarray(0, 101)), ...reader.push(bytes.subarray(101))];
    assert.deepEqual(found, [expected]);
  });

  test("reports usage when the completed event's chunk arrives, not before", () => {
    const reader = new SseUsageReader();
    const text = messageStream();
    const cut = text.indexOf("event: response.completed") + 30;
    assert.deepEqual(reader.push(Buffer.from(text.slice(0, cut))), []);
    assert.deepEqual(reader.push(Buffer.from(text.slice(cut, -1))), [], "no blank line yet: the event is not complete");
    assert.deepEqual(reader.push(Buffer.from("\n")), [expected]);
  });

  test("joins multi-line data with newlines and takes the type from the data when there is no event line", () => {
    const json = JSON.stringify({ type: "response.completed", response: { usage } }, null, 2);
    const text = `${json
      .split("\n")
      .map((line) => `data: ${line}`)
      .join("\n")}\n\n`;
    assert.deepEqual(feed(Buffer.from(text), [5]), [expected]);
    // "data:value" without the space, and a field with no colon at all, are valid SSE too.
    assert.deepEqual(
      new SseUsageReader().push(
        Buffer.from(`data:${JSON.stringify({ type: "response.completed", response: { usage } })}\nid\n\n`),
      ),
      [expected],
    );
  });

  test("counts incomplete and failed responses that carry usage; ignores events without usage or with broken data", () => {
    const text = [
      frame("response.created", { response: { usage: null } }),
      frame("response.incomplete", { response: { usage } }),
      frame("response.failed", { response: { error: { code: "server_error" }, usage: null } }),
      frame("response.output_text.delta", { response: { usage } }),
      "event: response.completed\ndata: {not json\n\n",
      frame("response.completed", { response: {} }),
      frame("response.failed", { response: { usage } }),
    ].join("");
    assert.deepEqual(feed(Buffer.from(text), [9]), [expected, expected]);
  });

  test("each response of a stream counts once", () => {
    const text = messageStream() + messageStream();
    assert.deepEqual(feed(Buffer.from(text), [100]), [expected, expected]);
  });

  test("reads the usage of a final event of any size, keeping only the usage (the event is never held whole)", () => {
    const reader = new SseUsageReader({ maxValueBytes: 1000 });
    const big = frame("response.completed", { response: { output: "x".repeat(5_000_000), usage } });
    assert.deepEqual(feed(Buffer.from(big + frame("response.completed", { response: { usage } })), [65_536], reader), [
      expected,
      expected,
    ]);
  });

  test("a usage object over the limit is given up, not kept, and the next event is read", () => {
    const reader = new SseUsageReader({ maxValueBytes: 300 });
    const padded = { ...usage, padding: "p".repeat(500) };
    const text =
      frame("response.completed", { response: { usage: padded } }) +
      frame("response.completed", { response: { usage } });
    assert.deepEqual(feed(Buffer.from(text), [300], reader), [expected]);
  });

  test("a large event of no interest does not disturb the next one", () => {
    const reader = new SseUsageReader({ maxValueBytes: 1000 });
    const text =
      frame("response.output_item.done", { item: { text: "y".repeat(100_000) } }) +
      frame("response.completed", { response: { usage } });
    assert.deepEqual(feed(Buffer.from(text), [4096], reader), [expected]);
  });

  test("an event line after the data still decides, and a long field name is no field", () => {
    const data = JSON.stringify({ type: "response.completed", response: { usage } });
    const text = `data: ${data}\nevent: response.output_text.delta\n\n${"x".repeat(100)}: ${data}\n\ndata: ${data}\nevent: response.completed\n\n`;
    assert.deepEqual(feed(Buffer.from(text), [3]), [expected]);
  });
});

describe("readUsage", () => {
  test("reads a full usage object", () => {
    assert.deepEqual(readUsage(usage), expected);
  });

  test("fills missing details with 0 and a missing total with input + output", () => {
    assert.deepEqual(readUsage({ input_tokens: 3, output_tokens: 4 }), {
      inputTokens: 3,
      cachedTokens: 0,
      outputTokens: 4,
      reasoningTokens: 0,
      totalTokens: 7,
    });
  });

  test("is null for anything that is not a usage object", () => {
    for (const value of [
      null,
      undefined,
      5,
      "usage",
      [],
      {},
      { input_tokens: "3", output_tokens: 4 },
      { input_tokens: -1, output_tokens: 4 },
      { input_tokens: 1.5, output_tokens: 4 },
    ]) {
      assert.equal(readUsage(value), null, JSON.stringify(value));
    }
  });

  test("chat completions and embeddings usage counts too: in a JSON body and in a data-only stream chunk", () => {
    assert.deepEqual(
      readUsage({
        prompt_tokens: 9,
        completion_tokens: 4,
        total_tokens: 13,
        prompt_tokens_details: { cached_tokens: 2 },
        completion_tokens_details: { reasoning_tokens: 1 },
      }),
      { inputTokens: 9, cachedTokens: 2, outputTokens: 4, reasoningTokens: 1, totalTokens: 13 },
    );
    assert.deepEqual(readUsage({ prompt_tokens: 8, total_tokens: 8 }), {
      inputTokens: 8,
      cachedTokens: 0,
      outputTokens: 0,
      reasoningTokens: 0,
      totalTokens: 8,
    });
    const reader = new SseUsageReader();
    const found = reader.push(
      Buffer.from(
        'data: {"id":"c1","choices":[{"delta":{"content":"hi"}}]}\n\ndata: {"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\ndata: [DONE]\n\n',
      ),
    );
    assert.deepEqual(found, [{ inputTokens: 5, cachedTokens: 0, outputTokens: 2, reasoningTokens: 0, totalTokens: 7 }]);
  });
});
