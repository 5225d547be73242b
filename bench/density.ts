/**
 * Section 2c, idle density: N workspaces ensured through a second bench sidecar
 * whose idle reaper pauses them after a short idle timeout (the production code path), then the
 * host memory each idle (paused) workspace holds:
 *   - the container's memory cgroup (cgroup v1: memory.usage_in_bytes, and memory.stat's
 *     total_rss / total_cache / total_mapped_file split; memory.kmem.usage_in_bytes printed too),
 *   - the RSS of the container's containerd-shim-runc-v2 (one per container, host memory too),
 *   - the sidecar's own RSS growth (the bench process, which hosts both sidecars), per workspace.
 * Each container's freezer state is read to prove it is paused. All of them are removed afterwards
 * (through the sidecar; the harness also reaps by label).
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";
import { startSidecar } from "../src/sidecar.js";
import type { BenchEnv } from "./harness.js";
import type { SectionResult } from "./report.js";
import { formatTable, summarize } from "./stats.js";

const execFileAsync = promisify(execFile);

export interface DensityOptions {
  n: number;
  concurrency: number;
  /** The second sidecar's idle timeout (pause after this long without a turn). */
  idleTimeoutMs: number;
}

const TARGET_MIB = 8;
const MIB = 2 ** 20;

interface ContainerMemory {
  usage: number;
  rss: number;
  cache: number;
  mappedFile: number;
  kmem: number;
  shimRss: number;
  shimPss: number;
  shimUss: number;
  procs: number;
  frozen: boolean;
}

async function readNumber(file: string): Promise<number> {
  return Number((await fs.readFile(file, "utf8")).trim());
}

async function memoryStat(dir: string): Promise<Map<string, number>> {
  const stat = new Map<string, number>();
  for (const line of (await fs.readFile(path.join(dir, "memory.stat"), "utf8")).split("\n")) {
    const [key, value] = line.split(" ");
    if (key && value) stat.set(key, Number(value));
  }
  return stat;
}

interface ShimMemory {
  rss: number;
  /** Proportional set size: shared pages (the Go binary's text) divided among the processes mapping them. */
  pss: number;
  /** Private_Clean + Private_Dirty: what this shim alone holds. */
  uss: number;
}

/** containerd-shim-runc-v2 memory (bytes) by container id: RSS from ps, PSS and USS from /proc/<pid>/smaps_rollup. */
async function shimMemoryById(): Promise<Map<string, ShimMemory>> {
  const { stdout } = await execFileAsync("ps", ["-eo", "pid=,rss=,args="], { maxBuffer: 64 * MIB });
  const byId = new Map<string, ShimMemory>();
  for (const line of stdout.split("\n")) {
    const match = /^\s*(\d+)\s+(\d+)\s+\S*containerd-shim\S*\s.*-id\s+([0-9a-f]{64})/.exec(line);
    if (!match?.[1] || !match[2] || !match[3]) continue;
    const rollup = await fs.readFile(`/proc/${match[1]}/smaps_rollup`, "utf8").catch(() => "");
    const kb = (field: string): number =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(rollup)?.[1] ?? NaN) * 1024;
    byId.set(match[3], {
      rss: Number(match[2]) * 1024,
      pss: kb("Pss"),
      uss: kb("Private_Clean") + kb("Private_Dirty"),
    });
  }
  return byId;
}

async function containerMemory(containerId: string, shims: Map<string, ShimMemory>): Promise<ContainerMemory> {
  const dir = `/sys/fs/cgroup/memory/docker/${containerId}`;
  const stat = await memoryStat(dir);
  const freezer = await fs
    .readFile(`/sys/fs/cgroup/freezer/docker/${containerId}/freezer.state`, "utf8")
    .catch(() => "?");
  const procs = (await fs.readFile(path.join(dir, "cgroup.procs"), "utf8")).split("\n").filter(Boolean).length;
  return {
    usage: await readNumber(path.join(dir, "memory.usage_in_bytes")),
    rss: stat.get("total_rss") ?? stat.get("rss") ?? NaN,
    cache: stat.get("total_cache") ?? stat.get("cache") ?? NaN,
    mappedFile: stat.get("total_mapped_file") ?? stat.get("mapped_file") ?? NaN,
    kmem: await readNumber(path.join(dir, "memory.kmem.usage_in_bytes")).catch(() => NaN),
    shimRss: shims.get(containerId)?.rss ?? NaN,
    shimPss: shims.get(containerId)?.pss ?? NaN,
    shimUss: shims.get(containerId)?.uss ?? NaN,
    procs,
    frozen: freezer.trim() === "FROZEN",
  };
}

/** Runs `work` over `items`, at most `limit` at a time. */
async function bounded<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await work(items[next++] as T);
    }),
  );
}

const mib = (bytes: number): string => (Number.isFinite(bytes) ? (bytes / MIB).toFixed(2) : "-");

