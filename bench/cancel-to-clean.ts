/**
 * Section 4, cancel-to-clean: a turn whose scripted model runs `sleep 1000 & sleep 1000` (a
 * background job plus a foreground one) is cancelled right after the command_execution item.started
 * event arrives (after one docker top that records the turn's processes). From service.cancelTurn,
 * two times:
 * (i) runTurn resolves with status "cancelled";
 * (ii) the container holds no process of the turn: `docker top` (the host's ps over the container's
 *      processes; it adds no process inside) lists only the container's own processes
 *      (turnProcessFilter: init, the main script and its forwarder loops, what those restart) and
 *      the launcher waiting for the next turn. Zombies count as remaining, and so do the socat
 *      children that carried the turn's connections (to the model proxy, the egress proxy).
 * The container is polled back to back from the moment of the cancel, so (ii) has the resolution
 * of one `docker top` call (see the table).
 */
import { performance } from "node:perf_hooks";
import type { WorkspaceParams } from "../src/service.js";
import { CONTAINER_RUN_DIR } from "../src/workspace/spec.js";
import type { BenchEnv } from "./harness.js";
import { LATENCY_COLUMNS, latencyRow, ms, verdict, type SectionResult } from "./report.js";
import { formatTable, summarize } from "./stats.js";

export interface CancelOptions {
  n: number;
  warmup: number;
}

interface ProcessEntry {
  pid: string;
  ppid: string;
  stat: string;
  args: string;
}

const COMMAND = "sleep 1000 & sleep 1000";

export async function benchCancelToClean(
  env: BenchEnv,
  params: WorkspaceParams,
  options: CancelOptions,
): Promise<SectionResult> {
  const { stub, docker } = env;
  const { service } = env.sidecar;
  let container = docker.getContainer((await service.ensureWorkspace(params)).containerId);

  const top = async (): Promise<ProcessEntry[]> => {
    const result = (await container.top({ ps_args: "-eo pid,ppid,stat,args" })) as {
      Titles: string[];
      Processes: string[][];
    };
    const column = (name: string): number => result.Titles.findIndex((title) => title.trim().toUpperCase() === name);
    const [pid, ppid, stat, args] = [column("PID"), column("PPID"), column("STAT"), column("COMMAND")];
    return (result.Processes ?? []).map((row) => ({
      pid: row[pid] ?? "",
      ppid: row[ppid] ?? "",
      stat: row[stat] ?? "",
      args: row[args] ?? "",
    }));
  };

  const resolved: number[] = [];
  const clean: number[] = [];
  const topCalls: number[] = [];
  const leftAtCancel: number[] = [];
  let sleepsSeen = 0;
  const connectionsAtCancel: number[] = [];

  const eventsAfterCancel: number[] = [];
  const lastEventToResolved: number[] = [];
  let completedAfterCancel = 0;

  for (let i = -options.warmup; i < options.n; i++) {
    // Untimed: restarts the container if something stopped it (a parallel test sidecar's idle reaper adopts every managed container).
    container = docker.getContainer((await service.ensureWorkspace(params)).containerId);
    // What runs before the turn tells the container's own processes from the turn's.
    const isTurnProcess = turnProcessFilter(await top());
    stub.reset();
    stub.script({ kind: "command", cmd: COMMAND });
    // Should codex get as far as a second request (it does once exec_command yields), the turn ends with a message.
    stub.respondWith(() => ({ kind: "message", text: "second request answered" }));
    const turnId = env.uniqueId(`bench-cancel-${i < 0 ? "w" : i}`);
    let cancelledAt = NaN;
    let lastEventAt = NaN;
    let lateEvents = 0;
    let lateCompletion = false;
    let markStarted: () => void = () => undefined;
    const commandStarted = new Promise<void>((resolve) => {
      markStarted = resolve;
    });
    const running = service.runTurn(
      { workspaceId: params.workspaceId, turnId, input: "Start two sleeps." },
      {
        onEvent: (_turnId, _seq, event) => {
          if (event.type === "item.started" && event.item.type === "command_execution") markStarted();
          if (Number.isFinite(cancelledAt)) {
            lastEventAt = performance.now();
            lateEvents += 1;
            if (event.type === "turn.completed") lateCompletion = true;
          }
        },
      },
    );
    const timeout = setTimeout(() => markStarted(), 30_000);
    await Promise.race([commandStarted, running.then(() => undefined)]);
    clearTimeout(timeout);

    // One probe before the cancel (about one docker top call after item.started): proof that the
    // turn's processes, the sleeps among them, are there to be cleaned.
    const before = (await top()).filter(isTurnProcess);
    if (i >= 0) {
      leftAtCancel.push(before.length);
      if (before.some((p) => p.args.startsWith("sleep 1000"))) sleepsSeen += 1;
      connectionsAtCancel.push(before.filter((p) => p.args.startsWith("socat ")).length);
    }

    let resolvedAt = NaN;
    const result = running.then((r) => {
      resolvedAt = performance.now();
      return r;
    });
    const t0 = performance.now();
    cancelledAt = t0;
    const { cancelled } = await service.cancelTurn({ turnId });
    if (!cancelled) throw new Error(`turn ${turnId} was not running when cancelled`);
    let cleanAt = NaN;
    const deadline = t0 + 30_000;
    while (performance.now() < deadline) {
      const probeStart = performance.now();
      const processes = await top();
      topCalls.push(performance.now() - probeStart);
      if (!processes.some(isTurnProcess)) {
        cleanAt = performance.now();
        break;
      }
    }
    const turn = await result;
    if (turn.status !== "cancelled")
      throw new Error(`turn ${turnId} ended ${turn.status}, expected cancelled (${turn.error?.message ?? ""})`);
    if (!Number.isFinite(cleanAt))
      throw new Error(`turn ${turnId}: processes still in the container 30 s after the cancel`);
    if (i >= 0) {
      resolved.push(resolvedAt - t0);
      clean.push(cleanAt - t0);
      eventsAfterCancel.push(lateEvents);
      if (lateCompletion) completedAfterCancel += 1;
      if (Number.isFinite(lastEventAt)) lastEventToResolved.push(resolvedAt - lastEventAt);
    }
  }
  stub.reset();

  const c = summarize(clean);
  const pass = c.p99 <= 1000;
  const resolvedPass = summarize(resolved).p99 <= 1000;
  return {
    title: "4. Cancel-to-clean (sleep 1000 & sleep 1000, cancelled at item.started)",
    tables: [
      formatTable(
        [
          latencyRow("cancel -> runTurn resolved (cancelled)", resolved, undefined, {
            target: "p99 <= 1000 ms",
            result: verdict(resolvedPass),
          }),
          latencyRow("cancel -> no turn process in container", clean, undefined, {
            target: "p99 <= 1000 ms",
            result: verdict(pass),
          }),
          latencyRow("probe: one docker top call", topCalls, undefined, { target: "-", result: "-" }),
        ],
        LATENCY_COLUMNS,
      ),
    ],
    checks: [
      {
        metric: "cancel -> turn resolved p99",
        measured: ms(summarize(resolved).p99),
        target: "<= 1000 ms",
        pass: resolvedPass,
      },
      { metric: "cancel -> container clean p99", measured: ms(c.p99), target: "<= 1000 ms", pass },
    ],
    notes: [
      `the turn's processes just before the cancel (one docker top call after item.started): median ${summarize(leftAtCancel).p50}, max ${summarize(leftAtCancel).max}; \`sleep 1000\` among them in ${sleepsSeen}/${leftAtCancel.length} turns`,
      `socat connection children (a turn's connections through the forwarders) among them: median ${summarize(connectionsAtCancel).p50}, max ${summarize(connectionsAtCancel).max}; they count until they exit`,
      `codex events that still arrived after the cancel: median ${summarize(eventsAfterCancel).p50}; codex's own turn.completed arrived after the cancel in ${completedAfterCancel}/${eventsAfterCancel.length} turns; last such event -> runTurn resolved: p50 ${ms(summarize(lastEventToResolved).p50)}`,
      "(ii) is polled back to back from the cancel, so its figures carry the probe's own latency (last row) as resolution",
      `no baseline; ${options.warmup} warm-up turn(s) discarded`,
    ],
  };
}

