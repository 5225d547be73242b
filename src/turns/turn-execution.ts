/**
 * One turn's execution: the SDK spawns the exec bridge script (codex/bridge.ts), the real codex runs in
 * the container (turn-container.ts) and its events reach the caller as codex emits them. Every
 * turn has a deadline, and a stall watch where the runtime needs one (turn-stall-watch.ts); an aborted
 * turn's processes are swept from the container (codex/sweep.ts). A failed turn is a result, not an
 * exception.
 */
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { RunTurnParams, TurnHooks, TurnResult, TurnStatus } from "../service.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import type { TurnRef } from "../egress/workspace-endpoints.js";
import { credentialDigest, type TurnCredentials } from "../model-proxy/credentials.js";
import { TurnContainer, type TurnContainerOptions } from "./turn-container.js";
import { createThread } from "./codex-thread.js";
import { TurnAbandoned, type TurnContinuity } from "./turn-continuity.js";
import {
  EgressNarrowingError,
  closeBeforeNarrowedTurn,
  narrowsEgress,
  type EgressNarrowingOptions,
} from "./turn-egress.js";
import { applyTurnEvent, newTurnState } from "./turn-state.js";
import { CODEX_OUTPUT, encodeCodexEvent } from "../codex/codex-output.js";
import { boundText } from "../shared/utf8.js";
import { turnEventLine } from "../shared/turn-event-line.js";
import { computeTurnUsage } from "./turn-usage.js";
import type { TurnMeter } from "./turn-meter.js";
import type { StallWatch } from "../codex/stall-watch.js";
import { startStallWatch, type TurnStallWatchOptions } from "./turn-stall-watch.js";

/**
 * The most of a failure's message a result keeps: messages carry codex's stderr and what codex
 * reported, both the tenant's to script.
 */
export const ERROR_MESSAGE_MAX_BYTES = 16 * 1024;

/** Why a turn was failed from outside its event stream (the model proxy could not reach the model API). */
export class TurnFailure {
  constructor(
    readonly code: string,
    readonly message: string,
  ) {}
}

export interface TurnExecutionOptions extends TurnContainerOptions, EgressNarrowingOptions, TurnStallWatchOptions {
  log: Logger;
  bridgeScript: string;
  /** Issues the turn's model credential (revoked when the turn ends). */
  credentials: TurnCredentials<TurnRef>;
  aliveApiUrl: string | null;
  nodePath: string | null;
  defaultModel: string | null;
  turnTimeoutMs: number;
  /** Told of every finished turn (the metrics). */
  onTurnFinished?: (report: TurnReport) => void;
}

/** A finished turn, as the metrics see it: no ids. */
export interface TurnReport {
  status: TurnStatus;
  errorCode: string | null;
  durationMs: number;
  /** From the turn's start to codex's first event; null if codex emitted none. */
  firstEventMs: number | null;
  resources: TurnResult["resources"];
  tokens: TurnResult["tokens"];
}

