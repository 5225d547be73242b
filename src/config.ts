/**
 * Operator configuration: the only module that reads process.env.
 *
 * Every setting is one SETTINGS entry: its environment variable and `alive-codex serve` flag (the flag
 * wins), its parser (whose error names the setting, the value and what was expected) and its default.
 * loadConfig is a loop over the table plus the rules that span settings. The README's configuration
 * table is rendered from SETTINGS and checked by a unit test.
 */
import os from "node:os";
import path from "node:path";
import { MIN_CODEX_VERSION, parseCodexVersionSetting } from "./codex-versions.js";
import type { EgressPolicy } from "./policy/egress-policy.js";
import type { AddressSet } from "./policy/addresses.js";
import { parseInternalDestinations, type InternalDestination } from "./policy/internal-destinations.js";
import { parseDnsServersSetting, parseEgressSetting, parseHostAddressesSetting, parseInternalSetting, parsePortsSetting } from "./policy/egress-settings.js";
import type { LogLevel } from "./log.js";
import { BUDGET_RANGES, DEFAULT_RESOURCES, type ResourceLimits } from "./shared/limits.js";
import { DEFAULT_DISK, DISK_RANGES, type DiskLimits } from "./shared/limits.js";
import { DISK_SETTINGS, formatDiskLimits, parseDiskLimits, type DiskSetting } from "./shared/disk-settings.js";
import {
  ConfigError,
  formatResources,
  parseAbsolutePath,
  parseBoolean,
  parseDockerHost,
  parseDuration,
  parseInteger,
  parseLabels,
  parseListenAddress,
  parseName,
  parseNumber,
  parseOneOf,
  parsePathList,
  parseRange,
  parseResources,
  parseSingleLine,
  parseUrl,
  readKeyFile,
  type IdRange,
  type ListenAddress,
} from "./shared/setting-parsers.js";

export { ConfigError, parseDuration, type IdRange, type ResourceLimits };

export const STALL_WATCH_SETTINGS = ["gvisor", "all", "off"] as const;
export type StallWatchSetting = (typeof STALL_WATCH_SETTINGS)[number];


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

type Env = Record<string, string | undefined>;

export interface SettingSpec<K extends keyof SidecarConfig = keyof SidecarConfig> {
  /** The key in SidecarConfig this setting fills. */
  key: K;
  env: string;
  flag: string;
  description: string;
  /** `name` is what the operator used: the flag or the variable. */
  parse(name: string, raw: string): SidecarConfig[K];
  /** When neither flag nor variable is given: text run through `parse`, a value, or one computed from the environment. */
  default: string | ((env: Env) => SidecarConfig[K]) | (null extends SidecarConfig[K] ? null : never);
  /** The default as shown to operators: the default text itself, or words for a computed or absent one. */
  defaultText: string;
  secret?: boolean;
  /** The flag may stand alone, meaning true. */
  boolean?: boolean;
  /** The client commands read it too. */
  client?: boolean;
}

type AnySetting = { [K in keyof SidecarConfig]: SettingSpec<K> }[keyof SidecarConfig];

/** A table entry; a default given as text is its own default text. */
function setting<K extends keyof SidecarConfig>(spec: Omit<SettingSpec<K>, "defaultText"> & { defaultText?: string }): SettingSpec<K> {
  const defaultText = spec.defaultText ?? (typeof spec.default === "string" ? spec.default : "(none)");
  return { ...spec, defaultText };
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

const names = (maxLength: number) => (name: string, raw: string) => parseName(name, raw, maxLength);
const integers = (min: number, max: number) => (name: string, raw: string) => parseInteger(name, raw, min, max);
const tokenBudget = (name: string, raw: string): number => parseInteger(name, raw, BUDGET_RANGES.tokens.min, BUDGET_RANGES.tokens.max);
const cpuBudget = (name: string, raw: string): number => parseNumber(name, raw, BUDGET_RANGES.cpuSeconds.min, BUDGET_RANGES.cpuSeconds.max);
const secretLine = (name: string, raw: string): string => parseSingleLine(name, raw, 4096, true);
/** A comma-separated list of runtime names, at least one. */
const runtimeNames = (name: string, raw: string): string[] => {
  const list = raw.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "");
  if (list.length === 0) throw new ConfigError(name, raw, "a comma-separated list of runtime names, e.g. runc,runsc");
  return [...new Set(list.map((entry) => parseName(name, entry, 64)))];
};

