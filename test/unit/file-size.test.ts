import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { findSrcDir, listTs } from "../support/source-files.js";

/**
 * No file in src/ grows past 300 lines (as prettier lays it out, which CI checks): past that, a
 * file holds more than one concern, and the seam it should be split along is already there.
 */
const MAX_LINES = 300;

test(`no src/ file is over ${MAX_LINES} lines`, () => {
  const src = findSrcDir();
  const files = listTs(src);
  assert.ok(files.length > 50, `found the sources (${files.length} files)`);
  const over = files
    .map((file) => ({ file: `src/${file}`, lines: readFileSync(path.join(src, file), "utf8").split("\n").length - 1 }))
    .filter(({ lines }) => lines > MAX_LINES)
    .map(({ file, lines }) => `${file}: ${lines}`);
  assert.deepEqual(over, []);
});
