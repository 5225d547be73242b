/**
 * The turn journal: one file per turn under `<stateDir>/journal/` (root-owned, mode 0700, outside
 * every workspace's HOME and never mounted), written as the turn runs (journal-writer.ts) and read
 * back by turn.attach and turn.get. Ended turns are pruned by age and count; turns an earlier
 * sidecar left without an end are given one at start-up (recover).
 */
import { constants, createReadStream, open, promises as fsp } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { TurnResult, TurnStatus } from "../service.js";
import {
  JOURNAL_SUFFIX,
  parseRecord,
  summaryOfEnd,
  turnsToPrune,
  type EndRecord,
  type TurnSummary,
} from "./journal-records.js";
import { turnEventLineSeq } from "../shared/turn-event-line.js";
import { JournalWriter, openJournalFile } from "./journal-writer.js";
import { readLastLine } from "./last-line.js";

export interface JournalLimits {
  /** Bytes of event lines kept per turn; past it a marker event, then nothing more but the end. */
  maxBytesPerTurn: number;
  /** Ended turns older than this are pruned (0: never by age). */
  maxAgeMs: number;
  /** Ended turns kept at most. */
  maxTurns: number;
}

export interface TurnJournalOptions {
  dir: string;
  limits: JournalLimits;
  log: Logger;
}

/** A turn an earlier sidecar left running, as its journal has it: its start, its last seq, and the bytes of whole lines. */
export interface UnfinishedTurn {
  turnId: string;
  workspaceId: string;
  startedAt: string | null;
  lastSeq: number;
  keep: number;
}

/** A turn an earlier sidecar left running, now ended in its journal. */
export interface RecoveredTurn {
  turnId: string;
  workspaceId: string;
}

/** What start-up reads of a turn's file: its start, its last seq, and how many bytes of whole lines it holds. */
interface OrphanScan {
  workspaceId: string | null;
  startedAt: string | null;
  lastSeq: number;
  keep: number;
}

export function journalDir(stateDir: string): string {
  return path.join(stateDir, "journal");
}

export class TurnJournal {
  /** Ended turns, by id (their summaries; results stay in the files). */
  readonly #ended = new Map<string, TurnSummary>();
  #pruner: NodeJS.Timeout | null = null;

  constructor(private readonly options: TurnJournalOptions) {}

  /**
   * Makes the directory (refusing one that is a symlink or not ours), indexes the ended turns, ends
   * those an earlier sidecar left running with `failed`/`code`, and prunes.
   */
  async open(restartError: { code: string; message: string }): Promise<RecoveredTurn[]> {
    const unfinished = await this.openLeavingUnfinished();
    for (const turn of unfinished) await this.endUnfinished(turn, restartError);
    return unfinished.map(({ turnId, workspaceId }) => ({ turnId, workspaceId }));
  }

  /**
   * Makes the directory (refusing one that is a symlink or not ours), indexes the ended turns, and
   * returns those an earlier sidecar left running, as they are: each is then adopted (reopen) or
   * ended (endUnfinished). Prunes nothing yet.
   */
  async openLeavingUnfinished(): Promise<UnfinishedTurn[]> {
    const { dir, log } = this.options;
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    const stat = await fsp.lstat(dir);
    if (!stat.isDirectory()) throw new Error(`the turn journal ${dir} is not a directory`);
    if (typeof process.getuid === "function" && stat.uid !== process.getuid())
      throw new Error(`the turn journal ${dir} is not owned by the sidecar's user`);
    await fsp.chmod(dir, 0o700);
    const unfinished: UnfinishedTurn[] = [];
    for (const name of await fsp.readdir(dir)) {
      if (!name.endsWith(JOURNAL_SUFFIX)) continue;
      const turnId = name.slice(0, -JOURNAL_SUFFIX.length);
      try {
        const scan = await this.#scan(turnId);
        if (scan.end) {
          this.#ended.set(turnId, summaryOfEnd(scan.end));
          continue;
        }
        unfinished.push({ turnId, ...scan, workspaceId: scan.workspaceId ?? "" });
      } catch (error) {
        log.warn("ignoring an unreadable turn journal", { turnId, error: errorMessage(error) });
      }
    }
    return unfinished;
  }

  /** Ends a turn an earlier sidecar left running, as failed with `error`. */
  async endUnfinished(turn: UnfinishedTurn, error: { code: string; message: string }): Promise<void> {
    const end = await this.#endOrphan(turn.turnId, turn, error);
    this.#ended.set(turn.turnId, summaryOfEnd(end));
  }

  /**
   * A writer that goes on with a turn an earlier sidecar left running (it is adopted): a line that
   * sidecar had half written is cut off, and the turn's lines follow.
   */
  async reopen(turn: UnfinishedTurn): Promise<JournalWriter> {
    const file = this.#file(turn.turnId);
    const handle = await fsp.open(file, constants.O_RDWR | constants.O_NOFOLLOW);
    try {
      await handle.truncate(turn.keep);
    } finally {
      await handle.close();
    }
    const fd = await new Promise<number>((resolve, reject) =>
      open(file, constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW, (error, opened) =>
        error ? reject(error) : resolve(opened),
      ),
    );
    return new JournalWriter(
      fd,
      this.options.limits.maxBytesPerTurn,
      this.options.log.child({ turnId: turn.turnId }),
      turn.keep,
    );
  }

