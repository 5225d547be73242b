/**
 * The sidecar in its own container, set up as compose/compose.yaml sets it up: the Docker socket
 * mounted into the sidecar only, the RPC socket's directory shared with its client (here the test,
 * through a bind mount of a host dir), the state dir and the workspace root at the same absolute
 * paths as on the host, the settings and a (fake) key in the environment, no network of its own.
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
import { createDockerClient, type Docker } from "../../src/docker/engine.js";
import { LOCAL_BASE_IMAGE } from "../../src/docker/base-image.js";
import { findPackageRoot } from "../../src/docker/build-context.js";
import { Labels } from "../../src/docker/labels.js";
import { reapLabelled } from "../../src/docker/reaper.js";
import { checkSelfMounts } from "../../src/docker/self-mounts.js";
import { ErrorCode, type SidecarError } from "../../src/errors.js";
import { SidecarClient } from "../../src/rpc/client.js";
import { probeSocket } from "../../src/rpc/socket.js";
import { containerName } from "../../src/workspace/spec.js";
import type { ResponsesStub } from "../support/responses-stub.js";
import { INSTANCE_LABEL, TEST_API_KEY, TEST_GID, TEST_NETWORK, TEST_RUN_ID, TEST_UID, startGatewayStub, testImage } from "../support/sidecar.js";
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
}

/** The sidecar service of compose/compose.yaml, as create options. */
function sidecarContainer(image: string, options: SidecarContainerOptions): Parameters<Docker["createContainer"]>[0] {
  return {
    name: options.name,
    Image: image,
    Cmd: ["serve"],
    Env: [
      `ALIVE_CODEX_SOCKET=${CONTAINER_RUN_DIR}/sidecar.sock`,
      `ALIVE_CODEX_STATE_DIR=${options.stateDir.container}`,
      `ALIVE_CODEX_WORKSPACE_ROOTS=${options.workspaceRoot}`,
      `ALIVE_CODEX_IMAGE=${testImage()}`,
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
        `${options.stateDir.host}:${options.stateDir.container}`,
        `${options.workspaceRoot}:${options.workspaceRoot}`,
      ],
      RestartPolicy: { Name: "no" },
    },
  };
}


