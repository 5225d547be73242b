/** The workspaces the sidecar knows, in memory: lookups, the per-workspace turn slot, and the listing. */
import { ErrorCode, SidecarError } from "../errors.js";
import type { WorkspaceSummary } from "../service.js";
import { workspacePaths, type WorkspacePaths } from "./paths.js";
import { summarizeRecord, type WorkspaceRecord } from "./record.js";

export class WorkspaceRegistry {
  readonly #records = new Map<string, WorkspaceRecord>();

  constructor(private readonly stateDir: string) {}

  get size(): number {
    return this.#records.size;
  }

  values(): IterableIterator<WorkspaceRecord> {
    return this.#records.values();
  }

  has(workspaceId: string): boolean {
    return this.#records.has(workspaceId);
  }

  add(record: WorkspaceRecord): void {
    this.#records.set(record.params.workspaceId, record);
  }

  delete(workspaceId: string): void {
    this.#records.delete(workspaceId);
  }

  get(workspaceId: string): WorkspaceRecord {
    const record = this.#records.get(workspaceId);
    if (!record) {
      throw new SidecarError(
        ErrorCode.unknownWorkspace,
        `unknown workspace ${JSON.stringify(workspaceId)}: call workspace.ensure first`,
        {
          data: { field: "workspaceId", reason: "no container for this workspace; call workspace.ensure first" },
        },
      );
    }
    return record;
  }

  find(workspaceId: string): WorkspaceRecord | undefined {
    return this.#records.get(workspaceId);
  }

  paths(workspaceId: string): WorkspacePaths {
    return this.#records.get(workspaceId)?.paths ?? workspacePaths(this.stateDir, workspaceId);
  }

  counts(): { running: number; total: number } {
    let running = 0;
    for (const record of this.#records.values()) if (record.state === "running") running += 1;
    return { running, total: this.#records.size };
  }

  /** -32003 if the workspace runs a turn. */
  assertIdle(workspaceId: string): void {
    const active = this.#records.get(workspaceId)?.activeTurnId ?? null;
    if (active !== null) {
      throw new SidecarError(ErrorCode.workspaceBusy, `workspace ${workspaceId} is busy with turn ${active}`, {
        data: {
          field: "workspaceId",
          reason: "a turn is already running in this workspace; wait for it or cancel it",
          activeTurnId: active,
        },
      });
    }
  }

  /** Marks a workspace busy with a turn; -32003 if it already runs one. */
  acquireTurn(workspaceId: string, turnId: string): WorkspaceRecord {
    const record = this.get(workspaceId);
    this.assertIdle(workspaceId);
    record.activeTurnId = turnId;
    record.lastActiveAt = Date.now();
    return record;
  }

  releaseTurn(workspaceId: string, turnId: string): void {
    const record = this.#records.get(workspaceId);
    if (record && record.activeTurnId === turnId) {
      record.activeTurnId = null;
      record.lastActiveAt = Date.now();
    }
  }

  list(egressRefusals: (workspaceId: string) => number = () => 0): WorkspaceSummary[] {
    return [...this.#records.values()].map((r) => summarizeRecord(r, egressRefusals(r.params.workspaceId)));
  }
}
