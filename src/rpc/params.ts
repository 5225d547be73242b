/**
 * RPC params → service types. Validation happens here once, at the edge; every refusal names the field
 * (data.field), says what was expected (data.reason) and, for type errors, what was received.
 *
 * Conventions: unknown fields are ignored; an optional field given as null counts as absent; wrong
 * types are -32602; a uid, gid or path outside the operator's policy is -32006.
 */
import type { ApprovalMode, SandboxMode, WebSearchMode } from "@openai/codex-sdk";
import { checkEnvValue } from "../shared/env-value.js";
import { parseEgressPolicy } from "../policy/egress-policy.js";
import { invalidParams } from "../errors.js";
import {
  MAX_PATH_LENGTH,
  absolutePath,
  booleanValue,
  everyValue,
  expectObject,
  expectParams,
  expectString,
  has,
  integerIn,
  join,
  matching,
  numberIn,
  oneOf,
  requireField,
  singleLine,
  type Fields,
} from "./param-checks.js";
import { BUDGET_RANGES, DISK_RANGES, MAX_DURATION_MS, MIN_TURN_TIMEOUT_MS, RESOURCE_RANGES } from "../shared/limits.js";
import {
  DISCONNECT_POLICIES,
  REASONING_EFFORTS,
  type McpServerSpec,
  type NetworkMode,
  type ResourceRequest,
  type RunTurnParams,
  type TurnInput,
  type TurnBudgetRequest,
  type TurnInputItem,
  type TurnRunOptions,
  type WorkspaceParams,
} from "../service.js";
import { checkId, checkWorkspaceId, resolveWorkspacePath, type WorkspacePolicy } from "../policy/workspace-policy.js";

export const TURN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const THREAD_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const MCP_SERVER_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const RUNTIME_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const LIMITS = {
  userIdLength: 128,
  gitFieldLength: 256,
  inputBytes: 1024 * 1024,
  inputItems: 256,
  modelLength: 256,
  pathLength: MAX_PATH_LENGTH,
  additionalDirectories: 64,
  mcpServers: 32,
  mcpCommandLength: 4096,
  mcpArgs: 256,
  mcpArgLength: 8192,
  mcpEnvEntries: 128,
  logTail: 100_000,
} as const;

export const TIMEOUT_RANGE = { min: MIN_TURN_TIMEOUT_MS, max: MAX_DURATION_MS } as const;

const SANDBOX_MODES = everyValue<SandboxMode>({ "read-only": true, "workspace-write": true, "danger-full-access": true });
const APPROVAL_POLICIES = everyValue<ApprovalMode>({ never: true, "on-request": true, "on-failure": true, untrusted: true });
const WEB_SEARCH_MODES = everyValue<WebSearchMode>({ disabled: true, cached: true, live: true });
const NETWORK_MODES = everyValue<NetworkMode>({ default: true, none: true });

function workspaceIdOf(fields: Fields): string {
  return checkWorkspaceId(expectString(requireField(fields, "workspaceId", "workspaceId"), "workspaceId"));
}

function turnIdOf(value: unknown, field: string): string {
  return matching(value, field, TURN_ID_PATTERN, `must match ${TURN_ID_PATTERN.source}`);
}

function uidOrGid(fields: Fields, key: "uid" | "gid", policy: WorkspacePolicy): number {
  const value = requireField(fields, key, key);
  if (typeof value !== "number" || !Number.isSafeInteger(value)) throw invalidParams(key, "must be an integer", value);
  return checkId(key, value, policy);
}

// ---------------------------------------------------------------------------------------------
// workspace.*

