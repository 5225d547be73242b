/**
 * The scratch workspace doctor ensures through a running sidecar: made under the first workspace
 * root for ids at the top of the configured ranges, and removed through the sidecar afterwards with
 * proof that nothing of it is left (listing, container, disk mounts and loop devices, directory).
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import type { SidecarConfig } from "../config.js";
import type { EnginePort } from "../docker/engine-port.js";
import { errorMessage } from "../errors.js";
import type { EnsureWorkspaceResult, WorkspaceParams } from "../service.js";
import { readMounts } from "../workspace/mountinfo.js";
import { CheckFailure, type DoctorService } from "./check-runner.js";
import type { DoctorCheck } from "./report.js";

/** A directory under the first workspace root, owned by the top of the configured id ranges (the least likely to be a real account). */
export async function makeScratchWorkspace(config: SidecarConfig): Promise<WorkspaceParams> {
  const root = config.workspaceRoots[0];
  if (root === undefined) throw new CheckFailure("no workspace root is configured");
  const suffix = randomBytes(4).toString("hex");
  const workspaceId = `doctor-${suffix}`;
  const dir = path.join(root, `alive-codex-doctor-${suffix}`);
  const uid = config.uidRange.max;
  const gid = config.gidRange.max;
  try {
    await fs.mkdir(dir, { mode: 0o755 });
    await fs.chown(dir, uid, gid);
  } catch (error) {
    await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    throw new CheckFailure(
      `cannot make the scratch workspace ${dir}: ${errorMessage(error)}`,
      `run doctor as root (it chowns the directory to ${uid}:${gid}), with the workspace root the sidecar uses (ALIVE_CODEX_WORKSPACE_ROOTS)`,
    );
  }
  return { workspaceId, userId: "alive-codex-doctor", uid, gid, workspacePath: dir };
}

/** Mounts of a workspace's disk (at <state dir>/workspaces/<id>) and loop devices of its image (<state dir>/disks/<id>.img), wherever the state dir is. */
async function diskLeftovers(workspaceId: string): Promise<string[]> {
  const mounts = [...readMounts().keys()].filter((point) => point.endsWith(`/workspaces/${workspaceId}`));
  const devices: string[] = [];
  for (const name of await fs.readdir("/sys/block").catch(() => [] as string[])) {
    if (!/^loop\d+$/.test(name)) continue;
    const backing = (await fs.readFile(`/sys/block/${name}/loop/backing_file`, "utf8").catch(() => ""))
      .trim()
      .replace(/ \(deleted\)$/, "");
    if (backing.endsWith(`/disks/${workspaceId}.img`)) devices.push(`/dev/${name}`);
  }
  return [...mounts.map((m) => `mount ${m}`), ...devices.map((d) => `loop device ${d}`)];
}

/**
 * workspace.remove (purgeHome) of the scratch workspace through the sidecar, then the proof: the
 * sidecar no longer lists it, its container is gone, nothing of its disk is mounted or attached; and
 * doctor's directory under the workspace root is deleted.
 */
export async function removeScratch(
  service: DoctorService,
  engine: Pick<EnginePort, "inspect"> | null,
  workspace: WorkspaceParams | null,
  ensured: EnsureWorkspaceResult | null,
  socketPath: string,
): Promise<DoctorCheck> {
  const started = Date.now();
  if (workspace === null) return { name: "cleanup", status: "pass", detail: "nothing was made", durationMs: 0 };
  const problems: string[] = [];
  const { workspaceId } = workspace;
  await service
    .removeWorkspace({ workspaceId, purgeHome: true }, AbortSignal.timeout(60_000))
    .catch((error: unknown) => problems.push(`workspace.remove: ${errorMessage(error)}`));
  try {
    if ((await service.listWorkspaces()).workspaces.some((w) => w.workspaceId === workspaceId))
      problems.push(`workspace.list still lists ${workspaceId}`);
  } catch (error) {
    problems.push(`workspace.list: ${errorMessage(error)}`);
  }
  if (engine !== null && ensured !== null) {
    try {
      if ((await engine.inspect(ensured.containerId)) !== null)
        problems.push(`its container ${ensured.containerName} is still there`);
    } catch (error) {
      problems.push(`inspecting its container: ${errorMessage(error)}`);
    }
  }
  const left = await diskLeftovers(workspaceId);
  if (left.length > 0) problems.push(`still mounted or attached: ${left.join(", ")}`);
  await fs
    .rm(workspace.workspacePath, { recursive: true, force: true })
    .catch((error: unknown) => problems.push(`deleting ${workspace.workspacePath}: ${errorMessage(error)}`));
  const durationMs = Date.now() - started;
  if (problems.length > 0) {
    return {
      name: "cleanup",
      status: "fail",
      detail: problems.join("; "),
      fix: `alive-codex rm --purge ${workspaceId} --socket ${socketPath}; for a disk: losetup -a and findmnt, looking for ${workspaceId}`,
      durationMs,
    };
  }
  return {
    name: "cleanup",
    status: "pass",
    detail: `scratch workspace ${workspaceId} removed through the sidecar: container, HOME and disk gone (nothing mounted or attached left), its directory deleted`,
    durationMs,
  };
}
