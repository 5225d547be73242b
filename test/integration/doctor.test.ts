/**
 * alive-codex doctor as an operator runs it: a child process against the real engine and the real
 * runtime image. With --scratch (its own sidecar) it passes on a healthy install, and names the
 * failure (with nothing left behind) when the image is missing or the engine is down. With --socket
 * it checks a running sidecar (a test sidecar served on a socket): it passes, its scratch workspace
 * removed through that sidecar; a socket where nothing answers fails within 5 s naming the path.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { createDockerClient } from "../../src/docker/engine.js";
import { Labels } from "../../src/docker/labels.js";
import type { DoctorReport } from "../../src/doctor/report.js";
import { RUNNING_CHECKS } from "../../src/doctor/check-running.js";
import { AddressSet } from "../../src/policy/addresses.js";
import { hostCheckStatus } from "../../src/doctor/checks.js";
import { startRpcServer, type RpcServer } from "../../src/rpc/server.js";
import { disksLeftUnder } from "../../src/workspace/disk-leftovers.js";
import { readMounts } from "../../src/workspace/mountinfo.js";
import { startCli } from "../support/cli-process.js";
import { startGatewayStub, startTestSidecar, testImage, TEST_RUN_ID, type TestSidecar } from "../support/sidecar.js";
import type { ResponsesStub } from "../support/responses-stub.js";
import { withTimeout } from "../support/wait.js";
import { createLogger } from "../../src/log.js";

const RUN_LABEL = ["--extra-labels", `${Labels.runId}=${TEST_RUN_ID}`];
const RANGES = ["--uid-range", "10000-60000", "--gid-range", "10000-60000"];

async function doctor(
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string; elapsedMs: number }> {
  const started = Date.now();
  const run = startCli(["doctor", ...args]);
  const { code } = await withTimeout(run.exit, timeoutMs, "alive-codex doctor").finally(() => {
    if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGKILL");
  });
  const elapsedMs = Date.now() - started;
  // The child's handle is released in the close-callbacks phase after "close": a timer runs after it, so the file exits clean.
  await new Promise((resolve) => setTimeout(resolve, 0));
  return { code, stdout: run.stdout(), stderr: run.stderr(), elapsedMs };
}

function check(report: DoctorReport, name: string): DoctorReport["checks"][number] {
  const found = report.checks.find((c) => c.name === name);
  assert.ok(found, `no ${name} check in ${JSON.stringify(report.checks.map((c) => c.name))}`);
  return found;
}

/** Nothing of doctor's run is left: no container labelled with its state dir, no temporary dir, no mount or loop device of its workspace disk. */
async function assertNothingLeft(report: DoctorReport): Promise<void> {
  const stateDir = report.stateDir;
  assert.ok(stateDir !== null, "a scratch run names its state dir");
  const docker = createDockerClient("unix:///var/run/docker.sock");
  const left = await docker.listContainers({ all: true, filters: { label: [`${Labels.stateDir}=${stateDir}`] } });
  assert.deepEqual(
    left.map((c) => c.Names),
    [],
  );
  assert.equal(existsSync(stateDir), false, `${stateDir} is left`);
  assert.deepEqual(await disksLeftUnder(path.dirname(stateDir)), { mounts: [], loopDevices: [] });
}

