/**
 * A real sidecar for integration tests: real engine, real runtime image, temporary state dir and
 * workspace root, every container labelled with the run id and a per-instance id, and removed by
 * `cleanup()`.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { isOwnProcess, listContainerProcesses, type ClassifiedProcess } from "../../src/codex/container-processes.js";
import { loadConfig, type SidecarConfig } from "../../src/config.js";
import { DockerEngine } from "../../src/docker/docker-engine.js";
import { createDockerClient, type Docker } from "../../src/docker/engine.js";
import { ExecStreams } from "../../src/docker/exec-streams.js";
import { Labels } from "../../src/docker/labels.js";
import { reapLabelled } from "../../src/docker/reaper.js";
import { createLogger, type Logger } from "../../src/log.js";
import { startSidecar, type RunningSidecar } from "../../src/sidecar.js";
import type { WorkspaceParams } from "../../src/service.js";
import { ensureBridgeNetwork } from "../../src/docker/networks.js";
import { releaseDisksUnder } from "../../src/workspace/disk-leftovers.js";
import { ResponsesStub } from "./responses-stub.js";

export const TEST_RUN_ID = process.env.ALIVE_CODEX_TEST_RUN_ID ?? "local";
/** Each run has its own network, so two runs (or a run and a killed one's leftovers) never share one. */
export const TEST_NETWORK = process.env.ALIVE_CODEX_TEST_NETWORK ?? `alive-codex-test-${TEST_RUN_ID}`;
export const TEST_API_KEY = "sk-test-alive-0123456789abcdef";
export const INSTANCE_LABEL = "dev.alive.codex.test-instance";
export const TEST_UID = 10001;
/**
 * The user of every workspace `workspace()` makes unless a test names another: a uid serves one
 * userId at a time (src/workspace/uid-holders.ts), so all of TEST_UID's workspaces are this user's.
 */
export const TEST_USER_ID = "test-user";
/** In each test sidecar's root: the run id that made it (scripts/test.mjs reads it). */
export const RUN_ID_FILE = "run-id";
export const TEST_GID = 10001;

/** The codex version the suite runs against (scripts/test.mjs built the image with it); null: the SDK's. */
export const TEST_CODEX_VERSION = process.env.ALIVE_CODEX_TEST_CODEX_VERSION || null;

