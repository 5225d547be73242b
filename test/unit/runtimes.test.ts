import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError, loadConfig } from "../../src/config.js";
import { Labels } from "../../src/docker/labels.js";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { parseEnsureWorkspaceParams } from "../../src/rpc/params.js";
import type { WorkspaceParams } from "../../src/service.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { idleAction } from "../../src/workspace/idle-reaper.js";
import {
  WorkspaceRuntimes,
  allowedRuntimes,
  canPause,
  resolveRuntime,
  type EngineRuntimes,
  type RuntimePolicy,
} from "../../src/workspace/runtimes.js";
import { buildWorkspaceSpec, type SpecContext } from "../../src/workspace/spec.js";

const engine: EngineRuntimes = { names: ["io.containerd.runc.v2", "runc", "runsc"], defaultRuntime: "runc" };
const policy: RuntimePolicy = { defaultRuntime: null, allowed: ["runc", "runsc"] };

function refusal(run: () => unknown): SidecarError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof SidecarError, String(error));
    assert.equal(error.code, ErrorCode.notAllowed);
    assert.equal(error.data?.field, "runtime");
    return error;
  }
  assert.fail("expected -32006");
}

describe("workspace runtimes", () => {
  test("absent: the operator's default, else the engine's", () => {
    assert.equal(resolveRuntime(undefined, policy, engine), "runc");
    assert.equal(resolveRuntime(undefined, { ...policy, defaultRuntime: "runsc" }, engine), "runsc");
    assert.equal(
      resolveRuntime(undefined, policy, { ...engine, defaultRuntime: "io.containerd.runc.v2" }),
      "io.containerd.runc.v2",
    );
  });

  test("asked for: allowed and registered", () => {
    assert.equal(resolveRuntime("runsc", policy, engine), "runsc");
    assert.equal(resolveRuntime("runc", policy, engine), "runc");
  });

  test("off the allowlist: -32006 naming it and the allowed ones the engine has, even if the engine lists it", () => {
    const error = refusal(() => resolveRuntime("io.containerd.runc.v2", policy, engine));
    assert.match(error.message, /"io\.containerd\.runc\.v2"/);
    assert.match(error.message, /runc, runsc/);
    assert.deepEqual(error.data?.allowed, ["runc", "runsc"]);
    assert.equal(error.data?.received, "io.containerd.runc.v2");
  });

  test("allowed but not registered with the engine: -32006 saying what the engine lists", () => {
    const error = refusal(() => resolveRuntime("runsc", policy, { names: ["runc"], defaultRuntime: "runc" }));
    assert.match(error.message, /not registered with the Docker engine, which lists runc/);
    assert.deepEqual(error.data?.allowed, ["runc"]);
  });

  test("the operator's default is always allowed, and a missing one is reported as the operator's", () => {
    const kata: RuntimePolicy = { defaultRuntime: "kata", allowed: ["runc"] };
    assert.deepEqual(allowedRuntimes(kata), ["runc", "kata"]);
    assert.equal(resolveRuntime("kata", kata, { names: ["runc", "kata"], defaultRuntime: "runc" }), "kata");
    const error = refusal(() => resolveRuntime(undefined, kata, engine));
    assert.match(error.message, /ALIVE_CODEX_RUNTIME/);
  });

  test("the engine is asked once, and again only for a runtime it did not list (registered since)", async () => {
    let calls = 0;
    let runtimes: Record<string, unknown> = { runc: {} };
    const catalog = new WorkspaceRuntimes(
      { runtimes: async () => ((calls += 1), { names: Object.keys(runtimes), defaultRuntime: "runc" }) },
      policy,
    );
    assert.equal(await catalog.resolve(undefined), "runc");
    assert.equal(await catalog.resolve("runc"), "runc");
    assert.equal(calls, 1);
    await assert.rejects(catalog.resolve("runsc"), { code: ErrorCode.notAllowed });
    assert.equal(calls, 2);
    await assert.rejects(catalog.resolve("kata"), { code: ErrorCode.notAllowed });
    assert.equal(calls, 2, "off the allowlist: no engine call");
    runtimes = { runc: {}, runsc: {} };
    assert.equal(await catalog.resolve("runsc"), "runsc");
    assert.equal(calls, 3);
  });
});

