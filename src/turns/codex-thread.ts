/**
 * The SDK's thread for a turn: codex's configuration (codex/config-overrides.ts) and the thread
 * options, with the exec bridge (codex/bridge.ts) standing in for the codex binary.
 */
import { Codex, type ThreadOptions } from "@openai/codex-sdk";
import type { RunTurnParams } from "../service.js";
import { containerEnv } from "../workspace/spec.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import { buildCodexConfig } from "../codex/config-overrides.js";
import { MODEL_BASE_URL } from "../egress/container-net.js";
import { CA_BUNDLE_ENV_NAMES } from "../codex/env.js";
import type { TrustBundle } from "../workspace/trust-bundle.js";

export interface CodexThreadOptions {
  bridgeScript: string;
  aliveApiUrl: string | null;
  aliveMcpToken: string | null;
  nodePath: string | null;
  defaultModel: string | null;
  /** What is brokered for the workspace: the placeholders its processes see (egress/secret-bindings.ts). */
  brokered?: BrokeredEnv;
  /** The trust bundle codex's exec points TLS clients at (its variables are forwarded to MCP servers). */
  trustBundle?: TrustBundle;
}

/** The placeholders a workspace's processes see in place of brokered credentials. */
export interface BrokeredEnv {
  /** What ALIVE_MCP_TOKEN holds (Alive's API token is added by the API proxy); null: no token for it. */
  apiTokenPlaceholder(workspaceId: string): string | null;
  /** Each secret binding's env name and placeholder. */
  secretPlaceholders(workspaceId: string): Record<string, string>;
}

/** What ALIVE_MCP_TOKEN holds in the workspace: a placeholder when brokered, else the operator's token (or nothing). */
export function mcpTokenFor(
  options: Pick<CodexThreadOptions, "aliveMcpToken" | "brokered">,
  workspaceId: string,
): string | null {
  return options.brokered ? options.brokered.apiTokenPlaceholder(workspaceId) : options.aliveMcpToken;
}

export function createThread(
  options: CodexThreadOptions,
  params: RunTurnParams,
  record: WorkspaceRecord,
  bridgeEnv: Record<string, string>,
) {
  const sessionEnv = containerEnv(record.params, options);
  const { workspaceId } = record.params;
  const sessionEnvNames = [
    ...Object.keys(sessionEnv),
    ...(mcpTokenFor(options, workspaceId) ? ["ALIVE_MCP_TOKEN"] : []),
    ...(options.trustBundle ? CA_BUNDLE_ENV_NAMES : []),
  ];
  const codex = new Codex({
    codexPathOverride: options.bridgeScript,
    env: { PATH: "/usr/bin:/bin", ...bridgeEnv },
    config: buildCodexConfig({
      modelBaseUrl: MODEL_BASE_URL,
      sessionEnvNames,
      placeholders: options.brokered?.secretPlaceholders(workspaceId) ?? {},
      ...(params.mcpServers ? { mcpServers: params.mcpServers } : {}),
    }),
  });
  const o = params.options ?? {};
  const model = o.model ?? options.defaultModel ?? undefined;
  // Codex's own sandbox stays off: "workspace-write" is enforced by the container (read-only root,
  // writes only to the workspace, HOME and TMPDIR; egress narrowed by the sidecar's proxy).
  const threadOptions: ThreadOptions = {
    sandboxMode: o.sandboxMode === "read-only" ? "read-only" : "danger-full-access",
    approvalPolicy: o.approvalPolicy ?? "never",
    skipGitRepoCheck: true,
    workingDirectory: record.params.workspacePath,
    ...(model ? { model } : {}),
    ...(o.modelReasoningEffort ? { modelReasoningEffort: o.modelReasoningEffort } : {}),
    ...(o.additionalDirectories ? { additionalDirectories: o.additionalDirectories } : {}),
    ...(o.webSearchMode ? { webSearchMode: o.webSearchMode } : {}),
  };
  return params.threadId ? codex.resumeThread(params.threadId, threadOptions) : codex.startThread(threadOptions);
}
