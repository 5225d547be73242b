/**
 * Turns as clients see them across connections: every turn's events go to its journal as they
 * happen, and to the connections attached to it (turn.attach); a turn.run with onDisconnect
 * "continue" keeps running when its client goes away (it is then "detached" until someone attaches).
 *
 * Attach without gap or duplicate: the attacher subscribes to live events first (kept in a queue),
 * waits until the journal file holds every event so far, replays the file after `afterSeq`, then the
 * queue after the last seq it sent, then goes live. Everything runs on one thread, so nothing slips
 * between the queue and live.
 */
import { randomUUID } from "node:crypto";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { AttachTurnHooks, RunTurnParams, TurnHooks, TurnInfo, TurnResult } from "../service.js";
import { raceAbort } from "../shared/abort.js";
import { turnEventLine } from "../shared/turn-event-line.js";
import type { TurnPhase, TurnSummary } from "../journal/journal-records.js";
import type { TurnJournal, UnfinishedTurn } from "../journal/turn-journal.js";
import { TurnAbandoned } from "./turn-continuity.js";
import { internalFailure, unknownTurn } from "./turn-failures.js";
import type { EventSink, LiveTurn } from "./live-turn.js";

export type RunTurnFn = (params: RunTurnParams, hooks: TurnHooks) => Promise<TurnResult>;

export interface TurnHubOptions {
  journal: TurnJournal;
  log: Logger;
  run: RunTurnFn;
  /** Told once a turn's end is in its journal. */
  onEnded?: (turnId: string) => Promise<void>;
}

export interface TurnListFilter {
  workspaceId?: string;
  status?: TurnPhase;
}

export class TurnHub {
  readonly #live = new Map<string, LiveTurn>();

  constructor(private readonly options: TurnHubOptions) {}

