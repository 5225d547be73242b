/**
 * Admission: everything that can refuse a turn without a container (the turn slots, the
 * input's paths, the additional directories, the thread), checked before a workspace carried in the
 * call is ensured, so a refused turn.run makes nothing. The sandbox probe (codex/sandbox-probe.ts) needs
 * the container and comes after.
 */
import path from "node:path";
import { ErrorCode, SidecarError, invalidParams } from "../errors.js";
import type { RunTurnParams } from "../service.js";
import { isInside } from "../policy/workspace-policy.js";
import { findRollout, isThreadId } from "../codex/threads.js";

export function checkTurnSlot(turns: ReadonlyMap<string, unknown>, turnId: string, maxTurns: number): void {
  if (turns.has(turnId)) throw invalidParams("turnId", "a turn with this id is already running", turnId);
  if (turns.size >= maxTurns) {
    throw new SidecarError(ErrorCode.limitReached, `${turns.size} turns are running (limit ${maxTurns})`, {
      data: { field: "turnId", reason: "turn limit reached; retry later or raise ALIVE_CODEX_MAX_TURNS" },
    });
  }
}

export function checkInput(params: RunTurnParams, workspacePath: string): void {
  if (typeof params.input === "string") return;
  for (const [index, item] of params.input.entries()) {
    if (item.type === "local_image" && !isInside(workspacePath, path.resolve(item.path))) {
      throw new SidecarError(ErrorCode.notAllowed, `input[${index}].path is outside the workspace`, {
        data: {
          field: `input[${index}].path`,
          reason: `local images must lie inside the workspace path ${workspacePath}`,
        },
      });
    }
  }
}

/** Codex may be pointed only at the workspace and the operator's read-only trusted directories. */
export function checkAdditionalDirectories(
  params: RunTurnParams,
  workspacePath: string,
  trustedDirs: readonly string[],
): void {
  for (const [index, dir] of (params.options?.additionalDirectories ?? []).entries()) {
    const resolved = path.resolve(dir);
    if (isInside(workspacePath, resolved) || trustedDirs.some((trusted) => isInside(trusted, resolved))) continue;
    throw new SidecarError(
      ErrorCode.notAllowed,
      `options.additionalDirectories[${index}] is outside the workspace and the trusted directories`,
      {
        data: {
          field: `options.additionalDirectories[${index}]`,
          reason: `must lie inside the workspace path ${workspacePath}${trustedDirs.length > 0 ? ` or one of ${trustedDirs.join(", ")}` : ""} (ALIVE_CODEX_TRUSTED_DIRS)`,
        },
      },
    );
  }
}

export async function checkThread(threadId: string, workspaceId: string, codexHome: string): Promise<void> {
  if (!isThreadId(threadId)) throw invalidParams("threadId", "must be a codex thread id (a UUID)", threadId);
  if ((await findRollout(codexHome, threadId)) === null) {
    throw invalidParams("threadId", `no thread with this id exists in workspace ${workspaceId}`, threadId);
  }
}
