/**
 * Measuring a running workspace container's isolation: docker inspect and one process exec'd
 * inside as the workspace user (isolation.ts's script), in parallel. It runs when an ensure makes,
 * replaces, starts or adopts a container; the result is cached on the record per container id.
 */
import os from "node:os";
import type { ContainerInspect, ContainerSpec, EnginePort } from "../docker/engine-port.js";
import { runCommand } from "../docker/exec-output.js";
import { ErrorCode, SidecarError } from "../errors.js";
import { isolationScript, parseIsolation, type IsolationExpectation, type MeasuredIsolation } from "./isolation.js";

/** How long a measurement may take before the ensure fails (it takes tens of milliseconds). */
const MEASURE_TIMEOUT_MS = 15_000;

/** The host's own non-loopback IPv4 addresses (its LAN address, the engine's bridges): what a workspace must not reach. */
export function hostAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a): a is os.NetworkInterfaceInfo => a !== undefined && a.family === "IPv4" && !a.internal)
    .map((a) => a.address)
    .slice(0, 8);
}

export async function measureIsolation(
  engine: Pick<EnginePort, "inspect" | "exec">,
  containerId: string,
  user: string,
  signal?: AbortSignal,
): Promise<MeasuredIsolation> {
  const deadline = AbortSignal.timeout(MEASURE_TIMEOUT_MS);
  const bounded = signal ? AbortSignal.any([signal, deadline]) : deadline;
  const started = performance.now();
  const [info, result] = await Promise.all([
    engine.inspect(containerId, bounded).then((found) => found ?? gone(containerId)),
    runCommand(engine, containerId, {
      user,
      cmd: ["/bin/bash", "-c", isolationScript(hostAddresses())],
      signal: bounded,
    }),
  ]);
  const measuredMs = performance.now() - started;
  const host = info.HostConfig;
  const cpus =
    host.CpuQuota && host.CpuPeriod ? host.CpuQuota / host.CpuPeriod : host.NanoCpus ? host.NanoCpus / 1e9 : null;
  try {
    return parseIsolation(
      {
        containerId: info.Id,
        runtime: host.Runtime ?? "",
        readOnlyRootfs: host.ReadonlyRootfs === true,
        pids: host.PidsLimit ?? null,
        memoryBytes: host.Memory || null,
        cpus,
      },
      result.stdout,
      measuredMs,
      new Date(),
    );
  } catch (error) {
    throw new SidecarError(
      ErrorCode.internal,
      `could not measure the isolation of container ${containerId.slice(0, 12)}: ${(error as Error).message}`,
      {
        data: { reason: `exit code ${result.exitCode ?? "none"}; stderr: ${result.stderr.slice(0, 500)}` },
        cause: error,
      },
    );
  }
}

function gone(containerId: string): ContainerInspect {
  throw new SidecarError(
    ErrorCode.internal,
    `could not measure the isolation of container ${containerId.slice(0, 12)}: it is gone`,
    { data: { reason: "the engine has no such container" } },
  );
}

/** What a workspace's create options ask for, in the report's terms. */
export function expectationFromSpec(options: Pick<ContainerSpec, "User" | "HostConfig">): IsolationExpectation {
  const host = options.HostConfig ?? {};
  const [uid = "-1", gid = "-1"] = (options.User ?? "").split(":");
  const mounts = (host.Mounts ?? []).map((m) => ({ path: m.Target, readOnly: m.ReadOnly === true }));
  for (const [path, tmpfsOptions] of Object.entries(host.Tmpfs ?? {}))
    mounts.push({ path, readOnly: tmpfsOptions.split(",").includes("ro") });
  return {
    runtime: host.Runtime ?? null,
    uid: Number(uid),
    gid: Number(gid),
    mounts,
    pids: host.PidsLimit ?? 0,
    memoryBytes: host.Memory ?? 0,
    cpus: host.CpuQuota && host.CpuPeriod ? host.CpuQuota / host.CpuPeriod : (host.NanoCpus ?? 0) / 1e9,
  };
}
