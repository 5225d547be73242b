import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ContainerInspectInfo } from "dockerode";
import { formatDoctorReport } from "../../src/cli/commands/doctor.js";
import { renderUsage } from "../../src/cli/run-cli.js";
import { hardeningProblems } from "../../src/doctor/hardening.js";
import { describeIsolation, isolationProblems } from "../../src/doctor/isolation.js";
import type { IsolationReport } from "../../src/service.js";
import { doctorScript } from "../../src/doctor/scratch-sidecar.js";
import { startScriptedModel } from "../../src/doctor/scripted-model.js";
import { RUNNING_CHECKS } from "../../src/doctor/check-running.js";
import { AddressSet } from "../../src/policy/addresses.js";
import { CheckWarning, checkHostAddresses, hostCheckStatus } from "../../src/doctor/checks.js";
import { parseHostAddressesSetting } from "../../src/policy/egress-settings.js";
import type { DoctorReport } from "../../src/doctor/report.js";
import type { WorkspaceParams } from "../../src/service.js";
import { startCli } from "../support/cli-process.js";
import { startTestServer, type TestServer } from "../support/fake-service.js";

type Inspect = Pick<ContainerInspectInfo, "Config" | "HostConfig">;

const HARDENED = {
  Config: { User: "10001:10001" },
  HostConfig: {
    CapDrop: ["ALL"],
    SecurityOpt: ["no-new-privileges:true"],
    ReadonlyRootfs: true,
    NetworkMode: "none",
    PidsLimit: 512,
    Memory: 2 * 1024 ** 3,
  },
} as unknown as Inspect;

const ISOLATED: IsolationReport = {
  containerId: "c0ffee",
  runtime: "runc",
  user: { uid: 10001, gid: 10001, groups: [10001] },
  capabilities: {
    effective: "0000000000000000",
    permitted: "0000000000000000",
    bounding: "0000000000000000",
    ambient: "0000000000000000",
  },
  noNewPrivs: true,
  seccomp: "filter",
  readOnlyRoot: true,
  mounts: [{ path: "/workspace", readOnly: false }],
  limits: { pids: 512, memoryBytes: 2 * 1024 ** 3, cpus: null, source: "cgroup" },
  network: { interfaces: ["lo"], defaultRoute: false },
  egress: { policy: {}, enforcedBy: "sidecar-proxy" } as unknown as IsolationReport["egress"],
  modelKey: "proxy",
  hostReachable: false,
  hostProbe: "172.17.0.1:1: ENETUNREACH",
  measuredAt: "2026-12-01T00:00:00.000Z",
  measuredMs: 120,
};

function variant(config: Record<string, unknown>, host: Record<string, unknown>): Inspect {
  return {
    Config: { ...HARDENED.Config, ...config },
    HostConfig: { ...HARDENED.HostConfig, ...host },
  } as unknown as Inspect;
}