describe("alive-codex doctor --scratch", () => {
  test("passes on a healthy install: every check passes, exit 0, nothing left behind", async () => {
    const { code, stdout, stderr } = await doctor(
      ["--scratch", "--json", "--image", testImage(), ...RANGES, ...RUN_LABEL],
      240_000,
    );
    const report = JSON.parse(stdout) as DoctorReport;
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.checks.map((c) => [c.name, c.status]),
      [
        ...[
          "engine",
          "image",
          "sidecar",
          "codex",
          "workspace",
          "disk",
          "hardening",
          "isolation",
          "turn",
          "cancel",
          "egress",
          "cleanup",
        ].map((name) => [name, "pass"]),
        ["host", hostCheckStatus(new AddressSet())],
      ],
    );
    // The default, auto, on this machine (root, loop devices): the scratch workspace had its own disk, and it is gone.
    assert.match(
      check(report, "disk").detail,
      /^limited \(loop-mounted image per workspace, 1 attached; chosen automatically: ALIVE_CODEX_DISK=auto\); the scratch workspace's disk: \d+ MiB, \d+ inodes$/,
    );
    assert.match(check(report, "cleanup").detail, /disk removed \(nothing mounted or attached left\)/);
    assert.match(check(report, "turn").detail, /doctor-ok/);
    assert.match(
      check(report, "isolation").detail,
      /^runc: uid \d+, CapEff 0+ CapBnd 0+, no_new_privs, seccomp filter, read-only root, network lo without a default route, host unreachable, model key in the proxy, pids \d+, memory \d+ MiB \((cgroup|inspect)\), measured in \d+ ms$/,
    );
    assert.match(check(report, "egress").detail, /403/);
    assert.match(
      check(report, "codex").detail,
      /^\d+\.\d+\.\d+ \(.*tested; adds --ignore-user-config --ignore-rules\)$/,
    );
    assert.equal(report.mode, "scratch");
    await assertNothingLeft(report);
  });

  test("the table: one row per check with its result", async () => {
    const { code, stdout } = await doctor(["--scratch", "--image", testImage(), ...RANGES, ...RUN_LABEL], 240_000);
    assert.equal(code, 0, stdout);
    assert.match(stdout, /^CHECK\s+RESULT\s+DETAIL$/m);
    for (const name of [
      "engine",
      "image",
      "codex",
      "disk",
      "hardening",
      "isolation",
      "turn",
      "cancel",
      "egress",
      "cleanup",
    ])
      assert.match(stdout, new RegExp(`^${name}\\s+PASS\\s`, "m"));
    assert.match(stdout, /every check passed against a scratch sidecar$/m);
  });

  test("a missing image: exit non-zero, the image check fails with its fix, nothing made or left", async () => {
    const { code, stdout, stderr } = await doctor(
      ["--scratch", "--json", "--image", "alive-codex-runtime:missing", ...RANGES, ...RUN_LABEL],
      60_000,
    );
    assert.notEqual(code, 0, `${stdout}\n${stderr}`);
    const report = JSON.parse(stdout) as DoctorReport;
    assert.equal(report.ok, false);
    assert.equal(check(report, "engine").status, "pass");
    const image = check(report, "image");
    assert.equal(image.status, "fail");
    assert.match(image.detail, /alive-codex-runtime:missing is missing/);
    assert.match(image.fix ?? "", /unset ALIVE_CODEX_IMAGE/);
    for (const later of ["sidecar", "isolation", "turn", "egress"]) assert.equal(check(report, later).status, "skip");
    await assertNothingLeft(report);
  });

  test("the engine down: exit non-zero within seconds, the engine check fails with its fix", async () => {
    const { code, stdout, elapsedMs } = await doctor(
      ["--scratch", "--json", "--docker-host", "unix:///nonexistent.sock", ...RANGES, ...RUN_LABEL],
      30_000,
    );
    assert.notEqual(code, 0);
    assert.ok(elapsedMs < 15_000, `took ${elapsedMs} ms`);
    const report = JSON.parse(stdout) as DoctorReport;
    const engine = check(report, "engine");
    assert.equal(engine.status, "fail");
    assert.match(engine.detail, /unix:\/\/\/nonexistent\.sock does not answer/);
    assert.match(engine.fix ?? "", /install-docker\.sh/);
    // All but the host check, which needs no engine.
    assert.ok(
      report.checks.filter((c) => c.name !== "engine" && c.name !== "host").every((c) => c.status === "skip"),
      JSON.stringify(report.checks),
    );
    assert.equal(existsSync(report.stateDir ?? ""), false);
  });
});