const MODEL_ROUTE = /^([A-Za-z]+)\s+((?:\/[A-Za-z0-9._~-]+)+(?:\/\*)?)$/;
const MODEL_ROUTE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/** Comma-separated "METHOD /path" pairs relative to the model API's base URL (a trailing /* matches below it). */
function parseModelPaths(name: string, raw: string): Array<{ method: string; path: string }> {
  const entries = raw.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "");
  return entries.map((entry) => {
    const match = MODEL_ROUTE.exec(entry);
    const method = match?.[1]?.toUpperCase() ?? "";
    const routePath = match?.[2] ?? "";
    if (!MODEL_ROUTE_METHODS.includes(method) || /(^|\/)\.\.?(\/|$)/.test(routePath)) {
      throw new ConfigError(name, raw, `comma-separated "METHOD /path" pairs relative to the model API's base URL, e.g. "GET /models,POST /embeddings" (METHOD one of ${MODEL_ROUTE_METHODS.join(", ")}; a path of letters, digits, . _ ~ -, optionally ending in /*); ${JSON.stringify(entry)} is not one`);
    }
    return { method, path: routePath };
  });
}

const MODEL_HOSTED_TOOLS = ["web_search", "code_interpreter", "file_search"];

/** Comma-separated hosted tool types, each one of MODEL_HOSTED_TOOLS. */
function parseHostedTools(name: string, raw: string): string[] {
  const list = raw.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "");
  for (const tool of list) if (!MODEL_HOSTED_TOOLS.includes(tool)) throw new ConfigError(name, raw, `a comma-separated list of ${MODEL_HOSTED_TOOLS.join(", ")} (${JSON.stringify(tool)} is not one)`);
  return [...new Set(list)];
}

/** An OpenAI organization or project id: letters, digits, _ and -. */
function parseOpenAiId(name: string, raw: string): string {
  if (!/^[A-Za-z0-9_-]{1,256}$/.test(raw)) throw new ConfigError(name, raw, "an id of letters, digits, _ and - (e.g. org-abc123 or proj_abc123)");
  return raw;
}

/** A duration from 1 ms to 1 s, in microseconds (the kernel's CFS period bounds). */
function parseCpuPeriod(name: string, raw: string): number {
  const ms = parseDuration(name, raw);
  if (ms < 1 || ms > 1000) throw new ConfigError(name, raw, "a duration from 1ms to 1s");
  return ms * 1000;
}

function parseDnsTimeout(name: string, raw: string): number {
  const value = parseDuration(name, raw);
  if (value < 100 || value > 60_000) throw new ConfigError(name, raw, "a duration from 100ms to 60s");
  return value;
}

/** A duration above 0: what it bounds always has a bound. */
function parsePositiveDuration(name: string, raw: string): number {
  const value = parseDuration(name, raw);
  if (value === 0) throw new ConfigError(name, raw, "a duration above 0, such as 90s, 5m or 1h");
  return value;
}

function parseTurnTimeout(name: string, raw: string): number {
  const value = parseDuration(name, raw);
  if (value === 0) throw new ConfigError(name, raw, "a duration above 0: every turn has a deadline");
  return value;
}

