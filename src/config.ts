/**
 * Operator configuration: the only module that reads process.env.
 *
 * Every setting is one SETTINGS entry: its environment variable and `alive-codex serve` flag (the flag
 * wins), its parser (whose error names the setting, the value and what was expected) and its default.
 * The entries live by area in settings/; loadConfig is a loop over the table plus the rules that span
 * settings. The README's configuration table is rendered from SETTINGS and checked by a unit test.
 */
import type { EgressPolicy } from "./policy/egress-policy.js";
import type { AddressSet } from "./policy/addresses.js";
import { parseInternalDestinations, type InternalDestination } from "./policy/internal-destinations.js";
import type { LogLevel } from "./log.js";
import type { ResourceLimits, DiskLimits } from "./shared/limits.js";
import { formatDiskLimits, type DiskSetting } from "./shared/disk-settings.js";
import { ConfigError, parseDuration, readKeyFile, type IdRange, type ListenAddress } from "./shared/setting-parsers.js";
import { secretLine, type AnySetting, type Env, type SettingSpec } from "./settings/setting-spec.js";
import { SETTINGS } from "./settings/settings-table.js";
import type { OnStopSetting, StallWatchSetting } from "./settings/turn-settings.js";

export { ConfigError, parseDuration, type IdRange, type ResourceLimits };
export { STALL_WATCH_SETTINGS, type StallWatchSetting } from "./settings/turn-settings.js";
export type { SettingSpec } from "./settings/setting-spec.js";
export { SETTINGS } from "./settings/settings-table.js";
export {
  CONFIG_TABLE_BEGIN,
  CONFIG_TABLE_END,
  renderSettingsHelp,
  renderSettingsMarkdown,
} from "./settings/settings-docs.js";

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
  /** The base the runtime image is built FROM; null lets the sidecar choose (docker/base-image.ts). */
  baseImage: string | null;
  /** The @openai/codex version the runtime image installs; null: the one @openai/codex-sdk was released with. */
  codexVersion: string | null;
  /** The npm registry a codex version other than the SDK's is fetched from when the runtime image is built. */
  /** null: npm's own configured registry (`npm config get registry`), asked when a build needs it. */
  npmRegistry: string | null;
  runtime: string | null;
  /** The runtimes a workspace may ask for in workspace.ensure (the operator's default is always one). */
  runtimes: string[];
  /** Deprecated and unused (ALIVE_CODEX_NETWORK); null unless an operator still sets it. */
  network: string | null;
  defaultResources: ResourceLimits;
  nofile: number;
  /** The window (µs) over which a workspace's CPU limit is enforced: quota = cpus × period. */
  cpuPeriodUs: number;
  /** Pause a workspace idle this long (0: never pause nor stop). */
  idleTimeoutMs: number;
  /** Stop a workspace paused this long (0: never). */
  stopTimeoutMs: number;
  turnTimeoutMs: number;
  /** Which workspaces' turns the stall watch looks after (codex/stall-watch.ts): none, gVisor's, or all. */
  stallWatch: StallWatchSetting;
  /** The longest line codex may write to its stdout, in MiB (codex/codex-output.ts). */
  outputLineMaxMb: number;
  /** What a stop does to running turns: leave them for the next sidecar, or drain them (grace, then cancel). */
  onStop: OnStopSetting;
  shutdownGraceMs: number;
  maxWorkspaces: number;
  maxTurns: number;
  openaiBaseUrl: string | null;
  /** The model API key. It stays in the sidecar: the model proxy adds it to codex's requests, and a container only gets a per-turn credential. Never logged. */
  codexApiKey: string | null;
  /** Where codexApiKey was read from, when it came from a file. */
  codexApiKeyFile: string | null;
  defaultModel: string | null;
  aliveApiUrl: string | null;
  /** Token for Alive's MCP servers, as ALIVE_MCP_TOKEN. Never logged. */
  aliveMcpToken: string | null;
  nodePath: string | null;
  dockerHost: string;
  logLevel: LogLevel;
  /** Docker labels added to every container and network the sidecar makes. */
  extraLabels: Record<string, string>;
  /** The egress policy of a workspace that names none. */
  defaultEgress: EgressPolicy;
  /** The only non-public destinations the egress proxy connects to (ALIVE_API_URL's origin is always one). */
  internalDestinations: InternalDestination[];
  /** Further addresses and networks of the host (NATed public addresses, published ports) the egress proxy refuses as host_address. */
  hostAddresses: AddressSet;
  /** Each egress lookup's deadline, waiting for a slot included. */
  dnsTimeoutMs: number;
  /** Egress lookups one workspace may have in flight (4× as many may wait), and the whole sidecar. */
  dnsPerWorkspace: number;
  dnsMax: number;
  /** DNS servers the sidecar asks (host or host:port), or null for /etc/resolv.conf's. */
  dnsServers: string[] | null;
  /** The hosts file read before any DNS query. */
  hostsFile: string;
  /** ALIVE_CODEX_UPSTREAM_CA: further CAs the egress proxy trusts for brokered hosts (a PEM file), or null. */
  upstreamCaFile: string | null;
  /** Ports the egress proxy connects to (CONNECT and http://); an internal destination keeps its own. */
  egressPorts: number[];
  /** Connections a workspace may hold on each of its sockets, and tunnels plus forwarded requests through its egress proxy. */
  proxyConnectionsPerWorkspace: number;
  /** Connections the proxies hold across every workspace (accepted ones and upstream ones). */
  proxyConnectionsTotal: number;
  /** The egress proxy's tunnels and forwarded requests: cut after this long without a byte, and once this old. */
  tunnelIdleTimeoutMs: number;
  tunnelMaxLifetimeMs: number;
  /** Host directories mounted read-only at the same path in every workspace container (trusted code such as Alive's MCP servers). */
  trustedDirs: string[];
  /** A turn's token and CPU budgets when turn.run names none, and the most it may name (null: none). */
  budgetTokens: number | null;
  budgetTokensMax: number | null;
  budgetCpuSeconds: number | null;
  budgetCpuSecondsMax: number | null;
  /** Where Prometheus metrics are served (GET /metrics); null: not served. */
  metricsListen: ListenAddress | null;
  /** How each workspace's disk is bounded: "auto" (image where the host can), "off" or "image" (a loop-mounted filesystem per workspace). */
  diskEnforcement: DiskSetting;
  /** A workspace's disk when its resources name none, and the most they may name. */
  defaultDisk: DiskLimits;
  maxDisk: DiskLimits;
  /** The turn journal: MiB of events kept per turn, and how long and how many ended turns are kept. */
  journalTurnMaxMb: number;
  journalMaxAgeMs: number;
  journalMaxTurns: number;
  /** Extra (method, path) pairs the model proxy forwards besides codex's own, e.g. { method: "GET", path: "/models" }. */
  modelPaths: Array<{ method: string; path: string }>;
  /** Hosted tools allowed in model requests under egress "model" or an allow-list (web_search, code_interpreter, file_search). */
  modelHostedTools: string[];
  /** Largest model request body, in MiB (413 above it). */
  modelMaxBodyMb: number;
  /** Concurrent model requests per turn; more wait in line. */
  modelConcurrency: number;
  /** Model requests a minute per workspace (0: no limit). */
  modelRatePerMinute: number;
  /** OpenAI-Organization and OpenAI-Project the model proxy sends (never the tenant's). */
  openaiOrganization: string | null;
  openaiProject: string | null;
}

