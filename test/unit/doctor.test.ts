import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ContainerInspectInfo } from "dockerode";
import { formatDoctorReport } from "../../src/cli/commands/doctor.js";
import { renderUsage } from "../../src/cli/run-cli.js";
import { hardeningProblems } from "../../src/doctor/hardening.js";
import { describeIsolation, isolationProblems } from "../../src/doctor/isolation.js";
import type { IsolationReport } from "../../src/service.js";
import { doctorScript } from "../../src/doctor/run-doctor.js";
import { startScriptedModel } from "../../src/doctor/scripted-model.js";

type Inspect = Pick<ContainerInspectInfo, "Config" | "HostConfig">;

const HARDENED = {
  Config: { User: "10001:10001" },
  HostConfig: { CapDrop: ["ALL"], SecurityOpt: ["no-new-privileges:true"], ReadonlyRootfs: true, NetworkMode: "none", PidsLimit: 512, Memory: 2 * 1024 ** 3 },
} as unknown as Inspect;

const ISOLATED: IsolationReport = {
  containerId: "c0ffee",
  runtime: "runc",
  user: { uid: 10001, gid: 10001, groups: [10001] },
  capabilities: { effective: "0000000000000000", permitted: "0000000000000000", bounding: "0000000000000000", ambient: "0000000000000000" },
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
  return { Config: { ...HARDENED.Config, ...config }, HostConfig: { ...HARDENED.HostConfig, ...host } } as unknown as Inspect;
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
      [{ capabilities: { ...ISOLATED.capabilities, effective: "0000000000000400" } }, /effective capabilities 0000000000000400/],
      [{ capabilities: { ...ISOLATED.capabilities, bounding: "000001ffffffffff" } }, /bounding capabilities 000001ffffffffff/],
      [{ noNewPrivs: false }, /no_new_privs is off/],
      [{ seccomp: "disabled" }, /seccomp is "disabled"/],
      [{ readOnlyRoot: false }, /writable/],
      [{ network: { interfaces: ["lo", "eth0"], defaultRoute: false } }, /\["lo","eth0"\]/],
      [{ network: { interfaces: ["lo"], defaultRoute: true } }, /default route/],
      [{ hostReachable: true, hostProbe: "172.17.0.1:22 connected" }, /host is reachable from inside \(172\.17\.0\.1:22 connected\)/],
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
    assert.deepEqual(doctorScript({ prompt: "doctor: run the check command", commandOutputs: [] }), { kind: "command", cmd: "echo doctor-ok" });
    assert.match(JSON.stringify(doctorScript({ prompt: "doctor: run the check command", commandOutputs: ["Output:\ndoctor-ok\n"] })), /"message".*doctor-ok/);
    assert.deepEqual(doctorScript({ prompt: "doctor: run the long command", commandOutputs: [] }), { kind: "command", cmd: "sleep 1000" });
  });

  test("the scripted model answers POST /v1/responses with Responses SSE and sees the command outputs", async () => {
    const seen: string[][] = [];
    const model = await startScriptedModel((request) => {
      seen.push(request.commandOutputs);
      return { kind: "command", cmd: "echo hi" };
    });
    try {
      const body = { input: [{ role: "user", content: [{ type: "input_text", text: "go" }] }, { type: "function_call_output", call_id: "c", output: "earlier" }] };
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
      stateDir: "/tmp/x",
      checks: [
        { name: "engine", status: "pass", detail: "Docker 20.10", durationMs: 1 },
        { name: "image", status: "fail", detail: "the runtime image x is missing", fix: "unset ALIVE_CODEX_IMAGE", durationMs: 1 },
        { name: "turn", status: "skip", detail: "not run: no runtime image", durationMs: 0 },
      ],
    });
    assert.match(table, /^engine\s+PASS\s+Docker 20\.10$/m);
    assert.match(table, /^image\s+FAIL\s+the runtime image x is missing\n\s+fix: unset ALIVE_CODEX_IMAGE$/m);
    assert.match(table, /^turn\s+SKIP\s+not run/m);
    assert.match(table, /1 check failed$/);
    assert.match(renderUsage(), /^ {2}doctor\s+prove this install works/m);
  });
});
