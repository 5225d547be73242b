/**
 * The end of doctor's scratch run: what it made is removed through its sidecar, then whatever is left
 * is reaped by its state dir's label (the reaper, docker/, takes the adapter's client, which doctor
 * hands on and never uses itself) and its disks released, and a leftover is a failure.
 */
import type { DockerEngine } from "../docker/docker-engine.js";
import { Labels } from "../docker/labels.js";
import { reapLabelled } from "../docker/reaper.js";
import { errorMessage } from "../errors.js";
import type { RunningSidecar } from "../sidecar.js";
import type { WorkspaceParams } from "../service.js";
import { disksLeftUnder, releaseDisksUnder } from "../workspace/disk-leftovers.js";
import type { DoctorCheck } from "./report.js";

/**
 * Removes the scratch workspace (its HOME and disk), closes the sidecar, and makes sure no container
 * of doctor's state dir is left, nor a mount or loop device under doctor's temporary root.
 */
export async function cleanUpScratchRun(
  engine: DockerEngine,
  sidecar: RunningSidecar | null,
  workspace: WorkspaceParams | null,
  stateDir: string,
  root: string,
): Promise<DoctorCheck> {
  const started = Date.now();
  const problems: string[] = [];
  if (sidecar !== null) {
    const running: RunningSidecar = sidecar;
    if (workspace !== null) {
      await running.service
        .removeWorkspace({ workspaceId: workspace.workspaceId, purgeHome: true })
        .catch((error: unknown) => problems.push(`workspace.remove: ${errorMessage(error)}`));
    }
    await running.close(0).catch((error: unknown) => problems.push(`closing the sidecar: ${errorMessage(error)}`));
  }
  // A backstop for whatever the steps above could not remove: everything labelled with doctor's state dir.
  try {
    const reaped = await reapLabelled(engine.docker, [`${Labels.stateDir}=${stateDir}`], { deadlineMs: 30_000 });
    problems.push(...reaped.failures);
    if (reaped.containers > 0 && sidecar !== null)
      problems.push(`${reaped.containers} container(s) were left and had to be reaped`);
  } catch (error) {
    if (sidecar !== null) problems.push(`listing leftovers: ${errorMessage(error)}`);
  }
  // The same for workspace disks: released if anything is left (then a failure: workspace.remove should have), and verified gone.
  try {
    const released = await releaseDisksUnder(root);
    if (released.mounts.length + released.loopDevices.length > 0)
      problems.push(
        `workspace disks were left and had to be released: ${[...released.mounts, ...released.loopDevices].join(", ")}`,
      );
    const left = await disksLeftUnder(root);
    if (left.mounts.length + left.loopDevices.length > 0)
      problems.push(`still mounted or attached: ${[...left.mounts, ...left.loopDevices].join(", ")}`);
  } catch (error) {
    problems.push(`releasing workspace disks: ${errorMessage(error)}`);
  }
  const durationMs = Date.now() - started;
  if (problems.length > 0) {
    return {
      name: "cleanup",
      status: "fail",
      detail: problems.join("; "),
      fix: `docker ps -a --filter label=${Labels.stateDir}=${stateDir}; remove what is listed; for disks: losetup -a and findmnt, looking for ${root}`,
      durationMs,
    };
  }
  return {
    name: "cleanup",
    status: "pass",
    detail:
      sidecar === null
        ? "nothing was made"
        : "scratch workspace, its container, HOME and disk removed (nothing mounted or attached left); sidecar closed",
    durationMs,
  };
}
