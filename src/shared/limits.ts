/**
 * Value ranges shared by the operator's settings (src/config.ts) and the RPC params (src/rpc/params.ts):
 * a workspace's resources may be set by either, and both must refuse the same values.
 */

export interface ResourceLimits {
  memoryMb: number;
  cpus: number;
  pids: number;
}

export interface ValueRange {
  min: number;
  max: number;
  /** Whole numbers only. */
  integer: boolean;
}

/** Per workspace container: memory (= memory+swap) in MiB, CPUs, max processes. */
export const RESOURCE_RANGES: { readonly [K in keyof ResourceLimits]: ValueRange } = {
  memoryMb: { min: 64, max: 1_048_576, integer: true },
  cpus: { min: 0.01, max: 1024, integer: false },
  pids: { min: 16, max: 1_000_000, integer: true },
};

/** What a workspace gets when neither the operator nor the request says otherwise. */
export const DEFAULT_RESOURCES: Readonly<ResourceLimits> = { memoryMb: 2048, cpus: 1, pids: 512 };

/** The longest deadline anything takes (a turn, an idle timeout): 7 days. */
export const MAX_DURATION_MS = 7 * 24 * 3600 * 1000;

/** The shortest deadline a turn may ask for. */
export const MIN_TURN_TIMEOUT_MS = 1000;

/** A turn's budget (turn.run options.budget and the operator's defaults and ceilings). */
export const BUDGET_RANGES: { readonly tokens: ValueRange; readonly cpuSeconds: ValueRange } = {
  tokens: { min: 1, max: 1_000_000_000_000, integer: true },
  cpuSeconds: { min: 0.01, max: 7 * 24 * 3600, integer: false },
};

/** A workspace's disk: the size in MiB of the filesystem holding its HOME, TMPDIR and run dir, and its inode count. */
export interface DiskLimits {
  diskMb: number;
  diskInodes: number;
}

export const DISK_RANGES: { readonly [K in keyof DiskLimits]: ValueRange } = {
  diskMb: { min: 64, max: 16_777_216, integer: true },
  diskInodes: { min: 1024, max: 100_000_000, integer: true },
};

/** What a workspace's disk gets when neither the operator nor the request says otherwise. */
export const DEFAULT_DISK: Readonly<DiskLimits> = { diskMb: 10_240, diskInodes: 262_144 };
