import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { findSrcDir, listTs } from "../support/source-files.js";

/**
 * Imports in src/ flow one way, so each part can be read, tested and changed knowing only what lies
 * below it: cli → rpc → service ← wiring → turns → codex / workspace → docker, the bottom under them
 * all. A folder of src/ lies wholly in one layer; the files at the top of src/ are the bottom, but for
 * the two entry points, index.ts (cli) and sidecar.ts (wiring). Ranks, top to bottom:
 *
 *   7 cli        src/cli/**, src/index.ts (the library's entry: the client and the protocol's types)
 *   6 rpc        src/rpc/**: stands beside the wiring, not above it; it knows the service only by
 *                its types, so it sees rank 0 alone (the types, and the rules it applies at the edge
 *                when it validates params)
 *   6 doctor     src/doctor/** (alive-codex doctor: starts its own sidecar and checks it), beside
 *                rpc: neither imports the other
 *   5 wiring     src/sidecar.ts and src/wiring/** (the service it hands the RPC server)
 *   4 turns      src/turns/** (a turn's whole life behind one facade: admission, execution in its
 *                workspace's container, budgets, the journal hub behind attach, get and list); it
 *                drives codex through codex/ and holds its workspace through workspace/
 *   3 codex      src/codex/** (what is codex's own: the launcher, the exec bridge, its output and
 *                env, config overrides, threads, sweeps, the sandbox probe and stall watch)
 *   2 workspace  src/workspace/**
 *   1 docker     src/docker/**
 *   1 net        src/egress/** and src/model-proxy/** (the proxies each workspace reaches out
 *                through), beside docker: neither imports the other
 *   1 metrics    src/metrics/** (the Prometheus registry and its server): only the wiring feeds it
 *   1 journal    src/journal/** (the turn journal's files, writer and records): turns/ keeps its
 *                turns in it, so it imports only the bottom
 *   0 bottom     the files at the top of src/: config, errors, log, version, service (the types rpc
 *                and the wiring meet at, by area in src/service-types/**), codex-package (the
 *                installed codex build, which the runtime image needs), codex-versions (the codex
 *                versions driven and their flags); src/shared/** (helpers); src/policy/** (the pure
 *                rules config and rpc validate with: a workspace's ids, ranges and roots, its egress
 *                policy, which addresses are public, the operator's internal destinations);
 *                src/settings/** (the settings table config.ts loads, by area). These import one
 *                another: config parses with the rules, and the rules raise the errors and read the
 *                config's types.
 *
 * The rule: a file imports its own layer or a lower rank, no higher than its layer sees (one rank
 * below its own, unless the table says less).
 */
const LAYERS = {
  cli: { rank: 7 },
  rpc: { rank: 6, sees: 0 },
  doctor: { rank: 6 },
  wiring: { rank: 5 },
  turns: { rank: 4 },
  codex: { rank: 3 },
  workspace: { rank: 2 },
  docker: { rank: 1 },
  net: { rank: 1 },
  metrics: { rank: 1 },
  journal: { rank: 1 },
  bottom: { rank: 0 },
} as const satisfies Record<string, { rank: number; sees?: number }>;
type Layer = keyof typeof LAYERS;

/** The layer of each folder of src/; the files at the top of src/ are the bottom, but for the two entry points. */
const FOLDERS: Readonly<Record<string, Layer>> = {
  cli: "cli",
  rpc: "rpc",
  doctor: "doctor",
  wiring: "wiring",
  turns: "turns",
  codex: "codex",
  workspace: "workspace",
  docker: "docker",
  egress: "net",
  "model-proxy": "net",
  metrics: "metrics",
  journal: "journal",
  shared: "bottom",
  policy: "bottom",
  settings: "bottom",
  "service-types": "bottom",
};
const ENTRY_POINTS: Readonly<Record<string, Layer>> = { "index.ts": "cli", "sidecar.ts": "wiring" };

/** The layer of a file, by its path relative to src/ ('/'-separated); null for a file in a folder no layer claims. */
function layerOf(file: string): Layer | null {
  const parts = file.split("/");
  if (parts.length === 1) return ENTRY_POINTS[file] ?? "bottom";
  return FOLDERS[parts[0] as string] ?? null;
}

/** The highest rank a layer may import from another layer. */
function sees(layer: Layer): number {
  const entry: { rank: number; sees?: number } = LAYERS[layer];
  return entry.sees ?? entry.rank - 1;
}

function mayImport(file: string, target: string): boolean {
  const from = layerOf(file);
  const to = layerOf(target);
  if (from === null || to === null) return false;
  return from === to || LAYERS[to].rank <= sees(from);
}

/** Every module specifier of a file: static imports and re-exports (`from "x"`), side-effect imports and import("x"). */
function importSpecifiers(source: string): string[] {
  const patterns = [
    /\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
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
    assert.deepEqual(
      files.filter((file) => layerOf(file) === null),
      [],
      "files no layer claims: give their folder a layer in FOLDERS",
    );
  });

  test("no import runs up", () => {
    const upward: string[] = [];
    for (const file of files) {
      for (const specifier of importSpecifiers(readFileSync(path.join(srcDir, file), "utf8"))) {
        const target = resolveImport(file, specifier);
        if (target !== null && !mayImport(file, target))
          upward.push(`${file} (${layerOf(file)}) → ${target} (${layerOf(target)})`);
      }
    }
    assert.deepEqual(upward, [], `imports against the layering:\n  ${upward.join("\n  ")}`);
  });

  test("the rule catches an import that runs up", () => {
    assert.equal(mayImport("docker/images.ts", "codex/env.ts"), false);
    assert.equal(mayImport("workspace/manager.ts", "rpc/framing.ts"), false);
    assert.equal(mayImport("rpc/params.ts", "codex/env.ts"), false);
    assert.equal(mayImport("rpc/params.ts", "workspace/manager.ts"), false);
    assert.equal(mayImport("rpc/server.ts", "egress/http-proxy.ts"), false);
    assert.equal(mayImport("rpc/server.ts", "sidecar.ts"), false);
    assert.equal(mayImport("sidecar.ts", "rpc/server.ts"), false);
    assert.equal(mayImport("doctor/checks.ts", "rpc/client.ts"), false);
    assert.equal(mayImport("egress/http-proxy.ts", "docker/engine.ts"), false);
    assert.equal(mayImport("shared/abort.ts", "docker/engine.ts"), false);
    assert.equal(mayImport("policy/addresses.ts", "egress/resolver.ts"), false);
    assert.equal(mayImport("codex/launcher.ts", "turns/turn-runner.ts"), false);
    assert.equal(mayImport("journal/turn-journal.ts", "turns/turn-hub.ts"), false);
    assert.equal(mayImport("turns/turn-runner.ts", "sidecar.ts"), false);
    assert.equal(mayImport("turns/turn-runner.ts", "workspace/manager.ts"), true);
    assert.equal(mayImport("turns/turn-container.ts", "codex/launcher.ts"), true);
    assert.equal(mayImport("sidecar.ts", "turns/turn-runner.ts"), true);
    assert.equal(mayImport("rpc/params.ts", "policy/workspace-policy.ts"), true);
    assert.equal(mayImport("config.ts", "policy/egress-settings.ts"), true);
    assert.equal(mayImport("egress/destination.ts", "policy/addresses.ts"), true);
    assert.equal(mayImport("cli/commands/serve.ts", "sidecar.ts"), true);
  });
});
