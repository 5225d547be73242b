/** Shared by the client commands: which socket, and a connected client. */
import { loadClientConfig } from "../../config.js";
import { SidecarClient } from "../../rpc/client.js";

/**
 * --socket, else the socket `alive-codex serve` would use with the same environment. Only the client
 * settings are read: a server-only setting the client has no use for cannot stop it.
 */
export function resolveSocketPath(flag: string | undefined): string {
  return flag ?? loadClientConfig().socketPath;
}

export function connectClient(socketFlag: string | undefined): Promise<SidecarClient> {
  return SidecarClient.connect(resolveSocketPath(socketFlag));
}
