/**
 * A turn's stdio as files, so that codex outlives the sidecar: the launcher (launcher.ts) runs codex
 * with its stdin from `<name>.in` (the prompt), its stdout to `<name>.out` (the JSONL events) and its
 * stderr to `<name>.err`, all in the workspace's TMPDIR. Nothing of codex's then goes through the
 * exec's connection, which ends with the sidecar; a sidecar that did not start the turn reopens the
 * files and follows them from the start (turn-runner.ts adopts the turn).
 *
 * The TMPDIR on the host (<stateDir>/workspaces/<id>/tmp) is the tenant's directory, but its parent
 * is root's, so the path up to it is never the tenant's to swap. The files are made here by root
 * with O_EXCL and O_NOFOLLOW (a name the tenant made first, a symlink included, is refused), then
 * handed to the workspace's uid, mode 0600. What they hold is the tenant's to write, like codex's
 * output always was (codex-output.ts bounds it); a reopen refuses a symlink, and anything but a
 * regular file. With disks in force they are on the workspace's disk, within its size.
 */
import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import path from "node:path";
import { CONTAINER_TMPDIR } from "../workspace/container-env.js";
import { FileFollower, type FollowerSink } from "./file-follower.js";

/** The three files of a turn, by the name they share (without suffix). */
export interface TurnFileNames {
  /** `.alive-codex-<turnId>-<random>`: the random part keeps a tenant from making the name first. */
  base: string;
}

export type TurnStream = "in" | "out" | "err";

const NAME_PREFIX = ".alive-codex-";
/** Turn ids are checked at admission (uuid-like, no slash); this only guards the file name. */
const SAFE_BASE = /^\.alive-codex-[A-Za-z0-9._-]{1,200}$/;

export function newTurnFileNames(turnId: string): TurnFileNames {
  return { base: `${NAME_PREFIX}${turnId}-${randomBytes(6).toString("hex")}` };
}

/** Whether a persisted name is one newTurnFileNames could have made (state files are checked before use). */
export function isTurnFileBase(base: string): boolean {
  return SAFE_BASE.test(base) && !base.includes("..");
}

/** A turn file's path inside the container. */
export function containerTurnFile(names: TurnFileNames, stream: TurnStream): string {
  return path.posix.join(CONTAINER_TMPDIR, `${names.base}.${stream}`);
}

function hostTurnFile(hostTmp: string, names: TurnFileNames, stream: TurnStream): string {
  if (!isTurnFileBase(names.base)) throw new Error(`not a turn file name: ${JSON.stringify(names.base)}`);
  return path.join(hostTmp, `${names.base}.${stream}`);
}

export interface TurnFileOwner {
  uid: number;
  gid: number;
}

/**
 * Makes the turn's three files in the workspace's TMPDIR (host path): `in` holding the prompt, `out`
 * and `err` empty. Returns the read ends of `out` and `err` (the sidecar follows them). On any
 * failure nothing is left behind.
 */
export async function createTurnFiles(
  hostTmp: string,
  names: TurnFileNames,
  owner: TurnFileOwner,
  prompt: Buffer,
): Promise<{ out: fs.FileHandle; err: fs.FileHandle }> {
  const made: string[] = [];
  const handles: fs.FileHandle[] = [];
  try {
    for (const stream of ["in", "out", "err"] as const) {
      const file = hostTurnFile(hostTmp, names, stream);
      const handle = await fs.open(
        file,
        constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_NONBLOCK,
        0o600,
      );
      made.push(file);
      handles.push(handle);
      await handle.chown(owner.uid, owner.gid);
      await handle.chmod(stream === "in" ? 0o400 : 0o600);
      if (stream === "in") await handle.writeFile(prompt);
    }
    await handles[0]!.close();
    return { out: handles[1]!, err: handles[2]! };
  } catch (error) {
    await Promise.all(handles.map((h) => h.close().catch(() => undefined)));
    await Promise.all(made.map((f) => fs.rm(f, { force: true })));
    throw error;
  }
}

/**
 * Reopens a turn's `out` and `err` for reading (a sidecar adopting the turn). Null when either is
 * gone or is not a regular file (the tenant removed or replaced it: the turn cannot be followed).
 */
export async function reopenTurnFiles(
  hostTmp: string,
  names: TurnFileNames,
): Promise<{ out: fs.FileHandle; err: fs.FileHandle } | null> {
  const handles: fs.FileHandle[] = [];
  try {
    for (const stream of ["out", "err"] as const) {
      const handle = await fs.open(
        hostTurnFile(hostTmp, names, stream),
        constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      );
      handles.push(handle);
      if (!(await handle.stat()).isFile()) throw new Error("not a regular file");
    }
    return { out: handles[0]!, err: handles[1]! };
  } catch {
    await Promise.all(handles.map((h) => h.close().catch(() => undefined)));
    return null;
  }
}

/** Removes the turn's files (the turn ended); never throws. */
export async function removeTurnFiles(hostTmp: string, names: TurnFileNames): Promise<void> {
  for (const stream of ["in", "out", "err"] as const) {
    try {
      await fs.rm(hostTurnFile(hostTmp, names, stream), { force: true });
    } catch {
      // Gone already, or the workspace's disk is: nothing to keep.
    }
  }
}

/**
 * Follows a turn's `out` and `err` (file-follower.ts), each watched by its path: a write is passed
 * on at once (inotify), not at the next poll.
 */
export function followTurnFiles(
  files: { out: fs.FileHandle; err: fs.FileHandle },
  hostTmp: string,
  names: TurnFileNames,
  sinks: { out: FollowerSink; err: FollowerSink },
): [FileFollower, FileFollower] {
  return [
    new FileFollower(files.out, sinks.out, { path: hostTurnFile(hostTmp, names, "out") }),
    new FileFollower(files.err, sinks.err, { path: hostTurnFile(hostTmp, names, "err") }),
  ];
}
