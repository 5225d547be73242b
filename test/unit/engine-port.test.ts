import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { findSrcDir, listTs } from "../support/source-files.js";

/**
 * dockerode stays behind the engine port: only src/docker/ may import it (types included), so the
 * workspaces, turns and doctor can be driven by any EnginePort (test/support/fake-engine.ts in the
 * unit tests). Tests and the bench may still use dockerode to look at the real engine themselves.
 *
 * The same goes for the client's type as docker/engine.ts re-exports it (`Docker`): a file that
 * names it holds the raw client. Only the wiring (src/sidecar.ts) does, to hand it to the image code
 * of src/docker/, which lies beyond the port.
 */

/** Static imports and re-exports (`import ... from`, `import type`, `export ... from`), side-effect imports, `import()` and `require()`. */
const DOCKERODE_IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["']dockerode(?:\/[^"']*)?["']/;

function dockerodeImporters(files: ReadonlyArray<{ file: string; text: string }>): string[] {
  return files
    .filter(({ file, text }) => !file.startsWith("docker/") && DOCKERODE_IMPORT.test(text))
    .map(({ file }) => file);
}

/** Files outside src/docker/ that may name the client's type: they wire it into src/docker/ code. */
const CLIENT_WIRING: ReadonlySet<string> = new Set(["sidecar.ts"]);

/** Named imports and re-exports (`import { type Docker } from`, `export type { Docker } from`), namespace imports, and `import("…").Docker`. */
const NAMED_IMPORT = /\b(?:import|export)\s+(?:type\s+)?(?:\{([^}]*)\}|\*\s+as\s+\w+)\s*from\s*["']([^"']+)["']/g;
const TYPE_QUERY = /\bimport\s*\(\s*["']([^"']+)["']\s*\)\s*\.\s*Docker\b/g;

/** Whether a specifier in `file` (relative to src/) names src/docker/engine.ts. */
function isEngineModule(file: string, specifier: string): boolean {
  if (!specifier.startsWith(".")) return false;
  return (
    path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)).replace(/\.(?:js|ts)$/, "") ===
    "docker/engine"
  );
}

function namesClient(file: string, text: string): boolean {
  for (const match of text.matchAll(NAMED_IMPORT)) {
    if (!isEngineModule(file, match[2] as string)) continue;
    // A namespace import reaches the type as well.
    if (match[1] === undefined || /(?:^|[\s,{])(?:type\s+)?Docker\b/.test(match[1])) return true;
  }
  return [...text.matchAll(TYPE_QUERY)].some((match) => isEngineModule(file, match[1] as string));
}

function clientTypeImporters(files: ReadonlyArray<{ file: string; text: string }>): string[] {
  return files
    .filter(({ file, text }) => !file.startsWith("docker/") && !CLIENT_WIRING.has(file) && namesClient(file, text))
    .map(({ file }) => file);
}

describe("engine port: dockerode only in src/docker/", () => {
  test("no file outside src/docker/ imports dockerode", () => {
    const src = findSrcDir();
    const files = listTs(src).map((file) => ({ file, text: readFileSync(path.join(src, file), "utf8") }));
    assert.ok(files.length > 50, `found only ${files.length} files under ${src}`);
    assert.ok(
      files.some(({ file }) => file === "docker/docker-engine.ts"),
      "the scan sees src/docker/ (where the adapter imports dockerode)",
    );
    assert.deepEqual(
      dockerodeImporters(files),
      [],
      "these import dockerode: reach the engine through EnginePort (src/docker/engine-port.ts) instead",
    );
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
    for (const text of forms)
      assert.deepEqual(dockerodeImporters([{ file: "workspace/x.ts", text }]), ["workspace/x.ts"], text);
    assert.deepEqual(dockerodeImporters([{ file: "docker/x.ts", text: forms[0]! }]), []);
    assert.deepEqual(
      dockerodeImporters([
        { file: "workspace/x.ts", text: '// the dockerode client\nimport { a } from "./dockerode-like.js";' },
      ]),
      [],
    );
  });

  test("no file outside src/docker/ but the wiring names the client's type from docker/engine.ts", () => {
    const src = findSrcDir();
    const files = listTs(src).map((file) => ({ file, text: readFileSync(path.join(src, file), "utf8") }));
    assert.deepEqual(
      clientTypeImporters(files),
      [],
      "these take the raw dockerode client: take the EnginePort (src/docker/engine-port.ts), or a Pick of it, instead",
    );
  });

  test("the client scan catches every form that names the type, and lets the rest be", () => {
    const forms = [
      'import type { Docker } from "../docker/engine.js";',
      'import { createDockerClient, type Docker } from "../docker/engine.js";',
      'import { type Docker as Client, isNotFound } from "../docker/engine.js";',
      'import {\n  Docker,\n} from "../docker/engine.js";',
      'export type { Docker } from "../docker/engine.js";',
      'import * as engine from "../docker/engine.js";',
      'let docker: import("../docker/engine.js").Docker;',
    ];
    for (const text of forms)
      assert.deepEqual(clientTypeImporters([{ file: "doctor/x.ts", text }]), ["doctor/x.ts"], text);
    assert.deepEqual(
      clientTypeImporters([{ file: "x.ts", text: 'import type { Docker } from "./docker/engine.js";' }]),
      ["x.ts"],
      "a file at the top of src/",
    );
    const fine = [
      'import { createDockerClient, isNotFound } from "../docker/engine.js";',
      'import type { DockerEngine } from "../docker/docker-engine.js";',
      'import type { Docker } from "../other/engine.js";',
    ];
    for (const text of fine) assert.deepEqual(clientTypeImporters([{ file: "doctor/x.ts", text }]), [], text);
    assert.deepEqual(clientTypeImporters([{ file: "docker/x.ts", text: forms[0]!.replace("../docker/", "./") }]), []);
    assert.deepEqual(
      clientTypeImporters([
        { file: "sidecar.ts", text: 'import { createDockerClient, type Docker } from "./docker/engine.js";' },
      ]),
      [],
    );
  });
});
