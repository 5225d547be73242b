/**
 * The operator's policy for workspace params: uid/gid ranges and workspace roots (-32006 when outside).
 * resolveWorkspacePath is the one rule here that reads the host (realpath, stat): a path is inside a
 * root only if it still is once its symlinks are followed.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { IdRange } from "../config.js";
import { ErrorCode, SidecarError, invalidParams, notAllowed } from "../errors.js";

export const WORKSPACE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export interface WorkspacePolicy {
  uidRange: IdRange;
  gidRange: IdRange;
  allowRoot: boolean;
  workspaceRoots: readonly string[];
}

export function checkWorkspaceId(value: string, field = "workspaceId"): string {
  if (!WORKSPACE_ID_PATTERN.test(value) || value.includes("..")) {
    throw invalidParams(field, "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ and must not contain '..'", value);
  }
  return value;
}

export function checkId(field: "uid" | "gid", value: number, policy: WorkspacePolicy): number {
  const range = field === "uid" ? policy.uidRange : policy.gidRange;
  if (value === 0 && !policy.allowRoot)
    throw notAllowed(field, "0 is root; the sidecar never runs workspaces as root unless the operator allows it");
  if (value < range.min || value > range.max)
    throw notAllowed(field, `${value} is outside the configured range ${range.min}-${range.max}`);
  return value;
}

/** True when `child` is `parent` or below it (both absolute and normalised). */
export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/**
 * Resolves a workspacePath through symlinks and checks it lies inside a configured root (the roots
 * are resolved too). A missing directory is a -32602; one outside the roots is -32006.
 */
export async function resolveWorkspacePath(value: string, policy: WorkspacePolicy): Promise<string> {
  if (!path.isAbsolute(value)) throw invalidParams("workspacePath", "must be an absolute path", value);
  let real: string;
  try {
    real = await fs.realpath(value);
  } catch {
    throw invalidParams("workspacePath", "does not exist on the host", value);
  }
  const stat = await fs.stat(real);
  if (!stat.isDirectory()) throw invalidParams("workspacePath", "is not a directory", value);
  for (const root of policy.workspaceRoots) {
    const realRoot = await fs.realpath(root).catch(() => null);
    if (realRoot !== null && real !== realRoot && isInside(realRoot, real)) return real;
  }
  throw new SidecarError(
    ErrorCode.notAllowed,
    `workspacePath not allowed: ${JSON.stringify(value)} resolves to ${JSON.stringify(real)}, outside the workspace roots`,
    {
      data: {
        field: "workspacePath",
        reason: `resolves outside the configured workspace roots (${policy.workspaceRoots.join(":")})`,
      },
    },
  );
}
