/** Codex threads on disk: rollouts live at $CODEX_HOME/sessions/YYYY/MM/DD/rollout-…-<thread id>.jsonl. */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { Usage } from "@openai/codex-sdk";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Codex takes a non-UUID as a thread *name* and silently starts a new thread: only UUIDs pass. */
export function isThreadId(value: string): boolean {
  return UUID.test(value);
}

/**
 * Finds the rollout file of a thread under a workspace's CODEX_HOME (host side), or null. Walks
 * only real directories (never a symlink the tenant planted) and stops at the first match.
 */
export async function findRollout(codexHome: string, threadId: string): Promise<string | null> {
  const suffix = `-${threadId.toLowerCase()}.jsonl`;
  const walk = async (dir: string, depth: number): Promise<string | null> => {
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isFile() && entry.name.toLowerCase().endsWith(suffix)) return full;
      if (entry.isDirectory() && depth < 4) {
        const found = await walk(full, depth + 1);
        if (found) return found;
      }
    }
    return null;
  };
  return walk(path.join(codexHome, "sessions"), 0);
}

const USAGE_FIELDS = ["input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_output_tokens"] as const;

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
