/** The turn hub's answers for a turn it does not know, and the result of a turn that threw. */
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { TurnResult } from "../service.js";

export function unknownTurn(turnId: string): SidecarError {
  return new SidecarError(ErrorCode.unknownTurn, `unknown turn ${JSON.stringify(turnId)}`, {
    data: {
      field: "turnId",
      reason: "no running turn has this id, and the journal holds none (it may have been pruned)",
    },
  });
}

export function internalFailure(turnId: string, error: unknown): TurnResult {
  return {
    turnId,
    threadId: null,
    status: "failed",
    finalResponse: "",
    items: [],
    usage: null,
    turnUsage: null,
    resources: { cpuSeconds: null, peakMemoryBytes: null, wallMs: 0 },
    tokens: { input: 0, cached: 0, output: 0, reasoning: 0 },
    error: { code: "internal", message: errorMessage(error) },
  };
}
