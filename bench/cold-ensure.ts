/**
 * Section 1, cold ensure: creating and starting a workspace container until it is exec-ready.
 *
 * Five arms, interleaved (the order rotates every round), on a fresh workspace id each time:
 * - sidecar: service.ensureWorkspace; resolves after the engine's start call returned. It includes
 *   the sidecar's own work: the workspace dirs (HOME, TMPDIR, run/ with the log FIFO) and the spec.
 * - CLI: `docker run -d` with the same create options (bench/docker-run-args.ts: network none, the
 *   main script with its forwarders); returns after the CLI's create + start. The bind-mount dirs
 *   are made beforehand, untimed; nothing serves the sockets the forwarders reach (the sidecar arm
 *   serves them before it resolves).
 * - by hand: the sidecar's steps done with the same calls (dirs, createContainer, start), each
 *   timed, to show where a cold ensure's time goes; once with the spec as is (network none, the
 *   forwarders in the main script), once with the previous setup (the bench's bridge network, the
 *   log pump alone): what the new network setup costs or saves at create and start;
 * - engine floor: a minimal container of the same image (no mounts, limits, init or network).
 * After every sample, untimed, `true` is exec'd in the container (proof it was exec-ready) and the
 * container is removed.
 */
import { promises as fs } from "node:fs";
import { performance } from "node:perf_hooks";
import { execa } from "execa";
import { runExec } from "../src/docker/exec.js";
import { isImagePresent } from "../src/docker/base-image.js";
import { prepareWorkspaceDirs } from "../src/workspace/host-dirs.js";
import { workspacePaths } from "../src/workspace/paths.js";
import { CONTAINER_RUN_DIR, buildWorkspaceSpec, type WorkspaceSpec } from "../src/workspace/spec.js";
import type { BenchEnv } from "./harness.js";
import { containerShape, dockerRunArgs, shapeDifferences } from "./docker-run-args.js";
import { LATENCY_COLUMNS, latencyRow, ms, times, verdict, type SectionResult } from "./report.js";
import { formatTable, ratio, summarize, type TableRow } from "./stats.js";

export interface ColdEnsureOptions {
  n: number;
  warmup: number;
}

const TITLE = "1. Cold ensure (create + start until exec-ready)";

type Arm = "sidecar" | "cli" | "api" | "previous" | "minimal";

/** The main script before workspaces lost their network: the log pump alone, no forwarders. */
const PREVIOUS_MAIN_SCRIPT = `while :; do cat ${CONTAINER_RUN_DIR}/log 2>/dev/null || sleep 1; done`;

/** The same spec as the previous setup made it: on the bench's bridge network, the log pump alone. */
function previousSetup(spec: WorkspaceSpec, network: string): WorkspaceSpec {
  return {
    ...spec,
    options: {
      ...spec.options,
      Cmd: ["-c", PREVIOUS_MAIN_SCRIPT],
      HostConfig: { ...spec.options.HostConfig, NetworkMode: network },
    },
  };
}

