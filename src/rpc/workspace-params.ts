/**
 * Params of workspace.ensure, workspace.remove and workspace.logs (and the workspace fields turn.run
 * may carry), validated at the edge under the conventions of params.ts: a uid, gid or path outside
 * the operator's policy is -32006.
 */
import { parseEgressPolicy } from "../policy/egress-policy.js";
import { invalidParams } from "../errors.js";
import {
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
import { DISK_RANGES, RESOURCE_RANGES } from "../shared/limits.js";
import type { EnsureWorkspaceParams, NetworkMode, ResourceRequest, WorkspaceParams } from "../service.js";
import { parseSecretBindings } from "./secret-params.js";
import { checkId, checkWorkspaceId, resolveWorkspacePath, type WorkspacePolicy } from "../policy/workspace-policy.js";

export const RUNTIME_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const WORKSPACE_PARAM_LIMITS = {
  userIdLength: 128,
  gitFieldLength: 256,
  logTail: 100_000,
} as const;

const NETWORK_MODES = everyValue<NetworkMode>({ default: true, none: true });

export function workspaceIdOf(fields: Fields): string {
  return checkWorkspaceId(expectString(requireField(fields, "workspaceId", "workspaceId"), "workspaceId"));
}

function uidOrGid(fields: Fields, key: "uid" | "gid", policy: WorkspacePolicy): number {
  const value = requireField(fields, key, key);
  if (typeof value !== "number" || !Number.isSafeInteger(value)) throw invalidParams(key, "must be an integer", value);
  return checkId(key, value, policy);
}

/** The workspace.ensure fields, from `fields` (the params of workspace.ensure, or of turn.run). */
export async function parseWorkspaceFields(
  fields: Fields,
  workspaceId: string,
  policy: WorkspacePolicy,
): Promise<WorkspaceParams> {
  const userId = singleLine(requireField(fields, "userId", "userId"), "userId", WORKSPACE_PARAM_LIMITS.userIdLength);
  const uid = uidOrGid(fields, "uid", policy);
  const gid = uidOrGid(fields, "gid", policy);
  const rawPath = absolutePath(requireField(fields, "workspacePath", "workspacePath"), "workspacePath");
  const out: WorkspaceParams = { workspaceId, userId, uid, gid, workspacePath: "" };

  if (has(fields, "git")) {
    const git = expectObject(fields.git, "git");
    const parsed: { name?: string; email?: string } = {};
    if (has(git, "name")) parsed.name = singleLine(git.name, "git.name", WORKSPACE_PARAM_LIMITS.gitFieldLength, true);
    if (has(git, "email"))
      parsed.email = singleLine(git.email, "git.email", WORKSPACE_PARAM_LIMITS.gitFieldLength, true);
    out.git = parsed;
  }
  if (has(fields, "network")) out.network = oneOf<NetworkMode>(fields.network, "network", NETWORK_MODES);
  if (has(fields, "resources")) out.resources = parseResources(fields.resources, "resources");
  if (has(fields, "egress")) out.egress = parseEgressPolicy(fields.egress, "egress");
  // Only the shape here; whether the operator allows it and the engine has it is the manager's check (-32006).
  if (has(fields, "runtime"))
    out.runtime = matching(
      fields.runtime,
      "runtime",
      RUNTIME_NAME_PATTERN,
      'must be an OCI runtime name such as "runc" or "runsc"',
    );

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
    if (has(fields, key))
      out[key] = integerIn(fields[key], join(field, key), DISK_RANGES[key].min, DISK_RANGES[key].max);
  }
  return out;
}

export async function parseEnsureWorkspaceParams(
  raw: unknown,
  policy: WorkspacePolicy,
): Promise<EnsureWorkspaceParams> {
  const fields = expectParams(raw);
  // The brokered fields first: cheap, and a refusal makes nothing.
  const secrets = has(fields, "secrets") ? parseSecretBindings(fields.secrets) : undefined;
  let aliveApiToken: string | undefined;
  if (has(fields, "aliveApiToken")) {
    const token = fields.aliveApiToken;
    if (typeof token !== "string" || token.length === 0 || token.length > 8192 || /[\r\n\0]/.test(token))
      throw invalidParams(
        "aliveApiToken",
        "must be a non-empty string of at most 8192 characters without CR, LF or NUL",
      );
    aliveApiToken = token;
  }
  const params: EnsureWorkspaceParams = await parseWorkspaceFields(fields, workspaceIdOf(fields), policy);
  if (secrets !== undefined) params.secrets = secrets;
  if (aliveApiToken !== undefined) params.aliveApiToken = aliveApiToken;
  return params;
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
  return { workspaceId, tail: integerIn(fields.tail, "tail", 0, WORKSPACE_PARAM_LIMITS.logTail) };
}
