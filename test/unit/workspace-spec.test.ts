import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Labels } from "../../src/docker/labels.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { buildWorkspaceSpec, hashSpec, type SpecContext } from "../../src/workspace/spec.js";
import type { WorkspaceParams } from "../../src/service.js";

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

describe("workspace spec", () => {
  test("hardened, as the workspace's uid:gid, with only the workspace's own mounts", () => {
    const { options, name } = buildWorkspaceSpec(params, paths, context);
    assert.equal(name, "alive-codex-ws-1");
    assert.equal(options.User, "10001:10002");
    const host = options.HostConfig!;
    assert.deepEqual(host.CapDrop, ["ALL"]);
    assert.deepEqual(host.SecurityOpt, ["no-new-privileges:true"]);
    assert.equal(host.ReadonlyRootfs, true);
    assert.equal(host.Privileged, undefined);
    assert.equal(host.Init, true);
    assert.equal(host.Memory, host.MemorySwap);
    const sources = (host.Mounts ?? []).map((m) => m.Source);
    assert.ok(
      sources.every((s) => s === params.workspacePath || s!.startsWith(paths.root)),
      sources.join(","),
    );
    assert.ok(!sources.some((s) => /docker\.sock/.test(s!)));
    assert.equal((host as { Binds?: unknown }).Binds, undefined, "no Binds: every mount is one of Mounts");
    const workspaceMount = host.Mounts!.find((m) => m.Source === params.workspacePath);
    assert.equal(workspaceMount?.Target, params.workspacePath, "same absolute path inside");
    assert.ok(
      host.Mounts!.filter((m) => m.Target.startsWith("/home/alive/.")).every((m) => m.ReadOnly),
      "shell rc files are read-only",
    );
    assert.ok(!(options.Env ?? []).some((e) => e.startsWith("CODEX_API_KEY=")));
  });

  test("labels find all of ours, one workspace, one user; they carry the spec hash", () => {
    const { options, hash } = buildWorkspaceSpec(params, paths, context);
    const labels = options.Labels!;
    assert.equal(labels[Labels.managed], "true");
    assert.equal(labels[Labels.workspaceId], "ws-1");
    assert.equal(labels[Labels.userId], "u-1");
    assert.equal(labels[Labels.specHash], hash);
    assert.deepEqual(JSON.parse(labels[Labels.params]!), params);
  });

  test("the hash changes with the image or settings, not otherwise", () => {
    const base = buildWorkspaceSpec(params, paths, context).hash;
    assert.equal(buildWorkspaceSpec({ ...params }, paths, { ...context }).hash, base);
    assert.notEqual(buildWorkspaceSpec(params, paths, { ...context, image: "alive-codex-runtime:other" }).hash, base);
    assert.notEqual(buildWorkspaceSpec({ ...params, resources: { pids: 64 } }, paths, context).hash, base);
    assert.notEqual(buildWorkspaceSpec({ ...params, network: "none" }, paths, context).hash, base);
  });

  test("no core dumps: the core ulimit is 0, soft and hard, beside nofile", () => {
    const { options } = buildWorkspaceSpec(params, paths, context);
    assert.deepEqual(options.HostConfig!.Ulimits, [
      { Name: "nofile", Soft: 4096, Hard: 4096 },
      { Name: "core", Soft: 0, Hard: 0 },
    ]);
  });

  test("a container made before the core limit has a stale hash, so an idle one is replaced at its next ensure", () => {
    const { options, hash } = buildWorkspaceSpec(params, paths, context);
    const unlabelled = (o: typeof options): typeof options => {
      const copy = structuredClone(o);
      delete copy.Labels![Labels.specHash];
      return copy;
    };
    // The hash is of the options before its own label: recomputed here, it matches.
    assert.equal(hashSpec(unlabelled(options)), hash);
    const older = unlabelled(options);
    older.HostConfig!.Ulimits = older.HostConfig!.Ulimits!.filter((u) => u.Name !== "core");
    assert.notEqual(hashSpec(older), hash);
  });

  test("network none and per-workspace limits", () => {
    const { options } = buildWorkspaceSpec(
      { ...params, network: "none", resources: { memoryMb: 512, cpus: 0.5, pids: 100 } },
      paths,
      context,
    );
    assert.equal(options.HostConfig!.NetworkMode, "none");
    assert.equal(options.HostConfig!.Memory, 512 * 1024 * 1024);
    // cpus 0.5: half of each CPU period (the operator's ALIVE_CODEX_CPU_PERIOD, here 1 s).
    assert.deepEqual([options.HostConfig!.CpuQuota, options.HostConfig!.CpuPeriod], [500_000, 1_000_000]);
    assert.equal(options.HostConfig!.PidsLimit, 100);
  });
});
