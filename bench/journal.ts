/**
 * The turn journal: what journaling every event costs the turn.event stream, how fast
 * turn.attach replays a journaled turn, and how long a sidecar started after a SIGKILL mid-turn takes
 * until no process of the killed sidecar's turn is left in the container.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { setImmediate as nextTurn } from "node:timers/promises";
import { isOwnProcess, listContainerProcesses, type ClassifiedProcess } from "../src/codex/container-processes.js";
import { Labels } from "../src/docker/labels.js";
import { reapLabelled } from "../src/docker/reaper.js";
import { ErrorCode, SidecarError } from "../src/errors.js";
import { SidecarClient } from "../src/index.js";
import { TurnHub } from "../src/turns/turn-hub.js";
import { TurnJournal } from "../src/journal/turn-journal.js";
import { startRpcServer, type RpcServer } from "../src/rpc/server.js";
import { sidecarVersion } from "../src/sidecar.js";
import { turnEventLine } from "../src/shared/turn-event-line.js";
import type { SidecarService, TurnResult } from "../src/service.js";
import { startCli, type CliRun } from "../test/support/cli-process.js";
import type { BenchEnv } from "./harness.js";
import { LATENCY_COLUMNS, latencyRow, ms, verdict, type SectionResult } from "./report.js";
import { formatTable, summarize } from "./stats.js";

export interface JournalBenchOptions {
  events: number;
  /** Runs of each variant, interleaved. */
  runs: number;
  restarts: number;
}

const UNSUPPORTED = (): Promise<never> =>
  Promise.reject(new SidecarError(ErrorCode.internal, "not part of the bench's synthetic service"));

/**
 * Turns that emit `events()` synthetic item.completed events (as bench/rpc.ts's), 1,000 per
 * event-loop turn. With `lines`, each event also comes as its turn.event line, as the TurnHub makes
 * it: that path without the journal is the baseline of the journal's own cost.
 */
function syntheticService(events: () => number, lines = false): SidecarService {
  return {
    health: UNSUPPORTED,
    ensureWorkspace: UNSUPPORTED,
    listWorkspaces: UNSUPPORTED,
    removeWorkspace: UNSUPPORTED,
    workspaceLogs: UNSUPPORTED,
    cancelTurn: UNSUPPORTED,
    attachTurn: UNSUPPORTED,
    getTurn: UNSUPPORTED,
    listTurns: UNSUPPORTED,
    async runTurn(params, hooks): Promise<TurnResult> {
      const turnId = params.turnId ?? "synthetic";
      const count = events();
      const emit = (seq: number, event: Parameters<typeof hooks.onEvent>[2]): void =>
        lines
          ? hooks.onEvent(turnId, seq, event, turnEventLine(turnId, seq, JSON.stringify(event)))
          : hooks.onEvent(turnId, seq, event);
      emit(0, { type: "sidecar.turn.accepted", turn_id: turnId, workspace_id: params.workspaceId, thread_id: null });
      for (let i = 1; i <= count; i++) {
        emit(i, {
          type: "item.completed",
          item: { id: `item_${i}`, type: "agent_message", text: `synthetic event ${i}` },
        });
        if (i % 1000 === 0) await nextTurn();
      }
      return {
        turnId,
        threadId: null,
        status: "completed",
        finalResponse: "",
        items: [],
        usage: null,
        turnUsage: null,
        resources: { cpuSeconds: null, peakMemoryBytes: null, wallMs: 0 },
        tokens: { input: 0, cached: 0, output: 0, reasoning: 0 },
      };
    },
  };
}

/** Iterates a run, checking every seq; events received / seconds from the call to the result. */
async function rateOf(run: ReturnType<SidecarClient["runTurn"]>, started: number, expected: number): Promise<number> {
  let next = 0;
  for await (const { seq } of run) {
    if (seq !== next) throw new Error(`turn.event seq ${seq} arrived where ${next} was expected`);
    next += 1;
  }
  await run.result;
  if (next !== expected) throw new Error(`received ${next} turn.event notifications, expected ${expected}`);
  return next / ((performance.now() - started) / 1000);
}

