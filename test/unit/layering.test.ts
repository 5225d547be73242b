import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Imports in src/ flow one way (issue 12): cli → rpc → service ← wiring → codex / workspace →
 * docker, shared helpers at the bottom. Ranks, top to bottom:
 *
 *   6 cli        src/cli/**, src/index.ts (the library's entry: the client and the protocol's types)
 *   5 rpc        src/rpc/**
 *   5 doctor     src/doctor/** (alive-codex doctor: starts its own sidecar and checks it), beside
 *                rpc: neither imports the other
 *   4 wiring     src/sidecar.ts
 *   3 codex      src/codex/**
 *   2 workspace  src/workspace/**
 *   1 docker     src/docker/**
 *   1 net        src/egress/** and src/model-proxy/** (the proxies each workspace reaches out
 *                through), beside docker: neither imports the other
 *   1 metrics    src/metrics/** (the Prometheus registry and its server): only the wiring feeds it
 *   1 journal    src/journal/** (the turn journal, attach, get, list): wraps the turn runner the
 *                wiring hands it, so it imports only the bottom
 *   0 bottom     config, errors, log, version, service (the types rpc and the wiring meet at),
 *                codex-package (the installed codex build, which the runtime image needs),
 *                codex-versions (the codex versions driven and their flags), shared/**,
 *                and the pure egress rules config and rpc validate with (egress/policy.ts,
 *                egress/internal.ts, egress/addresses.ts, egress/settings.ts)
 *
 * The rule: a file imports its own layer or a lower rank. One exception: rpc stands beside the
 * wiring, not above it; it knows the service only by its types, so it imports the bottom and,
 * of the rest, only workspace/policy.ts (the rules a workspace's params must meet, which rpc
 * applies at the edge when it validates them).
 */
const RANKS = { cli: 6, rpc: 5, doctor: 5, wiring: 4, codex: 3, workspace: 2, docker: 1, net: 1, metrics: 1, journal: 1, bottom: 0 } as const;
type Layer = keyof typeof RANKS;

const BOTTOM_FILES = new Set(["config.ts", "errors.ts", "log.ts", "version.ts", "service.ts", "codex-package.ts", "codex-versions.ts", "egress/policy.ts", "egress/internal.ts", "egress/addresses.ts", "egress/settings.ts"]);
const RPC_MAY_IMPORT = new Set(["workspace/policy.ts"]);

/** The layer of a file, by its path relative to src/ ('/'-separated); null for a file no layer claims. */
function layerOf(file: string): Layer | null {
  if (file === "index.ts") return "cli";
  if (file === "sidecar.ts") return "wiring";
  if (BOTTOM_FILES.has(file)) return "bottom";
  const folder = file.split("/")[0];
  if (folder === "shared") return "bottom";
  if (folder === "egress" || folder === "model-proxy") return "net";
  if (folder === "metrics") return "metrics";
  if (folder === "journal") return "journal";
  if (folder === "cli" || folder === "rpc" || folder === "doctor" || folder === "codex" || folder === "workspace" || folder === "docker") return folder;
  return null;
}

function mayImport(file: string, target: string): boolean {
  const from = layerOf(file);
  const to = layerOf(target);
  if (from === null || to === null) return false;
  if (from === to) return true;
  if (from === "rpc") return to === "bottom" || RPC_MAY_IMPORT.has(target);
  return RANKS[to] < RANKS[from];
}

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

/** Every module specifier of a file: static imports and re-exports (`from "x"`), side-effect imports and import("x"). */
function importSpecifiers(source: string): string[] {
  const patterns = [/\bfrom\s*["']([^"']+)["']/g, /\bimport\s*["']([^"']+)["']/g, /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g];
  return patterns.flatMap((pattern) => [...source.matchAll(pattern)].map((match) => match[1] as string));
}

/** A relative specifier as a path relative to src/ ('/'-separated, .ts); null for a package import. */
function resolveImport(file: string, specifier: string): string | null {
  if (!specifier.startsWith(".")) return null;
  return path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)).replace(/\.js$/, ".ts");
}

describe("layering of src/", () => {
  const srcDir = findSrcDir();
  const files = listTs(srcDir);

  test("every file in src/ belongs to a layer", () => {
    assert.ok(files.length > 20, `found only ${files.length} files under ${srcDir}`);
    assert.deepEqual(files.filter((file) => layerOf(file) === null), [], "files no layer claims: give them a folder, or a rank here");
  });

  test("no import runs up", () => {
    const upward: string[] = [];
    for (const file of files) {
      for (const specifier of importSpecifiers(readFileSync(path.join(srcDir, file), "utf8"))) {
        const target = resolveImport(file, specifier);
        if (target !== null && !mayImport(file, target)) upward.push(`${file} (${layerOf(file)}) → ${target} (${layerOf(target)})`);
      }
    }
    assert.deepEqual(upward, [], `imports against the layering:\n  ${upward.join("\n  ")}`);
  });

  test("the rule catches an import that runs up", () => {
    assert.equal(mayImport("docker/images.ts", "codex/env.ts"), false);
    assert.equal(mayImport("workspace/manager.ts", "rpc/framing.ts"), false);
    assert.equal(mayImport("rpc/params.ts", "codex/env.ts"), false);
    assert.equal(mayImport("rpc/server.ts", "sidecar.ts"), false);
    assert.equal(mayImport("sidecar.ts", "rpc/server.ts"), false);
    assert.equal(mayImport("shared/abort.ts", "docker/engine.ts"), false);
    assert.equal(mayImport("codex/turn-runner.ts", "workspace/manager.ts"), true);
    assert.equal(mayImport("rpc/params.ts", "workspace/policy.ts"), true);
    assert.equal(mayImport("cli/commands/serve.ts", "sidecar.ts"), true);
  });
});
