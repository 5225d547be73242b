/** Renders a turn's events as they stream: readable text, or one JSON object per line with --json. */
import type { Writable } from "node:stream";
import type { TurnEventMessage } from "../rpc/client.js";
import type { TurnResult } from "../service.js";
import { writeLine } from "./cli-context.js";
import { indent } from "./format.js";

export class TurnPrinter {
  readonly #out: Writable;
  readonly #json: boolean;

  constructor(out: Writable, options: { json: boolean }) {
    this.#out = out;
    this.#json = options.json;
  }

  event(message: TurnEventMessage): void {
    if (this.#json) {
      writeLine(this.#out, JSON.stringify(message));
      return;
    }
    const text = describeEvent(message);
    if (text !== null) writeLine(this.#out, text);
  }

  result(result: TurnResult): void {
    if (this.#json) {
      writeLine(this.#out, JSON.stringify(result));
      return;
    }
    const parts: string[] = [result.status];
    if (result.usage !== null) {
      const u = result.usage;
      parts.push(
        `tokens: ${u.input_tokens} in (${u.cached_input_tokens} cached), ${u.output_tokens} out (${u.reasoning_output_tokens} reasoning)`,
      );
    }
    if (result.threadId !== null) parts.push(`thread ${result.threadId}`);
    writeLine(this.#out, `-- ${parts.join(" · ")}`);
  }
}

/** One readable line (or block) per event worth showing; null for the rest. */
export function describeEvent({ event }: TurnEventMessage): string | null {
  switch (event.type) {
    case "sidecar.turn.accepted":
      return `turn ${event.turn_id} accepted (workspace ${event.workspace_id})`;
    case "thread.started":
      return `thread ${event.thread_id}`;
    case "turn.failed":
      return `turn failed: ${event.error.message}`;
    case "error":
      return `error: ${event.message}`;
    case "item.started":
      return event.item.type === "command_execution" ? `$ ${event.item.command}` : null;
    case "item.completed": {
      const item = event.item;
      switch (item.type) {
        case "command_execution": {
          const lines: string[] = [];
          if (item.aggregated_output !== "") lines.push(indent(item.aggregated_output));
          if (item.exit_code !== undefined && item.exit_code !== 0) lines.push(`    (exit ${item.exit_code})`);
          return lines.length === 0 ? null : lines.join("\n");
        }
        case "agent_message":
          return item.text;
        case "file_change":
          return `files: ${item.changes.map((c) => `${c.kind} ${c.path}`).join(", ")}${item.status === "failed" ? " (failed)" : ""}`;
        case "mcp_tool_call":
          return `mcp ${item.server}.${item.tool}: ${item.status}${item.error ? ` (${item.error.message})` : ""}`;
        case "web_search":
          return `web search: ${item.query}`;
        case "error":
          return `error: ${item.message}`;
        default:
          return null;
      }
    }
    default:
      return null;
  }
}
