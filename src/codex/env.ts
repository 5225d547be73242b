/**
 * The explicit session env (seeds 000/001). The Codex SDK's `env` replaces process.env, and the
 * container gets only what is listed here: nothing of the sidecar's own environment ever passes.
 */
import { invalidParams } from "../errors.js";

/** PATH inside the runtime image: the host's PATH means nothing in the container. */
export const IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Paths as codex sees them inside the workspace container. */
export const CONTAINER_HOME = "/home/alive";
export const CONTAINER_CODEX_HOME = `${CONTAINER_HOME}/.codex`;
export const CONTAINER_TMPDIR = "/tmp";

export interface CodexEnvOptions {
  workspaceId: string;
  userId: string;
  workspacePath: string;
  git?: { name?: string; email?: string };
  /** Auth: the key codex needs, as CODEX_API_KEY. Never OPENAI_API_KEY, never Anthropic's. */
  codexApiKey?: string | null;
  aliveApiUrl?: string | null;
  aliveMcpToken?: string | null;
  nodePath?: string | null;
  nodeEnv?: string;
}

/** Variables codex's own commands never see (shell_environment_policy) and MCP servers get only when set. */
export const SECRET_ENV_NAMES = ["CODEX_API_KEY", "ALIVE_MCP_TOKEN"] as const;

export const MAX_ENV_VALUE_LENGTH = 8192;

/** Every name buildCodexEnv may produce. Anything else coming out is a leak. */
export const CODEX_ENV_ALLOWLIST: ReadonlySet<string> = new Set([
  "PATH", "HOME", "CODEX_HOME", "TMPDIR", "LANG", "TERM", "NODE_ENV", "USER", "LOGNAME", "SHELL",
  "CODEX_API_KEY", "ALIVE_TURN_ID", "CODEX_INTERNAL_ORIGINATOR_OVERRIDE",
  "ALIVE_WORKSPACE_ID", "ALIVE_USER_ID", "ALIVE_WORKSPACE_PATH", "ALIVE_API_URL", "ALIVE_MCP_TOKEN",
  "GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL", "NODE_PATH",
]);

/** Refuses a value with NUL or newline (it would split an env entry or a log line) or over the size bound. */
export function checkEnvValue(field: string, value: string, maxLength = MAX_ENV_VALUE_LENGTH): string {
  if (/[\0\r\n]/.test(value)) throw invalidParams(field, "must not contain NUL or newline characters");
  if (value.length > maxLength) throw invalidParams(field, `must be at most ${maxLength} characters (got ${value.length})`);
  return value;
}

/** Builds the session env from nothing: system, auth, MCP context, tools. */
export function buildCodexEnv(options: CodexEnvOptions): Record<string, string> {
  const env: Record<string, string> = {
    PATH: IMAGE_PATH,
    HOME: CONTAINER_HOME,
    CODEX_HOME: CONTAINER_CODEX_HOME,
    TMPDIR: CONTAINER_TMPDIR,
    LANG: "C.UTF-8",
    TERM: "dumb",
    SHELL: "/bin/bash",
    USER: "alive",
    LOGNAME: "alive",
    NODE_ENV: options.nodeEnv ?? "production",
    ALIVE_WORKSPACE_ID: options.workspaceId,
    ALIVE_USER_ID: options.userId,
    ALIVE_WORKSPACE_PATH: options.workspacePath,
  };
  const optional: Array<[string, string | null | undefined]> = [
    ["CODEX_API_KEY", options.codexApiKey],
    ["ALIVE_API_URL", options.aliveApiUrl],
    ["ALIVE_MCP_TOKEN", options.aliveMcpToken],
    ["GIT_AUTHOR_NAME", options.git?.name],
    ["GIT_COMMITTER_NAME", options.git?.name],
    ["GIT_AUTHOR_EMAIL", options.git?.email],
    ["GIT_COMMITTER_EMAIL", options.git?.email],
    ["NODE_PATH", options.nodePath],
  ];
  for (const [name, value] of optional) {
    if (value !== undefined && value !== null && value !== "") env[name] = value;
  }
  for (const [name, value] of Object.entries(env)) checkEnvValue(name, value);
  return env;
}

/** Docker's Env form. */
export function toDockerEnv(env: Record<string, string>): string[] {
  return Object.entries(env).map(([name, value]) => `${name}=${value}`);
}

export interface CodexExecEnvOptions {
  turnId: string;
  codexApiKey: string | null;
  aliveMcpToken: string | null;
}

/**
 * What codex's own exec adds to the container's env for one turn: the turn marker and the
 * secrets. Only this process gets them; its commands do not (shell_environment_policy), and it
 * runs non-dumpable, so they cannot read its environ either.
 */
export function buildCodexExecEnv(options: CodexExecEnvOptions): Record<string, string> {
  const env: Record<string, string> = {
    ALIVE_TURN_ID: options.turnId,
    CODEX_INTERNAL_ORIGINATOR_OVERRIDE: "codex_sdk_ts",
  };
  if (options.codexApiKey) env.CODEX_API_KEY = options.codexApiKey;
  if (options.aliveMcpToken) env.ALIVE_MCP_TOKEN = options.aliveMcpToken;
  for (const [name, value] of Object.entries(env)) checkEnvValue(name, value);
  return env;
}
