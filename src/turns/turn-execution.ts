/**
 * One turn's execution: the SDK spawns the exec bridge script (codex/bridge.ts), the real codex runs in
 * the container (turn-container.ts) and its events reach the caller as codex emits them. Every
 * turn has a deadline, and a stall watch where the runtime needs one (turn-stall-watch.ts); an aborted
 * turn's processes are swept from the container (codex/sweep.ts). A failed turn is a result, not an
 * exception.
 */
import { Codex, type ThreadOptions } from "@openai/codex-sdk";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { RunTurnParams, TurnHooks, TurnResult, TurnStatus } from "../service.js";
import { containerEnv } from "../workspace/spec.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import { buildCodexConfig } from "../codex/config-overrides.js";
import { MODEL_BASE_URL } from "../egress/container-net.js";
import type { TurnRef } from "../egress/workspace-endpoints.js";
import type { TurnCredentials } from "../model-proxy/credentials.js";
import { TurnContainer, type TurnContainerOptions } from "./turn-container.js";
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
): Promise<TurnResult> {
  const { log: baseLog } = options;
  const log = baseLog.child({ workspaceId: params.workspaceId, turnId, containerId: record.containerId });
  const started = Date.now();
  const timeoutMs = params.options?.timeoutMs ?? options.turnTimeoutMs;
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = AbortSignal.any([cancel.signal, deadline, ...(hooks.signal ? [hooks.signal] : [])]);
  let seq = 0;
  let firstEventMs: number | null = null;
  let watch: StallWatch | null = null;
  /** Sends an event on; `json`, when the caller has it, is the event's JSON (made once for the wire and the journal). */
  const emit = (event: Parameters<TurnHooks["onEvent"]>[2], json?: string): void => {
    watch?.progress();
    try {
      hooks.onEvent(turnId, seq, event, json === undefined ? undefined : turnEventLine(turnId, seq, json));
    } catch (error) {
      log.warn("event listener threw", { error: errorMessage(error) });
    }
    seq += 1;
  };
  emit({
    type: "sidecar.turn.accepted",
    turn_id: turnId,
    workspace_id: params.workspaceId,
    thread_id: params.threadId ?? null,
  });
  log.info("turn started", { threadId: params.threadId ?? null });
  record.sink.write(`turn=${turnId} thread=${params.threadId ?? "new"} event=started`);

  const state = newTurnState(params.threadId ?? null);
  const credential = options.credentials.issue({ workspaceId: params.workspaceId, turnId });
  // Output past a bound fails the turn the way the stall watch does: at once, from outside the event stream.
  const refuse = (message: string): void => cancel.abort(new TurnFailure(CODEX_OUTPUT, message));
  const container = new TurnContainer(options, record, turnId, log, credential, refuse);
  let status: TurnStatus = "completed";
  let containerTask: Promise<void> = Promise.resolve();
  let containerError: unknown;
  // On abort, act at once: the SDK only notices when its stdout ends, and the bridge script's
  // relays keep that open until the container side finishes.
  const onAbort = (): void => void container.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await meter.start();
    // A turn that narrows the workspace's egress starts with nothing open from before (turn-egress.ts).
    if (narrowsEgress(record.egress, record.turnEgress)) await closeBeforeNarrowedTurn(options, record, log, signal);
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
    if (error instanceof EgressNarrowingError) {
      state.failure ??= { code: "internal", message: error.message };
    } else if (!signal.aborted) {
      state.failure ??= await container.explainFailure(containerError ?? error);
    }
  } finally {
    watch?.stop();
    options.credentials.revoke(credential);
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

function createThread(
  options: TurnExecutionOptions,
  params: RunTurnParams,
  record: WorkspaceRecord,
  bridgeEnv: Record<string, string>,
) {
  const sessionEnv = containerEnv(record.params, options);
  const sessionEnvNames = [...Object.keys(sessionEnv), ...(options.aliveMcpToken ? ["ALIVE_MCP_TOKEN"] : [])];
  const codex = new Codex({
    codexPathOverride: options.bridgeScript,
    env: { PATH: "/usr/bin:/bin", ...bridgeEnv },
    config: buildCodexConfig({
      modelBaseUrl: MODEL_BASE_URL,
      sessionEnvNames,
      ...(params.mcpServers ? { mcpServers: params.mcpServers } : {}),
    }),
  });
  const o = params.options ?? {};
  const model = o.model ?? options.defaultModel ?? undefined;
  // Codex's own sandbox stays off: "workspace-write" is enforced by the container (read-only root,
  // writes only to the workspace, HOME and TMPDIR; egress narrowed by the sidecar's proxy).
  const threadOptions: ThreadOptions = {
    sandboxMode: o.sandboxMode === "read-only" ? "read-only" : "danger-full-access",
    approvalPolicy: o.approvalPolicy ?? "never",
    skipGitRepoCheck: true,
    workingDirectory: record.params.workspacePath,
    ...(model ? { model } : {}),
    ...(o.modelReasoningEffort ? { modelReasoningEffort: o.modelReasoningEffort } : {}),
    ...(o.additionalDirectories ? { additionalDirectories: o.additionalDirectories } : {}),
    ...(o.webSearchMode ? { webSearchMode: o.webSearchMode } : {}),
  };
  return params.threadId ? codex.resumeThread(params.threadId, threadOptions) : codex.startThread(threadOptions);
}
