import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * No file in src/ grows past 300 lines (as prettier lays it out, which CI checks): past that, a
 * file holds more than one concern, and the seam it should be split along is already there.
 */
const MAX_LINES = 300;

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("no package.json above the test");
    dir = parent;
  }
  return dir;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.isFile() && entry.name.endsWith(".ts") ? [full] : [];
  });
}

test(`no src/ file is over ${MAX_LINES} lines`, () => {
  const root = repoRoot();
  const files = sourceFiles(path.join(root, "src"));
  assert.ok(files.length > 50, `found the sources (${files.length} files)`);
  const over = files
    .map((file) => ({ file: path.relative(root, file), lines: readFileSync(file, "utf8").split("\n").length - 1 }))
    .filter(({ lines }) => lines > MAX_LINES)
    .map(({ file, lines }) => `${file}: ${lines}`);
  assert.deepEqual(over, []);
});
