/**
 * alive-codex doctor as an operator runs it: a child process against the real engine and the real
 * runtime image. It passes on a healthy install, and names the failure (with nothing left behind)
 * when the image is missing or the engine is down.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { createDockerClient } from "../../src/docker/engine.js";
import { Labels } from "../../src/docker/labels.js";
import type { DoctorReport } from "../../src/doctor/report.js";
import { disksLeftUnder } from "../../src/workspace/disk-image.js";
import { startCli } from "../support/cli-process.js";
import { testImage, TEST_RUN_ID } from "../support/sidecar.js";
import { withTimeout } from "../support/wait.js";

const RUN_LABEL = ["--extra-labels", `${Labels.runId}=${TEST_RUN_ID}`];
const RANGES = ["--uid-range", "10000-60000", "--gid-range", "10000-60000"];

async function doctor(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string; elapsedMs: number }> {
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
  const docker = createDockerClient("unix:///var/run/docker.sock");
  const left = await docker.listContainers({ all: true, filters: { label: [`${Labels.stateDir}=${report.stateDir}`] } });
  assert.deepEqual(left.map((c) => c.Names), []);
  assert.equal(existsSync(report.stateDir), false, `${report.stateDir} is left`);
  assert.deepEqual(await disksLeftUnder(path.dirname(report.stateDir)), { mounts: [], loopDevices: [] });
}

describe("alive-codex doctor", () => {
  test("passes on a healthy install: every check passes, exit 0, nothing left behind", async () => {
    const { code, stdout, stderr } = await doctor(["--json", "--image", testImage(), ...RANGES, ...RUN_LABEL], 240_000);
    const report = JSON.parse(stdout) as DoctorReport;
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.checks.map((c) => [c.name, c.status]),
      ["engine", "image", "sidecar", "workspace", "disk", "hardening", "isolation", "turn", "cancel", "egress", "cleanup"].map((name) => [name, "pass"]),
    );
    // The default, auto, on this machine (root, loop devices): the scratch workspace had its own disk, and it is gone.
    assert.match(check(report, "disk").detail, /^limited \(loop-mounted image per workspace, 1 attached; chosen automatically: ALIVE_CODEX_DISK=auto\); the scratch workspace's disk: \d+ MiB, \d+ inodes$/);
    assert.match(check(report, "cleanup").detail, /disk removed \(nothing mounted or attached left\)/);
    assert.match(check(report, "turn").detail, /doctor-ok/);
    assert.match(check(report, "isolation").detail, /^runc: uid \d+, CapEff 0+ CapBnd 0+, no_new_privs, seccomp filter, read-only root, network lo without a default route, host unreachable, model key in the proxy, pids \d+, memory \d+ MiB \((cgroup|inspect)\), measured in \d+ ms$/);
    assert.match(check(report, "egress").detail, /403/);
    await assertNothingLeft(report);
  });

  test("the table: one row per check with its result", async () => {
    const { code, stdout } = await doctor(["--image", testImage(), ...RANGES, ...RUN_LABEL], 240_000);
    assert.equal(code, 0, stdout);
    assert.match(stdout, /^CHECK\s+RESULT\s+DETAIL$/m);
    for (const name of ["engine", "image", "disk", "hardening", "isolation", "turn", "cancel", "egress", "cleanup"]) assert.match(stdout, new RegExp(`^${name}\\s+PASS\\s`, "m"));
    assert.match(stdout, /every check passed/);
  });

  test("a missing image: exit non-zero, the image check fails with its fix, nothing made or left", async () => {
    const { code, stdout, stderr } = await doctor(["--json", "--image", "alive-codex-runtime:missing", ...RANGES, ...RUN_LABEL], 60_000);
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
    const { code, stdout, elapsedMs } = await doctor(["--json", "--docker-host", "unix:///nonexistent.sock", ...RANGES, ...RUN_LABEL], 30_000);
    assert.notEqual(code, 0);
    assert.ok(elapsedMs < 15_000, `took ${elapsedMs} ms`);
    const report = JSON.parse(stdout) as DoctorReport;
    const engine = check(report, "engine");
    assert.equal(engine.status, "fail");
    assert.match(engine.detail, /unix:\/\/\/nonexistent\.sock does not answer/);
    assert.match(engine.fix ?? "", /install-docker\.sh/);
    assert.ok(report.checks.filter((c) => c.name !== "engine").every((c) => c.status === "skip"));
    assert.equal(existsSync(report.stateDir), false);
  });
});
