/**
 * The check an ensure makes before a container runs a tenant's code: its isolation, measured once
 * per container id (cached on the record) and compared with what the spec asked for. A container
 * that differs is refused (-32006, naming each difference) and removed: it carries our labels and
 * the spec's hash, yet does not hold what the spec promises. A failed measurement removes a
 * container this ensure made (`created`); a known container is left for the next ensure to measure again.
 */
import type { EnginePort } from "../docker/engine-port.js";
import { ErrorCode, SidecarError } from "../errors.js";
import type { Logger } from "../log.js";
import type { IsolationReport } from "../service.js";
import { isolationDifferences } from "./isolation.js";
import { expectationFromSpec, measureIsolation } from "./isolation-probe.js";
import { isolationReport, type WorkspaceRecord } from "./record.js";
import type { WorkspaceSpec } from "./spec.js";

export interface IsolationCheckOptions {
  engine: Pick<EnginePort, "inspect" | "exec" | "remove">;
  log: Logger;
  /** Drops the record of a container that is removed here. */
  forget(workspaceId: string): void;
}

export async function checkWorkspaceIsolation(
  options: IsolationCheckOptions,
  record: WorkspaceRecord,
  spec: WorkspaceSpec,
  created: boolean,
  signal?: AbortSignal,
): Promise<IsolationReport> {
  const cached = isolationReport(record);
  if (cached) return cached;
  const { engine, log } = options;
  const { workspaceId, uid, gid } = record.params;
  const measured = await measureIsolation(engine, record.containerId, `${uid}:${gid}`, signal).catch(
    async (error: unknown) => {
      if (created) {
        options.forget(workspaceId);
        await engine.remove(record.containerId).catch(() => undefined);
      }
      throw error;
    },
  );
  const differences = isolationDifferences(measured, expectationFromSpec(spec.options));
  if (differences.length > 0) {
    log.error("workspace container refused: its measured isolation differs from its spec", {
      workspaceId,
      containerId: record.containerId,
      differences,
    });
    options.forget(workspaceId);
    await engine.remove(record.containerId).catch(() => undefined);
    throw new SidecarError(
      ErrorCode.notAllowed,
      `workspace ${workspaceId} refused: its container's isolation differs from what was asked: ${differences.join("; ")}`,
      {
        data: { field: "isolation", reason: differences.join("; "), differences },
      },
    );
  }
  record.isolation = measured;
  log.debug("workspace isolation measured", { workspaceId, containerId: record.containerId, ms: measured.measuredMs });
  return isolationReport(record) as IsolationReport;
}
