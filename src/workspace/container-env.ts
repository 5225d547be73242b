/**
 * The env and paths of a workspace container, as codex and its commands see them inside. The
 * session env is built from nothing (seeds 000/001): nothing of the sidecar's own environment
 * ever passes. The secrets are not here: they reach codex's own exec only (codex/env.ts).
 */
import { checkEnvValue } from "../shared/env-value.js";

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
