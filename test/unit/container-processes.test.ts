/**
 * The recogniser of a workspace container's processes (src/codex/container-processes.ts) over a
 * made-up /proc: every command line of the container's own is built by the production builders
 * (the spec's main command, the forwarders, the log pump, the launcher) and written as the kernel
 * writes cmdline (NUL-terminated arguments), then listed by the real listing script under the
 * host's /bin/sh (dash, as in the runtime image). The same listing against real containers runs in
 * test/integration (turns, runsc, protocol, restart, egress) and in doctor.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import {
  PROCESS_LISTING_SCRIPT,
  classifyProcesses,
  isOwnProcess,
  parseProcessListing,
  processListingCommand,
  type ClassifiedProcess,
  type ContainerProcess,
  type ProcessRole,
} from "../../src/codex/container-processes.js";
import { CODEX_COMMAND, LAUNCH_SCRIPT, LAUNCHER_BINARY, launcherCommand } from "../../src/codex/launcher.js";
import { sweepCommand } from "../../src/codex/sweep.js";
import {
  FORWARDER_RESTART_WAIT,
  NET_PORTS,
  NET_SOCKETS,
  forwarderCommand,
  forwarderScript,
} from "../../src/egress/container-net.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import {
  LOG_PUMP_COMMANDS,
  buildWorkspaceSpec,
  containerMainCommand,
  containerMainScript,
  type SpecContext,
} from "../../src/workspace/spec.js";

const execFileAsync = promisify(execFile);

interface FakeProcess {
  pid: number;
  ppid: number;
  comm: string;
  /** The argv; omitted: an empty cmdline (a zombie). */
  argv?: readonly string[];
  state?: string;
  expected: ProcessRole;
}

/** Writes <root>/<pid>/stat (fields as the kernel writes them) and cmdline (NUL-terminated arguments). */
async function fakeProc(root: string, processes: readonly FakeProcess[]): Promise<void> {
  await fs.rm(root, { recursive: true, force: true });
  for (const p of processes) {
    const dir = path.join(root, String(p.pid));
    await fs.mkdir(dir, { recursive: true });
    const rest = [p.state ?? "S", p.ppid, ...Array<number>(17).fill(0), 100, 4096, 10];
    await fs.writeFile(path.join(dir, "stat"), `${p.pid} (${p.comm}) ${rest.join(" ")}\n`);
    await fs.writeFile(path.join(dir, "cmdline"), (p.argv ?? []).map((a) => `${a}\0`).join(""));
  }
}

/** The listing script over the made-up /proc, parsed and classified: pid → role. */
async function classify(root: string): Promise<Map<number, ClassifiedProcess>> {
  const [shell, flag, script, name] = processListingCommand();
  assert.equal(script, PROCESS_LISTING_SCRIPT);
  const { stdout } = await execFileAsync(shell as string, [flag as string, script as string, name as string, root], {
    timeout: 10_000,
  });
  return new Map(classifyProcesses(parseProcessListing(stdout)).map((p) => [p.pid, p]));
}

const P = (n: number): number => 4_190_000 + n;
const MAIN = containerMainCommand(true);
const forwarder = (name: keyof typeof NET_PORTS): string[] => forwarderCommand(NET_PORTS[name], NET_SOCKETS[name]);