export async function executeTurn(
  options: TurnExecutionOptions,
  turnId: string,
  params: RunTurnParams,
  record: WorkspaceRecord,
  hooks: TurnHooks,
  cancel: AbortController,
  meter: TurnMeter,
  continuity: TurnContinuity = {},
): Promise<TurnResult> {
  const { log: baseLog } = options;
  const log = baseLog.child({ workspaceId: params.workspaceId, turnId, containerId: record.containerId });
  const { adopted } = continuity;
  const started = adopted?.startedAt ?? Date.now();
  const timeoutMs = params.options?.timeoutMs ?? options.turnTimeoutMs;
  const deadline = AbortSignal.timeout(adopted ? Math.max(0, adopted.deadlineAt - Date.now()) : timeoutMs);
  const signal = AbortSignal.any([cancel.signal, deadline, ...(hooks.signal ? [hooks.signal] : [])]);
  let seq = 0;
  let firstEventMs: number | null = null;
  let watch: StallWatch | null = null;
  /**
   * Sends an event on; `json`, when the caller has it, is the event's JSON (made once for the wire and
   * the journal). An adopted turn's events are read again from the start: those up to the journal's
   * last seq went out already.
   */
  const emit = (event: Parameters<TurnHooks["onEvent"]>[2], json?: string): void => {
    watch?.progress();
    if (adopted === undefined || seq > adopted.lastSeq) {
      try {
        hooks.onEvent(turnId, seq, event, json === undefined ? undefined : turnEventLine(turnId, seq, json));
      } catch (error) {
        log.warn("event listener threw", { error: errorMessage(error) });
      }
    }
    seq += 1;
  };
  emit({
    type: "sidecar.turn.accepted",
    turn_id: turnId,
    workspace_id: params.workspaceId,
    thread_id: params.threadId ?? null,
  });
  if (adopted) {
    log.info("turn adopted", { threadId: params.threadId ?? null, lastSeq: adopted.lastSeq });
    record.sink.write(`turn=${turnId} event=adopted`);
  } else {
    log.info("turn started", { threadId: params.threadId ?? null });
    record.sink.write(`turn=${turnId} thread=${params.threadId ?? "new"} event=started`);
  }

  const state = newTurnState(params.threadId ?? null);
  const ref = { workspaceId: params.workspaceId, turnId };
  let credential: string | null = null;
  let digest: string;
  if (adopted) {
    digest = adopted.credentialDigest;
    options.credentials.restore(digest, ref);
  } else {
    credential = options.credentials.issue(ref);
    digest = credentialDigest(credential);
  }
  // Output past a bound fails the turn the way the stall watch does: at once, from outside the event stream.
  const refuse = (message: string): void => cancel.abort(new TurnFailure(CODEX_OUTPUT, message));
  const container = new TurnContainer(
    options,
    record,
    turnId,
    log,
    credential ?? "",
    refuse,
    (launch) => continuity.onLaunched?.(launch, digest) ?? Promise.resolve(),
    adopted?.launch ?? null,
  );
  const abandoned = (): boolean => continuity.abandon?.aborted === true;
  const onAbandon = (): void => void container.abandon();
  continuity.abandon?.addEventListener("abort", onAbandon, { once: true });
  let status: TurnStatus = "completed";
  let containerTask: Promise<void> = Promise.resolve();
  let containerError: unknown;
  // On abort, act at once: the SDK only notices when its stdout ends, and the bridge script's
  // relays keep that open until the container side finishes.
  // A turn left running is not stopped by what closes after (its client's connection).
  const onAbort = (): void => {
    if (!abandoned()) void container.abort();
  };
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await meter.start(adopted?.meter);
    // A turn that narrows the workspace's egress starts with nothing open from before (turn-egress.ts).
    // An adopted turn's codex is among what is open: nothing is closed under it.
    if (!adopted && narrowsEgress(record.egress, record.turnEgress))
      await closeBeforeNarrowedTurn(options, record, log, signal);
    await container.prepare();
    watch = startStallWatch(options, record, log, (code, message) => cancel.abort(new TurnFailure(code, message)));
    const thread = createThread(options, params, record, container.bridgeEnv);
    containerTask = container.run(signal).catch((error: unknown) => {
      containerError = error;
    });
    const { events } = await thread.runStreamed(params.input, {
      ...(params.options?.outputSchema ? { outputSchema: params.options.outputSchema } : {}),
      signal,
    });
    for await (const event of events) {
      firstEventMs ??= Date.now() - started;
      // Checked before anyone sees it: the event is the tenant's to script (codex/codex-output.ts).
      const encoded = encodeCodexEvent(event, options.outputLineMaxBytes);
      if ("refused" in encoded) {
        refuse(encoded.refused);
        break;
      }
      applyTurnEvent(event, state, params.threadId, encoded.bytes);
      if (state.failure?.code === CODEX_OUTPUT) {
        refuse(state.failure.message);
        break;
      }
      emit(event, encoded.json);
      if (state.failure) break;
    }
    await containerTask;
    if (containerError !== undefined && !state.failure && !signal.aborted)
      state.failure = await container.explainFailure(containerError);
  } catch (error) {
    if (abandoned()) {
      // Left running: nothing to explain.
    } else if (error instanceof EgressNarrowingError) {
      state.failure ??= { code: "internal", message: error.message };
    } else if (!signal.aborted) {
      state.failure ??= await container.explainFailure(containerError ?? error);
    }
  } finally {
    watch?.stop();
    continuity.abandon?.removeEventListener("abort", onAbandon);
  }
  if (abandoned()) {
    // Codex, its processes, its files and its credential stay for the next sidecar.
    signal.removeEventListener("abort", onAbort);
    await container.dispose();
    await containerTask;
    await meter.finish().catch(() => undefined);
    log.info("turn left running for the next sidecar", { lastSeq: seq - 1 });
    throw new TurnAbandoned(turnId);
  }
  {
    options.credentials.revokeDigest(digest);
    const failedBy = cancel.signal.reason instanceof TurnFailure ? cancel.signal.reason : null;
    if (signal.aborted && failedBy !== null) {
      status = "failed";
      const swept = await container.abort();
      state.failure = { code: failedBy.code, message: failedBy.message };
      log.info("turn processes swept", { swept });
    } else if (signal.aborted) {
      status = deadline.aborted && !cancel.signal.aborted ? "timed_out" : "cancelled";
      const swept = await container.abort();
      state.failure =
        status === "timed_out"
          ? { code: "timed_out", message: `the turn did not finish within ${timeoutMs} ms and was stopped` }
          : {
              code: "cancelled",
              message:
                hooks.signal?.aborted && !cancel.signal.aborted
                  ? "the client disconnected; the turn was cancelled"
                  : "the turn was cancelled",
            };
      log.info("turn processes swept", { swept });
    } else if (state.failure) {
      status = "failed";
      if (container.started) await container.sweep();
    }
    signal.removeEventListener("abort", onAbort);
    await container.dispose();
    await containerTask;
  }
  const resources = await meter.finish();
  const turnUsage = await computeTurnUsage(record, state.threadId, state.usage, options.log);
  const result: TurnResult = {
    turnId,
    threadId: state.threadId,
    status,
    finalResponse: state.finalResponse,
    items: state.items,
    usage: state.usage,
    turnUsage,
    resources,
    tokens: { ...meter.tokens },
  };
  if (state.itemsOmitted > 0) result.itemsOmitted = state.itemsOmitted;
  if (state.finalResponseTruncated) result.finalResponseTruncated = true;
  if (state.failure)
    result.error = { code: state.failure.code, message: boundText(state.failure.message, ERROR_MESSAGE_MAX_BYTES) };
  const durationMs = Date.now() - started;
  log.info("turn finished", {
    threadId: state.threadId,
    status,
    durationMs,
    ...(state.failure ? { error: state.failure.code } : {}),
    resources,
    tokens: result.tokens,
    budget: meter.budget,
  });
  record.sink.write(
    `turn=${turnId} thread=${state.threadId ?? "none"} event=finished status=${status}${state.failure ? ` error=${state.failure.code}` : ""}`,
  );
  try {
    options.onTurnFinished?.({
      status,
      errorCode: state.failure?.code ?? null,
      durationMs,
      firstEventMs,
      resources,
      tokens: result.tokens,
    });
  } catch (error) {
    log.warn("turn observer threw", { error: errorMessage(error) });
  }
  return result;
}
