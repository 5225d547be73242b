/**
 * The one reaper of labelled engine objects, for everything that runs sidecars it later clears
 * away (the test runner, the test support, the bench): containers first (forced, with their
 * anonymous volumes), then networks, then volumes, and it waits until the engine lists none of
 * them, because a container removal still in flight keeps its network endpoint and makes the
 * network's removal fail ("has active endpoints").
 *
 * A run marks itself live with a pid file (`markRunLive`); `reapAbandonedRuns` clears what runs
 * that were killed before they could reap left behind.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type Docker from "dockerode";
import { errorMessage } from "../errors.js";
import { dockerStatus, isNotFound } from "./engine.js";
import { Labels } from "./labels.js";

export interface ReapOptions {
  /** Gives up (and reports what is left) after this long. */
  deadlineMs?: number;
}

export interface ReapResult {
  containers: number;
  networks: number;
  volumes: number;
  /** What could not be removed before the deadline, one line each. */
  failures: string[];
}

const POLL_MS = 200;

/** Removes every container, network and volume carrying all of `labels` ("key=value" or "key"). */
export async function reapLabelled(docker: Docker, labels: string[], options: ReapOptions = {}): Promise<ReapResult> {
  const deadline = Date.now() + (options.deadlineMs ?? 60_000);
  const filters = { label: labels };
  const result: ReapResult = { containers: 0, networks: 0, volumes: 0, failures: [] };
  const seen = new Set<string>();

  // Containers: remove, then wait until none is listed (a removal in progress is listed as "removing").
  for (;;) {
    const containers = await docker.listContainers({ all: true, filters });
    if (containers.length === 0) break;
    const errors: string[] = [];
    await Promise.all(
      containers.map(async (c) => {
        if (!seen.has(c.Id)) {
          seen.add(c.Id);
          result.containers += 1;
        }
        try {
          await docker.getContainer(c.Id).remove({ force: true, v: true });
        } catch (error) {
          // 404: gone meanwhile; 409: its removal is already in progress.
          if (!isNotFound(error) && dockerStatus(error) !== 409)
            errors.push(`container ${c.Id.slice(0, 12)}: ${reason(error)}`);
        }
      }),
    );
    if (Date.now() > deadline) {
      result.failures.push(
        ...(errors.length > 0
          ? errors
          : containers.map((c) => `container ${c.Id.slice(0, 12)} (${c.State}) still listed`)),
      );
      return result;
    }
    await delay(POLL_MS);
  }

  for (const network of await docker.listNetworks({ filters })) {
    for (;;) {
      try {
        await docker.getNetwork(network.Id).remove();
        result.networks += 1;
        break;
      } catch (error) {
        if (isNotFound(error)) break;
        if (Date.now() > deadline) {
          result.failures.push(`network ${network.Name}: ${reason(error)}`);
          break;
        }
        // Still attached: a container of someone else's (not labelled as ours) is cut off; ours are gone.
        await disconnectAll(docker, network.Id);
        await delay(POLL_MS);
      }
    }
  }

  for (const volume of (await docker.listVolumes({ filters })).Volumes ?? []) {
    try {
      await docker.getVolume(volume.Name).remove({ force: true });
      result.volumes += 1;
    } catch (error) {
      if (!isNotFound(error)) result.failures.push(`volume ${volume.Name}: ${reason(error)}`);
    }
  }
  return result;
}

async function disconnectAll(docker: Docker, networkId: string): Promise<void> {
  const info = (await docker
    .getNetwork(networkId)
    .inspect()
    .catch(() => null)) as { Containers?: Record<string, unknown> } | null;
  for (const containerId of Object.keys(info?.Containers ?? {})) {
    await docker
      .getNetwork(networkId)
      .disconnect({ Container: containerId, Force: true })
      .catch(() => undefined);
  }
}

function reason(error: unknown): string {
  const detail = (error as { json?: { message?: unknown } } | null)?.json?.message;
  return typeof detail === "string" ? detail : errorMessage(error);
}

/** Where live runs keep their pid files. */
const RUNS_DIR = path.join(os.tmpdir(), "alive-codex-runs");

/** Marks this process as the owner of run `runId` until the returned function is called (or it dies). */
export function markRunLive(runId: string): () => void {
  mkdirSync(RUNS_DIR, { recursive: true });
  const file = path.join(RUNS_DIR, `${runId}.pid`);
  writeFileSync(file, String(process.pid));
  return () => rmSync(file, { force: true });
}

/** Whether run `runId` is still alive: its pid file names a live process (scripts/test.mjs leaves the disks of such a run alone). */
export function isRunLive(runId: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(path.join(RUNS_DIR, `${runId}.pid`), "utf8"));
  } catch {
    return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface AbandonedReapOptions extends ReapOptions {
  /** Run ids to leave alone (the caller's own). */
  except?: string[];
  /**
   * A run without a pid file (made by older code, or by hand) is taken as abandoned only when its
   * objects are older than this; a run whose pid file names a dead process is abandoned at once.
   */
  unmarkedAgeMs?: number;
}

/** Reaps what runs that are no longer alive left behind; returns the run ids it reaped. */
export async function reapAbandonedRuns(
  docker: Docker,
  options: AbandonedReapOptions = {},
): Promise<{ runs: string[]; result: ReapResult }> {
  const unmarkedAgeMs = options.unmarkedAgeMs ?? 3_600_000;
  const except = new Set(options.except ?? []);
  const filters = { label: [Labels.runId] };
  const created = new Map<string, number>();
  const note = (runId: string | undefined, createdMs: number): void => {
    if (runId === undefined || except.has(runId)) return;
    created.set(runId, Math.max(created.get(runId) ?? 0, createdMs));
  };
  for (const c of await docker.listContainers({ all: true, filters })) note(c.Labels?.[Labels.runId], c.Created * 1000);
  for (const n of await docker.listNetworks({ filters }))
    note(n.Labels?.[Labels.runId], Date.parse(n.Created ?? "") || Date.now());
  const total: ReapResult = { containers: 0, networks: 0, volumes: 0, failures: [] };
  const runs: string[] = [];
  for (const [runId, newest] of created) {
    const marked = existsPidFile(runId);
    if (marked ? isRunLive(runId) : Date.now() - newest < unmarkedAgeMs) continue;
    const result = await reapLabelled(docker, [`${Labels.runId}=${runId}`], options);
    if (marked) rmSync(path.join(RUNS_DIR, `${runId}.pid`), { force: true });
    runs.push(runId);
    total.containers += result.containers;
    total.networks += result.networks;
    total.volumes += result.volumes;
    total.failures.push(...result.failures);
  }
  return { runs, result: total };
}

function existsPidFile(runId: string): boolean {
  try {
    readFileSync(path.join(RUNS_DIR, `${runId}.pid`));
    return true;
  } catch {
    return false;
  }
}