/** A workspace container mid-turn, with what a turn and a tenant leave behind. */
const CONTAINER: FakeProcess[] = [
  { pid: 1, ppid: 0, comm: "docker-init", argv: ["/sbin/docker-init", "--", ...MAIN], expected: "init" },
  { pid: P(2), ppid: 1, comm: "sh", argv: MAIN, expected: "main" },
  // The forwarder loops (subshells of the main script), their listeners, a loop waiting to restart one.
  { pid: P(3), ppid: P(2), comm: "sh", argv: MAIN, expected: "forwarder" },
  { pid: P(4), ppid: P(2), comm: "sh", argv: MAIN, expected: "forwarder" },
  { pid: P(5), ppid: P(2), comm: "sh", argv: MAIN, expected: "forwarder" },
  { pid: P(6), ppid: P(3), comm: "socat", argv: forwarder("proxy"), expected: "forwarder" },
  { pid: P(7), ppid: P(4), comm: "socat", argv: forwarder("model"), expected: "forwarder" },
  { pid: P(8), ppid: P(5), comm: "sleep", argv: FORWARDER_RESTART_WAIT, expected: "forwarder" },
  // The log pump's cat, and its previous one exited and not yet reaped.
  { pid: P(9), ppid: P(2), comm: "cat", argv: LOG_PUMP_COMMANDS.copy, expected: "log-pump" },
  { pid: P(10), ppid: P(2), comm: "cat", state: "Z", expected: "log-pump" },
  // A connection the model forwarder forked: whoever connected owns it.
  { pid: P(11), ppid: P(7), comm: "socat", argv: forwarder("model"), expected: "foreign" },
  {
    pid: P(12),
    ppid: 0,
    comm: "alive-launch",
    argv: launcherCommand(["--ignore-user-config", "--ignore-rules"]),
    expected: "launcher",
  },
  // The turn: codex exec'd from outside (a launcher that exec'd it), its shell, the command, a zombie.
  {
    pid: P(20),
    ppid: 0,
    comm: CODEX_COMMAND,
    argv: [CODEX_COMMAND, "exec", "--ignore-user-config", "--experimental-json"],
    expected: "turn",
  },
  {
    pid: P(21),
    ppid: P(20),
    comm: "bash",
    argv: ["/bin/bash", "-lc", "(setsid sleep 1001 &); sleep 1000"],
    expected: "turn",
  },
  { pid: P(22), ppid: P(21), comm: "sleep", argv: ["sleep", "1000"], expected: "turn" },
  { pid: P(23), ppid: P(21), comm: "bash", state: "Z", expected: "turn" },
  // What the turn left to the init, and the sidecar's sweep exec'd from outside.
  { pid: P(30), ppid: 1, comm: "sleep", argv: ["sleep", "1001"], expected: "foreign" },
  { pid: P(31), ppid: 0, comm: "sh", argv: sweepCommand("turn-1"), expected: "foreign" },
  // A tenant's look-alikes: a forwarder and a main script outside the tree, a launcher with a stray argument.
  { pid: P(40), ppid: 1, comm: "socat", argv: forwarder("proxy"), expected: "foreign" },
  { pid: P(41), ppid: P(30), comm: "sh", argv: MAIN, expected: "foreign" },
  { pid: P(42), ppid: P(41), comm: "cat", argv: LOG_PUMP_COMMANDS.copy, expected: "foreign" },
  { pid: P(43), ppid: 0, comm: "alive-launch", argv: [...launcherCommand(), "resume"], expected: "foreign" },
  { pid: P(44), ppid: P(2), comm: "python3", argv: ["python3", "-m", "http.server"], expected: "foreign" },
  // A name with a newline and a tab (prctl PR_SET_NAME) is listed all the same.
  {
    pid: P(45),
    ppid: P(30),
    comm: "x\n\ty) 1 2",
    argv: ["python3", "-c", "import time; time.sleep(1000)"],
    expected: "foreign",
  },
];

let root: string;
before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-procs-test-"));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