/** The workspace.ensure fields, from `fields` (the params of workspace.ensure, or of turn.run). */
async function parseWorkspaceFields(fields: Fields, workspaceId: string, policy: WorkspacePolicy): Promise<WorkspaceParams> {
  const userId = singleLine(requireField(fields, "userId", "userId"), "userId", LIMITS.userIdLength);
  const uid = uidOrGid(fields, "uid", policy);
  const gid = uidOrGid(fields, "gid", policy);
  const rawPath = absolutePath(requireField(fields, "workspacePath", "workspacePath"), "workspacePath");
  const out: WorkspaceParams = { workspaceId, userId, uid, gid, workspacePath: "" };

  if (has(fields, "git")) {
    const git = expectObject(fields.git, "git");
    const parsed: { name?: string; email?: string } = {};
    if (has(git, "name")) parsed.name = singleLine(git.name, "git.name", LIMITS.gitFieldLength, true);
    if (has(git, "email")) parsed.email = singleLine(git.email, "git.email", LIMITS.gitFieldLength, true);
    out.git = parsed;
  }
  if (has(fields, "network")) out.network = oneOf<NetworkMode>(fields.network, "network", NETWORK_MODES);
  if (has(fields, "resources")) out.resources = parseResources(fields.resources, "resources");
  if (has(fields, "egress")) out.egress = parseEgressPolicy(fields.egress, "egress");
  // Only the shape here; whether the operator allows it and the engine has it is the manager's check (-32006).
  if (has(fields, "runtime")) out.runtime = matching(fields.runtime, "runtime", RUNTIME_NAME_PATTERN, "must be an OCI runtime name such as \"runc\" or \"runsc\"");

  // Last: the only step that touches the filesystem, after every cheap check passed.
  out.workspacePath = await resolveWorkspacePath(rawPath, policy);
  return out;
}

function parseResources(value: unknown, field: string): ResourceRequest {
  const fields = expectObject(value, field);
  const out: ResourceRequest = {};
  for (const key of ["memoryMb", "cpus", "pids"] as const) {
    if (!has(fields, key)) continue;
    const range = RESOURCE_RANGES[key];
    out[key] = range.integer
      ? integerIn(fields[key], join(field, key), range.min, range.max)
      : numberIn(fields[key], join(field, key), range.min, range.max);
  }
  // The operator's ceilings (ALIVE_CODEX_DISK_MAX) are checked at ensure, where the config is known.
  for (const key of ["diskMb", "diskInodes"] as const) {
    if (has(fields, key)) out[key] = integerIn(fields[key], join(field, key), DISK_RANGES[key].min, DISK_RANGES[key].max);
  }
  return out;
}

export async function parseEnsureWorkspaceParams(raw: unknown, policy: WorkspacePolicy): Promise<WorkspaceParams> {
  const fields = expectParams(raw);
  return parseWorkspaceFields(fields, workspaceIdOf(fields), policy);
}

export function parseRemoveWorkspaceParams(raw: unknown): { workspaceId: string; purgeHome: boolean } {
  const fields = expectParams(raw);
  const workspaceId = workspaceIdOf(fields);
  const purgeHome = has(fields, "purgeHome") ? booleanValue(fields.purgeHome, "purgeHome") : false;
  return { workspaceId, purgeHome };
}

export function parseWorkspaceLogsParams(raw: unknown): { workspaceId: string; tail?: number } {
  const fields = expectParams(raw);
  const workspaceId = workspaceIdOf(fields);
  if (!has(fields, "tail")) return { workspaceId };
  return { workspaceId, tail: integerIn(fields.tail, "tail", 0, LIMITS.logTail) };
}

// ---------------------------------------------------------------------------------------------
// turn.*