export async function benchJournal(env: BenchEnv, options: JournalBenchOptions): Promise<SectionResult> {
  const servers: RpcServer[] = [];
  const clients: SidecarClient[] = [];
  let events = options.events;
  const serve = async (name: string, service: SidecarService): Promise<SidecarClient> => {
    const socketPath = path.join(env.root, `${name}.sock`);
    servers.push(
      await startRpcServer({ socketPath, service, policy: env.config, log: env.log, version: sidecarVersion() }),
    );
    const client = await SidecarClient.connect(socketPath);
    clients.push(client);
    return client;
  };
  const rates = { plain: [] as number[], lines: [] as number[], journaled: [] as number[], replay: [] as number[] };
  let restart: { orphanFree: number[]; ready: number[] } = { orphanFree: [], ready: [] };
  try {
    const plain = syntheticService(() => events);
    const journal = new TurnJournal({
      dir: path.join(env.root, "bench-journal"),
      limits: { maxBytesPerTurn: 1024 ** 3, maxAgeMs: 0, maxTurns: 1000 },
      log: env.log,
    });
    await journal.open({ code: "sidecar_restarted", message: "restarted" });
    const hub = new TurnHub({ journal, log: env.log, run: (params, hooks) => plain.runTurn(params, hooks) });
    const journaled: SidecarService = {
      ...plain,
      runTurn: (params, hooks) => hub.run(params, hooks),
      attachTurn: (params, hooks) => hub.attachTurn(params, hooks),
    };
    const plainClient = await serve("journal-plain", plain);
    const linesClient = await serve(
      "journal-lines",
      syntheticService(() => events, true),
    );
    const journaledClient = await serve("journal-on", journaled);

    const once = async (client: SidecarClient): Promise<{ rate: number; turnId: string }> => {
      const started = performance.now();
      const run = client.runTurn({ workspaceId: "bench-journal", input: "synthetic events" });
      const rate = await rateOf(run, started, events + 1);
      return { rate, turnId: await run.turnId };
    };
    events = Math.min(10_000, options.events);
    await once(plainClient);
    await once(linesClient);
    await once(journaledClient);
    events = options.events;
    let lastTurn = "";
    // Interleaved, so drift in the machine's load hits both variants alike.
    for (let i = 0; i < options.runs; i++) {
      const order =
        i % 2 === 0 ? (["plain", "lines", "journaled"] as const) : (["journaled", "lines", "plain"] as const);
      for (const variant of order) {
        const { rate, turnId } = await once(
          variant === "plain" ? plainClient : variant === "lines" ? linesClient : journaledClient,
        );
        rates[variant].push(rate);
        if (variant === "journaled") lastTurn = turnId;
      }
    }
    for (let i = 0; i < options.runs; i++) {
      const started = performance.now();
      const replay = journaledClient.attachTurn(lastTurn);
      rates.replay.push(await rateOf(replay as ReturnType<SidecarClient["runTurn"]>, started, options.events + 1));
    }
    const fileBytes = (await fs.stat(path.join(env.root, "bench-journal", `${lastTurn}.jsonl`))).size;
    journal.close();

    restart = await measureRestarts(env, options.restarts);

    const plain50 = summarize(rates.plain).p50;
    const lines50 = summarize(rates.lines).p50;
    const journaled50 = summarize(rates.journaled).p50;
    // The journal's own cost: the same line-per-event path with and without the file.
    const overhead = 1 - journaled50 / lines50;
    const versusBefore = 1 - journaled50 / plain50;
    const overheadPass = overhead <= 0.05;
    const orphan = summarize(restart.orphanFree);
    const orphanPass = orphan.max < 5000;
    const rateRow = (label: string, values: number[], target: string, result: string) => {
      const s = summarize(values);
      return {
        case: label,
        runs: s.n,
        "p50 events/s": Math.round(s.p50),
        "min events/s": Math.round(s.min),
        "max events/s": Math.round(s.max),
        target,
        result,
      };
    };
    return {
      title: "7. Turn journal: event overhead, attach replay, restart sweep",
      tables: [
        formatTable([
          rateRow(
            `turn.event, no journal, generic serialisation (before issue 10; ${options.events.toLocaleString("en")} events)`,
            rates.plain,
            "-",
            "-",
          ),
          rateRow("turn.event, no journal, one line per event (baseline)", rates.lines, "-", "-"),
          rateRow(
            "turn.event, journaled (TurnHub + TurnJournal)",
            rates.journaled,
            `<= 5 % below baseline: ${(overhead * 100).toFixed(1)} % (vs before: ${(versusBefore * 100).toFixed(1)} %)`,
            verdict(overheadPass),
          ),
          rateRow(
            `turn.attach replay of the journaled turn (${(fileBytes / 2 ** 20).toFixed(1)} MiB file)`,
            rates.replay,
            "-",
            "-",
          ),
        ]),
        formatTable(
          [
            latencyRow("SIGKILL mid-turn, new serve spawned -> socket answers", restart.ready),
            latencyRow("SIGKILL mid-turn, new serve spawned -> no process of the turn", restart.orphanFree, undefined, {
              target: "< 5000 ms",
              result: verdict(orphanPass),
            }),
          ],
          LATENCY_COLUMNS,
        ),
      ],
      checks: [
        {
          metric: "journal: turn.event overhead (p50 rate)",
          measured: `${(overhead * 100).toFixed(1)} %`,
          target: "<= 5 %",
          pass: overheadPass,
        },
        {
          metric: "journal: attach replay rate (p50)",
          measured: `${Math.round(summarize(rates.replay).p50).toLocaleString("en")} events/s`,
          target: "-",
          pass: true,
        },
        {
          metric: "restart: start -> orphan-free (max)",
          measured: ms(orphan.max),
          target: "< 5000 ms",
          pass: orphanPass,
        },
      ],
      notes: [
        "event rates: one client, the synthetic turn of section 5 (1,000 events per event-loop turn), every seq checked; the three servers run in this process and are measured in turn; the journal's overhead is against the same one-line-per-event path without the file (the journaled path serialises each event once, for the wire and the file)",
        "replay: turn.attach of the ended turn from its start, read back from the journal file (page cache warm)",
        "restart: `alive-codex serve` as a child; a turn runs `(setsid sleep 1001 &); sleep 1000`; SIGKILL; a new serve on the same state dir; time from its spawn until the container holds only its own processes and a waiting launcher (src/codex/container-processes.ts; polled every 20 ms with docker exec)",
      ],
    };
  } finally {
    for (const client of clients) await client.close().catch(() => undefined);
    for (const server of servers) await server.close().catch(() => undefined);
  }
}

