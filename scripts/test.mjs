#!/usr/bin/env node
// The test runner behind `npm test` (after `npm run build`).
//
//   node scripts/test.mjs               unit and integration tests
//   node scripts/test.mjs unit          unit tests only (no Docker engine needed)
//   node scripts/test.mjs integration   integration tests only
//   node scripts/test.mjs codex-newer   the core turn tests (CORE_TURN_TESTS) against the newest codex
//                                       the sidecar is tested with (or ALIVE_CODEX_TEST_CODEX_VERSION)
//   node scripts/test.mjs [mode] FILE...   only these compiled test files (e.g. dist/test/integration/x.test.js)
//   node scripts/test.mjs [mode] -- --test-name-pattern=foo   extra flags for node --test
//
// Integration tests never skip: the engine must answer (scripts/install-docker.sh starts one).
// Before the tests it makes sure of the base image (a local one from make-base-image.mjs when
// ALIVE_CODEX_BASE_IMAGE is unset and debian:bookworm-slim is absent) and ensures the runtime
// image once, with the codex version ALIVE_CODEX_TEST_CODEX_VERSION names when set (else the SDK's;
// the test sidecars then run with --codex-version). The tests get ALIVE_CODEX_TEST_IMAGE, ALIVE_CODEX_BASE_IMAGE and a fresh
// ALIVE_CODEX_TEST_RUN_ID; afterwards every container, network and volume labelled with that run
// id is removed (and whatever earlier runs that were killed left, their workspace disks included). Each test file must exit right
// after its tests: one that leaves a handle open fails, naming it (test/support/exit-check.ts).
// Exits with the runner's code (1 if reaping failed after a green run).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, realpathSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DIST_TEST = path.join(ROOT, "dist", "test");
const PING_TIMEOUT_MS = 15_000;
const RUN_ID_LABEL = "dev.alive.codex.run-id";
// Each test file's process exits right after its last test and after-hooks (--test-force-exit), and
// exit-check.js fails it there, naming what was still open: a file that would hang fails at once
// instead of at the 600 s file timeout (long enough for escape.test.ts under gVisor with one stalled
// probe turn retried; a hang still ends there).
const EXIT_CHECK = [
  "--test-force-exit",
  "--import",
  pathToFileURL(path.join(ROOT, "dist", "test", "support", "exit-check.js")).href,
];

const say = (message) => console.log(`test.mjs: ${message}`);
function fail(message) {
  console.error(`test.mjs: ERROR: ${message}`);
  process.exit(1);
}

const separator = process.argv.indexOf("--");
const ownArgs = separator === -1 ? process.argv.slice(2) : process.argv.slice(2, separator);
const runnerArgs = separator === -1 ? [] : process.argv.slice(separator + 1);
const MODES = ["all", "unit", "integration", "codex-newer"];
const mode = MODES.includes(ownArgs[0]) ? ownArgs[0] : "all";
/**
 * The turn tests run a second time against a newer codex (CI does, after the main run): commands,
 * resume, cancel, MCP, output schema (turns), budgets and accounting (operations), and what the
 * sidecar reports and adds for the version (codex-version).
 */
const CORE_TURN_TESTS = ["turns", "operations", "codex-version"].map((name) =>
  path.join("dist", "test", "integration", `${name}.test.js`),
);
const chosenFiles = MODES.includes(ownArgs[0]) ? ownArgs.slice(1) : ownArgs;
for (const file of chosenFiles) {
  if (!file.endsWith(".test.js") || !existsSync(path.resolve(ROOT, file))) {
    fail(
      `${JSON.stringify(file)} is not a compiled test file: expected "unit", "integration" or paths of dist/test/**/*.test.js (then -- and flags for node --test)`,
    );
  }
}

/** Every *.test.js under dist/test/<kind>, sorted: Node 20's --test does not expand globs. */
function testFiles(kind) {
  const dir = path.join(DIST_TEST, kind);
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".test.js"))
    .map((entry) => path.relative(ROOT, path.join(entry.parentPath ?? entry.path, entry.name)))
    .sort();
}

async function importDist(relative) {
  const file = path.join(ROOT, "dist", "src", relative);
  if (!existsSync(file)) fail(`${path.relative(ROOT, file)} is missing: run \`npm run build\` first (npm test does)`);
  return import(pathToFileURL(file).href);
}

/** Runs node --test and resolves with its exit code; SIGINT/SIGTERM are passed on, and cleanup still runs. */
function runTests(files, env) {
  const args = [
    "--test",
    "--test-concurrency=2",
    "--test-timeout=600000",
    "--test-reporter=spec",
    ...EXIT_CHECK,
    ...runnerArgs,
    ...files,
  ];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: "inherit" });
    const forward = (signal) => child.kill(signal);
    process.on("SIGINT", forward);
    process.on("SIGTERM", forward);
    child.on("exit", (code, signal) => {
      process.off("SIGINT", forward);
      process.off("SIGTERM", forward);
      resolve(code ?? (signal ? 1 : 0));
    });
    child.on("error", (error) => {
      console.error(`test.mjs: ERROR: cannot start node --test: ${error.message}`);
      resolve(1);
    });
  });
}

