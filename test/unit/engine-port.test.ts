import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * dockerode stays behind the engine port: only src/docker/ may import it (types included), so the
 * workspaces, turns and doctor can be driven by any EnginePort (test/support/fake-engine.ts in the
 * unit tests). Tests and the bench may still use dockerode to look at the real engine themselves.
 */

function findSrcDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("no package.json above the test");
    dir = parent;
  }
  return path.join(dir, "src");
}

function listTs(dir: string, relative = ""): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(dir, relative), { withFileTypes: true })) {
    const child = relative === "" ? entry.name : `${relative}/${entry.name}`;
    if (entry.isDirectory()) out.push(...listTs(dir, child));
    else if (entry.isFile() && entry.name.endsWith(".ts")) out.push(child);
  }
  return out;
}

/** Static imports and re-exports (`import ... from`, `import type`, `export ... from`), side-effect imports, `import()` and `require()`. */
const DOCKERODE_IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["']dockerode(?:\/[^"']*)?["']/;

function dockerodeImporters(files: ReadonlyArray<{ file: string; text: string }>): string[] {
  return files.filter(({ file, text }) => !file.startsWith("docker/") && DOCKERODE_IMPORT.test(text)).map(({ file }) => file);
}

describe("engine port: dockerode only in src/docker/", () => {
  test("no file outside src/docker/ imports dockerode", () => {
    const src = findSrcDir();
    const files = listTs(src).map((file) => ({ file, text: readFileSync(path.join(src, file), "utf8") }));
    assert.ok(files.length > 50, `found only ${files.length} files under ${src}`);
    assert.ok(files.some(({ file }) => file === "docker/docker-engine.ts"), "the scan sees src/docker/ (where the adapter imports dockerode)");
    assert.deepEqual(dockerodeImporters(files), [], "these import dockerode: reach the engine through EnginePort (src/docker/engine-port.ts) instead");
  });

  test("the scan catches every form of import, and lets src/docker/ be", () => {
    const forms = [
      'import Docker from "dockerode";',
      "import type Docker from 'dockerode';",
      'import type { ContainerInspectInfo } from "dockerode";',
      'export type { ContainerCreateOptions } from "dockerode";',
      'import "dockerode";',
      'const Docker = await import("dockerode");',
      'const Docker = require("dockerode");',
      'import { x } from "dockerode/lib/container";',
    ];
    for (const text of forms) assert.deepEqual(dockerodeImporters([{ file: "workspace/x.ts", text }]), ["workspace/x.ts"], text);
    assert.deepEqual(dockerodeImporters([{ file: "docker/x.ts", text: forms[0]! }]), []);
    assert.deepEqual(dockerodeImporters([{ file: "workspace/x.ts", text: '// the dockerode client\nimport { a } from "./dockerode-like.js";' }]), []);
  });
});
