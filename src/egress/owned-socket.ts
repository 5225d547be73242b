/** A workspace's Unix socket: served so only its uid (and root) may connect, and closed with every connection on it. */
import { promises as fs } from "node:fs";
import type { Server } from "node:http";

/** Listens on a Unix socket that only `uid` (and root) may connect to; a stale socket file is replaced. */
export async function listenOwned(server: Server, socketPath: string, uid: number, gid: number): Promise<void> {
  await fs.rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  await fs.chown(socketPath, uid, gid);
  await fs.chmod(socketPath, 0o600);
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