/** Removes what this run made (the shared reaper: src/docker/reaper.ts); returns false if anything is left. */
async function reap(docker, runId) {
  const result = await reapLabelled(docker, [`${RUN_ID_LABEL}=${runId}`]);
  for (const failure of result.failures) console.error(`test.mjs: ERROR: could not remove ${failure}`);
  const total = result.containers + result.networks + result.volumes;
  say(
    total === 0
      ? `reaper: nothing left with ${RUN_ID_LABEL}=${runId}`
      : `reaper: removed ${result.containers} container(s), ${result.networks} network(s), ${result.volumes} volume(s) left by run ${runId}`,
  );
  return result.failures.length === 0;
}

/** Runs scripts/make-base-image.mjs for `tag`, streaming its output. */
function makeBaseImage(tag) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, "scripts", "make-base-image.mjs"), tag], {
      cwd: ROOT,
      stdio: "inherit",
    });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`make-base-image.mjs exited with ${code}`))));
  });
}

const runId = `t${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
const files =
  chosenFiles.length > 0
    ? chosenFiles.map((file) => path.relative(ROOT, path.resolve(ROOT, file)))
    : mode === "codex-newer"
      ? CORE_TURN_TESTS
      : mode === "integration"
        ? testFiles("integration")
        : mode === "unit"
          ? testFiles("unit")
          : [...testFiles("unit"), ...testFiles("integration")];
if (files.length === 0)
  fail(`no *.test.js under ${path.relative(ROOT, DIST_TEST)} for mode "${mode}": run \`npm run build\` first`);
if (mode === "all" && chosenFiles.length === 0 && testFiles("integration").length === 0)
  fail(
    `no integration tests under ${path.relative(ROOT, DIST_TEST)}/integration: they never skip; run \`npm run build\``,
  );

// Every runsc test that met gVisor's random stall and ran once more writes a line here
// (test/support/stall-retry.ts); the tally is printed at the end of the run.
const retryLog = path.join(os.tmpdir(), `alive-codex-test-retries-${runId}.log`);
const env = { ...process.env, ALIVE_CODEX_TEST_RUN_ID: runId, ALIVE_CODEX_TEST_RETRY_LOG: retryLog };

