/** Token usage read off an upstream response as it passes through the model proxy. */
import type { IncomingMessage } from "node:http";
import { JsonFieldReader } from "./json-fields.js";
import { SseUsageReader, readUsage, type TokenUsage } from "./sse-usage.js";

export interface UsageCounter {
  push(chunk: Buffer): void;
  end(): void;
}

/** Reads usage off an SSE stream or a JSON body as it passes (nothing of either is kept but usage); null for anything else. */
export function usageCounterFor(
  upstreamRes: IncomingMessage,
  report: (usage: TokenUsage) => void,
): UsageCounter | null {
  const encoding = upstreamRes.headers["content-encoding"];
  if (encoding !== undefined && encoding !== "identity") return null;
  const type = (upstreamRes.headers["content-type"] ?? "").toLowerCase();
  if (type.startsWith("text/event-stream")) {
    const reader = new SseUsageReader();
    return {
      push: (chunk) => reader.push(chunk).forEach(report),
      end: () => {},
    };
  }
  const status = upstreamRes.statusCode ?? 0;
  if (!type.startsWith("application/json") || status < 200 || status >= 300) return null;
  // Read as it passes: only the top-level `usage` is kept, however large the body.
  const reader = new JsonFieldReader([["usage"]]);
  return {
    push: (chunk) => reader.push(chunk),
    end: () => {
      const usage = readUsage(reader.end()[0]);
      if (usage) report(usage);
    },
  };
}