async function containerLogs(id: string): Promise<string> {
  return demuxFrames((await docker.getContainer(id).logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer);
}

async function isRunning(id: string): Promise<boolean> {
  return (await docker.getContainer(id).inspect()).State.Running;
}

/** Builds (or reuses) the sidecar image through the script; returns its immutable reference and what the script said. */
async function buildSidecarImage(): Promise<{ ref: string; summary: string }> {
  const script = path.join(findPackageRoot(), "scripts", "build-sidecar-image.mjs");
  const result = await execa(process.execPath, [script, "--base-image", process.env.ALIVE_CODEX_BASE_IMAGE ?? LOCAL_BASE_IMAGE], {
    reject: false,
    timeout: BUILD_TIMEOUT_MS,
    ...(process.env.ALIVE_CODEX_TEST_DEBUG ? { stderr: "inherit" as const } : {}),
  });
  const ref = String(result.stdout).trim().split("\n").at(-1) ?? "";
  if (result.exitCode !== 0 || !/^alive-codex-sidecar:\S+$/.test(ref)) {
    throw new Error(`scripts/build-sidecar-image.mjs failed (exit ${result.exitCode}):\n${String(result.stderr).split("\n").slice(-30).join("\n")}`);
  }
  const summary = String(result.stderr ?? "").trim().split("\n").at(-1) ?? "";
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

      const container = await docker.createContainer(
        sidecarContainer(image.ref, {
          name: `alive-codex-compose-sidecar-${instance}`,
          runDir,
          stateDir: { host: stateDir, container: stateDir },
          workspaceRoot,
          stubUrl: stub.baseUrl,
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
    await client?.close().catch(() => undefined);
    // The sidecar's own container carries the instance label; the workspace containers it made carry
    // its state dir. Both are reaped, waiting until the engine lists none of them.
    await reapLabelled(docker, [`${INSTANCE_LABEL}=${instance}`], { deadlineMs: 30_000 });
    if (stateDir) await reapLabelled(docker, [`${Labels.stateDir}=${stateDir}`], { deadlineMs: 30_000 });
    await Promise.all(workspaceIds.map((id) => docker.getContainer(containerName(id)).remove({ force: true, v: true }).catch(() => undefined)));
    await stub?.close();
    if (root) await fs.rm(root, { recursive: true, force: true });
  });

  test("a client on the shared socket runs a full turn; the file the model's command writes is on the host, owned by the workspace uid", async (t) => {
    t.diagnostic(`sidecar image ${image.ref}: ${image.summary}`);
    assert.ok(client);
    const health = await client.health();
    assert.equal(health.docker.reachable, true, "the sidecar reaches the engine through the mounted socket");
    assert.deepEqual(health.image, { ref: testImage(), present: true });
    // The default, auto, in a container as compose runs it (no CAP_SYS_ADMIN, no loop devices): off, saying why, and one warning.
    assert.equal(health.disk?.enforcement, "none", JSON.stringify(health.disk));
    assert.equal(health.disk?.requested, "auto");
    assert.match((health.disk?.missing ?? []).join("; "), /lacks CAP_SYS_ADMIN.*\/dev\/loop-control.*propagation rprivate/);
    const diskWarnings = (await containerLogs(sidecarId)).split("\n").filter((line) => /workspace disks/.test(line));
    assert.equal(diskWarnings.length, 1, diskWarnings.join("\n"));
    assert.match(diskWarnings[0] ?? "", /"level":"warn".*workspace disks are not limited.*ALIVE_CODEX_DISK=auto: this host cannot enforce them/);

    const workspaceId = `compose-${randomBytes(4).toString("hex")}`;
    workspaceIds.push(workspaceId);
    const workspacePath = path.join(workspaceRoot, workspaceId);
    await fs.mkdir(workspacePath);
    await fs.chown(workspacePath, TEST_UID, TEST_GID);
    const ensured = await client.ensureWorkspace({ workspaceId, userId: `user-${workspaceId}`, uid: TEST_UID, gid: TEST_GID, workspacePath });
    assert.ok(ensured.containerId);
    const home = path.join(stateDir, "workspaces", workspaceId, "home");
    assert.equal((await fs.stat(home)).uid, TEST_UID, "the containerised sidecar chowned the HOME it made under the host's state dir");

    stub.script({ kind: "command", cmd: "echo made-in-compose > compose.txt" }, { kind: "message", text: "file written" });
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
    assert.equal(stub.requests[0]?.headers.authorization, `Bearer ${TEST_API_KEY}`, "codex got the key from the sidecar's environment");
  });

  test("checkSelfMounts, given the sidecar container's id, accepts its identity mounts and names a path it lacks", async () => {
    // The engine binds rprivate unless told otherwise: a workspace disk mounted in the container would not reach it.
    assert.deepEqual(await checkSelfMounts(docker, { stateDir, workspaceRoots: [workspaceRoot] }, { containerId: sidecarId }), { containerId: sidecarId, stateDirPropagation: "rprivate" });
    await checkSelfMounts(docker, { stateDir: path.join(stateDir, "workspaces"), workspaceRoots: [path.join(workspaceRoot, "below")] }, { containerId: sidecarId });
    await assert.rejects(
      checkSelfMounts(docker, { stateDir, workspaceRoots: [workspaceRoot, "/srv/not-mounted"] }, { containerId: sidecarId }),
      (error: SidecarError) => error.code === ErrorCode.notAllowed && error.message.includes("/srv/not-mounted is not mounted into the sidecar's container"),
    );
    await assert.rejects(
      checkSelfMounts(docker, { stateDir, workspaceRoots: [workspaceRoot] }, { containerId: `alive-codex-no-such-${instance}` }),
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
    assert.notEqual(outcome.exitCode, null, `the sidecar started serving with its state dir at ${containerPath} from host ${elsewhere} (is checkSelfMounts wired into startSidecar?); log:\n${logs}`);
    assert.notEqual(outcome.exitCode, 0, logs);
    assert.match(logs, /ALIVE_CODEX_STATE_DIR/, logs);
    assert.ok(logs.includes(`${containerPath} is host path ${elsewhere}`), `the message names the path and what is mounted there:\n${logs}`);
    assert.match(logs, /same absolute path/, logs);
    assert.ok(logs.includes(`"${elsewhere}:${elsewhere}"`), `the message shows the mount that fixes it:\n${logs}`);
    assert.deepEqual(await fs.readdir(elsewhere), [], "it refused before writing anything to the state dir");
  });
});
