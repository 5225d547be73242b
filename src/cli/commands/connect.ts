/** Shared by the client commands: which socket, and a connected client. */
import { loadConfig } from "../../config.js";
import { SidecarClient } from "../../rpc/client.js";

/** --socket, else the socket `alive-codex serve` would use with the same environment. */
export function resolveSocketPath(flag: string | undefined): string {
  return flag ?? loadConfig().socketPath;
}

export function connectClient(socketFlag: string | undefined): Promise<SidecarClient> {
  return SidecarClient.connect(resolveSocketPath(socketFlag));
}
