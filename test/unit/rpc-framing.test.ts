import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { MessageWriter, readLines } from "../../src/rpc/framing.js";
import { LineSplitter, type LineChunk } from "../../src/shared/line-splitter.js";
import { classifyMessage, parseMessage } from "../../src/rpc/messages.js";

const lines = (chunks: LineChunk[]): string[] => chunks.map((c) => (c.kind === "line" ? c.text : `<${c.kind}>`));

describe("LineSplitter", () => {
  it("joins a line split across chunks and splits several lines in one chunk", () => {
    const splitter = new LineSplitter();
    assert.deepEqual(lines(splitter.push(Buffer.from('{"a":'))), []);
    assert.deepEqual(lines(splitter.push(Buffer.from('1}\n{"b":2}\n{"c"'))), ['{"a":1}', '{"b":2}']);
    assert.deepEqual(lines(splitter.push(Buffer.from(":3}\n"))), ['{"c":3}']);
  });

  it("decodes a multi-byte UTF-8 character split between chunks", () => {
    const bytes = Buffer.from('{"text":"héllo → 🙂"}\n', "utf8");
    const euro = bytes.indexOf(Buffer.from("→")) + 1; // inside the 3-byte arrow
    const emoji = bytes.indexOf(Buffer.from("🙂")) + 2; // inside the 4-byte emoji
    const splitter = new LineSplitter();
    const out = [
      ...splitter.push(bytes.subarray(0, euro)),
      ...splitter.push(bytes.subarray(euro, emoji)),
      ...splitter.push(bytes.subarray(emoji)),
    ];
    assert.deepEqual(lines(out), ['{"text":"héllo → 🙂"}']);
  });

  it("strips a trailing CR and skips blank lines", () => {
    const splitter = new LineSplitter();
    assert.deepEqual(lines(splitter.push(Buffer.from("one\r\n\n  \ntwo\n"))), ["one", "two"]);
  });

  it("accepts a line of exactly the limit and refuses one byte more, then carries on", () => {
    const splitter = new LineSplitter(8);
    assert.deepEqual(lines(splitter.push(Buffer.from("12345678\n"))), ["12345678"]);
    assert.deepEqual(lines(splitter.push(Buffer.from("123456789\nok\n"))), ["<oversized>", "ok"]);
  });

  it("reports an oversized line once, before its end arrives, and discards the rest without buffering", () => {
    const splitter = new LineSplitter(8);
    assert.deepEqual(lines(splitter.push(Buffer.from("1234567890"))), ["<oversized>"]);
    assert.deepEqual(lines(splitter.push(Buffer.from("x".repeat(100)))), []);
    assert.deepEqual(lines(splitter.push(Buffer.from("yy\nnext\n"))), ["next"]);
  });

  it("reports invalid UTF-8 as such", () => {
    const splitter = new LineSplitter();
    assert.deepEqual(lines(splitter.push(Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a]))), ["<invalid_utf8>"]);
  });

  it("flushes an unterminated last line at the end", () => {
    const splitter = new LineSplitter();
    splitter.push(Buffer.from("tail"));
    assert.deepEqual(lines(splitter.end()), ["tail"]);
  });
});

describe("readLines and MessageWriter", () => {
  it("reads what the writer wrote, one message per line, in order", async () => {
    const stream = new PassThrough();
    const writer = new MessageWriter(stream);
    writer.write({ jsonrpc: "2.0", id: 1, method: "a", params: { text: "line\nbreak ünïcode" } });
    writer.write({ jsonrpc: "2.0", method: "b" });
    stream.end();
    const out: string[] = [];
    for await (const chunk of readLines(stream)) if (chunk.kind === "line") out.push(chunk.text);
    assert.equal(out.length, 2);
    assert.deepEqual(JSON.parse(out[0] as string), {
      jsonrpc: "2.0",
      id: 1,
      method: "a",
      params: { text: "line\nbreak ünïcode" },
    });
  });

  it("does not throw when writing to a destroyed or ended stream", () => {
    const ended = new PassThrough();
    ended.on("error", () => {});
    ended.end();
    assert.equal(new MessageWriter(ended).write({ jsonrpc: "2.0", method: "x" }), false);
    const destroyed = new PassThrough();
    destroyed.destroy();
    assert.equal(new MessageWriter(destroyed).write({ jsonrpc: "2.0", method: "x" }), false);
  });
});

describe("classifyMessage", () => {
  it("sorts requests, notifications, responses and invalid messages", () => {
    assert.equal(classifyMessage({ jsonrpc: "2.0", id: 1, method: "m" }).kind, "request");
    assert.equal(classifyMessage({ jsonrpc: "2.0", method: "m" }).kind, "notification");
    assert.equal(classifyMessage({ jsonrpc: "2.0", id: 1, result: null }).kind, "response");
    assert.equal(classifyMessage({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "x" } }).kind, "response");
    for (const bad of [
      [],
      "x",
      1,
      null,
      { jsonrpc: "1.0", id: 1, method: "m" },
      { jsonrpc: "2.0", id: {}, method: "m" },
      { jsonrpc: "2.0", id: 1, method: 7 },
      { jsonrpc: "2.0", id: null, method: "m" },
    ]) {
      const out = classifyMessage(bad);
      assert.equal(out.kind, "invalid", JSON.stringify(bad));
      if (out.kind === "invalid") assert.equal(out.error.code, -32600);
    }
  });

  it("keeps the id of an invalid request when it can be read", () => {
    const out = classifyMessage({ jsonrpc: "2.0", id: 7, method: 3 });
    assert.equal(out.kind === "invalid" && out.id, 7);
  });

  it("maps a line that is not JSON to -32700", () => {
    const out = parseMessage("{not json");
    assert.equal(out.kind === "invalid" && out.error.code, -32700);
  });
});
