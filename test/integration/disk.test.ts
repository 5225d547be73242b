/**
 * Workspace disks against the real engine, real codex and real loop-mounted filesystems:
 * a write past a workspace's disk fails inside with ENOSPC, nothing else notices, deleting frees it,
 * and the limit outlives a sidecar restart and a container re-creation without attaching anything twice.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import type { ThreadEvent } from "@openai/codex-sdk";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import type { TurnHooks, WorkspaceParams } from "../../src/service.js";
import { loadConfig } from "../../src/config.js";
import { diskImagePath } from "../../src/workspace/disk-image.js";
import { disksLeftUnder } from "../../src/workspace/disk-leftovers.js";
import { readMounts } from "../../src/workspace/mountinfo.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { ResponsesStub } from "../support/responses-stub.js";
import { execIn, startGatewayStub, startTestSidecar, uniqueId, type TestSidecar } from "../support/sidecar.js";

const MIB = 1024 * 1024;
const DISK_FLAGS = { "--disk": "image", "--disk-default": "diskMb=96", "--disk-max": "diskMb=1024,diskInodes=1000000" };

/** The loop devices backed by a file (losetup -j): one per mount of a workspace disk, none once detached. */
async function loopDevicesOf(image: string): Promise<string[]> {
  const { stdout } = await execa("losetup", ["-j", image]);
  return stdout.split("\n").filter((line) => line.trim() !== "");
}

/** Writes `mb` MiB of zeros to $TMPDIR/name as the workspace user; the exit code and what dd said. */
async function writeZeros(
  t: TestSidecar,
  containerId: string,
  name: string,
  mb: number,
): Promise<{ exitCode: number | null; output: string }> {
  const result = await execIn(t.docker, containerId, [
    "/bin/sh",
    "-c",
    `dd if=/dev/zero of="$TMPDIR/${name}" bs=1M count=${mb} 2>&1; echo "exit=$?"`,
  ]);
  const exit = /exit=(\d+)/.exec(result.stdout)?.[1];
  return { exitCode: exit === undefined ? null : Number(exit), output: result.stdout + result.stderr };
}