describe("doctor", () => {
  test("hardening: the sidecar's container passes; each weakening is named", () => {
    assert.deepEqual(hardeningProblems(HARDENED), []);
    const cases: Array<[Inspect, RegExp]> = [
      [variant({ User: "" }, {}), /runs as "root"/],
      [variant({ User: "0:0" }, {}), /runs as "0:0"/],
      [variant({}, { CapDrop: [] }), /CapDrop/],
      [variant({}, { CapAdd: ["NET_ADMIN"] }), /CapAdd/],
      [variant({}, { SecurityOpt: [] }), /no-new-privileges/],
      [variant({}, { ReadonlyRootfs: false }), /writable/],
      [variant({}, { NetworkMode: "bridge" }), /NetworkMode is "bridge"/],
      [variant({}, { PidsLimit: 0 }), /pids/],
      [variant({}, { Memory: 0 }), /memory/],
    ];
    for (const [info, expected] of cases) assert.match(hardeningProblems(info).join("; "), expected);
  });

  test("isolation: a measured, isolated report passes (runc and runsc); absent, unmeasured or each weakening is named", () => {
    assert.deepEqual(isolationProblems(ISOLATED), []);
    assert.deepEqual(isolationProblems({ ...ISOLATED, runtime: "runsc", seccomp: "gvisor-sentry" }), []);
    assert.match(isolationProblems(undefined).join(), /no isolation report/);
    assert.match(isolationProblems(null).join(), /not measured \(null\)/);
    const cases: Array<[Partial<IsolationReport>, RegExp]> = [
      [{ user: { uid: 0, gid: 0, groups: [0] } }, /uid 0/],
      [
        { capabilities: { ...ISOLATED.capabilities, effective: "0000000000000400" } },
        /effective capabilities 0000000000000400/,
      ],
      [
        { capabilities: { ...ISOLATED.capabilities, bounding: "000001ffffffffff" } },
        /bounding capabilities 000001ffffffffff/,
      ],
      [{ noNewPrivs: false }, /no_new_privs is off/],
      [{ seccomp: "disabled" }, /seccomp is "disabled"/],
      [{ readOnlyRoot: false }, /writable/],
      [{ network: { interfaces: ["lo", "eth0"], defaultRoute: false } }, /\["lo","eth0"\]/],
      [{ network: { interfaces: ["lo"], defaultRoute: true } }, /default route/],
      [
        { hostReachable: true, hostProbe: "172.17.0.1:22 connected" },
        /host is reachable from inside \(172\.17\.0\.1:22 connected\)/,
      ],
      [{ modelKey: "env" as unknown as "proxy" }, /model key is "env"/],
    ];
    for (const [change, expected] of cases) {
      const problems = isolationProblems({ ...ISOLATED, ...change });
      assert.equal(problems.length, 1, problems.join("; "));
      assert.match(problems[0] ?? "", expected);
    }
    assert.equal(
      describeIsolation(ISOLATED),
      "runc: uid 10001, CapEff 0000000000000000 CapBnd 0000000000000000, no_new_privs, seccomp filter, read-only root, network lo without a default route, host unreachable, model key in the proxy, pids 512, memory 2048 MiB (cgroup), measured in 120 ms",
    );
  });

  test("the script: a command first, then a message carrying its output; sleep for the cancel check", () => {
    assert.deepEqual(doctorScript({ prompt: "doctor: run the check command", commandOutputs: [] }), {
      kind: "command",
      cmd: "echo doctor-ok",
    });
    assert.match(
      JSON.stringify(
        doctorScript({ prompt: "doctor: run the check command", commandOutputs: ["Output:\ndoctor-ok\n"] }),
      ),
      /"message".*doctor-ok/,
    );
    assert.deepEqual(doctorScript({ prompt: "doctor: run the long command", commandOutputs: [] }), {
      kind: "command",
      cmd: "sleep 1000",
    });
  });

  test("the scripted model answers POST /v1/responses with Responses SSE and sees the command outputs", async () => {
    const seen: string[][] = [];
    const model = await startScriptedModel((request) => {
      seen.push(request.commandOutputs);
      return { kind: "command", cmd: "echo hi" };
    });
    try {
      const body = {
        input: [
          { role: "user", content: [{ type: "input_text", text: "go" }] },
          { type: "function_call_output", call_id: "c", output: "earlier" },
        ],
      };
      const res = await fetch(`${model.baseUrl}/responses`, { method: "POST", body: JSON.stringify(body) });
      assert.equal(res.headers.get("content-type"), "text/event-stream");
      const text = await res.text();
      assert.match(text, /^event: response\.created\ndata: /);
      assert.match(text, /event: response\.output_item\.done\ndata: .*"name":"exec_command".*echo hi/);
      assert.match(text, /event: response\.completed\ndata: .*"usage"/);
      assert.deepEqual(seen, [["earlier"]]);
      assert.equal((await fetch(`${model.baseUrl}/responses`)).status, 426);
    } finally {
      await model.close();
    }
  });

  test("the table names each check's result, and a failure's fix under it; help lists doctor", () => {
    const table = formatDoctorReport({
      ok: false,
      mode: "scratch",
      socketPath: null,
      stateDir: "/tmp/x",
      checks: [
        { name: "engine", status: "pass", detail: "Docker 20.10", durationMs: 1 },
        {
          name: "image",
          status: "fail",
          detail: "the runtime image x is missing",
          fix: "unset ALIVE_CODEX_IMAGE",
          durationMs: 1,
        },
        { name: "turn", status: "skip", detail: "not run: no runtime image", durationMs: 0 },
      ],
    });
    assert.match(table, /^engine\s+PASS\s+Docker 20\.10$/m);
    assert.match(table, /^image\s+FAIL\s+the runtime image x is missing\n\s+fix: unset ALIVE_CODEX_IMAGE$/m);
    assert.match(table, /^turn\s+SKIP\s+not run/m);
    assert.match(table, /1 check failed against a scratch sidecar$/);
    assert.match(renderUsage(), /^ {2}doctor\s+prove this install works/m);
  });

  test("a warning passes the run, is shown with its fix, and is named under the summary", () => {
    const table = formatDoctorReport({
      ok: true,
      mode: "running",
      socketPath: "/run/alive-codex.sock",
      stateDir: null,
      checks: [
        { name: "engine", status: "pass", detail: "Docker 20.10", durationMs: 1 },
        {
          name: "host",
          status: "warn",
          detail: "the host's public address is unknown",
          fix: "set ALIVE_CODEX_HOST_ADDRESSES",
          durationMs: 0,
        },
      ],
    });
    assert.match(
      table,
      /^host\s+WARN\s+the host's public address is unknown\n\s+fix: set ALIVE_CODEX_HOST_ADDRESSES$/m,
    );
    assert.match(
      table,
      /every check passed against the sidecar at \/run\/alive-codex\.sock\ndoctor: 1 warning to act on: host$/,
    );
  });

  test("the host check: the host's public address is known from an interface or ALIVE_CODEX_HOST_ADDRESSES, else a warning", () => {
    assert.match(
      checkHostAddresses(["127.0.0.1", "10.0.0.4", "203.0.114.9"], new AddressSet()),
      /public address 203\.0\.114\.9 is on its interfaces/,
    );
    assert.match(
      checkHostAddresses(
        ["127.0.0.1", "10.0.0.4"],
        parseHostAddressesSetting("ALIVE_CODEX_HOST_ADDRESSES", "198.51.100.7"),
      ),
      /ALIVE_CODEX_HOST_ADDRESSES \(1 entry\)/,
    );
    for (const behindNat of [["127.0.0.1", "10.0.0.4", "172.17.0.1"], ["192.168.1.20", "fe80::1", "fd00::4"], []]) {
      assert.throws(
        () => checkHostAddresses(behindNat, new AddressSet()),
        (error: unknown) =>
          error instanceof CheckWarning &&
          /public address is unknown/.test(error.message) &&
          /ALIVE_CODEX_HOST_ADDRESSES/.test(error.fix),
        JSON.stringify(behindNat),
      );
    }
  });
});

