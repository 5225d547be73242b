/**
 * The sidecar in its own container, set up as compose/compose.yaml sets it up: the Docker socket
 * mounted into the sidecar only, the RPC socket's directory shared with its client (here the test,
 * through a bind mount of a host dir), the state dir and the workspace root at the same absolute
 * paths as on the host, the settings and a (fake) key in the environment, and what disk limits need
 * (CAP_SYS_ADMIN, AppArmor unconfined, the loop devices through the host's /dev, the state dir bound
 * rshared), so that ALIVE_CODEX_DISK=auto settles on "image" there.
 *
 * The containers are made through dockerode, not `docker compose`: neither compose v2 nor
 * docker-compose v1 is needed on the test machine. The image comes from
 * scripts/build-sidecar-image.mjs (reused while its inputs are unchanged; a first build sends
 * ~500 MB of context and takes about half a minute). Workspace containers use
 * ALIVE_CODEX_TEST_IMAGE, so the runtime image is not rebuilt inside the sidecar.
 */
import { demuxFrames } from "../../src/docker/exec.js";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { execa } from "execa";
import type { ThreadEvent } from "@openai/codex-sdk";
import { createDockerClient, type Docker } from "../../src/docker/engine.js";
import { LOCAL_BASE_IMAGE } from "../../src/docker/base-image.js";
import { findPackageRoot } from "../../src/docker/build-context.js";
import { Labels } from "../../src/docker/labels.js";
import { reapLabelled } from "../../src/docker/reaper.js";
import { checkSelfMounts } from "../../src/docker/self-mounts.js";
import { ErrorCode, type SidecarError } from "../../src/errors.js";
import { SidecarClient } from "../../src/rpc/client.js";
import { probeSocket } from "../../src/rpc/socket.js";
import { describeDiskHealth } from "../../src/shared/disk-settings.js";
import { disksLeftUnder, releaseDisksUnder } from "../../src/workspace/disk-leftovers.js";
import { readMounts } from "../../src/workspace/mountinfo.js";
import { containerName } from "../../src/workspace/spec.js";
import type { ResponsesStub } from "../support/responses-stub.js";
import {
  INSTANCE_LABEL,
  TEST_API_KEY,
  TEST_GID,
  TEST_NETWORK,
  TEST_RUN_ID,
  TEST_UID,
  TEST_USER_ID,
  startGatewayStub,
  testImage,
} from "../support/sidecar.js";
import { waitFor } from "../support/wait.js";

/** Where the RPC socket's shared directory is mounted in the sidecar (compose: the alive-codex-run volume). */
const CONTAINER_RUN_DIR = "/run/alive-codex";
const DOCKER_SOCKET = "/var/run/docker.sock";
const BUILD_TIMEOUT_MS = 15 * 60_000;
const START_TIMEOUT_MS = 60_000;

const docker: Docker = createDockerClient(process.env.DOCKER_HOST ?? `unix://${DOCKER_SOCKET}`);
const instance = randomBytes(6).toString("hex");

interface SidecarContainerOptions {
  name: string;
  /** Host dir shared with the test; mounted at /run/alive-codex. */
  runDir: string;
  stateDir: { host: string; container: string };
  workspaceRoot: string;
  stubUrl: string;
  /** compose.yaml's disk-limit grants (the state dir's host mount must then be shared: makeSharedMount). */
  diskLimits: boolean;
}

