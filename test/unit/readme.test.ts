/** The README's promises: its configuration table is the config module's, its quick start what CI runs. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { renderSettingsMarkdown } from "../../src/config.js";
import { findPackageRoot } from "../../src/docker/build-context.js";

const root = findPackageRoot();
const readme = readFileSync(path.join(root, "README.md"), "utf8");

test("the README's configuration table matches src/config.ts (npm run docs:config)", () => {
  assert.ok(
    readme.includes(renderSettingsMarkdown()),
    "README.md's table is stale: run `npm run build && npm run docs:config`",
  );
});

test("the README's test command is the one .ci/run runs", () => {
  const ci = readFileSync(path.join(root, ".ci", "run"), "utf8");
  assert.match(readme, /^npm test$/m);
  assert.match(ci, /^npm test$/m);
  assert.match(readme, /^bash scripts\/quickstart\.sh$/m);
});
