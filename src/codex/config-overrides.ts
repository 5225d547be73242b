/**
 * The codex configuration of a turn, passed as `--config` overrides through the SDK (never a
 * config.toml on disk).
 */
import type { McpServerSpec } from "../service.js";
import { SECRET_ENV_NAMES } from "./env.js";

export type CodexConfigValue = string | number | boolean | CodexConfigValue[] | { [key: string]: CodexConfigValue };
export type CodexConfigObject = { [key: string]: CodexConfigValue };

export interface CodexConfigOptions {
  /** The model API as codex inside sees it: the model proxy's loopback URL (egress/container-net.ts). */
  modelBaseUrl: string;
  /** Names of the session env codex runs with; MCP servers get them forwarded. */
  sessionEnvNames: readonly string[];
  mcpServers?: Record<string, McpServerSpec>;
  /** Variables the agent's commands and MCP servers get holding a brokered credential's placeholder (never a value). */
  placeholders?: Record<string, string>;
}

export const PROVIDER_ID = "alive";
/** Codex's retries of a model request, and of a whole turn request whose stream broke (see below). */
export const CODEX_REQUEST_MAX_RETRIES = 6;
export const CODEX_STREAM_MAX_RETRIES = 6;

export function buildCodexConfig(options: CodexConfigOptions): CodexConfigObject {
  const config: CodexConfigObject = {
    // No background DNS/HTTP calls of codex's own. No shell snapshot: at a session's start codex runs
    // a login bash to capture the shell's state, and under gVisor that bash now and then exits without
    // codex ever noticing, so the turn never sends its first request (7 of 7 stalls seen by
    // bench/runsc-stall.ts; docs/runtimes.md). Commands run as `bash -lc` all the same, rc files and all.
    features: { plugins: false, shell_snapshot: false },
    analytics: { enabled: false },
    // Commands the agent runs get codex's env minus the secrets; default excludes (*KEY*, *SECRET*,
    // *TOKEN*) stay on as a second net.
    shell_environment_policy: {
      inherit: "all",
      exclude: [...SECRET_ENV_NAMES, "CODEX_INTERNAL_ORIGINATOR_OVERRIDE"],
      ignore_default_excludes: false,
    },
  };
  // Set after the excludes: a placeholder named like a token (GITHUB_TOKEN) still reaches the commands.
  const placeholders = options.placeholders ?? {};
  if (Object.keys(placeholders).length > 0)
    (config.shell_environment_policy as CodexConfigObject).set = { ...placeholders };
  // Always a custom provider: codex's built-in one tries a WebSocket seven times (~6.4 s) before
  // HTTP, and it would go to OpenAI directly; this one goes to the sidecar's model proxy over HTTP.
  config.model_provider = PROVIDER_ID;
  config.model_providers = {
    [PROVIDER_ID]: {
      name: "Alive model API",
      base_url: options.modelBaseUrl,
      wire_api: "responses",
      supports_websockets: false,
      env_key: "CODEX_API_KEY",
      // A turn outlives its sidecar (docs/operations.md): while none runs, codex's model requests
      // fail, and codex retries them. Measured (bench/codex-retry-budget.ts): the defaults (4 and 5)
      // outlast a gap of ~21 s; 6 and 6 outlast ~88 s (a cut stream) to ~100 s (between requests).
      // Delays double without a cap, so more retries mostly add long waits.
      request_max_retries: CODEX_REQUEST_MAX_RETRIES,
      stream_max_retries: CODEX_STREAM_MAX_RETRIES,
    },
  };
  const servers = options.mcpServers ?? {};
  if (Object.keys(servers).length > 0) {
    // An MCP server's env starts from codex's small allow-list; forward the whole session env
    // (ALIVE_* context, git, node) except codex's own key, then add the server's env on top.
    const forwarded = options.sessionEnvNames.filter((name) => name !== "CODEX_API_KEY");
    const mcp: CodexConfigObject = {};
    for (const [name, spec] of Object.entries(servers)) {
      mcp[name] = {
        command: spec.command,
        args: spec.args ?? [],
        env_vars: forwarded,
        ...(spec.env || Object.keys(placeholders).length > 0 ? { env: { ...placeholders, ...spec.env } } : {}),
        // approval_policy "never" would otherwise refuse every MCP tool call.
        default_tools_approval_mode: "approve",
      };
    }
    config.mcp_servers = mcp;
  }
  return config;
}
