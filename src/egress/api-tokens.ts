/**
 * Alive's API token, brokered like a secret binding (secret-bindings.ts): the proxy behind
 * ALIVE_API_URL (api-proxy.ts) adds it to what it forwards, and a workspace's processes see only a
 * placeholder in ALIVE_MCP_TOKEN. The token is the workspace's own (workspace.ensure `aliveApiToken`)
 * or else the operator's (ALIVE_MCP_TOKEN): kept in this process's memory, never in a container.
 */
import { randomBytes } from "node:crypto";
import { PLACEHOLDER_PREFIX } from "./secret-bindings.js";

export interface ApiCredential {
  token: string;
  /** What ALIVE_MCP_TOKEN holds inside the workspace; swapped for the token in a request header. */
  placeholder: string;
}

export class ApiTokens {
  readonly #tokens = new Map<string, string>();
  readonly #placeholders = new Map<string, string>();

  constructor(private readonly operatorToken: string | null) {}

  /** The workspace's own token (workspace.ensure `aliveApiToken`), over the operator's. */
  set(workspaceId: string, token: string): void {
    this.#tokens.set(workspaceId, token);
  }

  forget(workspaceId: string): void {
    this.#tokens.delete(workspaceId);
    this.#placeholders.delete(workspaceId);
  }

  /** The workspace's credential, or null when neither it nor the operator has a token. */
  credential(workspaceId: string): ApiCredential | null {
    const token = this.#tokens.get(workspaceId) ?? this.operatorToken;
    if (token === null) return null;
    return { token, placeholder: this.placeholder(workspaceId) };
  }

  /** What ALIVE_MCP_TOKEN holds inside the workspace (stable for the workspace while the sidecar runs). */
  placeholder(workspaceId: string): string {
    let placeholder = this.#placeholders.get(workspaceId);
    if (placeholder === undefined) {
      placeholder = `${PLACEHOLDER_PREFIX}${randomBytes(16).toString("hex")}`;
      this.#placeholders.set(workspaceId, placeholder);
    }
    return placeholder;
  }
}

/**
 * A request's headers with the credential applied: the placeholder replaced by the token wherever it
 * appears, and `authorization: Bearer <token>` set when the request has none.
 */
export function withApiCredential(
  headers: Record<string, string | string[] | number | undefined>,
  credential: ApiCredential,
): void {
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value === "string" && value.includes(credential.placeholder))
      headers[name] = value.split(credential.placeholder).join(credential.token);
    else if (Array.isArray(value) && value.some((v) => v.includes(credential.placeholder)))
      headers[name] = value.map((v) => v.split(credential.placeholder).join(credential.token));
  }
  if (headers.authorization === undefined) headers.authorization = `Bearer ${credential.token}`;
}
