/**
 * RPC params → service types. Validation happens here once, at the edge; every refusal names the field
 * (data.field), says what was expected (data.reason) and, for type errors, what was received.
 *
 * Conventions: unknown fields are ignored; an optional field given as null counts as absent; wrong
 * types are -32602; a uid, gid or path outside the operator's policy is -32006.
 *
 * Here: turn.run and turn.cancel. The workspace methods' params (and the workspace fields turn.run
 * may carry) are in workspace-params.ts, turn.run's mcpServers in mcp-server-params.ts, the journal
 * methods' in turn-params.ts.
 */
import type { ApprovalMode, SandboxMode, WebSearchMode } from "@openai/codex-sdk";
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
  matching,
  numberIn,
  oneOf,
  requireField,
  singleLine,
} from "./param-checks.js";
import { BUDGET_RANGES, MAX_DURATION_MS, MIN_TURN_TIMEOUT_MS } from "../shared/limits.js";
import {
  DISCONNECT_POLICIES,
  REASONING_EFFORTS,
  type RunTurnParams,
  type TurnInput,
  type TurnBudgetRequest,
  type TurnInputItem,
  type TurnRunOptions,
} from "../service.js";
import type { WorkspacePolicy } from "../policy/workspace-policy.js";
import { MCP_PARAM_LIMITS, parseMcpServers } from "./mcp-server-params.js";
import { parseSecretBindings } from "./secret-params.js";
import { WORKSPACE_PARAM_LIMITS, parseWorkspaceFields, workspaceIdOf } from "./workspace-params.js";

export { ENV_NAME_PATTERN, MCP_SERVER_NAME_PATTERN } from "./mcp-server-params.js";
export {
  RUNTIME_NAME_PATTERN,
  parseEnsureWorkspaceParams,
  parseRemoveWorkspaceParams,
  parseWorkspaceLogsParams,
} from "./workspace-params.js";

export const TURN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const THREAD_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const LIMITS = {
  ...WORKSPACE_PARAM_LIMITS,
  ...MCP_PARAM_LIMITS,
  inputBytes: 1024 * 1024,
  inputItems: 256,
  modelLength: 256,
  pathLength: MAX_PATH_LENGTH,
  additionalDirectories: 64,
} as const;

export const TIMEOUT_RANGE = { min: MIN_TURN_TIMEOUT_MS, max: MAX_DURATION_MS } as const;

const SANDBOX_MODES = everyValue<SandboxMode>({
  "read-only": true,
  "workspace-write": true,
  "danger-full-access": true,
});
const APPROVAL_POLICIES = everyValue<ApprovalMode>({
  never: true,
  "on-request": true,
  "on-failure": true,
  untrusted: true,
});
const WEB_SEARCH_MODES = everyValue<WebSearchMode>({ disabled: true, cached: true, live: true });

function turnIdOf(value: unknown, field: string): string {
  return matching(value, field, TURN_ID_PATTERN, `must match ${TURN_ID_PATTERN.source}`);
}

function parseInput(value: unknown): TurnInput {
  if (typeof value === "string") {
    if (value.length === 0) throw invalidParams("input", "must not be empty");
    if (Buffer.byteLength(value, "utf8") > LIMITS.inputBytes)
      throw invalidParams("input", `must be at most ${LIMITS.inputBytes} bytes`);
    return value;
  }
  if (!Array.isArray(value)) {
    throw invalidParams(
      "input",
      'must be a non-empty string or an array of {type:"text",text} | {type:"local_image",path}',
      value,
    );
  }
  if (value.length === 0) throw invalidParams("input", "must not be an empty array");
  if (value.length > LIMITS.inputItems) throw invalidParams("input", `must have at most ${LIMITS.inputItems} items`);
  let totalBytes = 0;
  const items = value.map((entry, index): TurnInputItem => {
    const field = `input[${index}]`;
    const item = expectObject(entry, field);
    const type = oneOf(item.type, `${field}.type`, ["text", "local_image"] as const);
    if (type === "local_image")
      return { type, path: absolutePath(requireField(item, "path", `${field}.path`), `${field}.path`) };
    const text = expectString(requireField(item, "text", `${field}.text`), `${field}.text`);
    totalBytes += Buffer.byteLength(text, "utf8");
    return { type, text };
  });
  if (totalBytes > LIMITS.inputBytes)
    throw invalidParams("input", `text items must total at most ${LIMITS.inputBytes} bytes`);
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
  if (has(fields, "approvalPolicy"))
    out.approvalPolicy = oneOf(fields.approvalPolicy, "options.approvalPolicy", APPROVAL_POLICIES);
  if (has(fields, "networkAccessEnabled"))
    out.networkAccessEnabled = booleanValue(fields.networkAccessEnabled, "options.networkAccessEnabled");
  if (has(fields, "additionalDirectories")) {
    const dirs = fields.additionalDirectories;
    if (!Array.isArray(dirs))
      throw invalidParams("options.additionalDirectories", "must be an array of absolute paths", dirs);
    if (dirs.length > LIMITS.additionalDirectories) {
      throw invalidParams("options.additionalDirectories", `must have at most ${LIMITS.additionalDirectories} entries`);
    }
    out.additionalDirectories = dirs.map((dir, index) => absolutePath(dir, `options.additionalDirectories[${index}]`));
  }
  if (has(fields, "webSearchMode"))
    out.webSearchMode = oneOf(fields.webSearchMode, "options.webSearchMode", WEB_SEARCH_MODES);
  if (has(fields, "outputSchema")) out.outputSchema = expectObject(fields.outputSchema, "options.outputSchema");
  if (has(fields, "timeoutMs"))
    out.timeoutMs = integerIn(fields.timeoutMs, "options.timeoutMs", TIMEOUT_RANGE.min, TIMEOUT_RANGE.max);
  if (has(fields, "budget")) out.budget = parseBudget(fields.budget);
  if (has(fields, "onDisconnect"))
    out.onDisconnect = oneOf(fields.onDisconnect, "options.onDisconnect", DISCONNECT_POLICIES);
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
    out[key] = range.integer
      ? integerIn(fields[key], field, range.min, range.max)
      : numberIn(fields[key], field, range.min, range.max);
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
  if (has(fields, "secrets")) out.secrets = parseSecretBindings(fields.secrets);

  if (has(fields, "workspacePath")) {
    out.workspace = await parseWorkspaceFields(fields, workspaceId, policy);
  } else {
    const stray = WORKSPACE_ONLY_FIELDS.find((key) => has(fields, key));
    if (stray !== undefined) {
      throw invalidParams(
        "workspacePath",
        `is required when turn.run carries workspace fields (got ${stray} without it)`,
      );
    }
  }
  return out;
}

export function parseCancelTurnParams(raw: unknown): { turnId: string } {
  const fields = expectParams(raw);
  return { turnId: turnIdOf(requireField(fields, "turnId", "turnId"), "turnId") };
}
