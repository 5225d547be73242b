/**
 * Operator configuration: the only module that reads process.env.
 *
 * Every setting has an environment variable and an `alive-codex serve` flag (the flag wins),
 * a default and a validator whose error names the setting, the value and what was expected.
 * The README's configuration table is checked against SETTINGS by a unit test.
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export interface IdRange {
  min: number;
  max: number;
}

export interface ResourceLimits {
  memoryMb: number;
  cpus: number;
  pids: number;
}

export interface SidecarConfig {
  socketPath: string;
  socketGroup: string | null;
  stateDir: string;
  workspaceRoots: string[];
  uidRange: IdRange;
  gidRange: IdRange;
  allowRoot: boolean;
  /** An explicit runtime image reference, or null for the tag derived from the build inputs. */
  image: string | null;
  baseImage: string;
  runtime: string | null;
  network: string;
  defaultResources: ResourceLimits;
  nofile: number;
  idleTimeoutMs: number;
  turnTimeoutMs: number;
  shutdownGraceMs: number;
  maxWorkspaces: number;
  maxTurns: number;
  openaiBaseUrl: string | null;
  /** The key codex gets inside the container, as CODEX_API_KEY. Never logged. */
  codexApiKey: string | null;
  /** Where codexApiKey was read from, when it came from a file. */
  codexApiKeyFile: string | null;
  defaultModel: string | null;
  aliveApiUrl: string | null;
  /** Token for Alive's MCP servers, as ALIVE_MCP_TOKEN. Never logged. */
  aliveMcpToken: string | null;
  nodePath: string | null;
  dockerHost: string;
  logLevel: "debug" | "info" | "warn" | "error";
}