function parseInput(value: unknown): TurnInput {
  if (typeof value === "string") {
    if (value.length === 0) throw invalidParams("input", "must not be empty");
    if (Buffer.byteLength(value, "utf8") > LIMITS.inputBytes) throw invalidParams("input", `must be at most ${LIMITS.inputBytes} bytes`);
    return value;
  }
  if (!Array.isArray(value)) {
    throw invalidParams("input", 'must be a non-empty string or an array of {type:"text",text} | {type:"local_image",path}', value);
  }
  if (value.length === 0) throw invalidParams("input", "must not be an empty array");
  if (value.length > LIMITS.inputItems) throw invalidParams("input", `must have at most ${LIMITS.inputItems} items`);
  let totalBytes = 0;
  const items = value.map((entry, index): TurnInputItem => {
    const field = `input[${index}]`;
    const item = expectObject(entry, field);
    const type = oneOf(item.type, `${field}.type`, ["text", "local_image"] as const);
    if (type === "local_image") return { type, path: absolutePath(requireField(item, "path", `${field}.path`), `${field}.path`) };
    const text = expectString(requireField(item, "text", `${field}.text`), `${field}.text`);
    totalBytes += Buffer.byteLength(text, "utf8");
    return { type, text };
  });
  if (totalBytes > LIMITS.inputBytes) throw invalidParams("input", `text items must total at most ${LIMITS.inputBytes} bytes`);
  return items;
}

function parseOptions(value: unknown): TurnRunOptions {
  const fields = expectObject(value, "options");
  const out: TurnRunOptions = {};
  if (has(fields, "model")) out.model = singleLine(fields.model, "options.model", LIMITS.modelLength);
  if (has(fields, "modelReasoningEffort")) {
    out.modelReasoningEffort = oneOf(fields.modelReasoningEffort, "options.modelReasoningEffort", REASONING_EFFORTS);
  }
  if (has(fields, "sandboxMode")) out.sandboxMode = oneOf(fields.sandboxMode, "options.sandboxMode", SANDBOX_MODES);
  if (has(fields, "approvalPolicy")) out.approvalPolicy = oneOf(fields.approvalPolicy, "options.approvalPolicy", APPROVAL_POLICIES);
  if (has(fields, "networkAccessEnabled")) out.networkAccessEnabled = booleanValue(fields.networkAccessEnabled, "options.networkAccessEnabled");
  if (has(fields, "additionalDirectories")) {
    const dirs = fields.additionalDirectories;
    if (!Array.isArray(dirs)) throw invalidParams("options.additionalDirectories", "must be an array of absolute paths", dirs);
    if (dirs.length > LIMITS.additionalDirectories) {
      throw invalidParams("options.additionalDirectories", `must have at most ${LIMITS.additionalDirectories} entries`);
    }
    out.additionalDirectories = dirs.map((dir, index) => absolutePath(dir, `options.additionalDirectories[${index}]`));
  }
  if (has(fields, "webSearchMode")) out.webSearchMode = oneOf(fields.webSearchMode, "options.webSearchMode", WEB_SEARCH_MODES);
  if (has(fields, "outputSchema")) out.outputSchema = expectObject(fields.outputSchema, "options.outputSchema");
  if (has(fields, "timeoutMs")) out.timeoutMs = integerIn(fields.timeoutMs, "options.timeoutMs", TIMEOUT_RANGE.min, TIMEOUT_RANGE.max);
  if (has(fields, "budget")) out.budget = parseBudget(fields.budget);
  if (has(fields, "onDisconnect")) out.onDisconnect = oneOf(fields.onDisconnect, "options.onDisconnect", DISCONNECT_POLICIES);
  return out;
}

/** options.budget: { tokens?, cpuSeconds? }; the operator's ceilings are checked when the turn is admitted. */
export function parseBudget(value: unknown): TurnBudgetRequest {
  const fields = expectObject(value, "options.budget");
  const out: TurnBudgetRequest = {};
  for (const key of ["tokens", "cpuSeconds"] as const) {
    if (!has(fields, key)) continue;
    const range = BUDGET_RANGES[key];
    const field = `options.budget.${key}`;
    out[key] = range.integer ? integerIn(fields[key], field, range.min, range.max) : numberIn(fields[key], field, range.min, range.max);
  }
  return out;
}