describe("idle runsc workspaces", () => {
  const idle = { activeTurnId: null, lastActiveAt: 0, pausedAt: null, state: "running" as const };
  const timeouts = { idleTimeoutMs: 1000, stopTimeoutMs: 5000 };

  test("are stopped at the idle timeout, never paused (runsc pause hung); runc ones are paused", () => {
    assert.equal(canPause("runsc"), false);
    assert.equal(canPause("runc"), true);
    assert.equal(idleAction({ ...idle, runtime: "runsc" }, 1000, timeouts), "stop");
    assert.equal(idleAction({ ...idle, runtime: "runc" }, 1000, timeouts), "pause");
    assert.equal(idleAction({ ...idle, runtime: null }, 1000, timeouts), "pause");
    assert.equal(idleAction({ ...idle, runtime: "runsc" }, 999, timeouts), null, "not idle long enough");
    assert.equal(
      idleAction({ ...idle, runtime: "runsc" }, 1000, { idleTimeoutMs: 1000, stopTimeoutMs: 0 }),
      null,
      "stopping is off: left running",
    );
  });
});

describe("runtime in the spec", () => {
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
  const params: WorkspaceParams = {
    workspaceId: "ws-1",
    userId: "u-1",
    uid: 10001,
    gid: 10002,
    workspacePath: "/srv/alive/workspaces/ws-1",
  };
  const paths = workspacePaths("/var/lib/alive-codex", "ws-1");

  test("the resolved runtime is the container's Runtime and label; changing it changes the hash", () => {
    const runc = buildWorkspaceSpec(params, paths, context);
    const runsc = buildWorkspaceSpec({ ...params, runtime: "runsc" }, paths, { ...context, runtime: "runsc" });
    assert.equal(runc.options.HostConfig?.Runtime, "runc");
    assert.equal(runsc.options.HostConfig?.Runtime, "runsc");
    assert.equal(runsc.options.Labels?.[Labels.runtime], "runsc");
    assert.notEqual(runc.hash, runsc.hash);
    assert.equal(runc.options.HostConfig?.PidsLimit, 512);
    assert.equal(
      runsc.options.HostConfig?.PidsLimit,
      512 * 16,
      "gVisor's host tasks (ptrace stubs) count against the cgroup",
    );
    assert.equal(JSON.parse(runsc.options.Labels![Labels.params]!).runtime, "runsc", "kept for adoption");
  });
});

describe("runtime params and settings", () => {
  test("workspace.ensure runtime: a runtime name, else -32602 naming the field", async () => {
    const root = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "alive-runtime-params-")));
    try {
      await fs.mkdir(path.join(root, "ws"));
      const wsPolicy = {
        uidRange: { min: 10000, max: 65533 },
        gidRange: { min: 1000, max: 65533 },
        allowRoot: false,
        workspaceRoots: [root],
      };
      const base = { workspaceId: "ws", userId: "u", uid: 10001, gid: 1000, workspacePath: path.join(root, "ws") };
      assert.equal((await parseEnsureWorkspaceParams({ ...base, runtime: "runsc" }, wsPolicy)).runtime, "runsc");
      assert.equal((await parseEnsureWorkspaceParams({ ...base, runtime: null }, wsPolicy)).runtime, undefined);
      for (const bad of ["", "../runc", "run sc", 7, "-runc", "x".repeat(65)]) {
        await assert.rejects(parseEnsureWorkspaceParams({ ...base, runtime: bad }, wsPolicy), (error: unknown) => {
          assert.ok(error instanceof SidecarError);
          assert.equal(error.code, ErrorCode.invalidParams);
          assert.equal(error.data?.field, "runtime");
          return true;
        });
      }
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });

  test("ALIVE_CODEX_RUNTIMES: runc,runsc by default; a list of names", () => {
    assert.deepEqual(loadConfig({}, {}).runtimes, ["runc", "runsc"]);
    assert.deepEqual(loadConfig({}, { ALIVE_CODEX_RUNTIMES: " runsc , kata,runsc" }).runtimes, ["runsc", "kata"]);
    assert.deepEqual(loadConfig({ "--runtimes": "runc" }, {}).runtimes, ["runc"]);
    for (const bad of [",", "run sc", "runc,;rm"]) {
      assert.throws(
        () => loadConfig({}, { ALIVE_CODEX_RUNTIMES: bad }),
        (error: unknown) => error instanceof ConfigError && error.setting === "ALIVE_CODEX_RUNTIMES",
      );
    }
  });
});