export const SETTINGS: readonly AnySetting[] = [
  setting({ key: "socketPath", env: "ALIVE_CODEX_SOCKET", flag: "--socket", parse: parseAbsolutePath, default: defaultSocketPath, client: true, defaultText: "/run/alive-codex/sidecar.sock as root, else $XDG_RUNTIME_DIR/alive-codex.sock", description: "Unix socket the RPC server listens on (mode 0660)." }),
  setting({ key: "socketGroup", env: "ALIVE_CODEX_SOCKET_GROUP", flag: "--socket-group", parse: names(64), default: null, description: "Group name or gid given to the socket, so Alive's server can connect without root." }),
  setting({ key: "stateDir", env: "ALIVE_CODEX_STATE_DIR", flag: "--state-dir", parse: parseAbsolutePath, default: defaultStateDir, defaultText: "/var/lib/alive-codex as root, else $XDG_STATE_HOME/alive-codex", description: "Absolute directory for per-workspace HOME and TMPDIR (workspaces/<id>/home, tmp)." }),
  setting({ key: "workspaceRoots", env: "ALIVE_CODEX_WORKSPACE_ROOTS", flag: "--workspace-roots", parse: parsePathList, default: "/srv/alive/workspaces", description: "Colon-separated absolute directories; a workspacePath must resolve inside one of them." }),
  setting({ key: "uidRange", env: "ALIVE_CODEX_UID_RANGE", flag: "--uid-range", parse: parseRange, default: "10000-65533", description: "Allowed workspace uids, MIN-MAX inclusive. The default starts above 1000-9999, where most distributions number login users, so a workspace does not run as a person's account on the host. A uid serves one userId at a time: workspace.ensure refuses a uid another user's workspace holds (-32602)." }),
  setting({ key: "gidRange", env: "ALIVE_CODEX_GID_RANGE", flag: "--gid-range", parse: parseRange, default: "1000-65533", description: "Allowed workspace gids, MIN-MAX inclusive." }),
  setting({ key: "allowRoot", env: "ALIVE_CODEX_ALLOW_ROOT", flag: "--allow-root", parse: parseBoolean, default: "false", boolean: true, description: "Allow uid/gid 0 inside the ranges. Off unless you know why you need it." }),
  setting({ key: "image", env: "ALIVE_CODEX_IMAGE", flag: "--image", parse: names(255), default: null, defaultText: "alive-codex-runtime:<hash of build inputs>", description: "Runtime image reference. Unset: the sidecar builds images/runtime on first need and tags it by its inputs." }),
  setting({ key: "baseImage", env: "ALIVE_CODEX_BASE_IMAGE", flag: "--base-image", parse: names(255), default: null, defaultText: "debian:bookworm-slim when present, else the local alive-codex-base:bookworm", description: "Base image the runtime image is built FROM (scripts/make-base-image.mjs makes the local one where no registry is reachable)." }),
  setting({ key: "codexVersion", env: "ALIVE_CODEX_CODEX_VERSION", flag: "--codex-version", parse: parseCodexVersionSetting, default: null, defaultText: "the SDK's: the @openai/codex that @openai/codex-sdk depends on", description: `The @openai/codex CLI version the runtime image installs, e.g. 0.171.0 (new models can need a newer CLI). At least ${MIN_CODEX_VERSION} (an older one is refused at start-up, naming it); one the sidecar's tests have not run against starts with a warning. A version other than the SDK's is fetched from ALIVE_CODEX_NPM_REGISTRY when the image is built (the image tag changes with it); sidecar.health and doctor report the version found in the image. With ALIVE_CODEX_IMAGE set, the image must carry this version. See docs/image.md, "Codex version".` }),
  setting({ key: "npmRegistry", env: "ALIVE_CODEX_NPM_REGISTRY", flag: "--npm-registry", parse: parseUrl, default: null, defaultText: "npm's configured registry", description: "npm registry (or a mirror of it) a codex version other than the SDK's is fetched from, by the sidecar itself when it builds the runtime image: the package's manifest, then its tarball, checked against the manifest's sha512 integrity. Unset: the registry `npm config get registry` names, asked at build time (where npm is absent, as in the sidecar image, set it). No proxy settings are read: point it at a mirror the sidecar reaches directly." }),
  setting({ key: "runtime", env: "ALIVE_CODEX_RUNTIME", flag: "--runtime", parse: names(64), default: null, defaultText: "(engine default, runc)", description: "OCI runtime of a workspace container whose workspace.ensure names none, e.g. runsc for gVisor (docs/runtimes.md)." }),
  setting({ key: "runtimes", env: "ALIVE_CODEX_RUNTIMES", flag: "--runtimes", parse: runtimeNames, default: "runc,runsc", description: "Comma-separated OCI runtimes a workspace may ask for (workspace.ensure runtime); ALIVE_CODEX_RUNTIME is always allowed. Each must also be registered with the engine (docker info), else -32006. scripts/install-runsc.sh registers runsc (docs/runtimes.md)." }),
  setting({ key: "network", env: "ALIVE_CODEX_NETWORK", flag: "--network", parse: names(64), default: null, defaultText: "(unset)", description: "No longer used: workspace containers have no network of their own and reach out only through the sidecar (docs/security.md). Still accepted, so existing configurations load; the sidecar logs a deprecation warning at start when it is set." }),
  setting({ key: "defaultEgress", env: "ALIVE_CODEX_EGRESS", flag: "--egress", parse: parseEgressSetting, default: "public", description: 'Egress policy of a workspace that names none: "public" (HTTP/HTTPS to any public destination through the sidecar\'s proxy), "model" (the model API only) or JSON {"allow":["example.com","*.example.org"],"deny":[...]}.' }),
  setting({ key: "internalDestinations", env: "ALIVE_CODEX_INTERNAL_DESTINATIONS", flag: "--internal-destinations", parse: parseInternalSetting, default: () => [], defaultText: "ALIVE_API_URL's origin", description: "Comma-separated http(s) origins or host:port pairs: the only private destinations the egress proxy ever connects to, in every policy. ALIVE_API_URL's origin is always one." }),
  setting({ key: "hostAddresses", env: "ALIVE_CODEX_HOST_ADDRESSES", flag: "--host-addresses", parse: parseHostAddressesSetting, default: "", defaultText: "(none: the host's interfaces only)", description: "Comma-separated IP addresses and CIDR networks (e.g. 203.0.113.7,198.51.100.0/28) that are the host's too, though its interfaces do not show them: a public address NATed to it, the address compose or Docker publishes ports on. The egress proxy refuses them as host_address, like the host's own interface addresses, so a workspace cannot reach the host's services through them. Networks no wider than /8 (IPv4) or /16 (IPv6)." }),
  setting({ key: "dnsTimeoutMs", env: "ALIVE_CODEX_DNS_TIMEOUT", flag: "--dns-timeout", parse: parseDnsTimeout, default: "5s", description: "Deadline of each name lookup the egress proxy makes for a workspace (100ms to 60s), waiting for a lookup slot included; past it the lookup is cancelled and the request answered 502 dns_failed. Lookups use the sidecar's own DNS client (c-ares), not getaddrinfo, after the hosts file." }),
  setting({ key: "dnsPerWorkspace", env: "ALIVE_CODEX_DNS_PER_WORKSPACE", flag: "--dns-per-workspace", parse: integers(1, 64), default: "4", description: "Name lookups one workspace may have in flight at once; 4× as many more wait in line, and past that a request is answered 429 dns_busy at once. One workspace asking for names that never answer cannot hold up another's lookups." }),
  setting({ key: "dnsMax", env: "ALIVE_CODEX_DNS_MAX", flag: "--dns-max", parse: integers(1, 4096), default: "64", description: "Name lookups in flight for all workspaces together; past it lookups wait, and a freed slot goes to the waiting workspaces in turn. At least ALIVE_CODEX_DNS_PER_WORKSPACE. The model API's name has its own resolver and is not counted." }),
  setting({ key: "dnsServers", env: "ALIVE_CODEX_DNS_SERVERS", flag: "--dns-servers", parse: parseDnsServersSetting, default: null, defaultText: "(the nameservers of /etc/resolv.conf)", description: "Comma-separated DNS servers the sidecar asks, each an IP address with an optional port (10.0.0.2, 127.0.0.1:5353, [fd00::53]:53), for the egress proxy and the model API's name. resolv.conf's search list applies either way." }),
  setting({ key: "hostsFile", env: "ALIVE_CODEX_HOSTS_FILE", flag: "--hosts-file", parse: parseAbsolutePath, default: "/etc/hosts", description: "The hosts file read before any DNS query (re-read within a second when it changes). localhost and names under .localhost are loopback unless it lists them." }),
  setting({ key: "egressPorts", env: "ALIVE_CODEX_EGRESS_PORTS", flag: "--egress-ports", parse: parsePortsSetting, default: "443,80", description: "Comma-separated ports the egress proxy connects to, for CONNECT tunnels and http:// requests alike; any other is refused with 403 port_not_allowed (SMTP, SSH and the like would otherwise leave from the host's address). An internal destination (ALIVE_CODEX_INTERNAL_DESTINATIONS) keeps its own port." }),
  setting({ key: "proxyConnectionsPerWorkspace", env: "ALIVE_CODEX_PROXY_CONNECTIONS_PER_WORKSPACE", flag: "--proxy-connections-per-workspace", parse: integers(1, 100_000), default: "256", description: "Connections a workspace may hold open on each of its sockets (the egress proxy, the model proxy, Alive's API); also its tunnels plus forwarded http:// requests through the egress proxy, and its requests to Alive's API in flight. Past it a new one is answered 429 with x-alive-egress-error: too_many_connections and closed; other workspaces are not affected. workspace.list shows each workspace's counts (network.connections)." }),
  setting({ key: "proxyConnectionsTotal", env: "ALIVE_CODEX_PROXY_CONNECTIONS_TOTAL", flag: "--proxy-connections-total", parse: integers(1, 10_000_000), default: "8192", description: "Connections the sidecar's proxies hold across every workspace: each connection accepted on a workspace's socket and each tunnel or forwarded request upstream counts one (about one open file each). Past it a new one is answered 503 sidecar_at_capacity. Apart from this, new connections, turns and ensures are refused (503 sidecar_overloaded, -32007) while the sidecar's own open files are above 90 % of its limit, which it raises to the hard limit at start-up." }),
  setting({ key: "tunnelIdleTimeoutMs", env: "ALIVE_CODEX_TUNNEL_IDLE_TIMEOUT", flag: "--tunnel-idle-timeout", parse: parsePositiveDuration, default: "5m", description: "A CONNECT tunnel or forwarded http:// request through the egress proxy is closed (both ends) after this long without a byte either way. Units: ms, s, m, h." }),
  setting({ key: "tunnelMaxLifetimeMs", env: "ALIVE_CODEX_TUNNEL_MAX_LIFETIME", flag: "--tunnel-max-lifetime", parse: parsePositiveDuration, default: "1h", description: "A CONNECT tunnel or forwarded http:// request through the egress proxy is closed (both ends) once this old, whatever passes. Units: ms, s, m, h." }),
  setting({ key: "trustedDirs", env: "ALIVE_CODEX_TRUSTED_DIRS", flag: "--trusted-dirs", parse: parsePathList, default: () => [], description: "Colon-separated host directories (e.g. /opt/alive/packages) mounted read-only at the same path in every workspace container, for trusted code such as Alive's MCP servers." }),
  setting({ key: "defaultResources", env: "ALIVE_CODEX_RESOURCES", flag: "--resources", parse: (name, raw) => parseResources(name, raw, DEFAULT_RESOURCES), default: formatResources(DEFAULT_RESOURCES), description: "Default limits per workspace container: memory (= memory+swap) in MiB, CPUs, max processes." }),
  setting({ key: "cpuPeriodUs", env: "ALIVE_CODEX_CPU_PERIOD", flag: "--cpu-period", parse: parseCpuPeriod, default: "1s", description: "Window over which a workspace's CPU limit is enforced (1ms to 1s): its quota is cpus × this. Docker's 100ms throttles codex's start-up under a 1-CPU limit (+78 ms per turn measured); 1s lets a turn start at full speed while the average stays bounded, at the cost of a tenant bursting on all cores for up to one window's quota (docs/benchmarks.md)." }),
  setting({ key: "nofile", env: "ALIVE_CODEX_NOFILE", flag: "--nofile", parse: integers(64, 1_048_576), default: "4096", description: "Open-files ulimit (soft = hard) in workspace containers." }),
  setting({ key: "idleTimeoutMs", env: "ALIVE_CODEX_IDLE_TIMEOUT", flag: "--idle-timeout", parse: parseDuration, default: "30m", description: "Pause (freeze) a workspace container that ran no turn this long (0 = never pause nor stop): it keeps its memory and uses no CPU, and the next ensure or turn thaws it in milliseconds. Units: ms, s, m, h." }),
  setting({ key: "stopTimeoutMs", env: "ALIVE_CODEX_STOP_TIMEOUT", flag: "--stop-timeout", parse: parseDuration, default: "4h", description: "Stop a workspace container paused this much longer (0 = never), giving its memory back; the next ensure starts it again (hundreds of ms). Units: ms, s, m, h." }),
  setting({ key: "turnTimeoutMs", env: "ALIVE_CODEX_TURN_TIMEOUT", flag: "--turn-timeout", parse: parseTurnTimeout, default: "15m", description: "Default deadline of a turn; turn.run options.timeoutMs overrides it." }),
  setting({ key: "stallWatch", env: "ALIVE_CODEX_STALL_WATCH", flag: "--stall-watch", parse: (name, raw) => parseOneOf<StallWatchSetting>(name, raw, STALL_WATCH_SETTINGS), default: "gvisor", description: 'Which turns the stall watch looks after: "gvisor" (turns in runsc workspaces), "all" or "off". While codex has been quiet for 10 s it lists the sandbox\'s processes every 5 s; a child that exited and that codex has not reaped on three looks running (gVisor loses that wake-up now and then), or a sandbox that stops answering, ends the turn failed/sandbox_stalled about 25 s after it stalled, with the sandbox\'s processes and stacks in the log, and restarts its container. See docs/runtimes.md.' }),
  // A line is one event; codex's largest are items with a command's output (codex keeps at most 1 MiB
  // of each stream of a command, and JSON escaping of control bytes can grow that sixfold), an MCP
  // tool's result (an image comes as base64) and agent messages (bounded by the model's output
  // tokens, well under 1 MiB). 16 MiB holds them all; the SDK holds at most one such line a turn. At most
  // 32: an event goes to the client as one line, and the RPC server drops a client 64 MiB behind.
  setting({ key: "outputLineMaxMb", env: "ALIVE_CODEX_OUTPUT_LINE_MAX_MB", flag: "--output-line-max-mb", parse: integers(1, 32), default: "16", description: "Longest line codex may write to its stdout (one JSON event), in MiB: a longer one fails the turn with codex_output before the sidecar reads it whole, and the turn's processes are swept. A workspace can script codex's output (docs/security.md, \"Tenant-controlled output\"); codex's own largest events (a command's output, which codex keeps to 1 MiB a stream; an MCP result; an agent message) fit well within the default." }),
  setting({ key: "shutdownGraceMs", env: "ALIVE_CODEX_SHUTDOWN_GRACE", flag: "--shutdown-grace", parse: parseDuration, default: "30s", description: "On SIGTERM/SIGINT, how long running turns may finish before they are cancelled." }),
  setting({ key: "maxWorkspaces", env: "ALIVE_CODEX_MAX_WORKSPACES", flag: "--max-workspaces", parse: integers(1, 100_000), default: "200", description: "Most workspace containers at once (-32007 past it)." }),
  setting({ key: "maxTurns", env: "ALIVE_CODEX_MAX_TURNS", flag: "--max-turns", parse: integers(1, 10_000), default: "32", description: "Most turns running at once across workspaces (-32007 past it)." }),
  setting({ key: "budgetTokens", env: "ALIVE_CODEX_BUDGET_TOKENS", flag: "--budget-tokens", parse: tokenBudget, default: null, defaultText: "(none; the ceiling if set)", description: "Token budget of a turn whose turn.run names none (options.budget.tokens): past it the turn fails with budget_exceeded." }),
  setting({ key: "budgetTokensMax", env: "ALIVE_CODEX_BUDGET_TOKENS_MAX", flag: "--budget-tokens-max", parse: tokenBudget, default: null, description: "The largest token budget turn.run may ask for (-32006 above it)." }),
  setting({ key: "budgetCpuSeconds", env: "ALIVE_CODEX_BUDGET_CPU_SECONDS", flag: "--budget-cpu-seconds", parse: cpuBudget, default: null, defaultText: "(none; the ceiling if set)", description: "CPU-seconds budget of a turn (the workspace container's cgroup) whose turn.run names none: past it the turn fails with budget_exceeded." }),
  setting({ key: "budgetCpuSecondsMax", env: "ALIVE_CODEX_BUDGET_CPU_SECONDS_MAX", flag: "--budget-cpu-seconds-max", parse: cpuBudget, default: null, description: "The largest CPU-seconds budget turn.run may ask for (-32006 above it)." }),
  setting({ key: "metricsListen", env: "ALIVE_CODEX_METRICS_LISTEN", flag: "--metrics-listen", parse: parseListenAddress, default: null, defaultText: "(off)", description: "host:port to serve Prometheus metrics on (GET /metrics), e.g. 127.0.0.1:9464 (port 0: any free port, logged). No authentication: keep it on loopback or a private network." }),
  setting({ key: "openaiBaseUrl", env: "OPENAI_BASE_URL", flag: "--openai-base-url", parse: parseUrl, default: null, defaultText: "https://api.openai.com/v1", description: "Model API base URL the sidecar's model proxy forwards to (from the sidecar, not from the workspaces, which have no network), e.g. http://127.0.0.1:8080/v1." }),
  setting({ key: "codexApiKey", env: "CODEX_API_KEY", flag: "--codex-api-key", parse: secretLine, default: null, defaultText: "$OPENAI_API_KEY, else none", secret: true, description: "The model API key. It stays in the sidecar: its model proxy adds it to codex's requests, and codex in a workspace only ever holds a per-turn credential. OPENAI_API_KEY is read as a fallback." }),
  setting({ key: "codexApiKeyFile", env: "ALIVE_CODEX_API_KEY_FILE", flag: "--codex-api-key-file", parse: parseAbsolutePath, default: null, description: "A file holding the key (e.g. a Docker or compose secret), used when CODEX_API_KEY is not set; keeps the key out of process listings and `docker inspect`." }),
  setting({ key: "defaultModel", env: "ALIVE_CODEX_MODEL", flag: "--model", parse: names(128), default: null, defaultText: "(codex's default)", description: "Model used when turn.run options.model is not given." }),
  setting({ key: "aliveApiUrl", env: "ALIVE_API_URL", flag: "--alive-api-url", parse: parseUrl, default: null, description: "Alive's internal API, passed to sessions and MCP servers as ALIVE_API_URL." }),
  setting({ key: "aliveMcpToken", env: "ALIVE_MCP_TOKEN", flag: "--alive-mcp-token", parse: secretLine, default: null, secret: true, description: "Token for Alive's MCP servers, passed as ALIVE_MCP_TOKEN." }),
  setting({ key: "nodePath", env: "ALIVE_CODEX_NODE_PATH", flag: "--node-path", parse: (name, raw) => parseSingleLine(name, raw, 4096), default: null, description: "NODE_PATH inside workspace containers." }),
  setting({ key: "dockerHost", env: "DOCKER_HOST", flag: "--docker-host", parse: parseDockerHost, default: "unix:///var/run/docker.sock", description: "Docker Engine endpoint (unix:// socket path, or tcp://host:port)." }),
  setting({ key: "logLevel", env: "ALIVE_CODEX_LOG_LEVEL", flag: "--log-level", parse: (name, raw) => parseOneOf<LogLevel>(name, raw, ["debug", "info", "warn", "error"]), default: "info", description: "debug, info, warn or error." }),
  setting({ key: "extraLabels", env: "ALIVE_CODEX_EXTRA_LABELS", flag: "--extra-labels", parse: parseLabels, default: () => ({}), description: "Docker labels added to every container and network the sidecar makes: key=value pairs separated by commas. Keys under dev.alive.codex. are the sidecar's own, except dev.alive.codex.run-id." }),
  setting({ key: "diskEnforcement", env: "ALIVE_CODEX_DISK", flag: "--disk", parse: (name, raw) => parseOneOf<DiskSetting>(name, raw, DISK_SETTINGS), default: "auto", description: 'How a workspace\'s disk (its HOME, TMPDIR and run dir under the state dir) is bounded: "image" (each workspace\'s dirs live on its own ext4 image, sparse and loop-mounted, of resources.diskMb: a write past it fails with ENOSPC inside; needs root with CAP_SYS_ADMIN, e2fsprogs and usable loop devices; the sidecar refuses to start without them), "off" (not at all: one workspace can fill the state dir\'s filesystem; a warning at start) or "auto" ("image" where the host can enforce it, else "off" with a warning naming what is missing; sidecar.health says which). See docs/security.md, "Disk".' }),
  setting({ key: "defaultDisk", env: "ALIVE_CODEX_DISK_DEFAULT", flag: "--disk-default", parse: (name, raw) => parseDiskLimits(name, raw, DEFAULT_DISK), default: formatDiskLimits(DEFAULT_DISK), description: "A workspace's disk when its resources name none: size in MiB and inodes (files and directories; fixed when the disk is made)." }),
  setting({ key: "maxDisk", env: "ALIVE_CODEX_DISK_MAX", flag: "--disk-max", parse: (name, raw) => parseDiskLimits(name, raw, { diskMb: 102_400, diskInodes: 10_000_000 }), default: formatDiskLimits({ diskMb: 102_400, diskInodes: 10_000_000 }), description: `The largest resources.diskMb and resources.diskInodes a workspace may ask for (-32006 above it; ranges ${DISK_RANGES.diskMb.min}..${DISK_RANGES.diskMb.max} MiB, ${DISK_RANGES.diskInodes.min}..${DISK_RANGES.diskInodes.max} inodes).` }),
  setting({ key: "journalTurnMaxMb", env: "ALIVE_CODEX_JOURNAL_TURN_MAX_MB", flag: "--journal-turn-max-mb", parse: integers(1, 65_536), default: "32", description: "MiB of events the turn journal (<state dir>/journal/) keeps per turn; past it a sidecar.journal.truncated marker event, and turn.attach replays no further." }),
  setting({ key: "journalMaxAgeMs", env: "ALIVE_CODEX_JOURNAL_MAX_AGE", flag: "--journal-max-age", parse: parseDuration, default: "168h", description: "Ended turns older than this are pruned from the turn journal (0 = never by age), at start-up and every few minutes. Units: ms, s, m, h." }),
  setting({ key: "journalMaxTurns", env: "ALIVE_CODEX_JOURNAL_MAX_TURNS", flag: "--journal-max-turns", parse: integers(1, 10_000_000), default: "10000", description: "Most ended turns the turn journal keeps (the oldest are pruned first)." }),
  setting({ key: "modelPaths", env: "ALIVE_CODEX_MODEL_PATHS", flag: "--model-paths", parse: parseModelPaths, default: () => [], defaultText: "(none: POST /responses and POST /responses/compact only)", description: 'Extra endpoints the model proxy forwards with the real key, as comma-separated "METHOD /path" pairs relative to OPENAI_BASE_URL (a trailing /* matches any path below), e.g. "GET /models". Everything else is refused with 403. Risk: every process of every workspace can call what is listed with the operator\'s key (a command can read its turn\'s credential); never list files, batches, fine-tuning, vector stores or anything that lists, reads or deletes the organisation\'s data. The body policy (ALIVE_CODEX_MODEL_HOSTED_TOOLS) knows the Responses API\'s shape only (docs/security.md).' }),
  setting({ key: "modelHostedTools", env: "ALIVE_CODEX_MODEL_HOSTED_TOOLS", flag: "--model-hosted-tools", parse: parseHostedTools, default: () => [], defaultText: "(none)", description: 'Hosted tools a model request may use when the egress in force is "model" or an allow-list: comma-separated web_search, code_interpreter, file_search. Others are refused with 403, as are input_image/input_file URLs (outside an allow-list) and remote mcp tools; codex is told webSearchMode "disabled" there unless web_search is listed. Under "public" all of them pass. Risk: web_search lets the model API fetch pages for a workspace that may not reach them itself; file_search and code_interpreter reach the organisation\'s stored files and vector stores by id.' }),
  setting({ key: "modelMaxBodyMb", env: "ALIVE_CODEX_MODEL_MAX_BODY_MB", flag: "--model-max-body-mb", parse: integers(1, 1024), default: "32", description: "Largest model request body, in MiB: a larger one is answered 413 without reaching the model API. Codex sends the whole conversation (with inline images) on every request." }),
  setting({ key: "modelConcurrency", env: "ALIVE_CODEX_MODEL_CONCURRENCY", flag: "--model-concurrency", parse: integers(1, 64), default: "2", description: "Model requests a turn may have at the model API at once (codex needs 1-2); more wait in line (up to 64, then 429). A token budget overshoots by at most this many responses." }),
  setting({ key: "modelRatePerMinute", env: "ALIVE_CODEX_MODEL_RATE", flag: "--model-rate", parse: integers(0, 1_000_000), default: "120", description: "Model requests a workspace may send a minute (a token bucket: up to this many at once, refilled evenly; 0 = no limit). Past it the model proxy answers 429 rate_limit_exceeded with retry-after, which codex retries, so one tenant cannot use up the organisation's rate limit." }),
  setting({ key: "openaiOrganization", env: "OPENAI_ORGANIZATION", flag: "--openai-organization", parse: parseOpenAiId, default: null, description: "OpenAI-Organization header the model proxy sends upstream; a tenant's own is always dropped." }),
  setting({ key: "openaiProject", env: "OPENAI_PROJECT", flag: "--openai-project", parse: parseOpenAiId, default: null, description: "OpenAI-Project header the model proxy sends upstream; a tenant's own is always dropped." }),
];

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
    if (!known.has(flag)) throw new ConfigError(flag, flags[flag] ?? "", `one of the documented flags (see alive-codex serve --help)`);
  }
}

