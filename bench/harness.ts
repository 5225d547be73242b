/**
 * The bench's world: a real sidecar (startSidecar) on its own labelled bridge network, with a temp
 * state dir and workspace root, a Responses stub on that bridge's gateway, and a cleanup that, also
 * after a failure, removes the workspaces through the sidecar (their disks unmounted and detached),
 * then every container and the network carrying this run's label, and checks that nothing of the
 * run is left mounted or attached (losetup -a, /proc/mounts) before deleting its root.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadConfig, type SidecarConfig } from "../src/config.js";
import { createDockerClient, type Docker } from "../src/docker/engine.js";
import { RuntimeImage } from "../src/docker/images.js";
import { Labels } from "../src/docker/labels.js";
import { markRunLive, reapAbandonedRuns, reapLabelled } from "../src/docker/reaper.js";
import { createLogger, type Logger, type LogLevel } from "../src/log.js";
import { startSidecar, type RunningSidecar } from "../src/sidecar.js";
import type { WorkspaceParams } from "../src/service.js";
import { ensureBridgeNetwork } from "../src/docker/networks.js";
import { releaseDisksUnder } from "../src/workspace/disk-leftovers.js";
import type { SpecContext } from "../src/workspace/spec.js";
import { ResponsesStub } from "../test/support/responses-stub.js";
import { describeLeftovers, leftoversUnder, type Leftovers } from "./leftovers.js";

export const BENCH_API_KEY = "sk-bench-alive-0123456789abcdef";
export const BENCH_MODEL = "gpt-5.5";
export const BENCH_UID = 10001;
export const BENCH_GID = 10001;

export interface BenchEnvOptions {
  /** ALIVE_CODEX_IMAGE: an image to use as is. */
  image: string | null;
  /** The base the runtime image is built FROM when it has to be built. */
  baseImage: string;
  dockerHost: string;
  /** Progress lines (image build, set-up steps). */
  progress: (line: string) => void;
  /** More `serve` flags for the bench's sidecar (they win over the bench's own). */
  flags?: Record<string, string>;
}

export interface BenchEnv {
  /** `bench-<hex>`: the value of dev.alive.codex.run-id on everything this run makes. */
  runId: string;
  labels: Record<string, string>;
  docker: Docker;
  config: SidecarConfig;
  sidecar: RunningSidecar;
  imageRef: string;
  /** Made with the same options as the sidecar's own (so its ref() costs what the sidecar's does). */
  runtimeImage: RuntimeImage;
  network: { name: string; gateway: string };
  stub: ResponsesStub;
  root: string;
  log: Logger;
  /** Warnings and errors the sidecar logged, for the end of the run. */
  problems: string[];
  /** The SpecContext the sidecar's WorkspaceManager builds the workspace's spec with. */
  specContext(params: WorkspaceParams): Promise<SpecContext>;
  /** A fresh workspace directory under the root, owned by the bench uid, and ensure params for it. */
  workspace(workspaceId: string): Promise<WorkspaceParams>;
  uniqueId(prefix: string): string;
  /** Idempotent: the second call finds nothing to do and returns the first call's report. */
  cleanup(): Promise<BenchCleanup>;
}

/** What the cleanup found: for the summary, and a non-zero exit when a section left something. */
export interface BenchCleanup {
  /** Mounts and loop devices of the run's workspace disks left once the workspaces were removed (then released). */
  left: Leftovers;
  /** What even the release could not remove. */
  stillLeft: Leftovers;
  /** Containers of the run the reaper had to remove. */
  reapedContainers: number;
  /** Cleanup steps that failed. */
  failures: string[];
  /** One line for the summary. */
  summary: string;
}

const NONE: Leftovers = { mounts: [], loopDevices: [] };

