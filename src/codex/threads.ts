/** Codex threads on disk: rollouts live at $CODEX_HOME/sessions/YYYY/MM/DD/rollout-…-<thread id>.jsonl. */
import { constants, promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import type { Usage } from "@openai/codex-sdk";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Codex takes a non-UUID as a thread *name* and silently starts a new thread: only UUIDs pass. */
export function isThreadId(value: string): boolean {
  return UUID.test(value);
}

/**
 * Finds the rollout file of a thread under a workspace's CODEX_HOME (host side), or null.
 *
 * The tree is the tenant's and a process of theirs may be changing it while root reads it: each
 * directory is opened with O_NOFOLLOW|O_DIRECTORY relative to its parent's open fd (through
 * /proc/self/fd: Node has no openat), so a directory swapped for a symlink between the listing and
 * the descent is refused instead of followed elsewhere on the host. It only lists directories,
 * never opens a file, and stops at the first match.
 */
export async function findRollout(codexHome: string, threadId: string): Promise<string | null> {
  const suffix = `-${threadId.toLowerCase()}.jsonl`;
  const walk = async (dir: FileHandle, shown: string, depth: number): Promise<string | null> => {
    try {
      const entries = await fs.readdir(fdPath(dir), { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        if (entry.isFile() && entry.name.toLowerCase().endsWith(suffix)) return path.join(shown, entry.name);
        if (entry.isDirectory() && depth < 4) {
          const child = await openDirNoFollow(fdPath(dir, entry.name));
          const found = child && (await walk(child, path.join(shown, entry.name), depth + 1));
          if (found) return found;
        }
      }
      return null;
    } finally {
      await dir.close();
    }
  };
  // `.codex` is a name in the tenant's HOME: not followed either.
  const home = await openDirNoFollow(codexHome);
  if (!home) return null;
  const sessions = await openDirNoFollow(fdPath(home, "sessions")).finally(() => home.close());
  return sessions ? walk(sessions, path.join(codexHome, "sessions"), 0) : null;
}

/** The open directory itself, or `name` beneath it, as a path: openat(fd, name) for Node. */
function fdPath(dir: FileHandle, name?: string): string {
  return name === undefined ? `/proc/self/fd/${dir.fd}` : `/proc/self/fd/${dir.fd}/${name}`;
}

/** Opens a directory, refusing a symlink at its last component; null when it is not a directory. */
function openDirNoFollow(file: string): Promise<FileHandle | null> {
  return fs.open(file, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(() => null);
}

const USAGE_FIELDS = [
  "input_tokens",
  "cached_input_tokens",
  "cache_write_input_tokens",
  "output_tokens",
  "reasoning_output_tokens",
] as const;

/** This turn's share of a thread's cumulative usage; the whole when there is no earlier turn or the counts went down. */
export function usageDelta(current: Usage, previous: Usage | null): Usage {
  if (previous === null || USAGE_FIELDS.some((f) => (current[f] ?? 0) < (previous[f] ?? 0))) return { ...current };
  const delta = { ...current };
  for (const field of USAGE_FIELDS) delta[field] = (current[field] ?? 0) - (previous[field] ?? 0);
  return delta;
}

/**
 * The last cumulative usage seen per thread, kept in the sidecar's own part of the workspace dir
 * (root-owned, not the tenant's HOME, so it cannot be tampered with).
 */
export class ThreadUsageStore {
  constructor(private readonly dir: string) {}

  async read(threadId: string): Promise<Usage | null> {
    try {
      return JSON.parse(await fs.readFile(this.file(threadId), "utf8")) as Usage;
    } catch {
      return null;
    }
  }

  async write(threadId: string, usage: Usage): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const temp = `${this.file(threadId)}.tmp`;
    await fs.writeFile(temp, JSON.stringify(usage), { mode: 0o600 });
    await fs.rename(temp, this.file(threadId));
  }

  private file(threadId: string): string {
    if (!isThreadId(threadId)) throw new Error("not a thread id");
    return path.join(this.dir, `${threadId.toLowerCase()}.json`);
  }
}