/** Resolves every given setting, in table order. */
function resolveSettings(settings: readonly AnySetting[], flags: Flags, env: Env): { [K in keyof SidecarConfig]: Resolved<K> } {
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
  const config = Object.fromEntries(Object.entries(settings).map(([key, s]) => [key, s.value])) as unknown as SidecarConfig;

  for (const key of ["uidRange", "gidRange"] as const) {
    const { value, name, raw } = settings[key];
    if (value.min === 0 && !config.allowRoot) {
      throw new ConfigError(name, raw ?? "", `a range above 0 (0 is root; set ALIVE_CODEX_ALLOW_ROOT=true / --allow-root to permit it)`);
    }
  }
  for (const [key, max] of [["budgetTokens", "budgetTokensMax"], ["budgetCpuSeconds", "budgetCpuSecondsMax"]] as const) {
    const { value, name, raw } = settings[key];
    const ceiling = config[max];
    if (value !== null && ceiling !== null && value > ceiling) throw new ConfigError(name, raw ?? "", `at most ${settings[max].name}=${ceiling}`);
  }
  for (const key of ["diskMb", "diskInodes"] as const) {
    if (config.defaultDisk[key] > config.maxDisk[key]) throw new ConfigError(settings.defaultDisk.name, settings.defaultDisk.raw ?? formatDiskLimits(config.defaultDisk), `${key} (here ${config.defaultDisk[key]}) at most ${settings.maxDisk.name} ${key}=${config.maxDisk[key]}`);
  }
  if (config.dnsMax < config.dnsPerWorkspace) throw new ConfigError(settings.dnsMax.name, settings.dnsMax.raw ?? String(config.dnsMax), `at least ${settings.dnsPerWorkspace.name}=${config.dnsPerWorkspace}`);
  // Alive's own API is always an internal destination: its MCP servers reach it from every workspace.
  if (config.aliveApiUrl !== null) {
    const api = parseInternalDestinations([config.aliveApiUrl], settings.aliveApiUrl.name)[0];
    if (api && !config.internalDestinations.some((d) => d.host === api.host && d.port === api.port)) config.internalDestinations = [...config.internalDestinations, api];
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
