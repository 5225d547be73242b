/** Reading a few fields off a JSON document as it streams past, whatever the chunk boundaries. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { JsonFieldReader, type FieldPath } from "../../src/model-proxy/json-fields.js";

/** Feeds `text` in chunks of the given sizes (cycled) and returns the values found. */
function read(
  text: string | Buffer,
  paths: FieldPath[],
  sizes: number[] = [text.length],
  maxValueBytes?: number,
): unknown[] {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  const reader = new JsonFieldReader(paths, maxValueBytes === undefined ? {} : { maxValueBytes });
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length] ?? 1;
    reader.push(bytes.subarray(at, at + size));
    at += size;
  }
  return reader.end();
}

const usage = { input_tokens: 12, output_tokens: 3, input_tokens_details: { cached_tokens: 0 }, total_tokens: 15 };

/** A response body with traps: braces and quotes inside strings, a nested `usage` that is not the top-level one, non-ASCII text. */
const body = JSON.stringify({
  id: "resp_1",
  output: [
    {
      type: "message",
      content: [{ text: 'a "quoted" {brace} [bracket] \\ back – héllo 🌍', usage: { input_tokens: 999 } }],
    },
  ],
  metadata: { usage: "not this one" },
  usage,
  tail: [1, -2.5e3, true, false, null],
});

describe("JsonFieldReader", () => {
  test("finds a top-level field whatever the chunk boundaries, and not a nested one of the same name", () => {
    for (const sizes of [[body.length], [1], [2], [3], [7], [64], [5, 1, 13]]) {
      assert.deepEqual(read(body, [["usage"]], sizes), [usage], `chunks ${sizes.join(",")}`);
    }
  });

  test("reads nested paths and scalars: strings, numbers, literals", () => {
    const doc = JSON.stringify({
      type: "response.completed",
      sequence_number: 42,
      done: true,
      response: { id: "r", usage },
    });
    for (const sizes of [[doc.length], [1], [4]]) {
      assert.deepEqual(read(doc, [["type"], ["sequence_number"], ["done"], ["response", "usage"], ["usage"]], sizes), [
        "response.completed",
        42,
        true,
        usage,
        undefined,
      ]);
    }
  });

  test("a scalar at the very end of a chunk or of the document ends where it should", () => {
    assert.deepEqual(read('{"n":12345}', [["n"]], [6]), [12345]);
    assert.deepEqual(read("7", [[]]), [7]);
    assert.deepEqual(read('{"a":[1,2],"n":-1}', [["n"], ["a"]], [1]), [-1, [1, 2]]);
  });

  test("a field seen twice is its last value", () => {
    assert.deepEqual(read('{"usage":{"a":1},"usage":{"a":2}}', [["usage"]]), [{ a: 2 }]);
  });

  test("a value over the limit is given up, not kept; the rest is still read", () => {
    const doc = JSON.stringify({ big: "x".repeat(1000), usage });
    assert.deepEqual(read(doc, [["big"], ["usage"]], [100], 200), [undefined, usage]);
  });

  test("a document that is not complete JSON gives nothing", () => {
    for (const broken of [
      '{"usage":{"a":1}',
      '{"usage":{"a":1}}}',
      '{"usage":{"a":1]}',
      '{"usage":{"a":1}} {}',
      '{"usage":"open',
      "",
    ]) {
      assert.deepEqual(read(broken, [["usage"]]), [undefined], broken);
    }
  });

  test("escaped keys are not matched; escaped quotes inside values do not end them", () => {
    assert.deepEqual(read('{"us\\u0061ge":{"a":1}}', [["usage"]]), [undefined]);
    assert.deepEqual(read('{"type":"say \\"hi\\" \\\\","usage":{"a":1}}', [["type"], ["usage"]], [1]), [
      'say "hi" \\',
      { a: 1 },
    ]);
  });

  test("a body of many megabytes is read in chunks with only the usage kept", () => {
    const big = Buffer.from(JSON.stringify({ output: [{ text: "y".repeat(8 * 1024 * 1024) }], usage }));
    assert.deepEqual(read(big, [["usage"]], [65_536]), [usage]);
  });
});