export async function startBenchEnv(options: BenchEnvOptions): Promise<BenchEnv> {
  const runId = `bench-${randomBytes(4).toString("hex")}`;
  const labels = { [Labels.runId]: runId };
  const docker = createDockerClient(options.dockerHost);
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-bench-"));
  const problems: string[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  const report: BenchCleanup = { left: NONE, stillLeft: NONE, reapedContainers: 0, failures: [], summary: "" };
  let cleaning: Promise<BenchCleanup> | null = null;
  // Steps run last-pushed first.
  const cleanup = (): Promise<BenchCleanup> =>
    (cleaning ??= (async () => {
      for (const step of cleanups.reverse()) {
        await step().catch((error: unknown) => {
          report.failures.push(String(error));
          options.progress(`cleanup step failed: ${String(error)}`);
        });
      }
      cleanups.length = 0;
      report.summary = describeLeftovers(runId, report.left, report.stillLeft);
      return report;
    })());
  cleanups.push(() => fs.rm(root, { recursive: true, force: true }));
  // Before the root goes: whatever workspace disk a section left would make rm fail with EBUSY and keep its loop device.
  cleanups.push(async () => {
    report.left = await leftoversUnder(root);
    if (report.left.mounts.length + report.left.loopDevices.length === 0) return;
    options.progress(`left by the sections: ${JSON.stringify(report.left)}; releasing them`);
    await releaseDisksUnder(root);
    report.stillLeft = await leftoversUnder(root);
  });
  const runEnded = markRunLive(runId);
  cleanups.push(async () => {
    const reaped = await reapLabelled(docker, [`${Labels.runId}=${runId}`]);
    report.reapedContainers = reaped.containers;
    report.failures.push(...reaped.failures);
    runEnded();
  });
  await reapAbandonedRuns(docker, { except: [runId] });

  try {
    const log = createLogger({
      level: "info",
      secrets: [BENCH_API_KEY],
      write: (line: string, level: LogLevel) => {
        if (level === "warn" || level === "error") problems.push(line);
      },
    });
    options.progress(`run id ${runId}; state under ${root}`);

    const image = new RuntimeImage({
      docker,
      baseImage: options.baseImage,
      explicitRef: options.image,
      log,
      onProgress: options.progress,
    });
    const imageRef = (await image.ensure()).ref;
    options.progress(`runtime image ${imageRef}`);

    const networkName = `alive-codex-${runId}`;
    const network = await ensureBridgeNetwork(docker, networkName, labels);
    if (!network.gateway) throw new Error(`network ${networkName} has no gateway`);
    const stub = await ResponsesStub.start({ host: network.gateway });

    const stateDir = path.join(root, "state");
    const workspaceRoot = path.join(root, "workspaces");
    await fs.mkdir(workspaceRoot, { recursive: true, mode: 0o755 });
    await fs.chmod(root, 0o755);
    const config = loadConfig(
      {
        "--socket": path.join(root, "sidecar.sock"),
        "--state-dir": stateDir,
        "--workspace-roots": workspaceRoot,
        "--uid-range": "10000-60000",
        "--gid-range": "10000-60000",
        // Like production: the tag derived from the build inputs, unless an explicit image was given.
        ...(options.image === null ? { "--base-image": options.baseImage } : { "--image": options.image }),
        "--codex-api-key": BENCH_API_KEY,
        "--model": BENCH_MODEL,
        "--openai-base-url": stub.baseUrl,
        "--idle-timeout": "0",
        "--max-workspaces": "10000",
        "--docker-host": options.dockerHost,
        "--log-level": "info",
        // The numbers here are the sidecar's without workspace disks (the default, auto, mounts one per
        // workspace on a root host with loop devices); their costs are measured in docs/security.md, Disk.
        "--disk": "off",
        ...options.flags,
      },
      {},
    );
    const sidecar = await startSidecar(config, log, { extraLabels: labels });
    cleanups.push(() => withDeadline(sidecar.close(0), 20_000, "the sidecar to close"));
    // Every workspace this sidecar knows goes through workspace.remove (purgeHome: its disk, when it
    // has one, unmounted and its loop device detached), also those a failed section left behind.
    // Sections with a sidecar of their own remove theirs through it.
    const made: string[] = [];
    cleanups.push(async () => {
      const failed: string[] = [];
      for (const workspaceId of made) {
        if (sidecar.workspaces.find(workspaceId) === undefined) continue;
        await sidecar.service
          .removeWorkspace({ workspaceId, purgeHome: true })
          .catch((error: unknown) => failed.push(`${workspaceId}: ${String(error)}`));
      }
      if (failed.length > 0) throw new Error(`workspace.remove failed for ${failed.join("; ")}`);
    });
    // Runs first: a request the stub holds open would keep a turn (and so close(), or a remove) waiting.
    cleanups.push(() => stub.close());

    return {
      runId,
      labels,
      docker,
      config,
      sidecar,
      imageRef,
      runtimeImage: image,
      network: { name: networkName, gateway: network.gateway },
      stub,
      root,
      log,
      problems,
      specContext: (params) => sidecar.workspaces.specContext(params.runtime),
      async workspace(workspaceId) {
        made.push(workspaceId);
        const dir = path.join(workspaceRoot, workspaceId);
        await fs.mkdir(dir, { recursive: true });
        await fs.chown(dir, BENCH_UID, BENCH_GID);
        // One user for all of BENCH_UID's workspaces: a uid serves one userId at a time.
        return { workspaceId, userId: "bench-user", uid: BENCH_UID, gid: BENCH_GID, workspacePath: dir };
      },
      uniqueId: (prefix) => `${prefix}-${randomBytes(4).toString("hex")}`,
      cleanup,
    };
  } catch (error) {
    const { summary } = await cleanup();
    options.progress(summary);
    throw error;
  }
}

function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