  /** Prunes now and then every `intervalMs` (the timer does not hold the process). */
  startPruning(intervalMs: number): void {
    this.#pruner = setInterval(() => void this.prune(), intervalMs);
    this.#pruner.unref();
  }

  close(): void {
    if (this.#pruner) clearInterval(this.#pruner);
  }

  /** A new turn's writer (a leftover file with the same id is replaced). */
  async create(turnId: string): Promise<JournalWriter> {
    this.#ended.delete(turnId);
    const fd = await openJournalFile(this.#file(turnId));
    return new JournalWriter(fd, this.options.limits.maxBytesPerTurn, this.options.log.child({ turnId }));
  }

  /** Called once a turn's end line is in its file. */
  ended(summary: TurnSummary): void {
    this.#ended.set(summary.turnId, summary);
  }

  endedSummary(turnId: string): TurnSummary | undefined {
    return this.#ended.get(turnId);
  }

  endedSummaries(): TurnSummary[] {
    return [...this.#ended.values()];
  }

  /**
   * The events of a turn with seq > afterSeq, in order, each as its turn.event line (never parsed:
   * it goes out as written). `endBytes` stops at that offset: a running turn's file is read only up to its last
   * complete write.
   */
  async *events(turnId: string, afterSeq: number, endBytes?: number): AsyncGenerator<{ seq: number; line: string }> {
    if (endBytes === 0) return;
    const input = createReadStream(this.#file(turnId), {
      encoding: "utf8",
      highWaterMark: 256 * 1024,
      ...(endBytes === undefined ? {} : { end: endBytes - 1 }),
    });
    const lines = createInterface({ input, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        const seq = turnEventLineSeq(line);
        if (seq !== null && seq > afterSeq) yield { seq, line: `${line}\n` };
      }
    } finally {
      lines.close();
      input.destroy();
    }
  }

  /** The end line of an ended turn: its result. */
  async result(turnId: string): Promise<TurnResult | null> {
    const scan = await this.#scan(turnId, { endOnly: true });
    return scan.end?.result ?? null;
  }

  /** Removes ended turns past the age and the count. */
  async prune(now = Date.now()): Promise<number> {
    const { maxAgeMs, maxTurns } = this.options.limits;
    const doomed = turnsToPrune([...this.#ended.values()], now, maxAgeMs, maxTurns);
    for (const turnId of doomed) {
      this.#ended.delete(turnId);
      await fsp
        .rm(this.#file(turnId), { force: true })
        .catch((error: unknown) =>
          this.options.log.warn("cannot prune a turn journal", { turnId, error: errorMessage(error) }),
        );
    }
    return doomed.length;
  }

  #file(turnId: string): string {
    return path.join(this.options.dir, `${turnId}${JOURNAL_SUFFIX}`);
  }

  /**
   * Reads a file's start, its last seq and its end line. With `endOnly`, only the tail is read when
   * it holds a complete end line (ended turns: cheap at start-up); else the whole file.
   */
  async #scan(turnId: string, options: { endOnly?: boolean } = {}): Promise<OrphanScan & { end: EndRecord | null }> {
    const file = this.#file(turnId);
    const tail = await readLastLine(file);
    const last = tail.line === null ? null : parseRecord(tail.line);
    // A line the killed sidecar had half written (no newline yet) is cut off when the turn is ended.
    const keep = tail.complete ? tail.size : tail.size - Buffer.byteLength(tail.line ?? "");
    if (last?.k === "end" && tail.complete)
      return { workspaceId: last.workspaceId, startedAt: last.startedAt, lastSeq: last.lastSeq, end: last, keep };
    if (options.endOnly) return { workspaceId: null, startedAt: null, lastSeq: -1, end: null, keep };
    let workspaceId: string | null = null;
    let startedAt: string | null = null;
    let lastSeq = -1;
    if (keep === 0) return { workspaceId, startedAt, lastSeq, end: null, keep };
    const input = createReadStream(file, { encoding: "utf8", end: keep - 1 });
    for await (const line of createInterface({ input, crlfDelay: Infinity })) {
      const record = parseRecord(line);
      if (record?.k === "start") ({ workspaceId, startedAt } = record);
      else if (record?.k === "event") lastSeq = Math.max(lastSeq, record.seq);
    }
    return { workspaceId, startedAt, lastSeq, end: null, keep };
  }

  /** Ends a turn an earlier sidecar left without an end line (a torn last line is cut off first). */
  async #endOrphan(turnId: string, scan: OrphanScan, error: { code: string; message: string }): Promise<EndRecord> {
    const file = this.#file(turnId);
    const endedAt = new Date().toISOString();
    const status: TurnStatus = "failed";
    const end: EndRecord = {
      k: "end",
      turnId,
      workspaceId: scan.workspaceId ?? "",
      startedAt: scan.startedAt ?? endedAt,
      endedAt,
      status,
      lastSeq: scan.lastSeq,
      result: {
        turnId,
        threadId: null,
        status,
        finalResponse: "",
        items: [],
        usage: null,
        turnUsage: null,
        resources: {
          cpuSeconds: null,
          peakMemoryBytes: null,
          wallMs: Date.parse(endedAt) - Date.parse(scan.startedAt ?? endedAt),
        },
        tokens: { input: 0, cached: 0, output: 0, reasoning: 0 },
        error,
      },
    };
    const handle = await fsp.open(file, "r+");
    try {
      await handle.truncate(scan.keep);
      await handle.write(`${JSON.stringify(end)}\n`, scan.keep);
    } finally {
      await handle.close();
    }
    return end;
  }
}