  /** Running turns nobody is connected to: their turn.run client left and nobody attached. */
  get detached(): number {
    let count = 0;
    for (const turn of this.#live.values())
      if (turn.result === null && turn.clientGone && turn.subscribers.size === 0) count += 1;
    return count;
  }

  /** Runs a turn through the runner, journaling it; with onDisconnect "continue", the client's signal does not cancel it. */
  async run(params: RunTurnParams, hooks: TurnHooks): Promise<TurnResult> {
    const turnId = params.turnId ?? randomUUID();
    const keepRunning = params.options?.onDisconnect === "continue";
    let live: LiveTurn | null = null;
    let clientGone = false;
    const onClientGone = (): void => {
      clientGone = true;
      if (live) live.clientGone = true;
    };
    if (keepRunning) hooks.signal?.addEventListener("abort", onClientGone, { once: true });
    const onEvent: TurnHooks["onEvent"] = (id, seq, event, given) => {
      // Serialised once (by the runner, which checks codex's events as it encodes them, or here):
      // the journal keeps the turn.event line the connection sends.
      const line = given ?? turnEventLine(turnId, seq, JSON.stringify(event));
      // The runner emits seq 0 only once it has admitted the turn: a refused turn.run (a busy
      // workspace, a turn id already running) never touches the journal or the turn it collides with.
      live ??= this.#begin(turnId, params.workspaceId, clientGone);
      if (!clientGone) hooks.onEvent(id, seq, event, line);
      this.#deliver(live, seq, event, line);
    };
    let result: TurnResult;
    try {
      result = await this.options.run(
        { ...params, turnId },
        { onEvent, ...(keepRunning || !hooks.signal ? {} : { signal: hooks.signal }) },
      );
    } catch (error) {
      if (live && error instanceof TurnAbandoned) await this.#leave(live);
      else if (live) await this.#end(live, internalFailure(turnId, error));
      throw error;
    } finally {
      hooks.signal?.removeEventListener("abort", onClientGone);
    }
    if (live) await this.#end(live, result);
    return result;
  }

  /**
   * Goes on with a turn an earlier sidecar left running (turn-adoption.ts): its journal file is
   * reopened where its last whole line ends, `run` follows the turn, and its events after the
   * journal's last seq are journaled and sent to whoever attaches. Nobody is connected to it until
   * someone attaches.
   */
  async adopt(turn: UnfinishedTurn, run: (hooks: TurnHooks) => Promise<TurnResult>): Promise<TurnResult> {
    const { turnId, workspaceId } = turn;
    const live = this.#begin(turnId, workspaceId, true, turn);
    const onEvent: TurnHooks["onEvent"] = (_id, seq, event, given) =>
      this.#deliver(live, seq, event, given ?? turnEventLine(turnId, seq, JSON.stringify(event)));
    let result: TurnResult;
    try {
      result = await run({ onEvent });
    } catch (error) {
      if (error instanceof TurnAbandoned) await this.#leave(live);
      else await this.#end(live, internalFailure(turnId, error));
      throw error;
    }
    await this.#end(live, result);
    return result;
  }

  /**
   * Sends the turn's events after `afterSeq` through `sink` (journal, then live), and resolves with
   * its result. -32004 for a turn neither running nor in the journal.
   */
  async attach(
    turnId: string,
    afterSeq: number | undefined,
    sink: EventSink,
    signal: AbortSignal,
  ): Promise<TurnResult> {
    let last = afterSeq ?? -1;
    const send = (seq: number, event: unknown, line: string): void => {
      if (seq <= last) return;
      last = seq;
      sink(seq, event, line);
    };
    const live = this.#live.get(turnId);
    if (live === undefined) {
      if (this.options.journal.endedSummary(turnId) === undefined) throw unknownTurn(turnId);
      for await (const record of this.options.journal.events(turnId, last)) {
        signal.throwIfAborted();
        send(record.seq, null, record.line);
      }
      const result = await this.options.journal.result(turnId);
      if (result === null) throw unknownTurn(turnId);
      return result;
    }
    const queued: Array<[number, unknown, string]> = [];
    let direct = false;
    const subscriber: EventSink = (seq, event, line) => {
      if (direct) send(seq, event, line);
      else queued.push([seq, event, line]);
    };
    live.subscribers.add(subscriber);
    try {
      await live.opening;
      await live.writer?.flushed();
      // Only what is in the file now, all complete lines; later events are in the queue.
      for await (const record of this.options.journal.events(turnId, last, live.writer?.writtenBytes ?? 0)) {
        signal.throwIfAborted();
        send(record.seq, null, record.line);
      }
      for (const [seq, event, line] of queued) send(seq, event, line);
      queued.length = 0;
      direct = true;
      return await raceAbort(live.ended, signal);
    } finally {
      live.subscribers.delete(subscriber);
    }
  }

  /** turn.attach as the service offers it: events to `hooks.onEvent` with their JSON. */
  attachTurn(params: { turnId: string; afterSeq?: number }, hooks: AttachTurnHooks): Promise<TurnResult> {
    const { turnId } = params;
    return this.attach(
      turnId,
      params.afterSeq,
      (seq, event, line) => hooks.onEvent(turnId, seq, event as Parameters<AttachTurnHooks["onEvent"]>[2], line),
      hooks.signal,
    );
  }

  async get(turnId: string): Promise<TurnInfo> {
    const live = this.#live.get(turnId);
    if (live) return { ...this.#summaryOf(live), result: live.result };
    const summary = this.options.journal.endedSummary(turnId);
    if (summary === undefined) throw unknownTurn(turnId);
    const result = await this.options.journal.result(turnId);
    if (result === null) throw unknownTurn(turnId);
    return { ...summary, result };
  }

  list(filter: TurnListFilter = {}): TurnSummary[] {
    const live = [...this.#live.values()].map((turn) => this.#summaryOf(turn));
    const liveIds = new Set(live.map((turn) => turn.turnId));
    const ended = this.options.journal.endedSummaries().filter((turn) => !liveIds.has(turn.turnId));
    return [...live, ...ended]
      .filter(
        (turn) =>
          (filter.workspaceId === undefined || turn.workspaceId === filter.workspaceId) &&
          (filter.status === undefined || turn.status === filter.status),
      )
      .sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  #summaryOf(turn: LiveTurn): TurnSummary {
    const ended = turn.result !== null;
    return {
      ...turn.summary,
      ...(ended ? { status: turn.result!.status } : {}),
      detached: !ended && turn.clientGone && turn.subscribers.size === 0,
    };
  }

  #begin(turnId: string, workspaceId: string, clientGone: boolean, adopted?: UnfinishedTurn): LiveTurn {
    let resolveEnded!: (result: TurnResult) => void;
    const ended = new Promise<TurnResult>((resolve) => (resolveEnded = resolve));
    const startedAt = adopted?.startedAt ?? new Date().toISOString();
    const lastSeq = adopted?.lastSeq ?? -1;
    const turn: LiveTurn = {
      summary: { turnId, workspaceId, status: "running", lastSeq, startedAt, endedAt: null, detached: false },
      writer: null,
      opening: Promise.resolve(),
      subscribers: new Set(),
      clientGone,
      result: null,
      ended,
      resolveEnded,
    };
    const opening = adopted
      ? this.options.journal.reopen(adopted)
      : this.options.journal.create(turnId).then((writer) => {
          writer.start({ k: "start", turnId, workspaceId, startedAt });
          return writer;
        });
    turn.opening = opening.then(
      (writer) => {
        turn.writer = writer;
      },
      (error: unknown) =>
        this.options.log.error("cannot open the turn journal; the turn runs unjournaled", {
          turnId,
          error: errorMessage(error),
        }),
    );
    this.#live.set(turnId, turn);
    return turn;
  }

  /** An event of a live turn: into its journal and to whoever is attached. */
  #deliver(live: LiveTurn, seq: number, event: unknown, line: string): void {
    const { turnId } = live.summary;
    live.summary.lastSeq = seq;
    if (live.writer) live.writer.event(turnId, seq, line);
    else void live.opening.then(() => live.writer?.event(turnId, seq, line));
    for (const sink of live.subscribers) sink(seq, event, line);
  }

  /**
   * The sidecar stops and leaves the turn running: what was journaled is flushed, no end is written,
   * and whoever is attached is let go (their connection closes with the sidecar).
   */
  async #leave(turn: LiveTurn): Promise<void> {
    await turn.opening;
    await turn.writer?.release();
    this.#live.delete(turn.summary.turnId);
  }

  async #end(turn: LiveTurn, result: TurnResult): Promise<void> {
    const endedAt = new Date().toISOString();
    turn.result = result;
    turn.summary.endedAt = endedAt;
    turn.resolveEnded(result);
    await turn.opening;
    const { turnId, workspaceId, startedAt, lastSeq } = turn.summary;
    try {
      await turn.writer?.end({
        k: "end",
        turnId,
        workspaceId,
        startedAt,
        endedAt,
        status: result.status,
        lastSeq,
        result,
      });
      if (turn.writer)
        this.options.journal.ended({
          turnId,
          workspaceId,
          status: result.status,
          lastSeq,
          startedAt,
          endedAt,
          detached: false,
        });
      await this.options.onEnded?.(turnId);
    } finally {
      this.#live.delete(turnId);
    }
  }
}