async function doctorCli(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string; elapsedMs: number }> {
  const started = Date.now();
  const run = startCli(["doctor", ...args]);
  const { code } = await run.exit;
  return { code, stdout: run.stdout(), stderr: run.stderr(), elapsedMs: Date.now() - started };
}

function checkOf(report: DoctorReport, name: string): DoctorReport["checks"][number] {
  const found = report.checks.find((c) => c.name === name);
  assert.ok(found, `no ${name} check in ${JSON.stringify(report.checks.map((c) => c.name))}`);
  return found;
}

describe("doctor --socket: the sidecar answering there", () => {
  let dir: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-doctor-"));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test("nothing at the path: fails at once (well inside 5 s), naming the path and the fix, exit 3, JSON as ever", async () => {
    const socket = path.join(dir, "nothing-here.sock");
    const { code, stdout, elapsedMs } = await doctorCli(["--socket", socket, "--json"]);
    assert.equal(code, 3, stdout);
    assert.ok(elapsedMs < 5000, `took ${elapsedMs} ms`);
    const report = JSON.parse(stdout) as DoctorReport;
    assert.equal(report.ok, false);
    assert.equal(report.mode, "running");
    assert.equal(report.socketPath, socket);
    assert.deepEqual(
      report.checks.map((c) => c.name),
      [...RUNNING_CHECKS],
    );
    const sidecar = checkOf(report, "sidecar");
    assert.equal(sidecar.status, "fail");
    assert.equal(sidecar.detail, `nothing answers at ${socket}: no socket there`);
    assert.match(sidecar.fix ?? "", /alive-codex serve.*--socket PATH \/ ALIVE_CODEX_SOCKET.*doctor --scratch/);
    assert.ok(report.checks.slice(1).every((c) => c.status === "skip"));
  });

  test("a socket path nobody listens on (a dead sidecar's file): the same, as a table", async () => {
    const socket = path.join(dir, "stale.sock");
    await fs.writeFile(socket, "");
    const { code, stdout, elapsedMs } = await doctorCli(["--socket", socket]);
    assert.equal(code, 3, stdout);
    assert.ok(elapsedMs < 5000, `took ${elapsedMs} ms`);
    assert.match(
      stdout,
      new RegExp(`^sidecar\\s+FAIL\\s+nothing answers at ${socket.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `, "m"),
    );
    assert.match(stdout, /^\s+fix: start the sidecar/m);
    assert.match(
      stdout.trimEnd(),
      new RegExp(`1 check failed against the sidecar at ${socket.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`),
    );
  });

  test("--scratch and --socket exclude each other", async () => {
    const { code, stderr } = await doctorCli(["--scratch", "--socket", path.join(dir, "x.sock")]);
    assert.equal(code, 2);
    assert.match(stderr, /--scratch and --socket exclude each other/);
  });
});

