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

export interface CodexThreadOptions {
  bridgeScript: string;
  aliveApiUrl: string | null;
  aliveMcpToken: string | null;
  nodePath: string | null;
  defaultModel: string | null;
}

export function createThread(
  options: CodexThreadOptions,
  params: RunTurnParams,
  record: WorkspaceRecord,
  bridgeEnv: Record<string, string>,
) {
  const sessionEnv = containerEnv(record.params, options);
  const sessionEnvNames = [...Object.keys(sessionEnv), ...(options.aliveMcpToken ? ["ALIVE_MCP_TOKEN"] : [])];
  const codex = new Codex({
    codexPathOverride: options.bridgeScript,
    env: { PATH: "/usr/bin:/bin", ...bridgeEnv },
    config: buildCodexConfig({
      modelBaseUrl: MODEL_BASE_URL,
      sessionEnvNames,
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
