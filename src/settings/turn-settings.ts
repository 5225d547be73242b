/**
 * The settings of a turn: its deadline, the stall watch, how long a line of codex's output may be,
 * how many run at once, its budgets, and what the turn journal keeps of ended turns.
 */
import { BUDGET_RANGES } from "../shared/limits.js";
import { ConfigError, parseDuration, parseInteger, parseNumber, parseOneOf } from "../shared/setting-parsers.js";
import { integers, setting, type AnySetting } from "./setting-spec.js";

export const STALL_WATCH_SETTINGS = ["gvisor", "all", "off"] as const;
export type StallWatchSetting = (typeof STALL_WATCH_SETTINGS)[number];
export const ON_STOP_SETTINGS = ["leave", "drain"] as const;
export type OnStopSetting = (typeof ON_STOP_SETTINGS)[number];

const tokenBudget = (name: string, raw: string): number =>
  parseInteger(name, raw, BUDGET_RANGES.tokens.min, BUDGET_RANGES.tokens.max);
const cpuBudget = (name: string, raw: string): number =>
  parseNumber(name, raw, BUDGET_RANGES.cpuSeconds.min, BUDGET_RANGES.cpuSeconds.max);

function parseTurnTimeout(name: string, raw: string): number {
  const value = parseDuration(name, raw);
  if (value === 0) throw new ConfigError(name, raw, "a duration above 0: every turn has a deadline");
  return value;
}

