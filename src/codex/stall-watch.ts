/**
 * The stall watch: notices a turn whose codex waits forever for a child that has already exited,
 * and ends it `sandbox_stalled` instead of letting it wait for its deadline
 * (docs/runtimes.md, "The random stall").
 *
 * Under gVisor (Debian's runsc 2022, ptrace platform) about one turn in a hundred on a loaded 2-core
 * machine stopped for good: codex's child `bash` (the shell snapshot, in every case measured) had
 * exited and sat as a zombie, and codex never reaped it nor went on. A SIGCHLD sent to codex did not
 * wake it (0 of 3, though not proven delivered: docs/runtimes.md). The shell snapshot is now off (config-overrides.ts); the watch is the net for
 * any other child that meets the same fate. While codex has given no sign of life for `quietMs`,
 * the watch lists the sandbox's processes every `intervalMs`; a child of codex seen as a zombie on
 * `stallLooks` looks running, or a sandbox that does not answer the listing within
 * `listTimeoutMs` three times running, is the verdict (a listing that fails otherwise, e.g. on a
 * container that died, is no evidence). Codex is the process exec'd from outside (parent pid 0)
 * named codex, as the sweep knows it.
 */
export interface ProcEntry {
  pid: number;
  ppid: number;
  /** /proc/<pid>/stat's state letter: R, S, D, Z, T, ... */
  state: string;
  /** utime + stime, in clock ticks. */
  ticks: number;
  comm: string;
}

/** Parses PROC_LIST_SCRIPT's lines ("pid ppid state ticks comm | cmdline"); other lines are skipped. */
export function parseProcList(text: string): ProcEntry[] {
  const entries: ProcEntry[] = [];
  for (const line of text.split("\n")) {
    const match = /^(\d+) (\d+) (\S) (\d+) (.*?) \| /.exec(`${line} `);
    if (!match) continue;
    entries.push({
      pid: Number(match[1]),
      ppid: Number(match[2]),
      state: match[3] as string,
      ticks: Number(match[4]),
      comm: match[5] as string,
    });
  }
  return entries;
}

/** Codex's children that have exited and that it has not reaped, by codex pid (codex: parent pid 0, comm codex). */
export function unreapedChildren(procs: readonly ProcEntry[]): Map<number, number[]> {
  const codexPids = new Set(procs.filter((p) => p.ppid === 0 && p.comm === "codex").map((p) => p.pid));
  const found = new Map<number, number[]>();
  for (const p of procs) {
    if (p.state !== "Z" || !codexPids.has(p.ppid)) continue;
    found.set(p.ppid, [...(found.get(p.ppid) ?? []), p.pid]);
  }
  return found;
}

export interface StallWatchTimings {
  /** Look only once codex has been quiet this long. */
  quietMs: number;
  /** Between two looks. */
  intervalMs: number;
  /** Looks in a row on which the same exited child of codex must be seen for the verdict. */
  stallLooks: number;
  /** A listing that takes longer than this did not answer. */
  listTimeoutMs: number;
}

/**
 * A healthy codex reaps a child within milliseconds; these keep the listings rare (an exec under
 * gVisor costs tens of milliseconds of CPU) and give the verdict about 25 s after a stall began.
 */
export const DEFAULT_STALL_TIMINGS: StallWatchTimings = {
  quietMs: 10_000,
  intervalMs: 5000,
  stallLooks: 3,
  listTimeoutMs: 10_000,
};

export interface StallWatchOptions {
  timings: StallWatchTimings;
  /** The sandbox's processes (PROC_LIST_SCRIPT run inside); rejects when it does not answer in time. */
  list: (signal: AbortSignal) => Promise<ProcEntry[]>;
  /** The verdict, once: the turn is stalled for `reason`. */
  onStall: (reason: string) => void;
  /** Each look, for the debug log: what the listing gave, what was decided, the zombies seen so far. */
  onLook?: (look: { answer: string; outcome: LookOutcome["kind"]; seen: Array<[number, number]> }) => void;
  now?: () => number;
}

/** What one look decides; pure, so the rules are unit-tested without a sandbox. */
export type LookOutcome = { kind: "fine" } | { kind: "stalled"; reason: string };

/** The watch's memory between looks: on how many looks in a row each zombie was seen, and unanswered listings. */
export interface WatchMemory {
  seen: Map<number, number>;
  unanswered: number;
}