/** What the client commands (ps, health, run...) need: a bad server-only setting must not stop them. */
export type ClientConfig = Pick<SidecarConfig, "socketPath">;

/** One setting's value and the name it was given under (the flag, else the variable), for the cross-setting rules. */
interface Resolved<K extends keyof SidecarConfig> {
  value: SidecarConfig[K];
  name: string;
  raw: string | undefined;
}

type Flags = Record<string, string>;

function resolveSetting<K extends keyof SidecarConfig>(spec: SettingSpec<K>, flags: Flags, env: Env): Resolved<K> {
  const fromFlag = flags[spec.flag];
  const fromEnv = env[spec.env] === "" ? undefined : env[spec.env];
  const name = fromFlag !== undefined ? spec.flag : spec.env;
  const raw = fromFlag ?? fromEnv;
  if (raw !== undefined) return { value: spec.parse(name, raw), name, raw };
  const fallback = spec.default;
  if (typeof fallback === "string") return { value: spec.parse(spec.env, fallback), name, raw };
  return { value: (typeof fallback === "function" ? fallback(env) : fallback) as SidecarConfig[K], name, raw };
}

function checkFlags(flags: Flags, settings: readonly AnySetting[]): void {
  const known = new Set(settings.map((s) => s.flag));
  for (const flag of Object.keys(flags)) {
    if (!known.has(flag))
      throw new ConfigError(flag, flags[flag] ?? "", `one of the documented flags (see alive-codex serve --help)`);
  }
}