/** A turn's deadline, its output, how many turns and workspaces there may be, and a turn's budgets. */
export const TURN_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "turnTimeoutMs",
    env: "ALIVE_CODEX_TURN_TIMEOUT",
    flag: "--turn-timeout",
    parse: parseTurnTimeout,
    default: "15m",
    description: "Default deadline of a turn; turn.run options.timeoutMs overrides it.",
  }),
  setting({
    key: "stallWatch",
    env: "ALIVE_CODEX_STALL_WATCH",
    flag: "--stall-watch",
    parse: (name, raw) => parseOneOf<StallWatchSetting>(name, raw, STALL_WATCH_SETTINGS),
    default: "gvisor",
    description:
      'Which turns the stall watch looks after: "gvisor" (turns in runsc workspaces), "all" or "off". While codex has been quiet for 10 s it lists the sandbox\'s processes every 5 s; a child that exited and that codex has not reaped on three looks running (gVisor loses that wake-up now and then), or a sandbox that stops answering, ends the turn failed/sandbox_stalled about 25 s after it stalled, with the sandbox\'s processes and stacks in the log, and restarts its container. See docs/runtimes.md.',
  }),
  // A line is one event; codex's largest are items with a command's output (codex keeps at most 1 MiB
  // of each stream of a command, and JSON escaping of control bytes can grow that sixfold), an MCP
  // tool's result (an image comes as base64) and agent messages (bounded by the model's output
  // tokens, well under 1 MiB). 16 MiB holds them all; the SDK holds at most one such line a turn. At most
  // 32: an event goes to the client as one line, and the RPC server drops a client 64 MiB behind.
  setting({
    key: "outputLineMaxMb",
    env: "ALIVE_CODEX_OUTPUT_LINE_MAX_MB",
    flag: "--output-line-max-mb",
    parse: integers(1, 32),
    default: "16",
    description:
      "Longest line codex may write to its stdout (one JSON event), in MiB: a longer one fails the turn with codex_output before the sidecar reads it whole, and the turn's processes are swept. A workspace can script codex's output (docs/security.md, \"Tenant-controlled output\"); codex's own largest events (a command's output, which codex keeps to 1 MiB a stream; an MCP result; an agent message) fit well within the default.",
  }),
  setting({
    key: "onStop",
    env: "ALIVE_CODEX_ON_STOP",
    flag: "--on-stop",
    parse: (name, raw) => parseOneOf<OnStopSetting>(name, raw, ON_STOP_SETTINGS),
    default: "leave",
    description:
      'What SIGTERM/SIGINT does to running turns: "leave" (they keep running in their containers; the sidecar flushes the journal and exits within 2 s, and the next sidecar adopts them: an upgrade is a stop and a start, docs/operations.md) or "drain" (they get ALIVE_CODEX_SHUTDOWN_GRACE to finish, then are cancelled).',
  }),
  setting({
    key: "shutdownGraceMs",
    env: "ALIVE_CODEX_SHUTDOWN_GRACE",
    flag: "--shutdown-grace",
    parse: parseDuration,
    default: "30s",
    description:
      "With ALIVE_CODEX_ON_STOP=drain: on SIGTERM/SIGINT, how long running turns may finish before they are cancelled.",
  }),
  setting({
    key: "maxWorkspaces",
    env: "ALIVE_CODEX_MAX_WORKSPACES",
    flag: "--max-workspaces",
    parse: integers(1, 100_000),
    default: "200",
    description: "Most workspace containers at once (-32007 past it).",
  }),
  setting({
    key: "maxTurns",
    env: "ALIVE_CODEX_MAX_TURNS",
    flag: "--max-turns",
    parse: integers(1, 10_000),
    default: "32",
    description: "Most turns running at once across workspaces (-32007 past it).",
  }),
  setting({
    key: "budgetTokens",
    env: "ALIVE_CODEX_BUDGET_TOKENS",
    flag: "--budget-tokens",
    parse: tokenBudget,
    default: null,
    defaultText: "(none; the ceiling if set)",
    description:
      "Token budget of a turn whose turn.run names none (options.budget.tokens): past it the turn fails with budget_exceeded.",
  }),
  setting({
    key: "budgetTokensMax",
    env: "ALIVE_CODEX_BUDGET_TOKENS_MAX",
    flag: "--budget-tokens-max",
    parse: tokenBudget,
    default: null,
    description: "The largest token budget turn.run may ask for (-32006 above it).",
  }),
  setting({
    key: "budgetCpuSeconds",
    env: "ALIVE_CODEX_BUDGET_CPU_SECONDS",
    flag: "--budget-cpu-seconds",
    parse: cpuBudget,
    default: null,
    defaultText: "(none; the ceiling if set)",
    description:
      "CPU-seconds budget of a turn (the workspace container's cgroup) whose turn.run names none: past it the turn fails with budget_exceeded.",
  }),
  setting({
    key: "budgetCpuSecondsMax",
    env: "ALIVE_CODEX_BUDGET_CPU_SECONDS_MAX",
    flag: "--budget-cpu-seconds-max",
    parse: cpuBudget,
    default: null,
    description: "The largest CPU-seconds budget turn.run may ask for (-32006 above it).",
  }),
];

/** What the turn journal keeps. */
export const JOURNAL_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "journalTurnMaxMb",
    env: "ALIVE_CODEX_JOURNAL_TURN_MAX_MB",
    flag: "--journal-turn-max-mb",
    parse: integers(1, 65_536),
    default: "32",
    description:
      "MiB of events the turn journal (<state dir>/journal/) keeps per turn; past it a sidecar.journal.truncated marker event, and turn.attach replays no further.",
  }),
  setting({
    key: "journalMaxAgeMs",
    env: "ALIVE_CODEX_JOURNAL_MAX_AGE",
    flag: "--journal-max-age",
    parse: parseDuration,
    default: "168h",
    description:
      "Ended turns older than this are pruned from the turn journal (0 = never by age), at start-up and every few minutes. Units: ms, s, m, h.",
  }),
  setting({
    key: "journalMaxTurns",
    env: "ALIVE_CODEX_JOURNAL_MAX_TURNS",
    flag: "--journal-max-turns",
    parse: integers(1, 10_000_000),
    default: "10000",
    description: "Most ended turns the turn journal keeps (the oldest are pruned first).",
  }),
];