export function newWatchMemory(): WatchMemory {
  return { seen: new Map(), unanswered: 0 };
}

/**
 * Listings in a row that must go unanswered for the verdict: a sandbox busy with a fork bomb may
 * miss one or two, and dies on its own (container_died) well within three.
 */
const UNANSWERED_LOOKS = 3;

/** One look: `procs` is the listing, or null when the sandbox did not answer it. */
export function decideLook(
  memory: WatchMemory,
  procs: readonly ProcEntry[] | null,
  timings: StallWatchTimings,
): LookOutcome {
  if (procs === null) {
    memory.unanswered += 1;
    return memory.unanswered >= UNANSWERED_LOOKS
      ? {
          kind: "stalled",
          reason: `the sandbox did not answer a process listing within ${timings.listTimeoutMs} ms, ${UNANSWERED_LOOKS} times running`,
        }
      : { kind: "fine" };
  }
  memory.unanswered = 0;
  const unreaped = unreapedChildren(procs);
  const current = new Set([...unreaped.values()].flat());
  for (const pid of [...memory.seen.keys()]) if (!current.has(pid)) memory.seen.delete(pid);
  for (const [codexPid, zombies] of unreaped) {
    for (const pid of zombies) memory.seen.set(pid, (memory.seen.get(pid) ?? 0) + 1);
    const missed = zombies.filter((pid) => (memory.seen.get(pid) ?? 0) >= timings.stallLooks);
    if (missed.length > 0) {
      const seconds = Math.round(((timings.stallLooks - 1) * timings.intervalMs) / 1000);
      return {
        kind: "stalled",
        reason: `codex (pid ${codexPid}) has not reaped its exited child${missed.length > 1 ? "ren" : ""} ${missed.join(", ")} for ${seconds} s`,
      };
    }
  }
  return { kind: "fine" };
}

/** One turn's watch: progress() on every sign of life from codex; stop() when the turn ends. */
export class StallWatch {
  private lastProgress: number;
  private readonly memory = newWatchMemory();
  private timer: NodeJS.Timeout | null = null;
  private looking: AbortController | null = null;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly options: StallWatchOptions) {
    this.now = options.now ?? Date.now;
    this.lastProgress = this.now();
  }

  start(): this {
    this.schedule();
    return this;
  }

  progress(): void {
    this.lastProgress = this.now();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.looking?.abort();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.options.timings.intervalMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    this.timer = null;
    if (this.stopped) return;
    if (this.now() - this.lastProgress >= this.options.timings.quietMs) {
      const outcome = await this.look();
      if (this.stopped) return;
      if (outcome.kind === "stalled") {
        this.stopped = true;
        this.options.onStall(outcome.reason);
        return;
      }
    }
    this.schedule();
  }

  private async look(): Promise<LookOutcome> {
    const controller = new AbortController();
    this.looking = controller;
    const { listTimeoutMs } = this.options.timings;
    let timer: NodeJS.Timeout | undefined;
    // The deadline is ours, not the listing's to honour: an engine that never answers the exec (or
    // its inspect) must not hold the watch.
    const deadline = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => {
        controller.abort(new Error(`no answer within ${listTimeoutMs} ms`));
        resolve("timeout");
      }, listTimeoutMs);
    });
    const listing = this.options.list(controller.signal).then(
      (procs) => ({ procs }),
      (error: unknown) => ({ error }),
    );
    const answer = await Promise.race([listing, deadline]);
    clearTimeout(timer);
    this.looking = null;
    // Stopped while looking: no verdict.
    if (this.stopped) return { kind: "fine" };
    let outcome: LookOutcome;
    if (answer === "timeout") outcome = decideLook(this.memory, null, this.options.timings);
    // Any other failure (the container stopped or died: the turn fails as container_died) is no evidence.
    else if ("error" in answer)
      outcome = controller.signal.aborted ? decideLook(this.memory, null, this.options.timings) : { kind: "fine" };
    else outcome = decideLook(this.memory, answer.procs, this.options.timings);
    this.options.onLook?.({
      answer:
        answer === "timeout"
          ? "timeout"
          : "error" in answer
            ? `error: ${String((answer.error as Error)?.message ?? answer.error)}`
            : `${answer.procs.length} processes`,
      outcome: outcome.kind,
      seen: [...this.memory.seen],
    });
    return outcome;
  }
}
