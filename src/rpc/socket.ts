/**
 * The socket file: its directory, stale-file replacement and permissions.
 *
 * A socket file whose listener is gone (connect → ECONNREFUSED) is a leftover of a dead sidecar and is
 * replaced. One that accepts a connection belongs to a live sidecar and is never stolen.
 */
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { execa } from "execa";
import type { Logger } from "../log.js";

export const SOCKET_MODE = 0o660;
export const SOCKET_DIR_MODE = 0o750;

/** Another process accepts connections on the socket path. */
export class SocketInUseError extends Error {
  constructor(readonly socketPath: string) {
    super(`another sidecar is serving at ${socketPath}; stop it first (its socket is never stolen)`);
    this.name = "SocketInUseError";
  }
}

export type SocketProbe = "live" | "stale" | "missing";

/** Connects once to find out whether someone is listening. A connect that hangs counts as live. */
export function probeSocket(socketPath: string, timeoutMs = 2000): Promise<SocketProbe> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    const finish = (outcome: SocketProbe | Error): void => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on("error", () => {});
      socket.destroy();
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const timer = setTimeout(() => finish("live"), timeoutMs);
    socket.once("connect", () => finish("live"));
    socket.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ECONNREFUSED") finish("stale");
      else if (error.code === "ENOENT") finish("missing");
      else finish(error);
    });
  });
}

/**
 * Makes `socketPath` ready to listen on: creates its directory (0750) when missing, removes a stale
 * socket, refuses a live one (SocketInUseError) and anything that is not a socket.
 */
export async function prepareSocketPath(socketPath: string, log: Logger): Promise<void> {
  const dir = path.dirname(socketPath);
  const dirExists = await fs.stat(dir).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return false;
      throw error;
    },
  );
  if (!dirExists) {
    await fs.mkdir(dir, { recursive: true, mode: SOCKET_DIR_MODE });
    await fs.chmod(dir, SOCKET_DIR_MODE); // exactly 0750, whatever the umask
  }

  const stat = await fs.lstat(socketPath).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
  if (stat === null) return;
  if (!stat.isSocket()) throw new Error(`${socketPath} exists and is not a socket; refusing to replace it`);

  const probe = await probeSocket(socketPath);
  if (probe === "live") throw new SocketInUseError(socketPath);
  if (probe === "stale") {
    await fs.unlink(socketPath).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "ENOENT") throw error;
    });
    log.warn("replaced a stale socket left by a sidecar that is gone", { socketPath });
  }
}

/** Resolves a group name (or numeric gid) to a gid: /etc/group first, then `getent group` for NSS groups. */
export async function resolveGroupId(group: string, groupFile = "/etc/group"): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const fromFile = await fs.readFile(groupFile, "utf8").then(
    (text) => findGroup(text, group),
    () => null,
  );
  if (fromFile !== null) return fromFile;
  const result = await execa("getent", ["group", group], { reject: false, timeout: 5000 });
  const fromGetent = result.exitCode === 0 ? findGroup(String(result.stdout), group) : null;
  if (fromGetent === null)
    throw new Error(`socket group ${JSON.stringify(group)} does not exist (not in ${groupFile}, not known to getent)`);
  return fromGetent;
}

function findGroup(text: string, group: string): number | null {
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return null;
}

/** chmod 0660, then hands the socket to `group` (when set) so a non-root Alive server can connect. */
export async function applySocketPermissions(socketPath: string, group: string | null | undefined): Promise<void> {
  await fs.chmod(socketPath, SOCKET_MODE);
  if (group === null || group === undefined || group === "") return;
  const gid = await resolveGroupId(group);
  await fs.chown(socketPath, -1, gid);
}