export function testImage(): string {
  const image = process.env.ALIVE_CODEX_TEST_IMAGE;
  if (!image)
    throw new Error(
      "ALIVE_CODEX_TEST_IMAGE is not set: run the tests through `npm test` (scripts/test.mjs builds the image)",
    );
  return image;
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

export interface TestSidecar {
  sidecar: RunningSidecar;
  config: SidecarConfig;
  docker: Docker;
  /** Value of INSTANCE_LABEL on this sidecar's containers. */
  instance: string;
  root: string;
  stateDir: string;
  workspaceRoot: string;
  logLines: string[];
  /** Makes a workspace dir under the root owned by the test uid and returns ensure params for it (user TEST_USER_ID unless `extra` names one). */
  workspace(name?: string, extra?: Partial<WorkspaceParams>): Promise<WorkspaceParams>;
  /** Stops this sidecar without removing anything (as a crash would leave things). */
  stop(): Promise<void>;
  cleanup(): Promise<void>;
}

export interface TestSidecarOptions {
  stub?: ResponsesStub;
  flags?: Record<string, string>;
  /** Reuse the dirs (and instance label) of an earlier instance: a restarted sidecar. */
  reuse?: TestSidecar;
  /** Leave ALIVE_CODEX_DISK at its default (auto) instead of pinning it off. */
  defaultDisk?: boolean;
}

/** The gateway of the test bridge, where a stub must listen for containers to reach it. */
export async function testGateway(docker: Docker): Promise<string> {
  const network = await ensureBridgeNetwork(docker, TEST_NETWORK, { [Labels.runId]: TEST_RUN_ID });
  if (!network.gateway) throw new Error(`network ${TEST_NETWORK} has no gateway`);
  return network.gateway;
}

/** A Responses API stub listening on the test bridge's gateway. */
export async function startGatewayStub(): Promise<ResponsesStub> {
  const docker = createDockerClient("unix:///var/run/docker.sock");
  return ResponsesStub.start({ host: await testGateway(docker) });
}

export async function startTestSidecar(options: TestSidecarOptions = {}): Promise<TestSidecar> {
  const root = options.reuse?.root ?? (await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-test-")));
  const stateDir = path.join(root, "state");
  const workspaceRoot = path.join(root, "workspaces");
  await fs.mkdir(workspaceRoot, { recursive: true, mode: 0o755 });
  await fs.chmod(root, 0o755);
  // Whose root this is: scripts/test.mjs releases the workspace disks left under the roots of runs that were killed.
  await fs.writeFile(path.join(root, RUN_ID_FILE), TEST_RUN_ID);
  const instance = options.reuse?.instance ?? randomBytes(6).toString("hex");
  const flags: Record<string, string> = {
    "--socket": path.join(root, "sidecar.sock"),
    "--state-dir": stateDir,
    "--workspace-roots": workspaceRoot,
    "--uid-range": "10000-60000",
    "--gid-range": "10000-60000",
    "--image": testImage(),
    "--codex-api-key": TEST_API_KEY,
    "--model": "gpt-5.5",
    "--idle-timeout": "0",
    "--log-level": "debug",
    // Workspace disks only where a test asks for them (disk.test.ts): the default, auto, would mount
    // an image per workspace on this machine (root, loop devices), slower and more to clean up.
    ...(options.defaultDisk ? {} : { "--disk": "off" }),
    ...(options.stub ? { "--openai-base-url": options.stub.baseUrl } : {}),
    // The image was built with it: the sidecar checks at start-up that the image carries it.
    ...(TEST_CODEX_VERSION !== null ? { "--codex-version": TEST_CODEX_VERSION } : {}),
    ...options.flags,
  };
  // The sidecar's own environment is never consulted here: flags only.
  const config = loadConfig(flags, {});
  const logLines: string[] = [];
  const log: Logger = createLogger({
    level: "debug",
    secrets: [TEST_API_KEY],
    write: (line) => {
      logLines.push(line);
      if (process.env.ALIVE_CODEX_TEST_DEBUG) process.stderr.write(`${line}\n`);
    },
  });
  const docker = createDockerClient(config.dockerHost);
  const sidecar = await startSidecar(config, log, {
    extraLabels: { [Labels.runId]: TEST_RUN_ID, [INSTANCE_LABEL]: instance },
  });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await sidecar.close(0);
  };
  return {
    sidecar,
    config,
    docker,
    instance,
    root,
    stateDir,
    workspaceRoot,
    logLines,
    async workspace(name = uniqueId("ws"), extra = {}) {
      const dir = path.join(workspaceRoot, name);
      await fs.mkdir(dir, { recursive: true });
      const uid = extra.uid ?? TEST_UID;
      const gid = extra.gid ?? TEST_GID;
      await fs.chown(dir, uid, gid);
      return { workspaceId: name, userId: TEST_USER_ID, uid, gid, workspacePath: dir, ...extra };
    },
    stop,
    async cleanup() {
      await stop();
      // The test's own execs (execIn on this client): none may outlive the test file.
      ExecStreams.of(docker).destroyAll();
      await removeInstanceContainers(docker, instance);
      if (!options.reuse) {
        await unmountUnder(root);
        await fs.rm(root, { recursive: true, force: true });
      }
    },
  };
}

/** Removes this instance's containers and waits until they are gone. */
export async function removeInstanceContainers(docker: Docker, instance: string): Promise<void> {
  const result = await reapLabelled(docker, [`${INSTANCE_LABEL}=${instance}`], { deadlineMs: 30_000 });
  if (result.failures.length > 0)
    throw new Error(`could not remove the containers of test sidecar ${instance}: ${result.failures.join("; ")}`);
}

/** Every process in the container with its role (src/codex/container-processes.ts), the listing's own left out. */
export function containerProcesses(docker: Docker, containerId: string): Promise<ClassifiedProcess[]> {
  return listContainerProcesses(new DockerEngine(docker), containerId);
}

/**
 * What turns run or left in the container: every process but the container's own (the init, the
 * main script, the log pump, the forwarders' loops and listeners) and the launcher waiting for the
 * next turn, zombies aside. A connection a forwarder forked belongs to whoever connected, so it
 * counts. Lines are "pid cmdline".
 */
export async function turnProcesses(docker: Docker, containerId: string): Promise<string[]> {
  const processes = await containerProcesses(docker, containerId);
  return processes.filter((p) => !isOwnProcess(p) && p.args !== "").map((p) => `${p.pid} ${p.args}`);
}

/** Reads a file inside a container (as root is never needed: as the workspace user). */
export async function execIn(
  docker: Docker,
  containerId: string,
  cmd: string[],
  user?: string,
): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  const { runExec } = await import("../../src/docker/exec.js");
  return runExec(docker, containerId, { cmd, ...(user ? { user } : {}) });
}

/**
 * Releases whatever workspace disks a test left under `dir` (a failed test's): deleting the tree
 * would empty the images but leave their mounts and loop devices behind.
 */
export async function unmountUnder(dir: string): Promise<void> {
  await releaseDisksUnder(dir);
}