/** Resolves every given setting, in table order. */
function resolveSettings(
  settings: readonly AnySetting[],
  flags: Flags,
  env: Env,
): { [K in keyof SidecarConfig]: Resolved<K> } {
  const out: Partial<Record<keyof SidecarConfig, Resolved<keyof SidecarConfig>>> = {};
  for (const spec of settings) out[spec.key] = resolveSetting<keyof SidecarConfig>(spec as SettingSpec, flags, env);
  return out as { [K in keyof SidecarConfig]: Resolved<K> };
}

/**
 * Builds the validated configuration. `flags` maps a flag ("--state-dir") to its value;
 * `env` defaults to process.env and is read nowhere else in the sidecar.
 */
export function loadConfig(flags: Flags = {}, env: Env = process.env): SidecarConfig {
  checkFlags(flags, SETTINGS);
  const settings = resolveSettings(SETTINGS, flags, env);
  const config = Object.fromEntries(
    Object.entries(settings).map(([key, s]) => [key, s.value]),
  ) as unknown as SidecarConfig;

  for (const key of ["uidRange", "gidRange"] as const) {
    const { value, name, raw } = settings[key];
    if (value.min === 0 && !config.allowRoot) {
      throw new ConfigError(
        name,
        raw ?? "",
        `a range above 0 (0 is root; set ALIVE_CODEX_ALLOW_ROOT=true / --allow-root to permit it)`,
      );
    }
  }
  for (const [key, max] of [
    ["budgetTokens", "budgetTokensMax"],
    ["budgetCpuSeconds", "budgetCpuSecondsMax"],
  ] as const) {
    const { value, name, raw } = settings[key];
    const ceiling = config[max];
    if (value !== null && ceiling !== null && value > ceiling)
      throw new ConfigError(name, raw ?? "", `at most ${settings[max].name}=${ceiling}`);
  }
  for (const key of ["diskMb", "diskInodes"] as const) {
    if (config.defaultDisk[key] > config.maxDisk[key])
      throw new ConfigError(
        settings.defaultDisk.name,
        settings.defaultDisk.raw ?? formatDiskLimits(config.defaultDisk),
        `${key} (here ${config.defaultDisk[key]}) at most ${settings.maxDisk.name} ${key}=${config.maxDisk[key]}`,
      );
  }
  if (config.dnsMax < config.dnsPerWorkspace)
    throw new ConfigError(
      settings.dnsMax.name,
      settings.dnsMax.raw ?? String(config.dnsMax),
      `at least ${settings.dnsPerWorkspace.name}=${config.dnsPerWorkspace}`,
    );
  // Alive's own API is always an internal destination: its MCP servers reach it from every workspace.
  if (config.aliveApiUrl !== null) {
    const api = parseInternalDestinations([config.aliveApiUrl], settings.aliveApiUrl.name)[0];
    if (api && !config.internalDestinations.some((d) => d.host === api.host && d.port === api.port))
      config.internalDestinations = [...config.internalDestinations, api];
  }
  // The key: CODEX_API_KEY, else the key file, else OPENAI_API_KEY (read here only, never passed on under that name).
  if (config.codexApiKey === null && config.codexApiKeyFile !== null) {
    config.codexApiKey = readKeyFile(settings.codexApiKeyFile.name, config.codexApiKeyFile);
  } else if (config.codexApiKey === null && env.OPENAI_API_KEY) {
    config.codexApiKey = secretLine("OPENAI_API_KEY", env.OPENAI_API_KEY);
  }
  return config;
}

/** The client commands' settings alone: server-only ones (and the key file) are not read, so they cannot fail. */
export function loadClientConfig(flags: Flags = {}, env: Env = process.env): ClientConfig {
  const clientSettings = SETTINGS.filter((s) => s.client === true);
  checkFlags(flags, clientSettings);
  const settings = resolveSettings(clientSettings, flags, env);
  return { socketPath: settings.socketPath.value };
}

/** The secrets of a configuration, for the logger's redaction list. */
export function configSecrets(config: SidecarConfig): string[] {
  return [config.codexApiKey, config.aliveMcpToken].filter((s): s is string => s !== null);
}