/** Prints how many tests were retried after a sandbox stall, and which; removes the file. */
function reportRetries() {
  let lines = [];
  try {
    lines = readFileSync(retryLog, "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "");
    rmSync(retryLog, { force: true });
  } catch {
    // No file: no retry.
  }
  say(
    lines.length === 0
      ? "sandbox stalls: no test needed a retry"
      : `sandbox stalls: ${lines.length} test attempt(s) stalled under gVisor and ran once more:`,
  );
  for (const line of lines) say(`  ${line}`);
}

if (mode === "unit") {
  say(`${files.length} unit test file(s), run id ${runId}`);
  process.exit(await runTests(files, env));
}

if (mode === "codex-newer" && !process.env.ALIVE_CODEX_TEST_CODEX_VERSION) {
  const { TESTED_CODEX_VERSIONS } = await importDist("codex-versions.js");
  env.ALIVE_CODEX_TEST_CODEX_VERSION = TESTED_CODEX_VERSIONS.at(-1);
}
const codexVersion = env.ALIVE_CODEX_TEST_CODEX_VERSION || null;
if (codexVersion !== null) {
  const { parseCodexVersionSetting } = await importDist("codex-versions.js");
  try {
    parseCodexVersionSetting("ALIVE_CODEX_TEST_CODEX_VERSION", codexVersion);
  } catch (error) {
    fail(error.message);
  }
  say(`codex ${codexVersion} (ALIVE_CODEX_TEST_CODEX_VERSION) in the runtime image and the test sidecars`);
}

const { createDockerClient } = await importDist("docker/engine.js");
const { isRunLive, markRunLive, reapAbandonedRuns, reapLabelled } = await importDist("docker/reaper.js");
const { disksLeftUnder, releaseDisksUnder } = await importDist("workspace/disk-leftovers.js");
const { RuntimeImage } = await importDist("docker/images.js");
const { LOCAL_BASE_IMAGE, resolveBaseImage } = await importDist("docker/base-image.js");
const { ErrorCode } = await importDist("errors.js");
const { createLogger } = await importDist("log.js");

const dockerHost = process.env.DOCKER_HOST || "unix:///var/run/docker.sock";
const docker = createDockerClient(dockerHost);
try {
  await Promise.race([
    docker.ping(),
    delay(PING_TIMEOUT_MS, undefined, { ref: false }).then(() => {
      throw new Error(`no answer within ${PING_TIMEOUT_MS / 1000} s`);
    }),
  ]);
} catch (error) {
  fail(
    `the Docker engine at ${dockerHost} does not answer (${error?.message ?? error}). Integration tests need it and never skip: start one with \`bash scripts/install-docker.sh\`, or run \`npm run test:unit\``,
  );
}
const version = await docker.version();
say(`Docker engine ${version.Version} at ${dockerHost}`);
const runEnded = markRunLive(runId);
const abandoned = await reapAbandonedRuns(docker, { except: [runId] });
if (abandoned.runs.length > 0)
  say(
    `reaper: cleared ${abandoned.result.containers} container(s), ${abandoned.result.networks} network(s) of earlier runs that did not end cleanly (${abandoned.runs.join(", ")})`,
  );
await releaseAbandonedDisks();

/**
 * Workspace disks (mounts, loop devices) left under the temporary roots of test runs that were
 * killed: each root names its run (test/support/sidecar.ts writes run-id); a live run's, one
 * without a pid file ("local": node --test run by hand) and this run's are left alone.
 */
async function releaseAbandonedDisks() {
  const tmp = realpathSync(os.tmpdir());
  const roots = new Set();
  for (const point of (await disksLeftUnder(tmp)).mounts) {
    const first = point.slice(tmp.length + 1).split(path.sep)[0];
    if (first.startsWith("alive-codex-test-")) roots.add(path.join(tmp, first));
  }
  for (const root of roots) {
    let owner;
    try {
      owner = readFileSync(path.join(root, "run-id"), "utf8").trim();
    } catch {
      continue;
    }
    if (owner === runId || owner === "local" || isRunLive(owner)) continue;
    const released = await releaseDisksUnder(root);
    say(`reaper: released ${released.mounts.length} workspace disk mount(s) of run ${owner} under ${root}`);
  }
}

// The sidecar's own choice (resolveBaseImage); when the engine has no base at all, make the local one.
let baseImage;
try {
  baseImage = await resolveBaseImage(docker, process.env.ALIVE_CODEX_BASE_IMAGE || null);
} catch (error) {
  if (error?.code !== ErrorCode.imageUnavailable) fail(`cannot choose a base image: ${error?.message ?? error}`);
  say(`ALIVE_CODEX_BASE_IMAGE is unset and the engine has no base image: making a local one, ${LOCAL_BASE_IMAGE}`);
  try {
    await makeBaseImage(LOCAL_BASE_IMAGE);
  } catch (makeError) {
    fail(`could not make the base image ${LOCAL_BASE_IMAGE}: ${makeError.message}`);
  }
  baseImage = LOCAL_BASE_IMAGE;
}

const log = createLogger({ level: "info", write: (line) => console.log(line) });
const runtime = new RuntimeImage({
  docker,
  baseImage,
  explicitRef: process.env.ALIVE_CODEX_TEST_IMAGE || null,
  codexVersion,
  ...(process.env.ALIVE_CODEX_NPM_REGISTRY ? { npmRegistry: process.env.ALIVE_CODEX_NPM_REGISTRY } : {}),
  log,
  onProgress: (line) => console.log(`  | ${line}`),
});
const started = Date.now();
let image;
try {
  image = await runtime.ensure();
} catch (error) {
  fail(`runtime image unavailable: ${error?.message ?? error}`);
}
say(
  `runtime image ${image.ref} ${image.built ? `built in ${Math.round((Date.now() - started) / 1000)} s` : "reused"} (base ${baseImage})`,
);
say(`${files.length} test file(s), run id ${runId}`);

// The run's own bridge, made once here: test files start in parallel, and two that create it at
// the same moment get two networks of one name (the engine's duplicate check is not atomic).
const { ensureBridgeNetwork } = await importDist("docker/networks.js");
const testNetwork = `alive-codex-test-${runId}`;
await ensureBridgeNetwork(docker, testNetwork, { [RUN_ID_LABEL]: runId });
Object.assign(env, {
  ALIVE_CODEX_TEST_IMAGE: image.ref,
  ALIVE_CODEX_BASE_IMAGE: baseImage,
  ALIVE_CODEX_TEST_NETWORK: testNetwork,
});
const code = await runTests(files, env);
reportRetries();
let reaped = false;
try {
  reaped = await reap(docker, runId);
} catch (error) {
  console.error(`test.mjs: ERROR: reaper failed: ${error?.message ?? error}`);
}
runEnded();
if (code === 0 && !reaped) fail("tests passed but the reaper could not remove everything they left");
process.exit(code);