describe("alive-codex doctor --socket: a running sidecar", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;
  let server: RpcServer;
  let socketPath: string;
  before(async () => {
    stub = await startGatewayStub();
    // Disks as production has them on this machine (auto: root, loop devices), so the cleanup check proves the disk goes too.
    t = await startTestSidecar({ stub, defaultDisk: true });
    socketPath = path.join(t.root, "doctor.sock");
    server = await startRpcServer({
      socketPath,
      socketGroup: null,
      service: t.sidecar.service,
      policy: t.config,
      log: createLogger({ level: "error", write: () => undefined }),
      version: "doctor-test",
    });
  });
  after(async () => {
    await server?.close();
    await t?.cleanup();
    await stub?.close();
  });

  /** The settings doctor shares with the sidecar it checks: its workspace root and id ranges, the run's labels. */
  const sidecarSettings = (): string[] => ["--socket", socketPath, "--workspace-roots", t.workspaceRoot, ...RANGES];

  test("a healthy sidecar passes; the turn is not checked without --turn; the scratch workspace is removed through it, nothing left", async () => {
    const { code, stdout, stderr } = await doctor([...sidecarSettings(), "--json"], 240_000);
    const report = JSON.parse(stdout) as DoctorReport;
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    assert.equal(report.mode, "running");
    assert.equal(report.socketPath, socketPath);
    assert.deepEqual(
      report.checks.map((c) => [c.name, c.status]),
      RUNNING_CHECKS.map((name) => [
        name,
        name === "turn" || name === "cancel" ? "skip" : name === "host" ? hostCheckStatus(new AddressSet()) : "pass",
      ]),
    );
    assert.match(check(report, "sidecar").detail, /^alive-codex-sidecar \S+ answers at /);
    assert.match(check(report, "disk").detail, /the scratch workspace's disk: \d+ MiB/);
    assert.match(check(report, "turn").detail, /^not checked: .*--turn/);
    const workspaceId = /scratch workspace (doctor-[0-9a-f]{8}) removed through the sidecar/.exec(
      check(report, "cleanup").detail,
    )?.[1];
    assert.ok(workspaceId, check(report, "cleanup").detail);
    assert.equal(t.sidecar.workspaces.find(workspaceId), undefined, "the sidecar forgot it");
    assert.deepEqual(
      [...readMounts().keys()].filter((point) => point.endsWith(`/workspaces/${workspaceId}`)),
      [],
      "its disk is unmounted",
    );
    assert.deepEqual(await disksLeftUnder(t.stateDir), { mounts: [], loopDevices: [] });
    assert.deepEqual(
      (await fs.readdir(t.workspaceRoot)).filter((name) => name.startsWith("alive-codex-doctor-")),
      [],
      "doctor's scratch directory is gone",
    );
  });

  test("--turn runs the turn and the cancel through the sidecar's own model", async () => {
    stub.reset();
    // The sidecar's model here is the test's stub: it does what doctor's prompts ask of a real one.
    stub.respondWith((request) => {
      const text = JSON.stringify(request.body);
      const cancel = text.includes("doctor checking cancellation");
      if (!text.includes("function_call_output"))
        return { kind: "command", cmd: cancel ? "sleep 1000" : "echo doctor-ok" };
      return { kind: "message", text: cancel ? "the long command ended" : "doctor-ok" };
    });
    const { code, stdout, stderr } = await doctor([...sidecarSettings(), "--turn", "--json"], 240_000);
    const report = JSON.parse(stdout) as DoctorReport;
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    assert.equal(check(report, "turn").status, "pass", check(report, "turn").detail);
    assert.equal(check(report, "cancel").status, "pass", check(report, "cancel").detail);
  });

  test("a socket where nothing answers fails within 5 s, naming the path", async () => {
    const nowhere = path.join(t.root, "nobody-here.sock");
    const { code, stdout, elapsedMs } = await doctor(["--socket", nowhere, "--json"], 30_000);
    assert.equal(code, 3);
    assert.ok(elapsedMs < 5000, `took ${elapsedMs} ms`);
    const report = JSON.parse(stdout) as DoctorReport;
    assert.equal(check(report, "sidecar").detail, `nothing answers at ${nowhere}: no socket there`);
  });
});
