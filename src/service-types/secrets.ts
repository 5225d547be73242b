/**
 * Secret bindings (workspace.ensure and turn.run `secrets`): credentials the egress proxy sets on
 * requests to a host, so that they never enter the workspace (docs/security.md, "Brokered
 * credentials"). A binding's value is never echoed: what is shown of it is its host, header and env.
 */
import type { WorkspaceParams } from "./workspace.js";

export interface SecretBinding {
  /** A host name, or `host:port` (443 when absent); an IP literal only for an internal destination. */
  host: string;
  /** The header the proxy sets on every request to the host, e.g. "Authorization". */
  header: string;
  /** The header's value, e.g. "Bearer …": never in the container, a log line, the journal or an answer. */
  value: string;
  /**
   * A variable the workspace's processes see holding a placeholder (never the value): tools that
   * insist on a token run, and the proxy swaps the placeholder for the value in a request header
   * to the bound host.
   */
  env?: string;
}

/**
 * workspace.ensure's params: the workspace's, plus what is brokered for it, kept apart from them (the
 * workspace's params are labels on its container; these are never anywhere but the sidecar's memory).
 */
export interface EnsureWorkspaceParams extends WorkspaceParams {
  /** The workspace's secret bindings, replacing those of an earlier ensure; absent: unchanged. */
  secrets?: SecretBinding[];
  /** The token the proxy behind ALIVE_API_URL adds for this workspace; absent: the operator's (ALIVE_MCP_TOKEN). */
  aliveApiToken?: string;
}

/** A binding as workspace.list shows it: no value. */
export interface SecretBindingSummary {
  host: string;
  header: string;
  env?: string;
  /** "workspace" (workspace.ensure) or "turn" (the running turn's turn.run). */
  scope: "workspace" | "turn";
  /** Requests the binding touched since it was set. */
  requests: number;
}
