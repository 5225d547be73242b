/** The method table: every method the server answers, and its handler. */
import { Method, type MethodHandler, type MethodName } from "../protocol.js";
import { handleHealth } from "./sidecar.js";
import { handleCancelTurn, handleRunTurn } from "./turn.js";
import { handleEnsureWorkspace, handleListWorkspaces, handleRemoveWorkspace, handleWorkspaceLogs } from "./workspace.js";

export const METHOD_HANDLERS: ReadonlyMap<string, MethodHandler> = new Map<MethodName, MethodHandler>([
  [Method.health, handleHealth],
  [Method.ensureWorkspace, handleEnsureWorkspace],
  [Method.listWorkspaces, handleListWorkspaces],
  [Method.removeWorkspace, handleRemoveWorkspace],
  [Method.workspaceLogs, handleWorkspaceLogs],
  [Method.runTurn, handleRunTurn],
  [Method.cancelTurn, handleCancelTurn],
]);
