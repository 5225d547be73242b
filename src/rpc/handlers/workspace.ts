/** workspace.* methods: validate params, then call the service with the request's signal. */
import { parseEnsureWorkspaceParams, parseRemoveWorkspaceParams, parseWorkspaceLogsParams } from "../params.js";
import type { MethodHandler } from "../protocol.js";

export const handleEnsureWorkspace: MethodHandler = async (params, { service, policy, signal }) =>
  service.ensureWorkspace(await parseEnsureWorkspaceParams(params, policy), signal);

/** workspace.list takes no params (any given are ignored). */
export const handleListWorkspaces: MethodHandler = (_params, { service, signal }) => service.listWorkspaces(signal);

export const handleRemoveWorkspace: MethodHandler = async (params, { service, signal }) =>
  service.removeWorkspace(parseRemoveWorkspaceParams(params), signal);

export const handleWorkspaceLogs: MethodHandler = async (params, { service, signal }) =>
  service.workspaceLogs(parseWorkspaceLogsParams(params), signal);
