/** Codex threads on disk: rollouts live at $CODEX_HOME/sessions/YYYY/MM/DD/rollout-…-<thread id>.jsonl. */
import { promises as fs } from "node:fs";
import path from "node:path";

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
