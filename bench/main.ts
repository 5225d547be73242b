/**
 * `npm run bench`: the sidecar's performance against its baselines, on this machine, now.
 *
 *   npm run bench                       every section
 *   npm run bench -- --only=cold,rpc    some sections (cold, warm, paused, density, turn, cancel, rpc, proxy, accounting, journal, runtimes, broker)
 *   npm run bench -- --quick            small N, for trying the bench itself (figures not meaningful)
 *
 * Sections in ENGINE_FREE run in this process on loopback only, after the others (and their
 * cleanup); when only they are chosen (`--only=broker`), no engine is touched at all.
 *
 * Environment: ALIVE_CODEX_IMAGE (use this runtime image as is), ALIVE_CODEX_BASE_IMAGE (build the
 * runtime image FROM this; default debian:bookworm-slim when present, else alive-codex-base:bookworm),
 * DOCKER_HOST. Everything the bench makes is labelled dev.alive.codex.run-id=bench-<hex> and removed
 * at the end, also when a section fails or the run is interrupted: workspaces through the sidecar
 * that made them (disks unmounted, loop devices detached), then whatever carries the label. The
 * summary ends with a check that nothing of the run is left in `losetup -a` or /proc/mounts; the
 * exit code is 1 when a section left something (the bench releases it, and names it).
 */
import os from "node:os";
import { createDockerClient } from "../src/docker/engine.js";
import { resolveBaseImage } from "../src/docker/base-image.js";
import { benchAccountingOverhead } from "./accounting-overhead.js";
import { benchBrokering } from "./brokering.js";
import { benchCancelToClean } from "./cancel-to-clean.js";
import { benchColdEnsure } from "./cold-ensure.js";
import { benchDensity } from "./density.js";
import { benchJournal } from "./journal.js";
import { benchPausedEnsure } from "./paused-ensure.js";
import { benchProxy } from "./proxy.js";
import { startBenchEnv, type BenchCleanup, type BenchEnv } from "./harness.js";
import { failedSection, renderSection, summaryTable, type Check, type SectionResult } from "./report.js";
import { benchRpc } from "./rpc.js";
import { benchRuntimes } from "./runtimes.js";
import { benchTurnOverhead } from "./turn-overhead.js";
import { benchWarmEnsure } from "./warm-ensure.js";

const SECTIONS = [
  "cold",
  "warm",
  "paused",
  "density",
  "turn",
  "cancel",
  "rpc",
  "proxy",
  "accounting",
  "journal",
  "runtimes",
  "broker",
] as const;
type SectionName = (typeof SECTIONS)[number];
/** Sections that need no engine and no sidecar (no BenchEnv). */
const ENGINE_FREE: ReadonlySet<SectionName> = new Set<SectionName>(["broker"]);

interface BenchArgs {
  only: Set<SectionName>;
  quick: boolean;
}

function parseArgs(argv: readonly string[]): BenchArgs {
  const only = new Set<SectionName>(SECTIONS);
  let quick = false;
  for (const arg of argv) {
    if (arg === "--quick") quick = true;
    else if (arg.startsWith("--only=")) {
      only.clear();
      for (const name of arg.slice("--only=".length).split(",")) {
        if (!(SECTIONS as readonly string[]).includes(name))
          throw new Error(`--only: unknown section ${JSON.stringify(name)} (expected some of ${SECTIONS.join(", ")})`);
        only.add(name as SectionName);
      }
    } else throw new Error(`unknown argument ${JSON.stringify(arg)} (expected --only=<sections> or --quick)`);
  }
  return { only, quick };
}

/** ALIVE_CODEX_BASE_IMAGE, else what the sidecar itself would choose (resolveBaseImage). */
function chooseBaseImage(dockerHost: string): Promise<string> {
  return resolveBaseImage(createDockerClient(dockerHost), process.env.ALIVE_CODEX_BASE_IMAGE || null);
}

type RunSection = (
  name: SectionName,
  title: string,
  metrics: string[],
  body: () => Promise<SectionResult>,
) => Promise<void>;