/**
 * What the turn runs or left in the container: every process but the container's own and the
 * launcher waiting for a turn (src/codex/container-processes.ts), zombies aside.
 */
async function leftProcesses(env: BenchEnv, containerId: string): Promise<ClassifiedProcess[]> {
  return (await listContainerProcesses(env.sidecar.engine, containerId)).filter(
    (p) => !isOwnProcess(p) && p.args !== "",
  );
}

async function until(
  condition: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  intervalMs = 20,
): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await condition().catch(() => false))) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

function isAlive(run: CliRun): boolean {
  return run.child.exitCode === null && run.child.signalCode === null;
}

/**
 * workspace.remove with purgeHome through the serve at `socketPath` (`spawn` first when none is
 * running); a turn a failed iteration left running is cancelled first (remove refuses a busy workspace).
 */
async function removeThroughServe(
  socketPath: string,
  workspaceId: string,
  spawn: (() => Promise<unknown>) | null,
): Promise<void> {
  if (spawn !== null) await spawn();
  const client = await SidecarClient.connect(socketPath);
  try {
    const running = async (): Promise<string[]> =>
      (await client.listTurns({ workspaceId, status: "running" })).turns.map((t) => t.turnId);
    for (const turnId of await running()) await client.cancelTurn(turnId).catch(() => undefined);
    await until(async () => (await running()).length === 0, 30_000, `the turns of ${workspaceId} to end`, 100);
    await client.removeWorkspace(workspaceId, { purgeHome: true });
  } finally {
    await client.close();
  }
}