/** The sidecar service of compose/compose.yaml, as create options. */
function sidecarContainer(image: string, options: SidecarContainerOptions): Parameters<Docker["createContainer"]>[0] {
  const stateBind = `${options.stateDir.host}:${options.stateDir.container}${options.diskLimits ? ":rshared" : ""}`;
  return {
    name: options.name,
    Image: image,
    Cmd: ["serve"],
    Env: [
      `ALIVE_CODEX_SOCKET=${CONTAINER_RUN_DIR}/sidecar.sock`,
      `ALIVE_CODEX_STATE_DIR=${options.stateDir.container}`,
      `ALIVE_CODEX_WORKSPACE_ROOTS=${options.workspaceRoot}`,
      `ALIVE_CODEX_IMAGE=${testImage()}`,
      // No longer used: kept so this runs a configuration from before (the sidecar warns and goes on).
      `ALIVE_CODEX_NETWORK=${TEST_NETWORK}`,
      `ALIVE_CODEX_EXTRA_LABELS=${Labels.runId}=${TEST_RUN_ID}`,
      `ALIVE_CODEX_UID_RANGE=10000-60000`,
      `ALIVE_CODEX_GID_RANGE=10000-60000`,
      `ALIVE_CODEX_MODEL=gpt-5.5`,
      `ALIVE_CODEX_IDLE_TIMEOUT=0`,
      `ALIVE_CODEX_LOG_LEVEL=debug`,
      `OPENAI_BASE_URL=${options.stubUrl}`,
      `CODEX_API_KEY=${TEST_API_KEY}`,
    ],
    Labels: { [Labels.runId]: TEST_RUN_ID, [INSTANCE_LABEL]: instance },
    HostConfig: {
      Init: true,
      // The sidecar reaches the model API (here the stub on the test bridge) for its workspaces, which have no network.
      NetworkMode: TEST_NETWORK,
      Binds: [
        `${DOCKER_SOCKET}:${DOCKER_SOCKET}`,
        `${options.runDir}:${CONTAINER_RUN_DIR}`,
        stateBind,
        `${options.workspaceRoot}:${options.workspaceRoot}`,
        ...(options.diskLimits ? ["/dev:/dev"] : []),
      ],
      // compose.yaml's cap_add, security_opt and device_cgroup_rules.
      ...(options.diskLimits
        ? {
            CapAdd: ["SYS_ADMIN"],
            SecurityOpt: ["apparmor=unconfined"],
            DeviceCgroupRules: ["c 10:237 rwm", "b 7:* rwm"],
          }
        : {}),
      RestartPolicy: { Name: "no" },
    },
  };
}

