/**
 * Which processes the sweep scripts (src/codex/sweep.ts) pick, run by the host's /bin/sh (dash, as in
 * the runtime image) over a made-up /proc in list mode. Nothing is killed: besides list mode, `kill`
 * is shadowed by a function that fails the script, and the made-up pids are far above any real one
 * here. The scripts against a real container are in test/integration (turns.test.ts, egress.test.ts).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { TURN_MARKER_ENV } from "../../src/codex/env.js";
import {
  LEFTOVER_SWEEP_SCRIPT,
  SWEEP_SCRIPT,
  leftoverSweepCommand,
  sweepCommand,
  sweptCount,
} from "../../src/codex/sweep.js";

const execFileAsync = promisify(execFile);

interface FakeProcess {
  pid: number;
  ppid: number;
  comm: string;
  start: number;
  state?: string;
  /** Environment entries; undefined: no readable environ. */
  env?: string[];
}

/** Writes <root>/<pid>/stat (fields as the kernel writes them) and environ (NUL-separated). */
async function fakeProc(root: string, processes: FakeProcess[]): Promise<void> {
  await fs.rm(root, { recursive: true, force: true });
  for (const p of processes) {
    const dir = path.join(root, String(p.pid));
    await fs.mkdir(dir, { recursive: true });
    // After "pid (comm) ": state, ppid, 17 more fields, then the start time (field 22 of the line).
    const rest = [p.state ?? "S", p.ppid, ...Array<number>(17).fill(0), p.start, 4096, 10];
    await fs.writeFile(path.join(dir, "stat"), `${p.pid} (${p.comm}) ${rest.join(" ")}\n`);
    if (p.env) await fs.writeFile(path.join(dir, "environ"), p.env.map((e) => `${e}\0`).join(""));
  }
}

/** Runs `script` over the made-up /proc in list mode; returns the pids it would kill. */
async function victims(script: string, args: string[]): Promise<number[]> {
  const guarded = `kill() { echo "kill called: $*" >&2; exit 99; }\n${script}`;
  const { stdout } = await execFileAsync("/bin/sh", ["-c", guarded, "sweep-test", ...args], { timeout: 10_000 });
  const line = stdout.trim().split("\n").at(-1) ?? "";
  if (line === "swept 0" || line.startsWith("swept 0 ")) return [];
  assert.match(line, /^victims( \d+)+$/, stdout);
  return line
    .split(" ")
    .slice(1)
    .map(Number)
    .sort((a, b) => a - b);
}

/** Made-up pids, far above any pid on this machine (pid_max is at most 4194304). */
const P = (n: number): number => 4_190_000 + n;
const PATH_ENV = "PATH=/usr/bin:/bin";
const marker = (turnId: string): string => `${TURN_MARKER_ENV}=${turnId}`;

/** What a workspace container runs of its own: the init, the main process and what it started. */
const CONTAINER: FakeProcess[] = [
  { pid: 1, ppid: 0, comm: "docker-init", start: 100, env: [PATH_ENV] },
  { pid: P(2), ppid: 1, comm: "sh", start: 101, env: [PATH_ENV] },
  { pid: P(7), ppid: P(2), comm: "sh", start: 102, env: [PATH_ENV] },
  { pid: P(8), ppid: P(7), comm: "socat", start: 103, env: [PATH_ENV] },
  { pid: P(9), ppid: P(2), comm: "cat", start: 104, env: [PATH_ENV] },
];

let root: string;
before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-sweep-test-"));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

