/**
 * Host-side layout of a workspace under the state dir:
 *   <stateDir>/workspaces/<id>/home   HOME inside the container (/home/alive), uid:gid 0700, holds .codex/ and .claude/
 *   <stateDir>/workspaces/<id>/tmp    TMPDIR inside the container (/tmp), uid:gid 0700
 *   <stateDir>/workspaces/<id>/run    read-only inside (/run/alive): the log FIFO and the shell rc, root-owned
 *   <stateDir>/workspaces/<id>/run/turns  per-turn files codex reads (the output schema), root-owned, removed with the turn
 *   <stateDir>/workspaces/<id>/run/net    the sockets of the workspace's network (egress, model, Alive's API), each the workspace uid's, mode 0600
 *   <stateDir>/workspaces/<id>/threads  the sidecar's per-thread usage bookkeeping, root-owned, never mounted
 *   <stateDir>/bridges/<turnId>       the sidecar's private per-turn FIFOs (never mounted)
 */
import path from "node:path";

export interface WorkspacePaths {
  stateDir: string;
  root: string;
  home: string;
  codexHome: string;
  claudeHome: string;
  tmp: string;
  run: string;
  logFifo: string;
  shellRc: string;
  /** Per-turn files codex reads (the output schema): root-owned, read-only inside. */
  turnFiles: string;
  /** The sockets the workspace's forwarders reach (egress/workspace-endpoints.ts). */
  net: string;
  /** The sidecar's per-thread bookkeeping (usage), root-owned and never mounted. */
  threads: string;
}

export function workspacePaths(stateDir: string, workspaceId: string): WorkspacePaths {
  const root = path.join(stateDir, "workspaces", workspaceId);
  const home = path.join(root, "home");
  const run = path.join(root, "run");
  return {
    stateDir,
    root,
    home,
    codexHome: path.join(home, ".codex"),
    claudeHome: path.join(home, ".claude"),
    tmp: path.join(root, "tmp"),
    run,
    logFifo: path.join(run, "log"),
    shellRc: path.join(run, "shellrc"),
    turnFiles: path.join(run, "turns"),
    net: path.join(run, "net"),
    threads: path.join(root, "threads"),
  };
}

export function bridgesDir(stateDir: string): string {
  return path.join(stateDir, "bridges");
}
