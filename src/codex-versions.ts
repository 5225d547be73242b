/**
 * Which codex CLI versions this sidecar drives, and the flags it adds to every `codex exec` for a
 * version. Pure: the setting (ALIVE_CODEX_CODEX_VERSION), start-up, health and doctor all ask here.
 *
 * It sits at the bottom, beside codex-package.ts: config validates the setting with it, the runtime
 * image (docker/) is built for the version it accepts, and the launcher (codex/) takes its flags.
 */
import type { CodexHealth } from "./service.js";
import { ConfigError } from "./shared/setting-parsers.js";

/** A release as npm names @openai/codex's: MAJOR.MINOR.PATCH, optionally -PRERELEASE (e.g. 0.172.0-alpha.3). */
const VERSION_PATTERN = /^(\d{1,9})\.(\d{1,9})\.(\d{1,9})(?:-([0-9A-Za-z][0-9A-Za-z.-]{0,63}))?$/;

/**
 * The oldest codex the sidecar drives: the version @openai/codex-sdk 0.163.0 was released with. The
 * SDK builds codex's argv itself and passes flags an older CLI does not know (--thread-source,
 * --cyber-access-program), so an older codex fails every turn with a usage error.
 */
export const MIN_CODEX_VERSION = "0.163.0";

/**
 * Versions the integration suite's core turn tests (commands, resume, cancel, MCP, output schema,
 * budgets) have passed against with this SDK. Others at or above the minimum are driven too, with
 * a warning at start-up and `tested: false` in sidecar.health: the SDK speaks codex's
 * --experimental-json event stream, which a newer CLI may change.
 */
export const TESTED_CODEX_VERSIONS: readonly string[] = ["0.163.0", "0.171.0"];

/** A flag the sidecar adds to every `codex exec` whose version has it, and why. */
export interface CodexFlag {
  flag: string;
  /** The first version the sidecar adds it for (every version it drives has it: 0.163.0 already does). */
  since: string;
  why: string;
}

/**
 * Flags that narrow what a turn's codex reads beyond the sidecar's own --config overrides. Both
 * name files in the tenant's writable HOME (and, for rules, its repository): a command of an earlier
 * turn, or a repository the agent cloned, could otherwise add MCP servers, a notify program, model
 * providers or exec-policy decisions to every later turn of that workspace.
 */
export const CODEX_FLAGS: readonly CodexFlag[] = [
  {
    flag: "--ignore-user-config",
    since: "0.163.0",
    why: "$CODEX_HOME/config.toml is in the tenant's HOME: a command of one turn could write settings (MCP servers, notify, providers, profiles) into every later turn. The sidecar configures codex through --config overrides only, so nothing is lost; auth and sessions still use CODEX_HOME",
  },
  {
    flag: "--ignore-rules",
    since: "0.163.0",
    why: "exec-policy .rules files come from the tenant's HOME and from the repository under work: they could loosen what codex lets a command do (read-only sandbox included) without the client asking",
  },
];

/** The parts of a version, for comparing; null when it is not one. */
function parts(version: string): { numbers: [number, number, number]; prerelease: string | null } | null {
  const match = VERSION_PATTERN.exec(version);
  if (match === null) return null;
  return { numbers: [Number(match[1]), Number(match[2]), Number(match[3])], prerelease: match[4] ?? null };
}

export function isCodexVersion(text: string): boolean {
  return parts(text) !== null;
}

/** Negative, 0 or positive as `a` is older than, the same as or newer than `b` (a prerelease comes before its release). */
export function compareCodexVersions(a: string, b: string): number {
  const pa = parts(a);
  const pb = parts(b);
  if (pa === null || pb === null) throw new Error(`not a codex version: ${JSON.stringify(pa === null ? a : b)}`);
  for (let i = 0; i < 3; i++) {
    const diff = (pa.numbers[i] as number) - (pb.numbers[i] as number);
    if (diff !== 0) return diff;
  }
  if (pa.prerelease === pb.prerelease) return 0;
  if (pa.prerelease === null) return 1;
  if (pb.prerelease === null) return -1;
  return pa.prerelease < pb.prerelease ? -1 : 1;
}

export type CodexSupport = { supported: true; tested: boolean } | { supported: false; reason: string };

/** Whether the sidecar drives `version`, and whether its tests ran against it. */
export function codexSupport(version: string): CodexSupport {
  if (!isCodexVersion(version))
    return { supported: false, reason: `${JSON.stringify(version)} is not a codex version (MAJOR.MINOR.PATCH)` };
  if (compareCodexVersions(version, MIN_CODEX_VERSION) < 0) {
    return {
      supported: false,
      reason: `codex ${version} is older than ${MIN_CODEX_VERSION}, the oldest @openai/codex-sdk ${MIN_CODEX_VERSION} can drive (the SDK passes flags an older CLI does not know, and every turn would fail)`,
    };
  }
  return { supported: true, tested: TESTED_CODEX_VERSIONS.includes(version) };
}

/** The flags the sidecar adds to `codex exec` for this version (docs/image.md, "Codex version"). */
export function codexFlagsFor(version: string): string[] {
  if (!isCodexVersion(version)) return [];
  return CODEX_FLAGS.filter((f) => compareCodexVersions(version, f.since) >= 0).map((f) => f.flag);
}

/** ALIVE_CODEX_CODEX_VERSION / --codex-version: a version the sidecar drives, else a ConfigError naming it and why. */
export function parseCodexVersionSetting(setting: string, raw: string): string {
  const version = raw.trim().replace(/^v/, "");
  if (!isCodexVersion(version))
    throw new ConfigError(
      setting,
      raw,
      `a codex version as npm lists @openai/codex's, MAJOR.MINOR.PATCH (e.g. ${TESTED_CODEX_VERSIONS.at(-1)}; npm view @openai/codex versions)`,
    );
  const support = codexSupport(version);
  if (!support.supported)
    throw new ConfigError(setting, raw, `a version at or above ${MIN_CODEX_VERSION}: ${support.reason}`);
  return version;
}

/**
 * One line for sidecar.health's `codex` (alive-codex health, doctor): the version, where it comes
 * from, whether it is tested, and the flags added, e.g. "0.171.0 (ALIVE_CODEX_CODEX_VERSION; the SDK's
 * is 0.163.0; tested; adds --ignore-user-config --ignore-rules)".
 */
export function describeCodexHealth(codex: CodexHealth): string {
  const shown = codex.version ?? codex.requested;
  const origin =
    codex.requested === null
      ? "the image's, given as is (ALIVE_CODEX_IMAGE)"
      : codex.requested === codex.sdk
        ? "the SDK's"
        : `ALIVE_CODEX_CODEX_VERSION; the SDK's is ${codex.sdk}`;
  const parts = [
    origin,
    codex.version === null ? "not read from the image yet" : null,
    codex.tested ? "tested" : "NOT TESTED with this sidecar",
    codex.flags.length > 0 ? `adds ${codex.flags.join(" ")}` : "adds no flag",
  ];
  return `${shown ?? "unknown"} (${parts.filter((p) => p !== null).join("; ")})`;
}
