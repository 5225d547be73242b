/** Whether codex's own sandbox (read-only, workspace-write) can work inside a workspace container. */
import type { EnginePort } from "../docker/engine-port.js";
import { runCommand } from "../docker/exec-output.js";
import { ErrorCode, SidecarError } from "../errors.js";
import type { WorkspaceRecord } from "../workspace/record.js";

/** Codex's own sandbox (read-only, workspace-write) runs commands under this bubblewrap. */
const CODEX_BWRAP = "/opt/codex/codex-resources/bwrap";

export class SandboxProbe {
  /** Per container: why codex's own sandbox cannot work there (null: it can). */
  private readonly support = new Map<string, Promise<string | null>>();

  constructor(private readonly engine: Pick<EnginePort, "exec">) {}

  /**
   * read-only and workspace-write make codex run every command under bubblewrap, which needs
   * user namespaces. The hardened container (no capabilities, the engine's seccomp profile)
   * refuses them, so each command would fail while the turn "completed". Probe once per container
   * and refuse the turn with the reason instead.
   */
  async check(mode: string, record: WorkspaceRecord): Promise<void> {
    let probe = this.support.get(record.containerId);
    if (!probe) {
      probe = runCommand(this.engine, record.containerId, {
        cmd: [CODEX_BWRAP, "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "/bin/true"],
        user: `${record.params.uid}:${record.params.gid}`,
      }).then((result) =>
        result.exitCode === 0 ? null : result.stderr.trim() || `bubblewrap exited with ${result.exitCode}`,
      );
      this.support.set(record.containerId, probe);
      probe.catch(() => this.support.delete(record.containerId));
    }
    const reason = await probe;
    if (reason !== null) {
      throw new SidecarError(ErrorCode.notAllowed, `sandboxMode "${mode}" cannot work inside the workspace container`, {
        data: {
          field: "options.sandboxMode",
          reason: `codex's sandbox needs bubblewrap with user namespaces, which the hardened container does not allow (all capabilities dropped, Docker's default seccomp profile); the container itself is the sandbox, so use "danger-full-access". bubblewrap said: ${reason}`,
        },
      });
    }
  }
}