function parseMcpServers(value: unknown): Record<string, McpServerSpec> {
  const servers = expectObject(value, "mcpServers");
  const names = Object.keys(servers);
  if (names.length > LIMITS.mcpServers) throw invalidParams("mcpServers", `must have at most ${LIMITS.mcpServers} servers`);
  const out: Record<string, McpServerSpec> = {};
  for (const name of names) {
    if (!MCP_SERVER_NAME_PATTERN.test(name)) {
      throw invalidParams("mcpServers", `server names must match ${MCP_SERVER_NAME_PATTERN.source}`, name);
    }
    const field = `mcpServers.${name}`;
    const server = expectObject(servers[name], field);
    const spec: McpServerSpec = {
      command: singleLine(requireField(server, "command", `${field}.command`), `${field}.command`, LIMITS.mcpCommandLength),
    };
    if (has(server, "args")) {
      const args = server.args;
      if (!Array.isArray(args)) throw invalidParams(`${field}.args`, "must be an array of strings", args);
      if (args.length > LIMITS.mcpArgs) throw invalidParams(`${field}.args`, `must have at most ${LIMITS.mcpArgs} entries`);
      spec.args = args.map((arg, index) => {
        const argField = `${field}.args[${index}]`;
        const text = expectString(arg, argField);
        if (text.includes("\0")) throw invalidParams(argField, "must not contain NUL");
        if (text.length > LIMITS.mcpArgLength) throw invalidParams(argField, `must be at most ${LIMITS.mcpArgLength} characters`);
        return text;
      });
    }
    if (has(server, "env")) {
      const env = expectObject(server.env, `${field}.env`);
      const entries = Object.entries(env);
      if (entries.length > LIMITS.mcpEnvEntries) throw invalidParams(`${field}.env`, `must have at most ${LIMITS.mcpEnvEntries} entries`);
      const parsed: Record<string, string> = {};
      for (const [key, envValue] of entries) {
        if (!ENV_NAME_PATTERN.test(key)) throw invalidParams(`${field}.env`, `variable names must match ${ENV_NAME_PATTERN.source}`, key);
        const envField = `${field}.env.${key}`;
        // Values may be secrets: never echo them back.
        if (typeof envValue !== "string") throw invalidParams(envField, "must be a string");
        parsed[key] = checkEnvValue(envField, envValue);
      }
      spec.env = parsed;
    }
    out[name] = spec;
  }
  return out;
}

const WORKSPACE_ONLY_FIELDS = ["userId", "uid", "gid"] as const;

export async function parseRunTurnParams(raw: unknown, policy: WorkspacePolicy): Promise<RunTurnParams> {
  const fields = expectParams(raw);
  const workspaceId = workspaceIdOf(fields);
  const out: RunTurnParams = { workspaceId, input: parseInput(requireField(fields, "input", "input")) };
  if (has(fields, "turnId")) out.turnId = turnIdOf(fields.turnId, "turnId");
  if (has(fields, "threadId")) {
    // codex reads a non-UUID as a thread *name* and silently starts a new thread: refuse it here.
    out.threadId = matching(fields.threadId, "threadId", THREAD_ID_PATTERN, "must be a codex thread id (a UUID)");
  }
  if (has(fields, "options")) out.options = parseOptions(fields.options);
  if (has(fields, "mcpServers")) out.mcpServers = parseMcpServers(fields.mcpServers);

  if (has(fields, "workspacePath")) {
    out.workspace = await parseWorkspaceFields(fields, workspaceId, policy);
  } else {
    const stray = WORKSPACE_ONLY_FIELDS.find((key) => has(fields, key));
    if (stray !== undefined) {
      throw invalidParams("workspacePath", `is required when turn.run carries workspace fields (got ${stray} without it)`);
    }
  }
  return out;
}

export function parseCancelTurnParams(raw: unknown): { turnId: string } {
  const fields = expectParams(raw);
  return { turnId: turnIdOf(requireField(fields, "turnId", "turnId"), "turnId") };
}