async function containerLogs(id: string): Promise<string> {
  return demuxFrames(
    (await docker.getContainer(id).logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer,
  );
}

/**
 * Makes `dir` a shared mount of its own, as docs/compose.md tells an operator whose host mounts / private:
 * the engine refuses an rshared bind of a source whose mount is not shared (this test machine's / is private).
 */
async function makeSharedMount(dir: string): Promise<void> {
  await execa("mount", ["--bind", dir, dir]);
  await execa("mount", ["--make-rshared", dir]);
}

/** Writes `mb` MiB of zeros to $TMPDIR/name as the workspace user; dd's exit code and what it said. */
async function writeZeros(
  containerId: string,
  name: string,
  mb: number,
): Promise<{ exitCode: number | null; output: string }> {
  const { runExec } = await import("../../src/docker/exec.js");
  const result = await runExec(docker, containerId, {
    cmd: ["/bin/sh", "-c", `dd if=/dev/zero of="$TMPDIR/${name}" bs=1M count=${mb} 2>&1; echo "exit=$?"`],
    user: `${TEST_UID}:${TEST_GID}`,
  });
  const exit = /exit=(\d+)/.exec(result.stdout)?.[1];
  return { exitCode: exit === undefined ? null : Number(exit), output: result.stdout + result.stderr };
}

async function isRunning(id: string): Promise<boolean> {
  return (await docker.getContainer(id).inspect()).State.Running;
}

/** Builds (or reuses) the sidecar image through the script; returns its immutable reference and what the script said. */
async function buildSidecarImage(): Promise<{ ref: string; summary: string }> {
  const script = path.join(findPackageRoot(), "scripts", "build-sidecar-image.mjs");
  const result = await execa(
    process.execPath,
    [script, "--base-image", process.env.ALIVE_CODEX_BASE_IMAGE ?? LOCAL_BASE_IMAGE],
    {
      reject: false,
      timeout: BUILD_TIMEOUT_MS,
      ...(process.env.ALIVE_CODEX_TEST_DEBUG ? { stderr: "inherit" as const } : {}),
    },
  );
  const ref = String(result.stdout).trim().split("\n").at(-1) ?? "";
  if (result.exitCode !== 0 || !/^alive-codex-sidecar:\S+$/.test(ref)) {
    throw new Error(
      `scripts/build-sidecar-image.mjs failed (exit ${result.exitCode}):\n${String(result.stderr).split("\n").slice(-30).join("\n")}`,
    );
  }
  const summary =
    String(result.stderr ?? "")
      .trim()
      .split("\n")
      .at(-1) ?? "";
  return { ref, summary };
}

describe("the sidecar in a container, as compose/compose.yaml runs it", () => {
  let stub: ResponsesStub;
  let image: { ref: string; summary: string };
  let root: string;
  let stateDir: string;
  let workspaceRoot: string;
  let runDir: string;
  let sidecarId = "";
  let client: SidecarClient | undefined;
  const workspaceIds: string[] = [];

  before(
    async () => {
      stub = await startGatewayStub();
      image = await buildSidecarImage();
      root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-compose-"));
      await fs.chmod(root, 0o755);
      stateDir = path.join(root, "state");
      workspaceRoot = path.join(root, "workspaces");
      runDir = path.join(root, "run");
      for (const dir of [stateDir, workspaceRoot, runDir]) await fs.mkdir(dir, { recursive: true, mode: 0o755 });
      await makeSharedMount(stateDir);

      const container = await docker.createContainer(
        sidecarContainer(image.ref, {
          name: `alive-codex-compose-sidecar-${instance}`,
          runDir,
          stateDir: { host: stateDir, container: stateDir },
          workspaceRoot,
          stubUrl: stub.baseUrl,
          diskLimits: true,
        }),
      );
      sidecarId = container.id;
      await container.start();
      const socketPath = path.join(runDir, "sidecar.sock");
      const ready = await waitFor(
        async () => {
          if (!(await isRunning(sidecarId))) return "exited" as const;
          return (await probeSocket(socketPath)) === "live" ? SidecarClient.connect(socketPath) : null;
        },
        { timeoutMs: START_TIMEOUT_MS, intervalMs: 100, what: `the sidecar container to listen on ${socketPath}` },
      ).catch((error: unknown) => error as Error);
      if (!(ready instanceof SidecarClient)) {
        const why = ready === "exited" ? "the sidecar container exited" : ready.message;
        throw new Error(`${why}; its log:\n${await containerLogs(sidecarId)}`);
      }
      client = ready;
    },
    { timeout: BUILD_TIMEOUT_MS + START_TIMEOUT_MS },
  );

  after(async () => {
    // The workspaces go through the sidecar, as an operator's would: their disks unmounted and detached by it.
    const removals: string[] = [];
    for (const id of workspaceIds) {
      await client
        ?.removeWorkspace(id, { purgeHome: true })
        .catch((error: unknown) => removals.push(`${id}: ${(error as Error).message}`));
    }
    await client?.close().catch(() => undefined);
    // The sidecar's own container carries the instance label; the workspace containers it made carry
    // its state dir. Both are reaped, waiting until the engine lists none of them.
    await reapLabelled(docker, [`${INSTANCE_LABEL}=${instance}`], { deadlineMs: 30_000 });
    if (stateDir) await reapLabelled(docker, [`${Labels.stateDir}=${stateDir}`], { deadlineMs: 30_000 });
    await Promise.all(
      workspaceIds.map((id) =>
        docker
          .getContainer(containerName(id))
          .remove({ force: true, v: true })
          .catch(() => undefined),
      ),
    );
    await stub?.close();
    // What workspace.remove left of the disks (nothing, if it did its job), then the backstop: every
    // mount under the root (the disks, the state dir's own shared bind) and loop device backed there.
    const left = stateDir ? await disksLeftUnder(path.join(stateDir, "workspaces")) : { mounts: [], loopDevices: [] };
    const leftImages = stateDir ? (await disksLeftUnder(path.join(stateDir, "disks"))).loopDevices : [];
    if (root) await releaseDisksUnder(root);
    if (root) await fs.rm(root, { recursive: true, force: true });
    assert.deepEqual(removals, [], "workspace.remove through the sidecar");
    assert.deepEqual(
      { ...left, loopDevices: [...left.loopDevices, ...leftImages] },
      { mounts: [], loopDevices: [] },
      "workspace.remove left a disk mounted or attached",
    );
  });

  test("a client on the shared socket runs a full turn; the file the model's command writes is on the host, owned by the workspace uid", async (t) => {
    t.diagnostic(`sidecar image ${image.ref}: ${image.summary}`);
    assert.ok(client);
    const health = await client.health();
    assert.equal(health.docker.reachable, true, "the sidecar reaches the engine through the mounted socket");
    assert.deepEqual(health.image, { ref: testImage(), present: true });
    // The default, auto, in a container as compose runs it (CAP_SYS_ADMIN, the loop devices, rshared): limited, and no warning.
    assert.deepEqual(
      health.disk,
      { enforcement: "image", attached: 0, requested: "auto" },
      JSON.stringify(health.disk),
    );
    assert.match(describeDiskHealth(health.disk), /^limited /);
    const diskWarnings = (await containerLogs(sidecarId))
      .split("\n")
      .filter((line) => /workspace disks are not limited/.test(line));
    assert.deepEqual(diskWarnings, []);

    const workspaceId = `compose-${randomBytes(4).toString("hex")}`;
    workspaceIds.push(workspaceId);
    const workspacePath = path.join(workspaceRoot, workspaceId);
    await fs.mkdir(workspacePath);
    await fs.chown(workspacePath, TEST_UID, TEST_GID);
    const ensured = await client.ensureWorkspace({
      workspaceId,
      userId: TEST_USER_ID,
      uid: TEST_UID,
      gid: TEST_GID,
      workspacePath,
    });
    assert.ok(ensured.containerId);
    const home = path.join(stateDir, "workspaces", workspaceId, "home");
    assert.equal(
      (await fs.stat(home)).uid,
      TEST_UID,
      "the containerised sidecar chowned the HOME it made under the host's state dir",
    );

    stub.script(
      { kind: "command", cmd: "echo made-in-compose > compose.txt" },
      { kind: "message", text: "file written" },
    );
    const run = client.runTurn({ workspaceId, input: "write compose.txt" });
    const types: string[] = [];
    for await (const { event } of run) types.push(event.type);
    const result = await run.result;
    assert.equal(result.status, "completed", JSON.stringify(result));
    assert.equal(result.finalResponse, "file written");
    assert.equal(types.at(-1), "turn.completed", types.join(","));

    const file = path.join(workspacePath, "compose.txt");
    assert.equal((await fs.readFile(file, "utf8")).trim(), "made-in-compose");
    assert.equal((await fs.stat(file)).uid, TEST_UID);
    assert.equal(
      stub.requests[0]?.headers.authorization,
      `Bearer ${TEST_API_KEY}`,
      "codex got the key from the sidecar's environment",
    );
  });

  test("a workspace made through the containerised sidecar hits ENOSPC at its limit; its disk is a mount the host (and the engine) sees; remove releases it", async () => {
    assert.ok(client);
    const workspaceId = `compose-disk-${randomBytes(4).toString("hex")}`;
    workspaceIds.push(workspaceId);
    const workspacePath = path.join(workspaceRoot, workspaceId);
    await fs.mkdir(workspacePath);
    await fs.chown(workspacePath, TEST_UID, TEST_GID);
    const ensured = await client.ensureWorkspace({
      workspaceId,
      userId: TEST_USER_ID,
      uid: TEST_UID,
      gid: TEST_GID,
      workspacePath,
      resources: { diskMb: 64 },
    });
    const health = await client.health();
    assert.equal(health.disk?.enforcement, "image");
    assert.ok((health.disk?.attached ?? 0) >= 1, JSON.stringify(health.disk));
    // rshared carried the sidecar's mount to the host: the engine bind-mounted the disk, not the empty dir under it.
    const hostMount = readMounts().get(path.join(await fs.realpath(stateDir), "workspaces", workspaceId));
    assert.ok(hostMount, "the workspace's disk is mounted on the host, under the state dir");
    assert.equal(hostMount.fsType, "ext4");
    const listed = (await client.listWorkspaces()).workspaces.find((w) => w.workspaceId === workspaceId);
    assert.ok(listed?.disk && listed.disk.limitBytes <= 64 * 1024 * 1024, JSON.stringify(listed?.disk));

    // A turn whose command fills TMPDIR past 64 MiB: dd gets ENOSPC, the turn completes normally.
    stub.script(
      { kind: "command", cmd: 'dd if=/dev/zero of="$TMPDIR/big" bs=1M count=200; echo "dd exit $?"' },
      { kind: "message", text: "disk full, as expected" },
    );
    const run = client.runTurn({ workspaceId, input: "fill the disk" });
    const events: ThreadEvent[] = [];
    for await (const { event } of run) if (!event.type.startsWith("sidecar.")) events.push(event as ThreadEvent);
    const result = await run.result;
    assert.equal(result.status, "completed", JSON.stringify(result.error));
    const command = events.find(
      (e): e is Extract<ThreadEvent, { type: "item.completed" }> =>
        e.type === "item.completed" && e.item.type === "command_execution",
    );
    assert.ok(command && command.item.type === "command_execution", "the command ran");
    assert.match(command.item.aggregated_output, /No space left on device/);
    assert.match(command.item.aggregated_output, /dd exit 1/);
    // Still full for a write from outside the turn; deleting frees it.
    assert.notEqual((await writeZeros(ensured.containerId, "more", 8)).exitCode, 0);

    // workspace.remove through the sidecar unmounts the disk and detaches its loop device.
    assert.deepEqual(await client.removeWorkspace(workspaceId, { purgeHome: true }), { removed: true });
    workspaceIds.splice(workspaceIds.indexOf(workspaceId), 1);
    assert.equal(readMounts().has(hostMount.mountPoint), false, "the disk is unmounted on the host too");
    assert.deepEqual((await disksLeftUnder(path.join(stateDir, "workspaces", workspaceId))).mounts, []);
  });

  test("checkSelfMounts, given the sidecar container's id, accepts its identity mounts and names a path it lacks", async () => {
    // compose.yaml binds the state dir rshared: a workspace disk mounted in the container reaches the engine.
    assert.deepEqual(
      await checkSelfMounts(docker, { stateDir, workspaceRoots: [workspaceRoot] }, { containerId: sidecarId }),
      { containerId: sidecarId, stateDirPropagation: "rshared" },
    );
    await checkSelfMounts(
      docker,
      { stateDir: path.join(stateDir, "workspaces"), workspaceRoots: [path.join(workspaceRoot, "below")] },
      { containerId: sidecarId },
    );
    await assert.rejects(
      checkSelfMounts(
        docker,
        { stateDir, workspaceRoots: [workspaceRoot, "/srv/not-mounted"] },
        { containerId: sidecarId },
      ),
      (error: SidecarError) =>
        error.code === ErrorCode.notAllowed &&
        error.message.includes("/srv/not-mounted is not mounted into the sidecar's container"),
    );
    await assert.rejects(
      checkSelfMounts(
        docker,
        { stateDir, workspaceRoots: [workspaceRoot] },
        { containerId: `alive-codex-no-such-${instance}` },
      ),
      (error: SidecarError) => error.code === ErrorCode.notAllowed && error.data?.reason === "no such container",
    );
  });

  test("a sidecar whose state dir is mounted at a different path than on the host exits non-zero and says what to mount", async () => {
    const elsewhere = path.join(root, "state-elsewhere");
    const otherRunDir = path.join(root, "run-mismatch");
    await fs.mkdir(elsewhere, { recursive: true });
    await fs.mkdir(otherRunDir, { recursive: true });
    const containerPath = "/var/lib/alive-codex";
    const container = await docker.createContainer(
      sidecarContainer(image.ref, {
        name: `alive-codex-compose-mismatch-${instance}`,
        runDir: otherRunDir,
        stateDir: { host: elsewhere, container: containerPath },
        workspaceRoot,
        stubUrl: stub.baseUrl,
        // It must refuse on the paths alone; elsewhere is no shared mount, so no rshared bind of it either.
        diskLimits: false,
      }),
    );
    await container.start();
    const socketPath = path.join(otherRunDir, "sidecar.sock");
    // It must stop before it serves: a live socket means the check did not run.
    const outcome = await waitFor(
      async () => {
        const state = (await container.inspect()).State;
        if (state.Status === "exited" || state.Status === "dead") return { exitCode: state.ExitCode as number | null };
        if ((await probeSocket(socketPath)) === "live") return { exitCode: null };
        return null;
      },
      { timeoutMs: START_TIMEOUT_MS, intervalMs: 100, what: "the mismatched sidecar to exit" },
    );
    const logs = await containerLogs(container.id);
    assert.notEqual(
      outcome.exitCode,
      null,
      `the sidecar started serving with its state dir at ${containerPath} from host ${elsewhere} (is checkSelfMounts wired into startSidecar?); log:\n${logs}`,
    );
    assert.notEqual(outcome.exitCode, 0, logs);
    assert.match(logs, /ALIVE_CODEX_STATE_DIR/, logs);
    assert.ok(
      logs.includes(`${containerPath} is host path ${elsewhere}`),
      `the message names the path and what is mounted there:\n${logs}`,
    );
    assert.match(logs, /same absolute path/, logs);
    assert.ok(logs.includes(`"${elsewhere}:${elsewhere}"`), `the message shows the mount that fixes it:\n${logs}`);
    assert.deepEqual(await fs.readdir(elsewhere), [], "it refused before writing anything to the state dir");
  });
});