describe("workspace disks (ALIVE_CODEX_DISK=image)", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;
  /** The sidecar now serving (after a restart, the second instance over the same dirs). */
  let current: TestSidecar;
  const extra: TestSidecar[] = [];
  before(async () => {
    stub = await startGatewayStub();
    t = await startTestSidecar({ stub, flags: DISK_FLAGS });
    current = t;
  });
  after(async () => {
    for (const other of extra) await other.cleanup().catch(() => undefined);
    await t?.cleanup();
    await stub?.close();
    // Nothing of this file's disks outlives it: no mount under its roots, no loop device backed by a file there.
    for (const sidecar of [t, ...extra])
      if (sidecar)
        assert.deepEqual(
          await disksLeftUnder(sidecar.root),
          { mounts: [], loopDevices: [] },
          `left under ${sidecar.root}`,
        );
  });

  let a: WorkspaceParams;
  let b: WorkspaceParams;

  test("a turn writing past its disk gets ENOSPC and ends normally; another workspace writes meanwhile; deleting frees the space", async () => {
    a = await t.workspace(uniqueId("disk-a"), { resources: { diskMb: 64 } });
    b = await t.workspace(uniqueId("disk-b"));
    const [ensuredA, ensuredB] = await Promise.all([
      t.sidecar.service.ensureWorkspace(a),
      t.sidecar.service.ensureWorkspace(b),
    ]);
    const health = await t.sidecar.service.health();
    assert.deepEqual(health.disk, { enforcement: "image", attached: 2, requested: "image" });

    // The turn's command fills its TMPDIR past 64 MiB; workspace b writes 40 MiB of its own meanwhile.
    stub.script(
      { kind: "command", cmd: 'dd if=/dev/zero of="$TMPDIR/big" bs=1M count=200; echo "dd exit $?"' },
      { kind: "message", text: "disk full, as expected" },
    );
    const events: ThreadEvent[] = [];
    const hooks: TurnHooks = {
      onEvent: (_turnId, _seq, event) =>
        void (event.type.startsWith("sidecar.") ? undefined : events.push(event as ThreadEvent)),
    };
    const [result, other] = await Promise.all([
      t.sidecar.service.runTurn({ workspaceId: a.workspaceId, input: "fill the disk" }, hooks),
      writeZeros(t, ensuredB.containerId, "mine", 40),
    ]);
    assert.equal(result.status, "completed", JSON.stringify(result.error));
    assert.equal(result.finalResponse, "disk full, as expected");
    const command = events.find(
      (e): e is Extract<ThreadEvent, { type: "item.completed" }> =>
        e.type === "item.completed" && e.item.type === "command_execution",
    );
    assert.ok(command && command.item.type === "command_execution", "the command ran");
    assert.match(command.item.aggregated_output, /No space left on device/);
    assert.match(command.item.aggregated_output, /dd exit 1/);
    assert.equal(other.exitCode, 0, `workspace b's write: ${other.output}`);

    // What the host holds for a stays within its 64 MiB image, and workspace.list says so from statfs.
    const usage = new Map((await t.sidecar.service.listWorkspaces()).workspaces.map((w) => [w.workspaceId, w.disk]));
    const diskA = usage.get(a.workspaceId);
    assert.ok(diskA, "workspace a reports its disk");
    assert.ok(diskA.limitBytes <= 64 * MIB && diskA.limitBytes > 48 * MIB, `a's limit ${diskA.limitBytes}`);
    assert.ok(diskA.usedBytes >= diskA.limitBytes - 4 * MIB, `a is full: ${diskA.usedBytes} of ${diskA.limitBytes}`);
    assert.ok(diskA.limitInodes > 0 && diskA.usedInodes > 0 && diskA.usedInodes < diskA.limitInodes);
    const diskB = usage.get(b.workspaceId);
    assert.ok(diskB && diskB.usedBytes >= 40 * MIB && diskB.limitBytes > 80 * MIB, `b's disk ${JSON.stringify(diskB)}`);
    const image = await fs.stat(diskImagePath(await fs.realpath(t.stateDir), a.workspaceId));
    assert.ok(image.blocks * 512 <= 64 * MIB, `a's image holds ${image.blocks * 512} bytes on the host`);

    // Full still, until the file goes; then the next write succeeds.
    assert.notEqual((await writeZeros(t, ensuredA.containerId, "more", 8)).exitCode, 0);
    await execIn(t.docker, ensuredA.containerId, ["/bin/sh", "-c", 'rm -f "$TMPDIR/big" "$TMPDIR/more"']);
    const after = await writeZeros(t, ensuredA.containerId, "again", 32);
    assert.equal(after.exitCode, 0, after.output);
  });

  test("the limit survives a sidecar restart and a container re-creation, each disk attached once", async () => {
    const image = diskImagePath(await fs.realpath(t.stateDir), a.workspaceId);
    assert.equal((await loopDevicesOf(image)).length, 1);

    await t.stop();
    current = await startTestSidecar({ stub, reuse: t, flags: DISK_FLAGS });
    extra.push(current);
    const adopted = await current.sidecar.service.ensureWorkspace(a);
    assert.equal(adopted.created, false, "the running container was adopted");
    assert.equal((await loopDevicesOf(image)).length, 1, "a restarted sidecar mounts nothing twice");
    const afterRestart = await writeZeros(current, adopted.containerId, "big", 100);
    assert.notEqual(afterRestart.exitCode, 0);
    assert.match(afterRestart.output, /No space left on device/);
    await execIn(current.docker, adopted.containerId, ["/bin/sh", "-c", 'rm -f "$TMPDIR/big"']);

    // Other settings: a new container over the same disk, as bounded as before.
    const recreated = await current.sidecar.service.ensureWorkspace({ ...a, resources: { diskMb: 64, memoryMb: 512 } });
    assert.equal(recreated.created, true);
    assert.notEqual(recreated.containerId, adopted.containerId);
    assert.equal((await loopDevicesOf(image)).length, 1);
    const afterRecreate = await writeZeros(current, recreated.containerId, "big", 100);
    assert.match(afterRecreate.output, /No space left on device/);
    const kept = await execIn(current.docker, recreated.containerId, [
      "/bin/sh",
      "-c",
      'test -f "$TMPDIR/again" && echo kept',
    ]);
    assert.equal(kept.stdout.trim(), "kept", "the disk's files are the same across containers");
    await execIn(current.docker, recreated.containerId, ["/bin/sh", "-c", 'rm -f "$TMPDIR/big"']);

    // A disk grows online; it never shrinks, and a refused shrink leaves the container as it was.
    const grown = await current.sidecar.service.ensureWorkspace({ ...a, resources: { diskMb: 160, memoryMb: 512 } });
    const disk = (await current.sidecar.service.listWorkspaces()).workspaces.find(
      (w) => w.workspaceId === a.workspaceId,
    )?.disk;
    assert.ok(disk && disk.limitBytes > 140 * MIB, `grown to ${disk?.limitBytes}`);
    assert.equal((await writeZeros(current, grown.containerId, "big", 100)).exitCode, 0);
    await assert.rejects(
      current.sidecar.service.ensureWorkspace({ ...a, resources: { diskMb: 64 } }),
      (error: unknown) => {
        assert.ok(error instanceof SidecarError);
        assert.equal(error.code, ErrorCode.invalidParams);
        assert.equal(error.data?.field, "resources.diskMb");
        return true;
      },
    );
    const inspect = await current.docker.getContainer(grown.containerId).inspect();
    assert.equal(inspect.State.Running, true, "the refused ensure left the container running");
  });

  test("workspace.remove unmounts and detaches the disk; purgeHome deletes it; nothing stays mounted or attached", async () => {
    const stateDir = await fs.realpath(current.stateDir);
    const imageA = diskImagePath(stateDir, a.workspaceId);
    const imageB = diskImagePath(stateDir, b.workspaceId);
    const rootA = workspacePaths(stateDir, a.workspaceId).root;
    const rootB = workspacePaths(stateDir, b.workspaceId).root;

    // Removed without purge: unmounted and detached, the image kept; the next ensure mounts it again with b's files.
    await current.sidecar.service.removeWorkspace({ workspaceId: b.workspaceId });
    assert.equal(readMounts().has(rootB), false);
    assert.deepEqual(await loopDevicesOf(imageB), []);
    const again = await current.sidecar.service.ensureWorkspace(b);
    const kept = await execIn(current.docker, again.containerId, [
      "/bin/sh",
      "-c",
      'test -f "$TMPDIR/mine" && echo kept',
    ]);
    assert.equal(kept.stdout.trim(), "kept");

    for (const [ws, image, root] of [
      [a, imageA, rootA],
      [b, imageB, rootB],
    ] as const) {
      await current.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId, purgeHome: true });
      assert.equal(readMounts().has(root), false, `${root} unmounted`);
      assert.deepEqual(await loopDevicesOf(image), [], "no loop device left on the image");
      await assert.rejects(fs.stat(image), "the image is deleted");
      await assert.rejects(fs.stat(root), "the workspace root is deleted");
    }
    assert.deepEqual((await current.sidecar.service.health()).disk, {
      enforcement: "image",
      attached: 0,
      requested: "image",
    });
  });

  test("disk limits turned on over a workspace made without them: refused, naming the way out, until it is purged", async () => {
    const plain = await startTestSidecar({ stub });
    extra.push(plain);
    assert.deepEqual((await plain.sidecar.service.health()).disk, {
      enforcement: "none",
      attached: 0,
      requested: "off",
    });
    const ws = await plain.workspace(uniqueId("disk-legacy"));
    const made = await plain.sidecar.service.ensureWorkspace(ws);
    assert.equal(
      (await plain.sidecar.service.listWorkspaces()).workspaces.find((w) => w.workspaceId === ws.workspaceId)?.disk,
      null,
    );
    await execIn(plain.docker, made.containerId, ["/bin/sh", "-c", 'echo old > "$HOME/old.txt"']);

    await plain.stop();
    const limited = await startTestSidecar({ stub, reuse: plain, flags: DISK_FLAGS });
    extra.push(limited);
    await assert.rejects(limited.sidecar.service.ensureWorkspace(ws), (error: unknown) => {
      assert.ok(error instanceof SidecarError);
      assert.equal(error.code, ErrorCode.invalidParams);
      assert.equal(error.data?.field, "workspaceId");
      assert.match(String(error.data?.reason), /purgeHome/);
      return true;
    });
    const root = workspacePaths(await fs.realpath(limited.stateDir), ws.workspaceId).root;
    assert.equal(readMounts().has(root), false, "nothing was mounted over the old files");
    assert.equal(await fs.readFile(path.join(root, "home", "old.txt"), "utf8"), "old\n");

    await limited.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId, purgeHome: true });
    const fresh = await limited.sidecar.service.ensureWorkspace(ws);
    assert.equal(fresh.created, true);
    assert.equal(readMounts().has(root), true, "the purged workspace gets its disk");
    await limited.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId, purgeHome: true });
    assert.equal(readMounts().has(root), false);
  });

  test("a disk above the operator's ceiling is refused before anything is made", async () => {
    const ws = await current.workspace(uniqueId("disk-big"), { resources: { diskMb: 2048 } });
    await assert.rejects(current.sidecar.service.ensureWorkspace(ws), (error: unknown) => {
      assert.ok(error instanceof SidecarError);
      assert.equal(error.code, ErrorCode.notAllowed);
      assert.equal(error.data?.field, "resources.diskMb");
      return true;
    });
    const stateDir = await fs.realpath(current.stateDir);
    await assert.rejects(fs.stat(diskImagePath(stateDir, ws.workspaceId)));
    await assert.rejects(fs.stat(workspacePaths(stateDir, ws.workspaceId).root));
    const containers = await current.docker.listContainers({ all: true, filters: { name: [ws.workspaceId] } });
    assert.deepEqual(containers, []);
  });

  test("the default, auto, on this machine (root, e2fsprogs, loop devices): disks are enforced and health says auto chose them", async () => {
    assert.equal(loadConfig({}, {}).diskEnforcement, "auto", "auto is the default");
    const auto = await startTestSidecar({ stub, defaultDisk: true });
    extra.push(auto);
    assert.equal(auto.config.diskEnforcement, "auto");
    assert.deepEqual((await auto.sidecar.service.health()).disk, {
      enforcement: "image",
      attached: 0,
      requested: "auto",
    });
    assert.deepEqual(
      auto.logLines.filter((line) => /workspace disks are not limited/.test(line)),
      [],
      "no warning: limits are in force",
    );
    assert.ok(
      auto.logLines.some((line) => /workspace disks are limited/.test(line) && /"requested":"auto"/.test(line)),
      auto.logLines.join("\n"),
    );

    const ws = await auto.workspace(uniqueId("disk-auto"), { resources: { diskMb: 64 } });
    const ensured = await auto.sidecar.service.ensureWorkspace(ws);
    const root = workspacePaths(await fs.realpath(auto.stateDir), ws.workspaceId).root;
    assert.equal(readMounts().get(root)?.fsType, "ext4", "the workspace root is its own disk");
    assert.deepEqual((await auto.sidecar.service.health()).disk, {
      enforcement: "image",
      attached: 1,
      requested: "auto",
    });
    const full = await writeZeros(auto, ensured.containerId, "big", 100);
    assert.notEqual(full.exitCode, 0);
    assert.match(full.output, /No space left on device/);

    await auto.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId, purgeHome: true });
    assert.deepEqual(
      await disksLeftUnder(auto.root),
      { mounts: [], loopDevices: [] },
      "removed with purgeHome: nothing mounted or attached",
    );
  });

  test("auto over a workspace made before limits (an upgrade): it runs on without a disk, warned, until purged; then it gets one", async () => {
    const plain = await startTestSidecar({ stub });
    extra.push(plain);
    const ws = await plain.workspace(uniqueId("disk-upgrade"));
    const made = await plain.sidecar.service.ensureWorkspace(ws);
    await execIn(plain.docker, made.containerId, ["/bin/sh", "-c", 'echo old > "$HOME/old.txt"']);
    await plain.stop();

    const auto = await startTestSidecar({ stub, reuse: plain, defaultDisk: true });
    extra.push(auto);
    const adopted = await auto.sidecar.service.ensureWorkspace(ws);
    assert.equal(adopted.containerId, made.containerId, "the same container, adopted");
    const root = workspacePaths(await fs.realpath(auto.stateDir), ws.workspaceId).root;
    assert.equal(readMounts().has(root), false, "nothing mounted over the old files");
    assert.equal(
      (await auto.sidecar.service.listWorkspaces()).workspaces.find((w) => w.workspaceId === ws.workspaceId)?.disk,
      null,
    );
    assert.ok(
      auto.logLines.some(
        (line) =>
          /"level":"warn"/.test(line) &&
          /files from before disk limits: it runs without a disk limit until it is removed with purgeHome/.test(line) &&
          line.includes(ws.workspaceId),
      ),
      auto.logLines.join("\n"),
    );
    const kept = await execIn(auto.docker, adopted.containerId, ["/bin/sh", "-c", 'cat "$HOME/old.txt"']);
    assert.equal(kept.stdout.trim(), "old");

    await auto.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId, purgeHome: true });
    const fresh = await auto.sidecar.service.ensureWorkspace(ws);
    assert.equal(fresh.created, true);
    assert.equal(readMounts().get(root)?.fsType, "ext4", "purged, it gets its disk");
    await auto.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId, purgeHome: true });
    assert.deepEqual(await disksLeftUnder(auto.root), { mounts: [], loopDevices: [] });
  });
});