describe("the recogniser of a workspace container's processes", () => {
  test("tells the container's own, the waiting launcher, the turn's and the rest apart", async () => {
    const proc = path.join(root, "mid-turn");
    await fakeProc(proc, CONTAINER);
    const classified = await classify(proc);
    assert.deepEqual(
      [...classified.values()].map((p) => `${p.pid} ${p.role}`).sort(),
      CONTAINER.map((p) => `${p.pid} ${p.expected}`).sort(),
    );
    const own = [...classified.values()].filter(isOwnProcess).map((p) => p.pid);
    assert.deepEqual(
      own.sort(),
      CONTAINER.filter((p) => ["init", "main", "log-pump", "forwarder", "launcher"].includes(p.expected))
        .map((p) => p.pid)
        .sort(),
    );
  });

  test("the listing reads args as single-spaced words, a zombie's as empty, and the name past any tab", async () => {
    const proc = path.join(root, "fields");
    await fakeProc(proc, CONTAINER);
    const classified = await classify(proc);
    assert.equal(classified.get(P(2))?.args, MAIN.join(" ").replace(/\s+/g, " ").trim());
    assert.equal(classified.get(P(22))?.args, "sleep 1000");
    assert.deepEqual([classified.get(P(23))?.args, classified.get(P(23))?.state], ["", "Z"]);
    assert.equal(classified.get(P(45))?.comm, "x \ty) 1 2");
    assert.equal(classified.get(P(45))?.ppid, P(30));
    assert.equal(classified.get(P(12))?.comm, path.basename(LAUNCHER_BINARY));
  });

  test("the container without the API's forwarder is recognised as well", async () => {
    const main = containerMainCommand(false);
    const proc = path.join(root, "no-api");
    await fakeProc(proc, [
      { pid: 1, ppid: 0, comm: "docker-init", argv: ["/sbin/docker-init", "--", ...main], expected: "init" },
      { pid: P(2), ppid: 1, comm: "sh", argv: main, expected: "main" },
      { pid: P(3), ppid: P(2), comm: "sh", argv: main, expected: "forwarder" },
      { pid: P(4), ppid: P(3), comm: "socat", argv: forwarder("proxy"), expected: "forwarder" },
      { pid: P(5), ppid: P(2), comm: "sleep", argv: LOG_PUMP_COMMANDS.wait, expected: "log-pump" },
    ]);
    assert.deepEqual(
      [...(await classify(proc)).values()].map((p) => p.role),
      ["init", "main", "forwarder", "forwarder", "log-pump"],
    );
  });

  test("the listing leaves itself and its children out", () => {
    const line = (p: ContainerProcess): string => `proc ${p.pid} ${p.ppid} ${p.state} ${p.args}\t${p.comm}`;
    const stdout = [
      "self 70",
      line({ pid: 1, ppid: 0, state: "S", args: "/sbin/docker-init --", comm: "docker-init" }),
      line({ pid: 70, ppid: 0, state: "S", args: "/bin/sh -c alive-ps", comm: "sh" }),
      line({ pid: 71, ppid: 70, state: "R", args: "tr", comm: "tr" }),
      line({ pid: 72, ppid: 0, state: "S", args: "sleep 1000", comm: "sleep" }),
    ].join("\n");
    assert.deepEqual(
      parseProcessListing(stdout).map((p) => p.pid),
      [1, 72],
    );
  });
});

/**
 * What the recogniser rebuilds must be what the container runs: the spec's entrypoint and command,
 * the commands the main script starts, the binary the launcher execs.
 */
describe("the command lines it recognises are the ones the container runs", () => {
  const context: SpecContext = {
    image: "alive-codex-runtime:test",
    runtime: "runc",
    defaultResources: { memoryMb: 2048, cpus: 1, pids: 512 },
    nofile: 4096,
    cpuPeriodUs: 1_000_000,
    aliveApiUrl: null,
    nodePath: null,
    trustedDirs: [],
    extraLabels: {},
  };
  const params = {
    workspaceId: "ws-1",
    userId: "u-1",
    uid: 10001,
    gid: 10002,
    workspacePath: "/srv/alive/workspaces/ws-1",
  };
  const paths = workspacePaths("/var/lib/alive-codex", "ws-1");

  test("the spec's entrypoint and command are the main command, with or without Alive's API", () => {
    for (const aliveApiUrl of [null, "http://127.0.0.1:8080/api"]) {
      const { options } = buildWorkspaceSpec(params, paths, { ...context, aliveApiUrl });
      assert.deepEqual(
        [...(options.Entrypoint as string[]), ...(options.Cmd as string[])],
        containerMainCommand(aliveApiUrl !== null),
      );
    }
  });

  test("the main script runs the forwarders' and the log pump's commands as they are recognised", () => {
    const script = containerMainScript(true);
    assert.ok(script.startsWith(forwarderScript(true)));
    for (const name of ["proxy", "model", "api"] as const)
      assert.ok(
        forwarderScript(true).includes(
          `${forwarder(name).join(" ")} 2>/dev/null; ${FORWARDER_RESTART_WAIT.join(" ")};`,
        ),
        name,
      );
    assert.ok(!forwarderScript(false).includes(forwarder("api").join(" ")));
    assert.ok(
      script.endsWith(
        `do ${LOG_PUMP_COMMANDS.copy.join(" ")} 2>/dev/null || ${LOG_PUMP_COMMANDS.wait.join(" ")}; done`,
      ),
    );
  });

  test("the launcher execs the command a turn's codex is recognised by", () => {
    assert.match(
      LAUNCH_SCRIPT,
      new RegExp(`\\nexec ${CODEX_COMMAND} "\\$\\{args\\[@\\]\\}" <"\\$in" >>"\\$out" 2>>"\\$err"\\n$`),
    );
  });
});
