/** Workspace containers against the real engine: isolation, hardening and lifecycle, seen from inside. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, promises as fs } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { Labels } from "../../src/docker/labels.js";
import { containerEnv } from "../../src/workspace/spec.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { execIn, startTestSidecar, uniqueId, TEST_GID, TEST_UID, type TestSidecar } from "../support/sidecar.js";
import { waitFor } from "../support/wait.js";

describe("workspace containers", () => {
  let t: TestSidecar;
  before(async () => {
    t = await startTestSidecar();
  });
  after(async () => {
    await t?.cleanup();
  });

  const sh = async (containerId: string, script: string) => execIn(t.docker, containerId, ["/bin/sh", "-c", script]);

  test("runs as the workspace uid:gid with per-workspace HOME, CODEX_HOME and TMPDIR", async () => {
    const ws = await t.workspace();
    const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
    const ids = await sh(containerId, "id -u; id -g");
    assert.deepEqual(ids.stdout.trim().split("\n"), [String(TEST_UID), String(TEST_GID)]);

    await sh(
      containerId,
      'echo w > "$ALIVE_WORKSPACE_PATH/made.txt"; echo h > "$HOME/h.txt"; echo c > "$CODEX_HOME/c.txt"; echo t > "$TMPDIR/t.txt"',
    );
    const paths = workspacePaths(t.stateDir, ws.workspaceId);
    for (const file of [
      path.join(ws.workspacePath, "made.txt"),
      path.join(paths.home, "h.txt"),
      path.join(paths.codexHome, "c.txt"),
      path.join(paths.tmp, "t.txt"),
    ]) {
      const stat = await fs.stat(file);
      assert.equal(stat.uid, TEST_UID, `${file} owner`);
      assert.equal(stat.gid, TEST_GID, `${file} group`);
    }
    assert.ok((await fs.stat(paths.claudeHome)).isDirectory(), ".claude/ sits beside .codex/ in HOME");
  });

  test("the container's env is exactly the built env, and no host path or socket is mounted", async () => {
    const ws = await t.workspace();
    const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
    const environ = await sh(containerId, "tr '\\0' '\\n' < /proc/1/environ");
    const actual = Object.fromEntries(
      environ.stdout
        .trim()
        .split("\n")
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
    );
    delete actual.HOSTNAME; // set by the engine
    assert.deepEqual(actual, containerEnv(ws, { aliveApiUrl: null, nodePath: null }));
    assert.equal(actual.CODEX_API_KEY, undefined, "the key is never in the container's own env");

    const sock = await sh(containerId, "test -e /var/run/docker.sock || test -e /run/docker.sock; echo $?");
    assert.equal(sock.stdout.trim(), "1");
    const info = await t.docker.getContainer(containerId).inspect();
    const sources = info.Mounts.map((m) => m.Source).sort();
    const paths = workspacePaths(t.stateDir, ws.workspaceId);
    assert.deepEqual(
      [...new Set(sources)].sort(),
      [ws.workspacePath, paths.home, paths.tmp, paths.run, paths.shellRc].sort(),
    );
  });

  test("hardening: no capabilities, no-new-privileges, read-only root, limits, init", async () => {
    const ws = await t.workspace(undefined, { resources: { memoryMb: 256, cpus: 0.5, pids: 64 } });
    const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
    const status = await sh(containerId, "grep -E '^(CapEff|CapPrm|NoNewPrivs):' /proc/self/status");
    assert.match(status.stdout, /CapEff:\s+0000000000000000/);
    assert.match(status.stdout, /CapPrm:\s+0000000000000000/);
    assert.match(status.stdout, /NoNewPrivs:\s+1/);
    const write = await sh(containerId, "touch /etc/x 2>&1; touch /usr/x 2>&1; echo done");
    assert.match(write.stdout, /Read-only file system/);
    const info = await t.docker.getContainer(containerId).inspect();
    const host = info.HostConfig;
    assert.equal(host.ReadonlyRootfs, true);
    assert.equal(host.PidsLimit, 64);
    assert.equal(host.Memory, 256 * 1024 * 1024);
    assert.equal(host.MemorySwap, 256 * 1024 * 1024, "memory+swap equals memory: no swap");
    assert.equal((host.CpuQuota ?? 0) / (host.CpuPeriod ?? 1), 0.5, "cpus 0.5: half of each CPU period");
    assert.deepEqual(host.CapDrop, ["ALL"]);
    assert.ok(host.SecurityOpt?.includes("no-new-privileges:true"));
    assert.equal(host.Init, true);
    assert.deepEqual(host.LogConfig?.Config, { "max-size": "10m", "max-file": "3" });
    assert.equal(host.Ulimits?.find((u) => u.Name === "nofile")?.Hard, 4096);
    assert.equal(info.Config.User, `${TEST_UID}:${TEST_GID}`);
    const pid1 = await sh(containerId, "cat /proc/1/comm");
    assert.equal(pid1.stdout.trim(), "docker-init", "an init reaps zombies");
    assert.equal(host.Privileged, false);
    assert.match(
      (await sh(containerId, "cat /proc/self/status | grep Seccomp")).stdout,
      /Seccomp:\s+2/,
      "the engine's default seccomp profile is in place",
    );
  });

  test("a fork bomb hits the pids limit without affecting the host", async () => {
    const ws = await t.workspace(undefined, { resources: { pids: 32 } });
    const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
    const bomb = await sh(
      containerId,
      "i=0; while [ $i -lt 200 ]; do sleep 300 </dev/null >/dev/null 2>&1 & i=$((i+1)); done 2>&1 | head -n 3; set -- /proc/[0-9]*; echo $#",
    );
    // The refusal is the loop's (through head) or, when the limit is met at the shell's own first fork, the shell's on stderr.
    assert.match(`${bomb.stdout}${bomb.stderr}`, /fork|Resource temporarily unavailable/i, JSON.stringify(bomb));
    const count = Number(bomb.stdout.trim().split("\n").at(-1));
    // Counted with shell builtins only: with the limit reached, nothing more can fork.
    assert.ok(count <= 32, `at most 32 processes in the container, saw ${count}`);
    const hostProbe = await execa("sh", ["-c", "for i in 1 2 3 4 5 6 7 8; do true & done; wait; echo ok"]);
    assert.equal(hostProbe.stdout, "ok");
    await t.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId });
  });

  test("workspace A sees neither B's files nor B's processes", async () => {
    const a = await t.workspace(uniqueId("wsa"));
    const b = await t.workspace(uniqueId("wsb"), { uid: 10002, gid: 10002 });
    const ca = await t.sidecar.service.ensureWorkspace(a);
    const cb = await t.sidecar.service.ensureWorkspace(b);
    await sh(
      cb.containerId,
      'echo secret > "$ALIVE_WORKSPACE_PATH/b-secret.txt"; echo s > "$HOME/b-home.txt"; sleep 300 </dev/null >/dev/null 2>&1 &',
    );
    const bPaths = workspacePaths(t.stateDir, b.workspaceId);
    const look = await sh(
      ca.containerId,
      `cat ${b.workspacePath}/b-secret.txt 2>&1; ls ${bPaths.home} 2>&1; ls ${t.stateDir} 2>&1; ps -eo args`,
    );
    assert.doesNotMatch(look.stdout, /^secret$/m);
    assert.doesNotMatch(look.stdout, /b-home\.txt/);
    assert.match(look.stdout, /No such file or directory/);
    assert.doesNotMatch(look.stdout, /sleep 300/, "B's processes are invisible from A");
    const inspectA = await t.docker.getContainer(ca.containerId).inspect();
    assert.notEqual(inspectA.HostConfig.NetworkMode, "host");
  });

  test("ten concurrent ensures of one workspace make exactly one container", async () => {
    // Its own user (and so its own uid): the label lookup below must find this workspace alone.
    const ws = await t.workspace(undefined, { userId: uniqueId("user"), uid: 10003, gid: 10003 });
    const results = await Promise.all(Array.from({ length: 10 }, () => t.sidecar.service.ensureWorkspace(ws)));
    assert.equal(new Set(results.map((r) => r.containerId)).size, 1);
    assert.equal(results.filter((r) => r.created).length, 1);
    const listed = await t.docker.listContainers({
      all: true,
      filters: { label: [`${Labels.workspaceId}=${ws.workspaceId}`] },
    });
    assert.equal(listed.length, 1);
    const byUser = await t.docker.listContainers({ all: true, filters: { label: [`${Labels.userId}=${ws.userId}`] } });
    assert.deepEqual(
      byUser.map((c) => c.Id),
      [results[0]?.containerId],
    );
  });

  test("changed settings replace an idle container; unchanged ones reuse it", async () => {
    const ws = await t.workspace(undefined, { resources: { pids: 128 } });
    const first = await t.sidecar.service.ensureWorkspace(ws);
    const again = await t.sidecar.service.ensureWorkspace({ ...ws });
    assert.equal(again.containerId, first.containerId);
    assert.equal(again.created, false);
    const changed = await t.sidecar.service.ensureWorkspace({ ...ws, resources: { pids: 256 } });
    assert.notEqual(changed.containerId, first.containerId);
    assert.equal(changed.created, true);
    await assert.rejects(
      t.docker.getContainer(first.containerId).inspect(),
      (error: { statusCode?: number }) => error.statusCode === 404,
    );
  });

  test("a uid serves one user at a time: another user's ensure is refused, and made once the uid is free", async () => {
    const uid = 10004;
    const alice = await t.workspace(uniqueId("alice"), { userId: uniqueId("alice"), uid, gid: uid });
    const aliceToo = await t.workspace(uniqueId("alice"), { userId: alice.userId, uid, gid: uid });
    const bob = await t.workspace(uniqueId("bob"), { userId: uniqueId("bob"), uid, gid: uid });
    await t.sidecar.service.ensureWorkspace(alice);
    assert.equal(
      (await t.sidecar.service.ensureWorkspace(aliceToo)).created,
      true,
      "one user's workspaces may share a uid",
    );

    const held = [alice.workspaceId, aliceToo.workspaceId];
    await assert.rejects(t.sidecar.service.ensureWorkspace(bob), isUidConflict(held));
    await assert.rejects(
      t.sidecar.service.runTurn({ workspaceId: bob.workspaceId, input: "hi", workspace: bob }, { onEvent: () => {} }),
      isUidConflict(held),
    );
    const made = await t.docker.listContainers({
      all: true,
      filters: { label: [`${Labels.workspaceId}=${bob.workspaceId}`] },
    });
    assert.deepEqual(made, [], "a refused ensure makes no container");
    assert.equal(existsSync(workspacePaths(t.stateDir, bob.workspaceId).root), false, "nor a HOME");

    // Stopped, a workspace still holds its uid; removed, it frees it.
    await t.docker.getContainer((await t.sidecar.service.ensureWorkspace(alice)).containerId).stop();
    await waitFor(
      async () =>
        (await t.sidecar.service.listWorkspaces()).workspaces.find((w) => w.workspaceId === alice.workspaceId)
          ?.state === "exited",
      { what: "alice's workspace to show as exited" },
    );
    await t.sidecar.service.removeWorkspace({ workspaceId: aliceToo.workspaceId });
    await assert.rejects(t.sidecar.service.ensureWorkspace(bob), isUidConflict([alice.workspaceId]));
    await t.sidecar.service.removeWorkspace({ workspaceId: alice.workspaceId });
    const ensured = await t.sidecar.service.ensureWorkspace(bob);
    assert.equal(ensured.created, true);
    await t.sidecar.service.removeWorkspace({ workspaceId: bob.workspaceId });
  });

  test("remove deletes the container, and with purgeHome the workspace's HOME", async () => {
    const ws = await t.workspace();
    const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
    const paths = workspacePaths(t.stateDir, ws.workspaceId);
    assert.deepEqual(await t.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId, purgeHome: true }), {
      removed: true,
    });
    await assert.rejects(
      t.docker.getContainer(containerId).inspect(),
      (error: { statusCode?: number }) => error.statusCode === 404,
    );
    await assert.rejects(fs.stat(paths.home));
    assert.deepEqual(await t.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId }), { removed: false });
    await assert.rejects(
      t.sidecar.service.runTurn({ workspaceId: ws.workspaceId, input: "hi" }, { onEvent: () => {} }),
      (error: SidecarError) => error.code === ErrorCode.unknownWorkspace,
    );
  });
});

describe("workspace lifecycle across sidecars", () => {
  test("a killed sidecar's containers are adopted by the next one", async () => {
    const first = await startTestSidecar();
    try {
      const ws = await first.workspace();
      const made = await first.sidecar.service.ensureWorkspace(ws);
      await first.stop();
      const second = await startTestSidecar({ reuse: first });
      try {
        const listed = await second.sidecar.service.listWorkspaces();
        const entry = listed.workspaces.find((w) => w.workspaceId === ws.workspaceId);
        assert.equal(entry?.containerId, made.containerId);
        assert.equal(entry?.state, "running");
        assert.equal(entry?.userId, ws.userId);
        const again = await second.sidecar.service.ensureWorkspace(ws);
        assert.equal(again.containerId, made.containerId);
        assert.equal(again.created, false);
      } finally {
        await second.stop();
      }
    } finally {
      await first.cleanup();
    }
  });

  test("an adopted workspace holds its uid: another user's ensure is refused by the next sidecar until it is removed", async () => {
    const first = await startTestSidecar();
    try {
      const uid = 10005;
      const alice = await first.workspace(uniqueId("alice"), { userId: uniqueId("alice"), uid, gid: uid });
      await first.sidecar.service.ensureWorkspace(alice);
      await first.stop();
      const second = await startTestSidecar({ reuse: first });
      try {
        const bob = await second.workspace(uniqueId("bob"), { userId: uniqueId("bob"), uid, gid: uid });
        await assert.rejects(second.sidecar.service.ensureWorkspace(bob), isUidConflict([alice.workspaceId]));
        await second.sidecar.service.removeWorkspace({ workspaceId: alice.workspaceId });
        assert.equal((await second.sidecar.service.ensureWorkspace(bob)).created, true);
      } finally {
        await second.stop();
      }
    } finally {
      await first.cleanup();
    }
  });

  test("nothing that is not ours is touched at start-up", async () => {
    const foreign = await execa("docker", [
      "create",
      "--label",
      "dev.alive.codex.run-id=foreign",
      "--name",
      uniqueId("not-ours"),
      process.env.ALIVE_CODEX_TEST_IMAGE ?? "",
      "true",
    ]);
    const id = foreign.stdout.trim();
    const t = await startTestSidecar();
    try {
      const listed = await t.sidecar.service.listWorkspaces();
      assert.equal(
        listed.workspaces.some((w) => w.containerId === id),
        false,
      );
      assert.equal((await t.docker.getContainer(id).inspect()).Id, id);
    } finally {
      await t.cleanup();
      await execa("docker", ["rm", "-f", id]);
    }
  });

  test("the idle reaper pauses a container idle past the timeout and stops it after the stop timeout", async () => {
    const t = await startTestSidecar({ flags: { "--idle-timeout": "1s", "--stop-timeout": "1s" } });
    try {
      const ws = await t.workspace();
      const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
      await waitFor(async () => !(await t.docker.getContainer(containerId).inspect()).State.Running, {
        timeoutMs: 20_000,
        what: "the idle container to stop",
      });
      const entry = (await t.sidecar.service.listWorkspaces()).workspaces.find((w) => w.workspaceId === ws.workspaceId);
      assert.equal(entry?.state, "exited");
      const again = await t.sidecar.service.ensureWorkspace(ws);
      assert.equal(again.containerId, containerId, "a stopped workspace is started again, not re-created");
      assert.equal((await t.docker.getContainer(containerId).inspect()).State.Running, true);
    } finally {
      await t.cleanup();
    }
  });

  test("a container that fails to start is removed before the error is returned", async () => {
    const t = await startTestSidecar();
    try {
      const ws = await t.workspace();
      // The workspace is mounted at its own path; under /tmp (the workspace's TMPDIR bind) a file
      // where that path needs a directory makes the engine fail the start, after a good create.
      const paths = workspacePaths(t.stateDir, ws.workspaceId);
      const blocker = path.join(paths.tmp, path.relative("/tmp", path.dirname(ws.workspacePath)));
      await fs.mkdir(path.dirname(blocker), { recursive: true });
      await fs.writeFile(blocker, "not a directory");
      await assert.rejects(
        t.sidecar.service.ensureWorkspace(ws),
        (error: SidecarError) => error instanceof SidecarError && /start container/.test(error.message),
      );
      const left = await t.docker.listContainers({
        all: true,
        filters: { label: [`${Labels.workspaceId}=${ws.workspaceId}`] },
      });
      assert.deepEqual(left, []);
      assert.equal((await t.sidecar.service.listWorkspaces()).workspaces.length, 0);
    } finally {
      await t.cleanup();
    }
  });

  test("an explicit image that is missing is -32005 and creates nothing", async () => {
    const t = await startTestSidecar({ flags: { "--image": "alive-codex-runtime:does-not-exist" } });
    try {
      const ws = await t.workspace();
      await assert.rejects(
        t.sidecar.service.ensureWorkspace(ws),
        (error: SidecarError) => error.code === ErrorCode.imageUnavailable,
      );
      const left = await t.docker.listContainers({
        all: true,
        filters: { label: [`${Labels.workspaceId}=${ws.workspaceId}`] },
      });
      assert.deepEqual(left, []);
    } finally {
      await t.cleanup();
    }
  });
});

/** A -32602 naming uid, held by one of `heldBy`. */
function isUidConflict(heldBy: string[]): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof SidecarError, String(error));
    assert.equal(error.code, ErrorCode.invalidParams);
    assert.equal(error.data?.field, "uid");
    assert.ok(
      heldBy.includes(String(error.data?.heldBy)),
      `held by ${String(error.data?.heldBy)}, expected one of ${heldBy.join(", ")}`,
    );
    return true;
  };
}
