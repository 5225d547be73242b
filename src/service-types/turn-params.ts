/** What turn.run asks for: the input, the options (codex's and the sidecar's own), the budgets and the MCP servers. */
import type { ModelReasoningEffort, ThreadOptions } from "@openai/codex-sdk";
import type { WorkspaceParams } from "./workspace.js";
import type { SecretBinding } from "./secrets.js";

export type TurnInputItem = { type: "text"; text: string } | { type: "local_image"; path: string };

export type TurnInput = string | TurnInputItem[];

/**
 * The reasoning efforts turn.run accepts (docs/protocol.md): codex-sdk's ModelReasoningEffort names more
 * than the protocol promises, so this list narrows it (and the compiler keeps it a subset).
 */
export const REASONING_EFFORTS = [
  "minimal",
  "low",
  "medium",
  "high",
  "xhigh",
] as const satisfies readonly ModelReasoningEffort[];

/** turn.run options: codex-sdk's ThreadOptions where it defines them, plus the sidecar's own. */
export interface TurnRunOptions extends Pick<
  ThreadOptions,
  "model" | "sandboxMode" | "approvalPolicy" | "networkAccessEnabled" | "additionalDirectories" | "webSearchMode"
> {
  modelReasoningEffort?: (typeof REASONING_EFFORTS)[number];
  outputSchema?: Record<string, unknown>;
  timeoutMs?: number;
  /** Limits that stop the turn (error.code "budget_exceeded") when crossed; absent: the operator's defaults. */
  budget?: TurnBudgetRequest;
  /** What the client's disconnect does to the turn: "cancel" (default) or "continue" (it runs on; turn.attach follows it). */
  onDisconnect?: TurnDisconnectPolicy;
}

export const DISCONNECT_POLICIES = ["cancel", "continue"] as const;

export type TurnDisconnectPolicy = (typeof DISCONNECT_POLICIES)[number];

export interface TurnBudgetRequest {
  /** Model tokens (input + output, as the model API counts them) over the turn's model requests. */
  tokens?: number;
  /** CPU time of the workspace container over the turn. */
  cpuSeconds?: number;
}

export interface McpServerSpec {
  command: string;
  args?: string[];
  env?: Record<string, string>;
}

export interface RunTurnParams {
  workspaceId: string;
  turnId?: string;
  /** A codex thread id (UUID) to resume. */
  threadId?: string;
  input: TurnInput;
  options?: TurnRunOptions;
  mcpServers?: Record<string, McpServerSpec>;
  /** turn.run may carry the workspace.ensure fields; then the workspace is ensured first. */
  workspace?: WorkspaceParams;
  /** Secret bindings for this turn only (on top of the workspace's; a turn's binding of a host wins). */
  secrets?: SecretBinding[];
}