describe("the leftover sweep, before a turn that narrows egress", () => {
  test("takes what earlier turns left, marker or not, and spares the container's own processes and the sidecar's execs", async () => {
    const proc = path.join(root, "leftovers");
    await fakeProc(proc, [
      ...CONTAINER,
      // A connection the egress forwarder forked (a leftover's tunnel): the forwarder's, kept.
      { pid: P(30), ppid: P(8), comm: "socat", start: 500, env: [PATH_ENV] },
      // The launcher waiting for the next turn, and an operator's docker exec with its child.
      { pid: P(40), ppid: 0, comm: "alive-launch", start: 900, env: [PATH_ENV] },
      { pid: P(95), ppid: 0, comm: "bash", start: 950, env: [PATH_ENV] },
      { pid: P(96), ppid: P(95), comm: "sleep", start: 951, env: [PATH_ENV] },
      // Left by turn 1: a background job adopted by the init, with its child, both marked.
      { pid: P(50), ppid: 1, comm: "bash", start: 300, env: [PATH_ENV, marker("turn-1")] },
      { pid: P(51), ppid: P(50), comm: "sleep", start: 301, env: [PATH_ENV, marker("turn-1")] },
      // A daemon that cleared its environment (env -i setsid ...), with a child.
      { pid: P(60), ppid: 1, comm: "python3", start: 310, env: [] },
      { pid: P(61), ppid: P(60), comm: "nc", start: 311, env: [] },
      // A codex an earlier sweep missed (exec'd from outside, environ unreadable), with a child.
      { pid: P(70), ppid: 0, comm: "codex", start: 200 },
      { pid: P(71), ppid: P(70), comm: "bash", start: 201, env: [marker("turn-0")] },
      // A process named to look like an exec from outside if only its stat's first line were read.
      { pid: P(80), ppid: 1, comm: "x) S 0 1 1\n", start: 320, env: [] },
      // A zombie: nothing to kill.
      { pid: P(90), ppid: 1, comm: "sh", start: 330, state: "Z" },
    ]);
    assert.deepEqual(await victims(LEFTOVER_SWEEP_SCRIPT, [proc, "list"]), [
      P(50),
      P(51),
      P(60),
      P(61),
      P(70),
      P(71),
      P(80),
    ]);
  });

  test("a container with nothing left over: nothing is taken", async () => {
    const proc = path.join(root, "clean");
    await fakeProc(proc, [...CONTAINER, { pid: P(40), ppid: 0, comm: "alive-launch", start: 900, env: [PATH_ENV] }]);
    assert.deepEqual(await victims(LEFTOVER_SWEEP_SCRIPT, [proc, "list"]), []);
  });

  test("without a main process (the forwarders cannot be told apart) nothing is taken", async () => {
    const proc = path.join(root, "no-main");
    await fakeProc(proc, [
      { pid: 1, ppid: 0, comm: "docker-init", start: 100, env: [] },
      { pid: P(50), ppid: 0, comm: "bash", start: 300, env: [marker("turn-1")] },
    ]);
    const { stdout } = await execFileAsync("/bin/sh", [
      "-c",
      `kill() { exit 99; }\n${LEFTOVER_SWEEP_SCRIPT}`,
      "sweep-test",
      proc,
      "list",
    ]);
    assert.equal(stdout.trim(), "swept 0 (no main process)");
  });

  test("the command runs the script over /proc as a kill", () => {
    assert.deepEqual(leftoverSweepCommand(), [
      "/bin/sh",
      "-c",
      LEFTOVER_SWEEP_SCRIPT,
      "alive-sweep-leftovers",
      "/proc",
      "kill",
    ]);
    assert.equal(sweptCount("swept 7\n"), 7);
    assert.equal(sweptCount("swept 0 (no main process)\n"), 0);
    assert.equal(sweptCount(""), 0);
  });
});

describe("the turn sweep, on cancel or failure", () => {
  test("takes codex and everything started since, a process with a newline in its name included; the pump and forwarders stay", async () => {
    const proc = path.join(root, "turn");
    await fakeProc(proc, [
      ...CONTAINER,
      { pid: P(70), ppid: 0, comm: "codex", start: 1000, env: [PATH_ENV, marker("turn-2")] },
      { pid: P(71), ppid: P(70), comm: "bash", start: 1001, env: [PATH_ENV, marker("turn-2")] },
      // Read one line at a time, its stat would end after "x" and give no start time.
      { pid: P(72), ppid: 1, comm: "x\n", start: 1002, env: [] },
      // Left by an earlier turn, started before this turn's codex: not this sweep's.
      { pid: P(50), ppid: 1, comm: "bash", start: 300, env: [marker("turn-1")] },
    ]);
    assert.deepEqual(await victims(SWEEP_SCRIPT, ["turn-2", proc, "list"]), [P(70), P(71), P(72)]);
    // Any turn's (the orphan sweep at start-up): from the earliest marked process on.
    assert.deepEqual(await victims(SWEEP_SCRIPT, [".*", proc, "list"]), [P(50), P(70), P(71), P(72)]);
    // Codex is found by name when its environ cannot be read.
    await fs.rm(path.join(proc, String(P(70)), "environ"));
    await fs.rm(path.join(proc, String(P(71)), "environ"));
    assert.deepEqual(await victims(SWEEP_SCRIPT, ["turn-2", proc, "list"]), [P(70), P(71), P(72)]);
  });

  test("no turn process: nothing is taken", async () => {
    const proc = path.join(root, "idle");
    await fakeProc(proc, CONTAINER);
    assert.deepEqual(await victims(SWEEP_SCRIPT, ["turn-3", proc, "list"]), []);
    assert.deepEqual(sweepCommand("turn-3"), ["/bin/sh", "-c", SWEEP_SCRIPT, "alive-sweep", "turn-3", "/proc", "kill"]);
  });
});