describe("doctor --socket against a sidecar that answers (a fake service behind the real RPC server)", () => {
  let t: TestServer;
  const root = process.getuid?.() === 0;
  /** The top of the range is doctor's scratch uid; as non-root, only its own uid can be chowned to. */
  const ids = root ? "1000-65533" : `${process.getuid?.()}-${process.getuid?.()}`;
  const settings = (): string[] => [
    "--socket",
    t.socketPath,
    "--workspace-roots",
    t.workspaceRoot,
    "--uid-range",
    ids,
    "--gid-range",
    ids,
    "--docker-host",
    "unix:///nonexistent/alive-codex-doctor-test.sock",
  ];
  before(async () => {
    t = await startTestServer();
  });
  after(async () => {
    await t.stop();
  });
  beforeEach(() => {
    t.service.calls.length = 0;
    t.service.workspaces.clear();
  });

  test("health, engine, image and codex from the sidecar; a scratch workspace ensured through it, then removed; no turn unless asked", async () => {
    const { code, stdout, stderr } = await doctorCli([...settings(), "--json"]);
    const report = JSON.parse(stdout) as DoctorReport;
    assert.deepEqual(
      report.checks.map((c) => c.name),
      [...RUNNING_CHECKS],
      stderr,
    );
    assert.equal(report.mode, "running");
    assert.equal(report.socketPath, t.socketPath);
    assert.equal(report.stateDir, null);
    const status = Object.fromEntries(report.checks.map((c) => [c.name, c.status]));
    assert.deepEqual(
      status,
      {
        sidecar: "pass",
        // The fake answers that its engine is reachable, but doctor's own DOCKER_HOST leads nowhere: the container probes cannot run.
        engine: "fail",
        image: "pass",
        codex: "pass",
        workspace: "pass",
        disk: "pass",
        hardening: "skip",
        isolation: "pass",
        turn: "skip",
        cancel: "skip",
        egress: "skip",
        cleanup: "pass",
        host: hostCheckStatus(new AddressSet()),
      },
      JSON.stringify(report.checks, null, 1),
    );
    assert.equal(code, 1, "a failed check");
    assert.match(
      checkOf(report, "sidecar").detail,
      new RegExp(
        `^alive-codex-sidecar 0\\.0\\.0-test answers at ${t.socketPath.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`,
      ),
    );
    assert.match(
      checkOf(report, "engine").detail,
      /doctor does not reach unix:\/\/\/nonexistent\/alive-codex-doctor-test\.sock/,
    );
    assert.equal(checkOf(report, "image").detail, "alive-codex-runtime:test present");
    assert.equal(
      checkOf(report, "codex").detail,
      "0.171.0 (ALIVE_CODEX_CODEX_VERSION; the SDK's is 0.163.0; tested; adds --ignore-user-config --ignore-rules)",
    );
    assert.equal(checkOf(report, "disk").detail, "NOT LIMITED (ALIVE_CODEX_DISK=off)");
    assert.match(
      checkOf(report, "turn").detail,
      /^not checked: a turn through a running sidecar uses its model and key .*doctor --turn/,
    );

    // What reached the sidecar: health first, the scratch workspace ensured, listed, removed with its HOME; no turn.
    const methods = t.service.calls.map((c) => c.method);
    assert.equal(methods[0], "health");
    assert.equal(methods.filter((m) => m === "runTurn").length, 0);
    assert.ok(methods.indexOf("ensureWorkspace") < methods.indexOf("removeWorkspace"), methods.join(","));
    const [ensured] = t.service.callsOf("ensureWorkspace") as WorkspaceParams[];
    assert.ok(ensured);
    assert.match(ensured.workspaceId, /^doctor-[0-9a-f]{8}$/);
    assert.equal(path.dirname(ensured.workspacePath), t.workspaceRoot);
    assert.equal(ensured.uid, Number(ids.split("-")[1]));
    assert.deepEqual(t.service.callsOf("removeWorkspace"), [{ workspaceId: ensured.workspaceId, purgeHome: true }]);
    assert.equal(existsSync(ensured.workspacePath), false, "doctor deleted its scratch directory");
    assert.equal(t.service.workspaces.size, 0);
  });

  test("--turn: the turn check runs through the sidecar with its own model (no model named), and passes on the command's output", async () => {
    t.service.turnScript = () => ({
      events: [],
      finalResponse: "done",
      items: [
        {
          id: "c1",
          type: "command_execution",
          command: "echo doctor-ok",
          aggregated_output: "doctor-ok\n",
          exit_code: 0,
          status: "completed",
        },
      ],
    });
    const { stdout } = await doctorCli([...settings(), "--turn", "--json"]);
    const report = JSON.parse(stdout) as DoctorReport;
    assert.equal(checkOf(report, "turn").status, "pass", JSON.stringify(checkOf(report, "turn")));
    assert.match(checkOf(report, "turn").detail, /^echo doctor-ok ran in the container and its output came back/);
    // cancel needs doctor's own engine connection to watch the container's processes.
    assert.equal(checkOf(report, "cancel").status, "skip");
    const turns = t.service.callsOf("runTurn") as Array<{ input: string; options?: { model?: string } }>;
    assert.equal(turns.length, 1);
    assert.match(turns[0]?.input ?? "", /Run exactly this shell command: echo doctor-ok/);
    assert.equal(turns[0]?.options?.model, undefined, "the sidecar's default model");
    assert.equal(checkOf(report, "cleanup").status, "pass");
  });
});
