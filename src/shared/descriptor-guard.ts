/**
 * The sidecar's own open files. Every tenant's connections are descriptors of this one process:
 * at its RLIMIT_NOFILE, accept() and every open fail for all tenants at once (and Node's own
 * internals with them). So at start-up the soft limit is raised to the hard one, and past a share
 * of it new work is refused cleanly (a 503 for a connection, -32007 for a turn or an ensure)
 * while what runs keeps the headroom it needs to finish.
 *
 * Linux only (/proc); elsewhere the guard never refuses.
 */
import { readFileSync, readdirSync } from "node:fs";
import { execa } from "execa";
import { ErrorCode, SidecarError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";

export interface NofileLimit {
  soft: number;
  hard: number;
}

/** The share of the soft limit past which new work is refused. */
export const DEFAULT_OVERLOAD_RATIO = 0.9;
/** The open descriptors are counted again at most this often; in between the guard estimates. */
export const DEFAULT_RECOUNT_MS = 1000;

/** RLIMIT_NOFILE as /proc/self/limits shows it ("unlimited" as Infinity); null where it cannot be read. */
export function readNofileLimit(limitsText?: string): NofileLimit | null {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/limits", "utf8");
    } catch {
      return null;
    }
  }
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
  if (match === null) return null;
  const value = (raw: string | undefined): number => (raw === "unlimited" ? Infinity : Number(raw));
  return { soft: value(match[1]), hard: value(match[2]) };
}

/** Descriptors open now (entries of /proc/self/fd, less the one readdir itself opens); null where it cannot be read. */
export function countOpenDescriptors(): number | null {
  try {
    return readdirSync("/proc/self/fd").length - 1;
  } catch {
    return null;
  }
}

/**
 * Raises the soft RLIMIT_NOFILE to the hard limit and returns what is in force after. Node has no
 * setrlimit; it raises the soft limit itself at start-up (PlatformInit), so this usually finds
 * nothing to do, and otherwise asks util-linux's prlimit to do it for this process. Never throws:
 * a limit that stays low is logged, and the guard then refuses earlier.
 */
export async function raiseNofileLimit(
  log: Logger,
  read: () => NofileLimit | null = () => readNofileLimit(),
): Promise<NofileLimit | null> {
  const before = read();
  if (before === null) {
    log.warn("cannot read the sidecar's open-files limit (no /proc/self/limits): the descriptor guard is off");
    return null;
  }
  if (before.soft < before.hard && Number.isFinite(before.hard)) {
    try {
      await execa("prlimit", ["--pid", String(process.pid), `--nofile=${before.hard}:${before.hard}`], {
        timeout: 5000,
      });
    } catch (error) {
      log.warn("could not raise the sidecar's open-files limit to its hard limit (prlimit from util-linux)", {
        soft: before.soft,
        hard: before.hard,
        error: errorMessage(error),
      });
    }
  }
  const after = read() ?? before;
  log.info("the sidecar's open-files limit", {
    soft: after.soft,
    hard: after.hard,
    raisedFrom: before.soft === after.soft ? null : before.soft,
  });
  return after;
}

export interface DescriptorGuardOptions {
  /** The soft limit in force (Infinity: none). */
  limit: number;
  /** Open descriptors now, or null when they cannot be counted (then the guard never refuses). */
  count: () => number | null;
  /** Refuse new work at this share of the limit. Default 0.9. */
  ratio?: number;
  /** Count again at most this often. Default 1000 ms. */
  recountMs?: number;
  now?: () => number;
}

export interface DescriptorCheck {
  overloaded: boolean;
  /** Descriptors believed open now (the last count, moved by what the caller holds since). */
  open: number;
  limit: number;
}

/**
 * Decides whether the sidecar is too near its open-files limit to take new work. Counting
 * /proc/self/fd costs a readdir, so it is done at most every `recountMs`; in between, the count is
 * moved by how many descriptors the caller says it holds more (or fewer) than at the last count
 * (the proxies' connections: a burst of them within one second is seen at once).
 */
export class DescriptorGuard {
  readonly limit: number;
  readonly #count: () => number | null;
  readonly #threshold: number;
  readonly #recountMs: number;
  readonly #now: () => number;
  #counted: number | null = null;
  #countedAt = -Infinity;
  #heldAtCount = 0;

  constructor(options: DescriptorGuardOptions) {
    this.limit = options.limit;
    this.#count = options.count;
    this.#threshold = Math.floor(options.limit * (options.ratio ?? DEFAULT_OVERLOAD_RATIO));
    this.#recountMs = options.recountMs ?? DEFAULT_RECOUNT_MS;
    this.#now = options.now ?? (() => performance.now());
  }

  /** `held`: descriptors the caller holds now (its count may have moved since the last recount). */
  check(held = 0): DescriptorCheck {
    const now = this.#now();
    if (now - this.#countedAt >= this.#recountMs) {
      this.#counted = this.#count();
      this.#countedAt = now;
      this.#heldAtCount = held;
    }
    if (this.#counted === null || !Number.isFinite(this.limit))
      return { overloaded: false, open: this.#counted ?? 0, limit: this.limit };
    const open = Math.max(0, this.#counted + held - this.#heldAtCount);
    return { overloaded: open >= this.#threshold, open, limit: this.limit };
  }

  /** Throws -32007 (sidecar_overloaded) when new work must wait: for turn.run and workspace.ensure. */
  assertRoom(held = 0): void {
    const check = this.check(held);
    if (!check.overloaded) return;
    throw new SidecarError(
      ErrorCode.limitReached,
      `the sidecar has ${check.open} of its ${check.limit} open files in use and takes no new turns or workspaces until some close; try again shortly`,
      {
        data: {
          reason: "the sidecar is near its open-files limit; retry shortly",
          code: "sidecar_overloaded",
          openFiles: check.open,
          openFilesLimit: check.limit,
        },
      },
    );
  }
}
