/** `alive-codex ps --isolation`: each workspace's measured isolation (docs/security.md "Isolation report"), one row per workspace. */
import type { IsolationReport, WorkspaceSummary } from "../service.js";
import { formatTable } from "./format.js";

export const ISOLATION_HEADER = [
  "WORKSPACE",
  "RUNTIME",
  "USER",
  "CAPS",
  "NNP",
  "SECCOMP",
  "ROOT",
  "WRITABLE",
  "PIDS",
  "MEMORY",
  "CPUS",
  "EGRESS",
  "KEY",
  "HOST",
] as const;

const allZero = (hex: string): boolean => /^(0+|unsupported)$/.test(hex);

function describeCaps(caps: IsolationReport["capabilities"]): string {
  if (allZero(caps.effective) && allZero(caps.bounding) && allZero(caps.permitted) && allZero(caps.ambient))
    return "none";
  return `eff=${caps.effective} bnd=${caps.bounding}`;
}

function describeEgressPolicy(policy: IsolationReport["egress"]["policy"]): string {
  return policy.mode === "list" ? `list(${policy.allow.length} allow, ${policy.deny.length} deny)` : policy.mode;
}

function isolationRow(workspaceId: string, r: IsolationReport | null): string[] {
  if (r === null) return [workspaceId, ...ISOLATION_HEADER.slice(1).map(() => "-")];
  const writable = r.mounts.filter((m) => !m.readOnly).map((m) => m.path);
  return [
    workspaceId,
    r.runtime,
    `${r.user.uid}:${r.user.gid}${r.user.groups
      .filter((g) => g !== r.user.gid)
      .map((g) => `,${g}`)
      .join("")}`,
    describeCaps(r.capabilities),
    r.noNewPrivs ? "yes" : "NO",
    r.seccomp,
    r.readOnlyRoot ? "ro" : "RW",
    writable.length === 0 ? "-" : writable.join(","),
    r.limits.pids === null ? "none" : String(r.limits.pids),
    r.limits.memoryBytes === null ? "none" : `${Math.round(r.limits.memoryBytes / (1024 * 1024))}MiB`,
    r.limits.cpus === null ? "none" : String(Math.round(r.limits.cpus * 100) / 100),
    `${describeEgressPolicy(r.egress.policy)} via ${r.egress.enforcedBy}`,
    r.modelKey,
    r.hostReachable ? "REACHABLE" : "unreachable",
  ];
}

/** The table; a workspace not measured yet (adopted, not ensured since) shows dashes. */
export function renderIsolationTable(workspaces: readonly WorkspaceSummary[]): string {
  return formatTable(
    ISOLATION_HEADER,
    workspaces.map((w) => isolationRow(w.workspaceId, w.isolation ?? null)),
  );
}
