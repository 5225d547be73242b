/**
 * What a WorkspaceManager is made with in a unit test: no disks, no network, a fake runtime image,
 * small default resources. The engine and the runtimes come from the test (FakeEngine, or a stub
 * that must never be reached).
 */
import type { Logger } from "../../src/log.js";
import { DEFAULT_DISK } from "../../src/shared/limits.js";
import { WorkspaceDisks } from "../../src/workspace/disk-image.js";
import type { WorkspaceManagerOptions, WorkspaceNetwork } from "../../src/workspace/manager.js";

/** A network that serves nothing and counts nothing. */
export const QUIET_NETWORK: WorkspaceNetwork = {
  ensure: async () => undefined,
  close: async () => undefined,
  closeAll: async () => undefined,
  refusals: () => 0,
  connections: () => ({
    proxy: 0,
    model: 0,
    api: 0,
    tunnels: 0,
    requests: 0,
    apiRequests: 0,
    refusedForLimit: 0,
    cut: 0,
  }),
};

export async function unitManagerOptions(
  stateDir: string,
  log: Logger,
  given: Pick<WorkspaceManagerOptions, "engine" | "runtimes"> & Partial<WorkspaceManagerOptions>,
): Promise<WorkspaceManagerOptions> {
  const disks = await WorkspaceDisks.open({
    stateDir,
    log,
    enforcement: "off",
    defaults: DEFAULT_DISK,
    max: DEFAULT_DISK,
  });
  return {
    log,
    image: { ensure: async () => ({ ref: "fake/runtime:1" }) },
    stateDir,
    maxWorkspaces: 10,
    idleTimeoutMs: 0,
    stopTimeoutMs: 0,
    spec: {
      defaultResources: { memoryMb: 256, cpus: 1, pids: 64 },
      nofile: 1024,
      cpuPeriodUs: 100_000,
      aliveApiUrl: null,
      nodePath: null,
      trustedDirs: [],
      extraLabels: {},
    },
    defaultEgress: "public",
    network: QUIET_NETWORK,
    disks,
    ...given,
  };
}