export async function benchColdEnsure(env: BenchEnv, options: ColdEnsureOptions): Promise<SectionResult> {
  const { docker, sidecar } = env;
  const samples: Record<Arm, number[]> = { sidecar: [], cli: [], api: [], previous: [], minimal: [] };
  const phases = { dirs: [] as number[], spec: [] as number[], create: [] as number[], start: [] as number[] };
  const phasesPrevious = { dirs: [] as number[], spec: [] as number[], create: [] as number[], start: [] as number[] };
  const parity: { sidecar?: string; cli?: string } = {};

  const assertExecReady = async (containerId: string, arm: Arm): Promise<void> => {
    const result = await runExec(docker, containerId, { cmd: ["true"] });
    if (result.exitCode !== 0)
      throw new Error(
        `${arm}: exec of true in ${containerId.slice(0, 12)} exited ${String(result.exitCode)}: ${result.stderr}`,
      );
  };

  const runSidecar = async (): Promise<number> => {
    const params = await env.workspace(env.uniqueId("bench-cold-s"));
    const start = performance.now();
    const result = await sidecar.service.ensureWorkspace(params);
    const elapsed = performance.now() - start;
    if (!result.created) throw new Error(`sidecar: ensure of a fresh workspace did not create a container`);
    await assertExecReady(result.containerId, "sidecar");
    parity.sidecar ??= result.containerId;
    if (parity.sidecar === result.containerId) return elapsed; // kept until the parity check, removed by the final cleanup
    await sidecar.service.removeWorkspace({ workspaceId: params.workspaceId, purgeHome: true });
    await fs.rm(params.workspacePath, { recursive: true, force: true });
    return elapsed;
  };

  const runCli = async (): Promise<number> => {
    const params = await env.workspace(env.uniqueId("bench-cold-c"));
    const paths = workspacePaths(env.config.stateDir, params.workspaceId);
    await prepareWorkspaceDirs(paths, params.uid, params.gid);
    const spec = buildWorkspaceSpec(params, paths, await env.specContext(params));
    const args = ["run", "-d", ...dockerRunArgs(spec.options)];
    const start = performance.now();
    const { stdout } = await execa("docker", args, { env: { DOCKER_HOST: env.config.dockerHost } });
    const elapsed = performance.now() - start;
    const containerId = stdout.trim();
    await assertExecReady(containerId, "cli");
    parity.cli ??= containerId;
    if (parity.cli !== containerId) await docker.getContainer(containerId).remove({ force: true, v: true });
    await fs.rm(paths.root, { recursive: true, force: true });
    await fs.rm(params.workspacePath, { recursive: true, force: true });
    return elapsed;
  };

  /** The sidecar's steps by hand; `variant` "previous" is the same spec with the previous network setup. */
  const runApi = async (variant: "spec" | "previous", record: boolean): Promise<number> => {
    const params = await env.workspace(env.uniqueId("bench-cold-a"));
    const paths = workspacePaths(env.config.stateDir, params.workspaceId);
    // Resolved before the clock starts (the sidecar's is cached after its first ensure).
    const context = await env.specContext(params);
    const t0 = performance.now();
    await prepareWorkspaceDirs(paths, params.uid, params.gid);
    const t1 = performance.now();
    const built = buildWorkspaceSpec(params, paths, context);
    const spec = variant === "spec" ? built : previousSetup(built, env.network.name);
    const t2 = performance.now();
    const container = await docker.createContainer(spec.options);
    const t3 = performance.now();
    await container.start();
    const t4 = performance.now();
    if (record) {
      const target = variant === "spec" ? phases : phasesPrevious;
      target.dirs.push(t1 - t0);
      target.spec.push(t2 - t1);
      target.create.push(t3 - t2);
      target.start.push(t4 - t3);
    }
    await assertExecReady(container.id, "api");
    await container.remove({ force: true, v: true });
    await fs.rm(paths.root, { recursive: true, force: true });
    await fs.rm(params.workspacePath, { recursive: true, force: true });
    return t4 - t0;
  };

  /** The engine's floor: the same image, no mounts, no limits, no network, no init. */
  const runMinimal = async (): Promise<number> => {
    const t0 = performance.now();
    const container = await docker.createContainer({
      Image: env.imageRef,
      Entrypoint: ["/bin/sh"],
      Cmd: ["-c", "sleep 1000"],
      Labels: env.labels,
      HostConfig: { NetworkMode: "none" },
    });
    await container.start();
    const elapsed = performance.now() - t0;
    await assertExecReady(container.id, "minimal");
    await container.remove({ force: true, v: true });
    return elapsed;
  };

  const arms: Arm[] = ["sidecar", "cli", "api", "previous", "minimal"];
  for (let round = -options.warmup; round < options.n; round++) {
    const offset = ((round % arms.length) + arms.length) % arms.length;
    for (const arm of [...arms.slice(offset), ...arms.slice(0, offset)]) {
      const elapsed =
        arm === "sidecar"
          ? await runSidecar()
          : arm === "cli"
            ? await runCli()
            : arm === "minimal"
              ? await runMinimal()
              : await runApi(arm === "api" ? "spec" : "previous", round >= 0);
      if (round >= 0) samples[arm].push(elapsed);
    }
  }

  // The uncached checks a cold ensure of a freshly started sidecar also pays once (later ones skip them).
  const imageCheck: number[] = [];
  for (let i = 0; i < 10; i++) {
    const start = performance.now();
    await isImagePresent(docker, env.imageRef);
    imageCheck.push(performance.now() - start);
  }

  let parityNote = "parity: not checked";
  if (parity.sidecar !== undefined && parity.cli !== undefined) {
    const [a, b] = await Promise.all([
      docker.getContainer(parity.sidecar).inspect(),
      docker.getContainer(parity.cli).inspect(),
    ]);
    const differences = shapeDifferences(
      containerShape(a as unknown as Parameters<typeof containerShape>[0]),
      containerShape(b as unknown as Parameters<typeof containerShape>[0]),
    );
    parityNote =
      differences.length === 0
        ? "parity: docker inspect of a sidecar-made and a CLI-made container shows the same settings (user, entrypoint, cmd, env names, labels, HostConfig limits, mounts)"
        : `parity: the CLI-made container DIFFERS in ${differences.join(", ")}`;
    await docker
      .getContainer(parity.cli)
      .remove({ force: true, v: true })
      .catch(() => undefined);
  }

  const cli = summarize(samples.cli);
  const side = summarize(samples.sidecar);
  const r = ratio(side.p50, cli.p50);
  const ratioPass = r <= 0.7;
  const absolutePass = side.p50 < 200;
  const main = formatTable(
    [
      latencyRow("sidecar ensureWorkspace", samples.sidecar, cli, {
        target: "p50 <= 0.7x CLI and < 200 ms",
        result: verdict(ratioPass && absolutePass),
      }),
      latencyRow("docker run -d (CLI, baseline)", samples.cli, cli, { target: "-", result: "-" }),
      latencyRow("by hand: dirs + create + start", samples.api, cli, { target: "-", result: "-" }),
      latencyRow("by hand, previous setup (bridge, no forwarders)", samples.previous, cli, {
        target: "-",
        result: "-",
      }),
      latencyRow("engine floor: minimal container", samples.minimal, cli, { target: "-", result: "-" }),
    ],
    LATENCY_COLUMNS,
  );
  const phaseRow = (phase: string, values: number[], previous?: number[]): TableRow => {
    const a = summarize(values);
    const b = previous === undefined ? undefined : summarize(previous);
    return { phase, n: a.n, "p50 ms": a.p50, "p95 ms": a.p95, "previous setup p50 ms": b?.p50 ?? "-" };
  };
  const phaseTable = formatTable(
    [
      phaseRow("image check (isImagePresent; once per sidecar, cached after)", imageCheck),
      phaseRow("workspace dirs + log FIFO (prepareWorkspaceDirs)", phases.dirs, phasesPrevious.dirs),
      phaseRow("buildWorkspaceSpec", phases.spec, phasesPrevious.spec),
      phaseRow("docker createContainer", phases.create, phasesPrevious.create),
      phaseRow("docker start", phases.start, phasesPrevious.start),
    ],
    ["phase", "n", "p50 ms", "p95 ms", "previous setup p50 ms"],
    { decimals: 2 },
  );
  return {
    title: TITLE,
    tables: [main, "Where a cold ensure's time goes (the by-hand arms, phase by phase):\n" + phaseTable],
    checks: [
      { metric: "cold ensure: sidecar p50 / CLI p50", measured: times(r), target: "<= 0.70x", pass: ratioPass },
      { metric: "cold ensure: sidecar p50", measured: ms(side.p50), target: "< 200 ms", pass: absolutePass },
    ],
    notes: [
      "exec-ready = the engine's start call returned (sidecar: ensureWorkspace resolved; CLI: `docker run -d` exited 0); each sample is then proven with an untimed exec of `true`",
      "the sidecar arm includes making the workspace dirs and FIFO and serving the workspace's sockets; the CLI arm's dirs are made untimed beforehand and its sockets are not served; removal is not timed",
      "sidecar, CLI and by hand: network none and the forwarders (the spec as is); previous setup: the same spec on the bench's bridge network with the log pump alone (what the sidecar made before)",
      `arms interleaved with a rotating order; ${options.warmup} warm-up round(s) discarded`,
      parityNote,
    ],
  };
}
