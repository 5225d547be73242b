/**
 * How a turn outlives the sidecar that started it: what executeTurn is told to go on from (a turn
 * adopted after a restart: turn-adoption.ts) and how it is left running when the sidecar stops.
 */
import type { TurnLaunch } from "./codex-launch.js";
import type { MeterCarryOver } from "./turn-meter.js";
import { TURN_RECORD_FORMAT, type TurnRecord, type TurnRecords } from "./turn-records.js";

/**
 * Thrown by executeTurn for a turn the sidecar left running as it stopped (TurnContinuity.abandon):
 * it has no result yet, and nothing of it was ended, swept or revoked.
 */
export class TurnAbandoned extends Error {
  constructor(readonly turnId: string) {
    super(`turn ${turnId} was left running for the next sidecar`);
  }
}

/** How a turn outlives the sidecar (turn-adoption.ts): where it is told to go on from, and how it is left. */
export interface TurnContinuity {
  /** Told once codex is launched, with the turn's credential digest: the turn's record is written. */
  onLaunched?: (launch: TurnLaunch, credentialDigest: string) => Promise<void>;
  /** Aborted when the sidecar stops and leaves its turns running. */
  abandon?: AbortSignal;
  /** A turn an earlier sidecar started: its codex is followed, not launched. */
  adopted?: {
    launch: TurnLaunch;
    /** The last seq in its journal: the events up to it went out already and are not sent again. */
    lastSeq: number;
    credentialDigest: string;
    startedAt: number;
    deadlineAt: number;
    /** Its accounting so far (the turn's record). */
    meter: MeterCarryOver;
  };
}

/** What executeTurn is told of a turn it adopts, from the turn's record. */
export function adoptedContinuity(record: TurnRecord, lastSeq: number): NonNullable<TurnContinuity["adopted"]> {
  return {
    launch: { execId: record.execId, files: { base: record.files } },
    lastSeq,
    credentialDigest: record.credentialDigest,
    startedAt: record.startedAt,
    deadlineAt: record.deadlineAt,
    meter: {
      startedAt: record.startedAt,
      cpuStartNs: record.cpuStartNs,
      tokens: record.tokens,
      totalTokens: record.totalTokens,
    },
  };
}

/** What a turn's record holds from its start. */
export type TurnRecordBase = Pick<
  TurnRecord,
  "sidecarVersion" | "turnId" | "workspaceId" | "containerId" | "threadId" | "timeoutMs" | "budget"
>;

/**
 * Keeps a running turn's record (turn-records.ts) current: written once codex is launched (an
 * adopted turn has its record already), rewritten as the model proxy counts its tokens.
 */
export class TurnRecordKeeper {
  #saved: TurnRecord | null;

  constructor(
    private readonly records: TurnRecords | null,
    adopted: TurnRecord | null,
    private readonly base: TurnRecordBase,
  ) {
    this.#saved = adopted;
  }

  async launched(launch: TurnLaunch, credentialDigest: string, carried: MeterCarryOver): Promise<void> {
    if (this.records === null) return;
    this.#saved = {
      format: TURN_RECORD_FORMAT,
      ...this.base,
      execId: launch.execId,
      files: launch.files.base,
      credentialDigest,
      startedAt: carried.startedAt,
      deadlineAt: carried.startedAt + this.base.timeoutMs,
      tokens: carried.tokens,
      totalTokens: carried.totalTokens,
      cpuStartNs: carried.cpuStartNs,
    };
    await this.records.write(this.#saved);
  }

  usage(carried: MeterCarryOver): void {
    if (this.records === null || this.#saved === null) return;
    this.#saved = { ...this.#saved, tokens: carried.tokens, totalTokens: carried.totalTokens };
    void this.records.write(this.#saved);
  }
}

/** A turn an earlier sidecar left running, to adopt (turn-adoption.ts): its record and its journal's last seq. */
export interface AdoptedTurn {
  record: TurnRecord;
  lastSeq: number;
}