async function measureRestarts(env: BenchEnv, runs: number): Promise<{ orphanFree: number[]; ready: number[] }> {
  const stateDir = path.join(env.root, "restart-state");
  const socketPath = path.join(env.root, "restart.sock");
  const workspace = await env.workspace(env.uniqueId("bench-restart"));
  // prettier-ignore
  const flags = [
    "--socket", socketPath, "--state-dir", stateDir, "--workspace-roots", path.dirname(workspace.workspacePath),
    "--image", env.imageRef,
    "--extra-labels", Object.entries(env.labels).map(([k, v]) => `${k}=${v}`).join(","),
    "--openai-base-url", env.stub.baseUrl, "--codex-api-key", "sk-bench-restart-0123456789", "--model", "gpt-5.5",
    "--uid-range", "10000-60000", "--gid-range", "10000-60000", "--idle-timeout", "0", "--log-level", "warn",
  ];
  const children: CliRun[] = [];
  const spawnServe = async (): Promise<{ child: CliRun; readyMs: number }> => {
    const started = performance.now();
    const child = startCli(["serve", ...flags]);
    children.push(child);
    await until(
      async () => {
        if (child.child.exitCode !== null) throw new Error(`serve exited: ${child.stderr()}`);
        const client = await SidecarClient.connect(socketPath, { timeoutMs: 1000 });
        await client.close();
        return true;
      },
      60_000,
      "serve to answer",
    );
    return { child, readyMs: performance.now() - started };
  };
  const orphanFree: number[] = [];
  const ready: number[] = [];
  let current: CliRun | null = null;
  try {
    current = (await spawnServe()).child;
    for (let i = 0; i < runs; i++) {
      const client = await SidecarClient.connect(socketPath);
      const { containerId } = await client.ensureWorkspace(workspace);
      env.stub.reset();
      env.stub.script({ kind: "command", cmd: "(setsid sleep 1001 </dev/null >/dev/null 2>&1 &); sleep 1000" });
      const run = client.runTurn({ workspaceId: workspace.workspaceId, input: "hold on" });
      run.result.catch(() => undefined);
      await until(
        async () => {
          const left = await leftProcesses(env, containerId);
          return ["sleep 1000", "sleep 1001"].every((sleep) => left.some((p) => p.args === sleep));
        },
        60_000,
        "the turn's sleeps",
      );
      const killed: CliRun = current;
      killed.child.kill("SIGKILL");
      await killed.exit;
      await client.close().catch(() => undefined);
      const started = performance.now();
      const next = spawnServe();
      await until(
        async () => (await leftProcesses(env, containerId)).length === 0,
        30_000,
        "no process of the killed turn",
      );
      orphanFree.push(performance.now() - started);
      const spawned = await next;
      ready.push(spawned.readyMs);
      current = spawned.child;
    }
  } finally {
    env.stub.reset();
    // The workspace goes through a sidecar, as an operator's would: with disks in force (this serve
    // runs with the default, auto, which mounts one on a root host with loop devices) its disk is
    // unmounted and its loop device detached, where deleting the state dir under a mounted disk
    // failed with EBUSY and left the loop device attached. Also after a failure: a serve that is not
    // running any more is replaced by one that adopts the workspace to remove it.
    await removeThroughServe(
      socketPath,
      workspace.workspaceId,
      current !== null && isAlive(current) ? null : spawnServe,
    ).catch((error: unknown) => {
      env.problems.push(
        `restart section: could not remove ${workspace.workspaceId} through the sidecar: ${String(error)}`,
      );
    });
    for (const child of children) {
      if (child.child.exitCode === null && child.child.signalCode === null) {
        child.child.kill("SIGTERM");
        await Promise.race([child.exit, new Promise((resolve) => setTimeout(resolve, 10_000))]);
        if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill("SIGKILL");
      }
    }
    await reapLabelled(env.docker, [`${Labels.stateDir}=${stateDir}`]);
  }
  return { orphanFree, ready };
}