/** The sections that need the engine and the bench's sidecar, in order, after the run's header line. */
async function runEngineSections(
  env: BenchEnv,
  run: RunSection,
  n: (full: number, quick: number) => number,
  machine: string,
  quickNote: string,
): Promise<void> {
  const serverVersion = (await env.docker.version()).Version;
  console.log(
    `alive-codex-sidecar bench: ${machine}, Docker ${serverVersion}, image ${env.imageRef}, run id ${env.runId}${quickNote}\n`,
  );
  const warm = await env.workspace(env.uniqueId("bench-warm"));
  await run("cold", "cold ensure", ["cold ensure: sidecar p50 / CLI p50", "cold ensure: sidecar p50"], () =>
    benchColdEnsure(env, { n: n(20, 3), warmup: n(2, 1) }),
  );
  await run("warm", "warm ensure", ["warm ensure p50"], () =>
    benchWarmEnsure(env, warm, { n: n(1000, 50), warmup: n(50, 5) }),
  );
  await run("paused", "returning workspace", ["ensure of a paused workspace p50"], () =>
    benchPausedEnsure(env, { n: n(20, 3), warmup: n(2, 1) }),
  );
  await run("density", "idle density", ["idle workspace host memory (mean)"], () =>
    benchDensity(env, { n: n(200, 10), concurrency: 4, idleTimeoutMs: 2000 }),
  );
  await run(
    "turn",
    "turn overhead",
    ["turn overhead: sidecar p50 - host p50", "turn overhead: sidecar p50 / host p50"],
    () => benchTurnOverhead(env, warm, { n: n(20, 2), warmup: n(2, 1) }),
  );
  await run("cancel", "cancel-to-clean", ["cancel -> turn resolved p99", "cancel -> container clean p99"], () =>
    benchCancelToClean(env, warm, { n: n(20, 2), warmup: n(1, 1) }),
  );
  await run(
    "rpc",
    "rpc",
    [
      "rpc: sidecar.health p50 (real service)",
      "rpc: sidecar.health p50 (RPC layer only)",
      "rpc: turn.event throughput (synthetic)",
    ],
    () =>
      benchRpc(env, warm, {
        healthN: n(2000, 200),
        healthWarmup: n(200, 20),
        events: n(100_000, 10_000),
        eventRuns: n(3, 1),
      }),
  );
  await run(
    "proxy",
    "model proxy",
    ["model proxy: p50 added per request", "model proxy: SSE throughput vs direct"],
    () =>
      benchProxy({
        n: n(2000, 200),
        warmup: n(200, 20),
        streamMb: n(128, 16),
        streamRuns: n(7, 2),
        tunnels: n(1000, 100),
        log: env.log,
      }),
  );
  await run("accounting", "metrics and accounting overhead", ["metrics and accounting overhead p50"], () =>
    benchAccountingOverhead(env, warm, { n: n(1000, 50), warmup: n(50, 5) }),
  );
  await run(
    "journal",
    "turn journal",
    [
      "journal: turn.event overhead (p50 rate)",
      "journal: attach replay rate (p50)",
      "restart: start -> orphan-free (max)",
    ],
    () => benchJournal(env, { events: n(100_000, 10_000), runs: n(7, 1), restarts: n(5, 1) }),
  );
  await run(
    "runtimes",
    "runtimes (runc, runsc)",
    ["runsc cold ensure p50 (runc alongside)", "runsc warm turn overhead p50 (runc alongside)"],
    () => benchRuntimes(env, { coldN: n(10, 2), turnN: n(10, 2), warmup: n(1, 1) }),
  );
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const dockerHost = process.env.DOCKER_HOST || "unix:///var/run/docker.sock";
  const started = Date.now();
  const progress = (line: string): void => {
    process.stderr.write(`[bench +${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`);
  };
  const n = (full: number, quick: number): number => (args.quick ? quick : full);

  const sections: SectionResult[] = [];
  let failed = false;
  let interrupted = false;
  const run: RunSection = async (name, title, metrics, body) => {
    if (!args.only.has(name) || interrupted) return;
    progress(`section ${title}`);
    let section: SectionResult;
    try {
      section = await body();
    } catch (error) {
      failed = true;
      progress(`section ${title} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      section = failedSection(title, error, metrics);
    }
    sections.push(section);
    console.log(`${renderSection(section)}\n`);
  };
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  const machine = `${os.cpus().length} x ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`;
  const quickNote = args.quick ? " (QUICK: small N)" : "";

  let cleaned: BenchCleanup | null = null;
  let problems: readonly string[] = [];
  if ([...args.only].every((name) => ENGINE_FREE.has(name))) {
    console.log(`alive-codex-sidecar bench: ${machine}, no engine needed${quickNote}\n`);
  } else {
    const env: BenchEnv = await startBenchEnv({
      image: process.env.ALIVE_CODEX_IMAGE || null,
      baseImage: await chooseBaseImage(dockerHost),
      dockerHost,
      progress,
    });
    problems = env.problems;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (interrupted) return;
      interrupted = true;
      progress(`${signal}: cleaning up`);
      void env
        .cleanup()
        .then((report) => progress(report.summary))
        .finally(() => process.exit(130));
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    try {
      await runEngineSections(env, run, n, machine, quickNote);
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      if (!interrupted) {
        progress("cleaning up");
        cleaned = await env.cleanup();
      }
    }
  }

  await run(
    "broker",
    "brokered credentials",
    ["broker: p50 added per request (open connection)", `broker: ${n(50, 10)} MB download vs plain tunnel`],
    () =>
      benchBrokering({
        connects: n(200, 20),
        requests: n(500, 50),
        warmup: n(20, 5),
        downloadMb: n(50, 10),
        downloadRuns: n(3, 1),
      }),
  );

  const checks: Check[] = sections.flatMap((section) => section.checks);
  console.log(`${"=".repeat(24)}\n  Summary\n${"=".repeat(24)}\n${summaryTable(checks)}\n`);
  const missed = checks.filter((check) => !check.pass).length;
  console.log(
    `${checks.length - missed}/${checks.length} targets met; total run time ${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
  if (cleaned !== null) {
    console.log(cleaned.summary);
    if (cleaned.reapedContainers > 0)
      console.log(
        `cleanup: the reaper removed ${cleaned.reapedContainers} container(s) of the run that no section had removed`,
      );
    for (const failure of cleaned.failures) console.log(`cleanup: a step failed: ${failure}`);
  }
  if (problems.length > 0) {
    console.log(`\nThe sidecar logged ${problems.length} warning(s)/error(s); the first ones:`);
    for (const line of problems.slice(0, 5)) console.log(`  ${line}`);
  }
  const leftSomething =
    cleaned !== null &&
    cleaned.left.mounts.length +
      cleaned.left.loopDevices.length +
      cleaned.stillLeft.mounts.length +
      cleaned.stillLeft.loopDevices.length >
      0;
  return failed || leftSomething ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  },
);