/**
 * From a `docker top` taken before the turn: is a process the turn's? The container's own are the
 * engine's init, the main script (the log pump, containerMainScript) and the forwarder loops it
 * forked (egress/container-net.ts), and any child of the main script or of a loop: a fresh `cat` of
 * the log FIFO, a socat listener (restarted or not), a `sleep 1`. A socat *connection* child is a
 * child of a listener, not of a loop, so it is the turn's until it exits. So is everything that
 * descends from the turn's exec or was reparented to init, except the pre-started launcher waiting
 * for the next turn (once it execs codex, its args change and it is the turn's).
 */
function turnProcessFilter(baseline: readonly ProcessEntry[]): (p: ProcessEntry) => boolean {
  const pids = new Set(baseline.map((p) => p.pid));
  // The engine's init (an exec, such as the waiting launcher, also has its parent outside).
  const init = baseline.find((p) => !pids.has(p.ppid) && p.args.includes("docker-init"));
  const main = baseline.find((p) => p.ppid === init?.pid && p.args.includes(CONTAINER_RUN_DIR));
  if (!init || !main)
    throw new Error(`cannot find init and the main script in docker top: ${JSON.stringify(baseline)}`);
  // The forwarder loops: subshells of the main script (same args), present from the container's start.
  const loops = baseline.filter((p) => p.ppid === main.pid && p.args === main.args);
  const supervisors = new Set([main.pid, ...loops.map((p) => p.pid)]);
  if (loops.length === 0)
    throw new Error(`no forwarder loop under the main script in docker top: ${JSON.stringify(baseline)}`);
  return (p) => {
    if (p.stat.startsWith("Z")) return true;
    if (p.pid === init.pid || supervisors.has(p.pid) || supervisors.has(p.ppid)) return false;
    return !p.args.includes("alive-launch -c");
  };
}
