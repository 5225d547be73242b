/** A turn's token usage: this turn's share of what codex reports for the whole thread. */
import type { Usage } from "@openai/codex-sdk";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import { ThreadUsageStore, isThreadId, usageDelta } from "../codex/threads.js";

/** Codex reports usage cumulatively over a resumed thread; this turn's share is the difference. */
export async function computeTurnUsage(
  record: WorkspaceRecord,
  threadId: string | null,
  usage: Usage | null,
  log: Logger,
): Promise<Usage | null> {
  if (usage === null || threadId === null || !isThreadId(threadId)) return usage;
  const store = new ThreadUsageStore(record.paths.threads);
  try {
    const delta = usageDelta(usage, await store.read(threadId));
    await store.write(threadId, usage);
    return delta;
  } catch (error) {
    log.warn("could not keep the thread's usage", {
      workspaceId: record.params.workspaceId,
      threadId,
      error: errorMessage(error),
    });
    return usage;
  }
}