/** A setting that failed validation: names the setting, the value received and what was expected. */
export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    readonly value: string,
    readonly expected: string,
  ) {
    super(`${setting}=${JSON.stringify(value)}: expected ${expected}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

export interface SettingSpec {
  /** The key in SidecarConfig this setting fills. */
  key: keyof SidecarConfig;
  env: string;
  flag: string;
  /** The default as shown to operators (computed defaults are described in words). */
  defaultText: string;
  description: string;
  secret?: boolean;
}

function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

function defaultSocketPath(env: Env): string {
  if (isRoot()) return "/run/alive-codex/sidecar.sock";
  return path.join(env.XDG_RUNTIME_DIR ?? os.tmpdir(), "alive-codex.sock");
}

function defaultStateDir(env: Env): string {
  if (isRoot()) return "/var/lib/alive-codex";
  return path.join(env.XDG_STATE_HOME ?? path.join(os.homedir(), ".local", "state"), "alive-codex");
}

export const SETTINGS: readonly SettingSpec[] = [
  { key: "socketPath", env: "ALIVE_CODEX_SOCKET", flag: "--socket", defaultText: "/run/alive-codex/sidecar.sock as root, else $XDG_RUNTIME_DIR/alive-codex.sock", description: "Unix socket the RPC server listens on (mode 0660)." },
  { key: "socketGroup", env: "ALIVE_CODEX_SOCKET_GROUP", flag: "--socket-group", defaultText: "(none)", description: "Group name or gid given to the socket, so Alive's server can connect without root." },
  { key: "stateDir", env: "ALIVE_CODEX_STATE_DIR", flag: "--state-dir", defaultText: "/var/lib/alive-codex as root, else $XDG_STATE_HOME/alive-codex", description: "Absolute directory for per-workspace HOME and TMPDIR (workspaces/<id>/home, tmp)." },
  { key: "workspaceRoots", env: "ALIVE_CODEX_WORKSPACE_ROOTS", flag: "--workspace-roots", defaultText: "/srv/alive/workspaces", description: "Colon-separated absolute directories; a workspacePath must resolve inside one of them." },
  { key: "uidRange", env: "ALIVE_CODEX_UID_RANGE", flag: "--uid-range", defaultText: "1000-65533", description: "Allowed workspace uids, MIN-MAX inclusive." },
  { key: "gidRange", env: "ALIVE_CODEX_GID_RANGE", flag: "--gid-range", defaultText: "1000-65533", description: "Allowed workspace gids, MIN-MAX inclusive." },
  { key: "allowRoot", env: "ALIVE_CODEX_ALLOW_ROOT", flag: "--allow-root", defaultText: "false", description: "Allow uid/gid 0 inside the ranges. Off unless you know why you need it." },
  { key: "image", env: "ALIVE_CODEX_IMAGE", flag: "--image", defaultText: "alive-codex-runtime:<hash of build inputs>", description: "Runtime image reference. Unset: the sidecar builds images/runtime on first need and tags it by its inputs." },
  { key: "baseImage", env: "ALIVE_CODEX_BASE_IMAGE", flag: "--base-image", defaultText: "debian:bookworm-slim", description: "Base image the runtime image is built FROM (scripts/make-base-image.mjs makes a local one)." },
  { key: "runtime", env: "ALIVE_CODEX_RUNTIME", flag: "--runtime", defaultText: "(engine default, runc)", description: "OCI runtime for workspace containers, e.g. runsc for gVisor." },
  { key: "network", env: "ALIVE_CODEX_NETWORK", flag: "--network", defaultText: "alive-codex", description: "Bridge network for workspace containers, created with inter-container traffic off." },
  { key: "defaultResources", env: "ALIVE_CODEX_RESOURCES", flag: "--resources", defaultText: "memoryMb=2048,cpus=1,pids=512", description: "Default limits per workspace container: memory (= memory+swap) in MiB, CPUs, max processes." },
  { key: "nofile", env: "ALIVE_CODEX_NOFILE", flag: "--nofile", defaultText: "4096", description: "Open-files ulimit (soft = hard) in workspace containers." },
  { key: "idleTimeoutMs", env: "ALIVE_CODEX_IDLE_TIMEOUT", flag: "--idle-timeout", defaultText: "30m", description: "Stop a workspace container idle this long (0 = never). Units: ms, s, m, h." },
  { key: "turnTimeoutMs", env: "ALIVE_CODEX_TURN_TIMEOUT", flag: "--turn-timeout", defaultText: "15m", description: "Default deadline of a turn; turn.run options.timeoutMs overrides it." },
  { key: "shutdownGraceMs", env: "ALIVE_CODEX_SHUTDOWN_GRACE", flag: "--shutdown-grace", defaultText: "30s", description: "On SIGTERM/SIGINT, how long running turns may finish before they are cancelled." },
  { key: "maxWorkspaces", env: "ALIVE_CODEX_MAX_WORKSPACES", flag: "--max-workspaces", defaultText: "200", description: "Most workspace containers at once (-32007 past it)." },
  { key: "maxTurns", env: "ALIVE_CODEX_MAX_TURNS", flag: "--max-turns", defaultText: "32", description: "Most turns running at once across workspaces (-32007 past it)." },
  { key: "openaiBaseUrl", env: "OPENAI_BASE_URL", flag: "--openai-base-url", defaultText: "(codex's built-in OpenAI endpoint)", description: "Model API base URL as seen from inside workspace containers, e.g. http://172.17.0.1:8080/v1." },
  { key: "codexApiKey", env: "CODEX_API_KEY", flag: "--codex-api-key", defaultText: "$OPENAI_API_KEY, else none", description: "Key codex uses (given to codex only, never to agent commands or logs). OPENAI_API_KEY is read as a fallback.", secret: true },
  { key: "codexApiKeyFile", env: "ALIVE_CODEX_API_KEY_FILE", flag: "--codex-api-key-file", defaultText: "(none)", description: "A file holding the key (e.g. a Docker or compose secret), used when CODEX_API_KEY is not set; keeps the key out of process listings and `docker inspect`." },
  { key: "defaultModel", env: "ALIVE_CODEX_MODEL", flag: "--model", defaultText: "(codex's default)", description: "Model used when turn.run options.model is not given." },
  { key: "aliveApiUrl", env: "ALIVE_API_URL", flag: "--alive-api-url", defaultText: "(none)", description: "Alive's internal API, passed to sessions and MCP servers as ALIVE_API_URL." },
  { key: "aliveMcpToken", env: "ALIVE_MCP_TOKEN", flag: "--alive-mcp-token", defaultText: "(none)", description: "Token for Alive's MCP servers, passed as ALIVE_MCP_TOKEN.", secret: true },
  { key: "nodePath", env: "ALIVE_CODEX_NODE_PATH", flag: "--node-path", defaultText: "(none)", description: "NODE_PATH inside workspace containers." },
  { key: "dockerHost", env: "DOCKER_HOST", flag: "--docker-host", defaultText: "unix:///var/run/docker.sock", description: "Docker Engine endpoint (unix:// socket path, or tcp://host:port)." },
  { key: "logLevel", env: "ALIVE_CODEX_LOG_LEVEL", flag: "--log-level", defaultText: "info", description: "debug, info, warn or error." },
];

const MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000;

function parseAbsolutePath(setting: string, raw: string): string {
  if (!path.isAbsolute(raw)) throw new ConfigError(setting, raw, "an absolute path");
  if (raw.includes("\0")) throw new ConfigError(setting, raw, "a path without NUL");
  return path.resolve(raw);
}

function parseInteger(setting: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(setting, raw, `a whole number from ${min} to ${max}`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(setting, raw, `a whole number from ${min} to ${max}`);
  return value;
}

export function parseRange(setting: string, raw: string): IdRange {
  const match = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(raw);
  const limit = 2 ** 31 - 2;
  if (!match) throw new ConfigError(setting, raw, "MIN-MAX, e.g. 1000-65533");
  const min = Number(match[1]);
  const max = Number(match[2]);
  if (min > max || max > limit) throw new ConfigError(setting, raw, `MIN-MAX with MIN <= MAX <= ${limit}`);
  return { min, max };
}

export function parseBoolean(setting: string, raw: string): boolean {
  const value = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["0", "false", "no", "off", ""].includes(value)) return false;
  throw new ConfigError(setting, raw, "true or false");
}

/** "1500", "1500ms", "90s", "30m", "2h" → milliseconds. */
export function parseDuration(setting: string, raw: string): number {
  const match = /^\s*(\d+)\s*(ms|s|m|h)?\s*$/.exec(raw);
  if (!match) throw new ConfigError(setting, raw, "a duration such as 500ms, 90s, 30m or 2h (0 = off)");
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? "ms") as "ms" | "s" | "m" | "h"];
  const value = Number(match[1]) * factor;
  if (value > MAX_TIMEOUT_MS) throw new ConfigError(setting, raw, "a duration of at most 7 days");
  return value;
}

export function parseResources(setting: string, raw: string, base: ResourceLimits): ResourceLimits {
  const out = { ...base };
  for (const part of raw.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [name, value = ""] = part.split("=", 2).map((s) => s.trim());
    if (name === "memoryMb") out.memoryMb = parseInteger(`${setting} memoryMb`, value, 64, 1_048_576);
    else if (name === "pids") out.pids = parseInteger(`${setting} pids`, value, 16, 1_000_000);
    else if (name === "cpus") {
      const cpus = Number(value);
      if (!/^\d+(\.\d+)?$/.test(value) || cpus < 0.01 || cpus > 1024) throw new ConfigError(`${setting} cpus`, value, "a number of CPUs from 0.01 to 1024");
      out.cpus = cpus;
    } else throw new ConfigError(setting, raw, "a list of memoryMb=N, cpus=N, pids=N separated by commas");
  }
  return out;
}

function parseUrl(setting: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(setting, raw, "an http:// or https:// URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new ConfigError(setting, raw, "an http:// or https:// URL");
  return raw.replace(/\/+$/, "");
}

function parseSingleLine(setting: string, raw: string, maxLength: number, secret = false): string {
  if (/[\0\r\n]/.test(raw) || raw.length > maxLength) {
    throw new ConfigError(setting, secret ? "[redacted]" : raw, `a single line of at most ${maxLength} characters`);
  }
  return raw;
}

function readKeyFile(setting: string, file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new ConfigError(setting, file, `a readable file holding the key (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`);
  }
  const key = text.replace(/\r?\n$/, "");
  if (key === "") throw new ConfigError(setting, file, "a file holding the key, not an empty one");
  return parseSingleLine(setting, key, 4096, true);
}

function parseDockerHost(setting: string, raw: string): string {
  if (/^unix:\/\/\//.test(raw) || /^tcp:\/\/[^/]+:\d+\/?$/.test(raw)) return raw;
  if (path.isAbsolute(raw)) return `unix://${raw}`;
  throw new ConfigError(setting, raw, "unix:///path/to/docker.sock or tcp://host:port");
}

/** Looks up a setting's raw value: flag first, then its environment variable. */
function rawValue(spec: SettingSpec, flags: Record<string, string>, env: Env): string | undefined {
  const fromFlag = flags[spec.flag];
  if (fromFlag !== undefined) return fromFlag;
  const fromEnv = env[spec.env];
  return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
}

/**
 * Builds the validated configuration. `flags` maps a flag ("--state-dir") to its value;
 * `env` defaults to process.env and is read nowhere else in the sidecar.
 */
export function loadConfig(flags: Record<string, string> = {}, env: Env = process.env): SidecarConfig {
  const known = new Set(SETTINGS.map((s) => s.flag));
  for (const flag of Object.keys(flags)) {
    if (!known.has(flag)) throw new ConfigError(flag, flags[flag] ?? "", `one of the documented flags (see alive-codex serve --help)`);
  }
  const get = (key: keyof SidecarConfig): { name: string; raw: string | undefined } => {
    const spec = SETTINGS.find((s) => s.key === key);
    if (!spec) throw new Error(`no setting ${key}`);
    const raw = rawValue(spec, flags, env);
    const name = flags[spec.flag] !== undefined ? spec.flag : spec.env;
    return { name, raw };
  };
  const str = <T>(key: keyof SidecarConfig, fallback: T, parse: (name: string, raw: string) => string | T): string | T => {
    const { name, raw } = get(key);
    return raw === undefined ? fallback : parse(name, raw);
  };

  const stateDir = str("stateDir", defaultStateDir(env), parseAbsolutePath) as string;
  const rootsRaw = get("workspaceRoots");
  const workspaceRoots = (rootsRaw.raw ?? "/srv/alive/workspaces")
    .split(":")
    .filter((p) => p !== "")
    .map((p) => parseAbsolutePath(rootsRaw.name, p));
  if (workspaceRoots.length === 0) throw new ConfigError(rootsRaw.name, rootsRaw.raw ?? "", "at least one absolute directory");

  const allowRoot = str("allowRoot", false, parseBoolean) as boolean;
  const range = (key: "uidRange" | "gidRange"): IdRange => {
    const { name, raw } = get(key);
    const value = raw === undefined ? { min: 1000, max: 65533 } : parseRange(name, raw);
    if (value.min === 0 && !allowRoot) {
      throw new ConfigError(name, raw ?? "", `a range above 0 (0 is root; set ALIVE_CODEX_ALLOW_ROOT=true / --allow-root to permit it)`);
    }
    return value;
  };

  // The key: CODEX_API_KEY, else the key file, else OPENAI_API_KEY (read here only, never passed on under that name).
  const apiKeyRaw = get("codexApiKey");
  const keyFile = str("codexApiKeyFile", null, parseAbsolutePath);
  let codexApiKey: string | null = null;
  if (apiKeyRaw.raw !== undefined) codexApiKey = parseSingleLine(apiKeyRaw.name, apiKeyRaw.raw, 4096, true);
  else if (keyFile !== null) codexApiKey = readKeyFile(get("codexApiKeyFile").name, keyFile);
  else if (env.OPENAI_API_KEY) codexApiKey = parseSingleLine("OPENAI_API_KEY", env.OPENAI_API_KEY, 4096, true);

  const resources = get("defaultResources");
  const logLevel = str("logLevel", "info", (name, raw) => {
    if (!["debug", "info", "warn", "error"].includes(raw)) throw new ConfigError(name, raw, "debug, info, warn or error");
    return raw;
  }) as SidecarConfig["logLevel"];

  const name = (key: keyof SidecarConfig, max = 255): string | null =>
    str(key, null, (n, raw) => {
      if (!/^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$/.test(raw) || raw.length > max) throw new ConfigError(n, raw, "a name of letters, digits and _.:/@-");
      return raw;
    });

  return {
    socketPath: str("socketPath", defaultSocketPath(env), parseAbsolutePath) as string,
    socketGroup: name("socketGroup", 64),
    stateDir,
    workspaceRoots,
    uidRange: range("uidRange"),
    gidRange: range("gidRange"),
    allowRoot,
    image: name("image"),
    baseImage: name("baseImage") ?? "debian:bookworm-slim",
    runtime: name("runtime", 64),
    network: name("network", 64) ?? "alive-codex",
    defaultResources:
      resources.raw === undefined
        ? { memoryMb: 2048, cpus: 1, pids: 512 }
        : parseResources(resources.name, resources.raw, { memoryMb: 2048, cpus: 1, pids: 512 }),
    nofile: str("nofile", 4096, (n, raw) => parseInteger(n, raw, 64, 1_048_576)) as number,
    idleTimeoutMs: str("idleTimeoutMs", 30 * 60_000, parseDuration) as number,
    turnTimeoutMs: (() => {
      const value = str("turnTimeoutMs", 15 * 60_000, parseDuration) as number;
      if (value === 0) throw new ConfigError(get("turnTimeoutMs").name, "0", "a duration above 0: every turn has a deadline");
      return value;
    })(),
    shutdownGraceMs: str("shutdownGraceMs", 30_000, parseDuration) as number,
    maxWorkspaces: str("maxWorkspaces", 200, (n, raw) => parseInteger(n, raw, 1, 100_000)) as number,
    maxTurns: str("maxTurns", 32, (n, raw) => parseInteger(n, raw, 1, 10_000)) as number,
    openaiBaseUrl: str("openaiBaseUrl", null, parseUrl),
    codexApiKey,
    codexApiKeyFile: keyFile,
    defaultModel: name("defaultModel", 128),
    aliveApiUrl: str("aliveApiUrl", null, parseUrl),
    aliveMcpToken: str("aliveMcpToken", null, (n, raw) => parseSingleLine(n, raw, 4096, true)),
    nodePath: str("nodePath", null, (n, raw) => parseSingleLine(n, raw, 4096)),
    dockerHost: str("dockerHost", "unix:///var/run/docker.sock", parseDockerHost) as string,
    logLevel,
  };
}

/** The secrets of a configuration, for the logger's redaction list. */
export function configSecrets(config: SidecarConfig): string[] {
  return [config.codexApiKey, config.aliveMcpToken].filter((s): s is string => s !== null);
}

/** Renders `alive-codex serve --help`: every setting with its flag, variable and default. */
export function renderSettingsHelp(): string {
  const lines = SETTINGS.map((s) => `  ${s.flag} <value>\n      ${s.description}\n      env ${s.env}; default: ${s.defaultText}`);
  return lines.join("\n");
}

export const CONFIG_TABLE_BEGIN = "<!-- config-table:begin (generated from src/config.ts SETTINGS: npm run docs:config) -->";
export const CONFIG_TABLE_END = "<!-- config-table:end -->";

/** The README's configuration table, rendered from SETTINGS. */
export function renderSettingsMarkdown(): string {
  const cell = (text: string): string => text.replace(/\|/g, "\\|");
  const rows = SETTINGS.map((s) => `| \`${s.env}\` | \`${s.flag}\` | ${cell(s.defaultText)} | ${cell(s.description)}${s.secret ? " Secret: never logged." : ""} |`);
  return [CONFIG_TABLE_BEGIN, "| variable | flag | default | meaning |", "|---|---|---|---|", ...rows, CONFIG_TABLE_END].join("\n");
}