export async function benchDensity(env: BenchEnv, options: DensityOptions): Promise<SectionResult> {
  const rssBefore = process.memoryUsage().rss;
  const config = {
    ...env.config,
    socketPath: path.join(env.root, "density.sock"),
    stateDir: path.join(env.root, "density-state"),
    idleTimeoutMs: options.idleTimeoutMs,
    stopTimeoutMs: 0,
    metricsListen: null,
  };
  const sidecar = await startSidecar(config, env.log, { extraLabels: env.labels });
  const ids: string[] = [];
  const containers = new Map<string, string>();
  const ensureTimes: number[] = [];
  let rssEnsured = NaN;
  let rssPaused = NaN;
  let pauseWait = NaN;
  const memories: ContainerMemory[] = [];
  try {
    for (let i = 0; i < options.n; i++) ids.push(env.uniqueId(`bench-density-${i}`));
    const ensureStart = performance.now();
    await bounded(ids, options.concurrency, async (workspaceId) => {
      const params = await env.workspace(workspaceId);
      const start = performance.now();
      const result = await sidecar.service.ensureWorkspace(params);
      ensureTimes.push(performance.now() - start);
      containers.set(workspaceId, result.containerId);
    });
    const ensureWall = performance.now() - ensureStart;
    rssEnsured = process.memoryUsage().rss;

    // The reaper pauses each one after the idle timeout (one after the other).
    const waitStart = performance.now();
    const deadline = Date.now() + options.idleTimeoutMs + 60_000 + options.n * 500;
    while (ids.some((id) => sidecar.workspaces.find(id)?.state !== "paused")) {
      if (Date.now() > deadline) {
        const left = ids.filter((id) => sidecar.workspaces.find(id)?.state !== "paused").length;
        throw new Error(`${left} of ${ids.length} workspaces were not paused by the idle reaper in time`);
      }
      await delay(100);
    }
    pauseWait = performance.now() - waitStart;
    await delay(1000); // let the engine and the shims settle
    rssPaused = process.memoryUsage().rss;
    const shims = await shimMemoryById();
    for (const id of ids) memories.push(await containerMemory(containers.get(id) as string, shims));
    env.log.info("density: ensured", { n: ids.length, ensureWallMs: Math.round(ensureWall) });
  } finally {
    await bounded(ids, options.concurrency, async (workspaceId) => {
      await sidecar.service.removeWorkspace({ workspaceId, purgeHome: true }).catch(() => undefined);
    });
    await sidecar.close(0);
  }
  const rssAfterRemove = process.memoryUsage().rss;

  const frozen = memories.filter((m) => m.frozen).length;
  const column = (key: keyof Omit<ContainerMemory, "frozen">): number[] => memories.map((m) => m[key]);
  const row = (label: string, values: number[], unit: "MiB" | "count" = "MiB"): Record<string, string | number> => {
    const s = summarize(values.filter(Number.isFinite));
    const f = unit === "MiB" ? mib : (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : "-");
    return { "per idle workspace": label, n: s.n, p50: f(s.p50), mean: f(s.mean), max: f(s.max), unit };
  };
  const perWorkspaceSidecar = (rssPaused - rssBefore) / ids.length;
  const cgroupMean = summarize(column("usage")).mean;
  const shimMean = summarize(column("shimPss").filter(Number.isFinite)).mean;
  const total = cgroupMean + shimMean + Math.max(0, perWorkspaceSidecar);
  const pass = total <= TARGET_MIB * MIB && frozen === ids.length;
  const e = summarize(ensureTimes);

  return {
    title: `2c. Idle density: ${ids.length} paused workspaces`,
    tables: [
      formatTable([
        row("cgroup memory.usage_in_bytes", column("usage")),
        row("  of which total_rss (anon)", column("rss")),
        row("  of which total_cache (page cache)", column("cache")),
        row("    of which total_mapped_file", column("mappedFile")),
        row("cgroup memory.kmem.usage_in_bytes", column("kmem")),
        row("containerd-shim-runc-v2 RSS", column("shimRss")),
        row("containerd-shim-runc-v2 PSS (counted)", column("shimPss")),
        row("containerd-shim-runc-v2 private (USS)", column("shimUss")),
        row("processes in the container (cgroup.procs)", column("procs"), "count"),
      ]),
      formatTable([
        { "sidecar (bench process) RSS": "before the section", MiB: mib(rssBefore) },
        { "sidecar (bench process) RSS": `${ids.length} ensured (running)`, MiB: mib(rssEnsured) },
        { "sidecar (bench process) RSS": `${ids.length} paused`, MiB: mib(rssPaused) },
        { "sidecar (bench process) RSS": "after removing them", MiB: mib(rssAfterRemove) },
        { "sidecar (bench process) RSS": "growth per paused workspace", MiB: mib(perWorkspaceSidecar) },
      ]),
      formatTable([
        {
          metric: "host memory per idle workspace (cgroup usage + shim PSS + sidecar RSS growth)",
          "mean MiB": mib(total),
          target: `<= ${TARGET_MIB} MiB`,
          result: pass ? "PASS" : "MISS",
        },
      ]),
    ],
    checks: [
      {
        metric: "idle workspace host memory (mean)",
        measured: `${mib(total)} MiB`,
        target: `<= ${TARGET_MIB} MiB`,
        pass,
      },
    ],
    notes: [
      `${ids.length} workspaces ensured ${options.concurrency} at a time (ensure p50 ${e.p50.toFixed(0)} ms, p95 ${e.p95.toFixed(0)} ms) by a second sidecar with --idle-timeout ${options.idleTimeoutMs} ms; its reaper paused all of them ${(pauseWait / 1000).toFixed(1)} s after the last ensure; ${frozen}/${ids.length} freezer.state FROZEN when measured`,
      "cgroup v1 figures from /sys/fs/cgroup/memory/docker/<id>/; usage_in_bytes is what the kernel charges the container (rss + page cache + kernel memory); page cache of shared image files is charged to the first container that read them",
      "shim from ps (containerd-shim-runc-v2 -id <id>) and /proc/<pid>/smaps_rollup: RSS counts the shared Go binary text in full for every shim, so the total counts PSS (shared pages split among the processes mapping them); USS is what each shim alone holds",
      "sidecar RSS is the bench process's (both sidecars, the stub and the bench itself): the growth is an upper bound on the sidecar's own cost per workspace (records, the pre-started launcher exec's stream, event follower)",
    ],
  };
}
