/** Params of turn.attach, turn.get and turn.list (the turn journal's methods), validated at the edge. */
import { checkWorkspaceId } from "../policy/workspace-policy.js";
import type { TurnSummary } from "../service.js";
import { expectParams, expectString, has, integerIn, matching, oneOf, requireField } from "./param-checks.js";
import { TURN_ID_PATTERN } from "./params.js";

export const TURN_PHASES = [
  "running",
  "completed",
  "failed",
  "cancelled",
  "timed_out",
] as const satisfies ReadonlyArray<TurnSummary["status"]>;

function turnIdOf(raw: unknown): string {
  return matching(
    requireField(expectParams(raw), "turnId", "turnId"),
    "turnId",
    TURN_ID_PATTERN,
    `must match ${TURN_ID_PATTERN.source}`,
  );
}

export function parseAttachTurnParams(raw: unknown): { turnId: string; afterSeq?: number } {
  const fields = expectParams(raw);
  const turnId = turnIdOf(fields);
  return has(fields, "afterSeq")
    ? { turnId, afterSeq: integerIn(fields.afterSeq, "afterSeq", -1, Number.MAX_SAFE_INTEGER) }
    : { turnId };
}

export function parseGetTurnParams(raw: unknown): { turnId: string } {
  return { turnId: turnIdOf(raw) };
}

export function parseListTurnsParams(raw: unknown): { workspaceId?: string; status?: TurnSummary["status"] } {
  const fields = expectParams(raw);
  const out: { workspaceId?: string; status?: TurnSummary["status"] } = {};
  if (has(fields, "workspaceId")) out.workspaceId = checkWorkspaceId(expectString(fields.workspaceId, "workspaceId"));
  if (has(fields, "status")) out.status = oneOf(fields.status, "status", TURN_PHASES);
  return out;
}
