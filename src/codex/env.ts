/**
 * What codex's own exec gets besides the container's env (workspace/container-env.ts): the turn
 * marker and the secrets. The Codex SDK's `env` replaces process.env, and the container gets only
 * what is listed here: nothing of the sidecar's own environment ever passes.
 */
import { checkEnvValue } from "../shared/env-value.js";

/** Set by buildCodexExecEnv on codex's exec; its commands inherit it, and the sweep (sweep.ts) finds the turn by it. */
export const TURN_MARKER_ENV = "ALIVE_TURN_ID";

/** Variables codex's own commands never see (shell_environment_policy) and MCP servers get only when set. */
export const SECRET_ENV_NAMES = ["CODEX_API_KEY", "ALIVE_MCP_TOKEN"] as const;

/** Every name buildCodexEnv (workspace/container-env.ts) and buildCodexExecEnv may produce. Anything else coming out is a leak. */
export const CODEX_ENV_ALLOWLIST: ReadonlySet<string> = new Set([
  "PATH",
  "HOME",
  "CODEX_HOME",
  "TMPDIR",
  "LANG",
  "TERM",
  "NODE_ENV",
  "USER",
  "LOGNAME",
  "SHELL",
  "CODEX_API_KEY",
  TURN_MARKER_ENV,
  "CODEX_INTERNAL_ORIGINATOR_OVERRIDE",
  "ALIVE_WORKSPACE_ID",
  "ALIVE_USER_ID",
  "ALIVE_WORKSPACE_PATH",
  "ALIVE_API_URL",
  "ALIVE_MCP_TOKEN",
  "GIT_AUTHOR_NAME",
  "GIT_COMMITTER_NAME",
  "GIT_AUTHOR_EMAIL",
  "GIT_COMMITTER_EMAIL",
  "NODE_PATH",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "http_proxy",
  "https_proxy",
  "NO_PROXY",
  "no_proxy",
]);

export interface CodexExecEnvOptions {
  turnId: string;
  /** The turn's model credential (the model proxy swaps in the real key outside the container). */
  codexApiKey: string | null;
  aliveMcpToken: string | null;
  /** The trust bundle (the system roots and the sidecar's CA) as a path inside the container, if any. */
  caBundle?: string | null;
}

/** The variables that point TLS clients at a CA bundle: OpenSSL tools, git, Node, Python requests, curl. */
export const CA_BUNDLE_ENV_NAMES = [
  "SSL_CERT_FILE",
  "NODE_EXTRA_CA_CERTS",
  "GIT_SSL_CAINFO",
  "REQUESTS_CA_BUNDLE",
  "CURL_CA_BUNDLE",
] as const;

/**
 * What codex's own exec adds to the container's env for one turn: the turn marker, the turn's
 * model credential and the MCP token. Only this process gets them; its commands do not inherit
 * them (shell_environment_policy). codex is an ordinary process of the workspace's uid, so a
 * command that reads its /proc/<pid>/environ finds them: the credential works only for this
 * workspace's model proxy and only while the turn runs (docs/security.md).
 */
export function buildCodexExecEnv(options: CodexExecEnvOptions): Record<string, string> {
  const env: Record<string, string> = {
    [TURN_MARKER_ENV]: options.turnId,
    CODEX_INTERNAL_ORIGINATOR_OVERRIDE: "codex_sdk_ts",
  };
  if (options.codexApiKey) env.CODEX_API_KEY = options.codexApiKey;
  if (options.aliveMcpToken) env.ALIVE_MCP_TOKEN = options.aliveMcpToken;
  // Codex's commands and MCP servers inherit them: the sidecar's CA is trusted for intercepted hosts.
  if (options.caBundle) for (const name of CA_BUNDLE_ENV_NAMES) env[name] = options.caBundle;
  for (const [name, value] of Object.entries(env)) checkEnvValue(name, value);
  return env;
}
