/**
 * The exec bridge: how the Codex SDK, which can only spawn a local executable, runs codex inside a
 * workspace container.
 *
 * The SDK spawns BRIDGE_SCRIPT (a /bin/sh script: ~1 ms, where a Node shim costs 60-80 ms) with the
 * codex argv and writes the prompt to its stdin. The script hands argv and stdin to the sidecar
 * through a FIFO, then relays two more FIFOs to its stdout/stderr and exits with the code the
 * sidecar leaves in `rc`. The sidecar runs the real codex with the engine's exec API and feeds
 * those FIFOs. Each turn has its own 0700 directory of FIFOs; no secret passes through the script.
 */
import { constants, promises as fs, openSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { execa } from "execa";
import { bridgesDir } from "../workspace/paths.js";

export const BRIDGE_ENV = "ALIVE_CODEX_BRIDGE";

export const BRIDGE_SCRIPT = `#!/bin/sh
# Written by alive-codex-sidecar: stands in for the codex binary for @openai/codex-sdk.
# It runs nothing itself; see src/codex/bridge.ts.
# A stop signal sent to the sidecar's whole process group (systemd's KillMode=control-group) is the
# sidecar's to act on: the turn goes on in its container, and this script ends when the sidecar says.
trap '' TERM INT HUP
b="\${${BRIDGE_ENV}:?${BRIDGE_ENV} is not set}"
# Open the output FIFOs first, while the sidecar's write ends are surely open: opened after the
# sidecar finished, they would wait for a writer forever.
exec 3<"$b/out" 4<"$b/err" || exit 70
{ printf '%d\\000' "$#"; printf '%s\\000' "$@"; cat; } > "$b/ctl" || exit 70
cat <&4 >&2 &
cat <&3
wait
rc=$(cat "$b/rc" 2>/dev/null) || rc=70
exit "$rc"
`;

/** Writes the bridge script (mode 0755) and returns its path. */
export async function installBridgeScript(dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const target = path.join(dir, "codex-exec-bridge");
  const temp = `${target}.${process.pid}.tmp`;
  await fs.writeFile(temp, BRIDGE_SCRIPT, { mode: 0o755 });
  await fs.rename(temp, target);
  return target;
}

/**
 * Makes the bridges' directory afresh and installs the script under <stateDir>/bin. The bridges of
 * a previous run are dead (their scripts end as that process's FIFO ends close); their turns, if
 * still running in their containers, are adopted with new bridges.
 */
export async function prepareBridges(stateDir: string): Promise<{ bridgeScript: string; bridgesDir: string }> {
  const dir = bridgesDir(stateDir);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  return { bridgeScript: await installBridgeScript(path.join(stateDir, "bin")), bridgesDir: dir };
}

export interface BridgeRequest {
  argv: string[];
  stdin: Buffer;
}

/** Parses what the script writes to ctl: "<argc>\0" then argc NUL-terminated args, then stdin bytes. */
export function parseBridgeRequest(data: Buffer): BridgeRequest {
  let offset = 0;
  const next = (): string => {
    const end = data.indexOf(0, offset);
    if (end < 0) throw new Error("bridge request is truncated");
    const value = data.subarray(offset, end).toString("utf8");
    offset = end + 1;
    return value;
  };
  const argc = Number(next());
  if (!Number.isInteger(argc) || argc < 0 || argc > 10_000) throw new Error("bridge request has a bad argument count");
  const argv: string[] = [];
  for (let i = 0; i < argc; i += 1) argv.push(next());
  return { argv, stdin: data.subarray(offset) };
}

/** Largest request accepted from the script (argv + prompt). */
const MAX_REQUEST = 16 * 1024 * 1024;

export class ExecBridge {
  private readonly ctl: net.Socket;
  readonly stdout: net.Socket;
  readonly stderr: net.Socket;
  private readonly request: Promise<BridgeRequest>;

  private constructor(readonly dir: string) {
    this.ctl = pipeSocket(path.join(dir, "ctl"), constants.O_RDONLY);
    this.stdout = pipeSocket(path.join(dir, "out"), constants.O_RDWR);
    this.stderr = pipeSocket(path.join(dir, "err"), constants.O_RDWR);
    this.request = new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      this.ctl.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_REQUEST) {
          this.ctl.destroy(new Error("bridge request is over 16 MiB"));
          return;
        }
        chunks.push(chunk);
      });
      this.ctl.on("end", () => {
        try {
          resolve(parseBridgeRequest(Buffer.concat(chunks)));
        } catch (error) {
          reject(error);
        }
      });
      this.ctl.on("error", reject);
      this.ctl.on("close", () => reject(new Error("the codex bridge closed before the SDK started codex")));
    });
    this.request.catch(() => undefined);
    for (const socket of [this.stdout, this.stderr]) socket.on("error", () => undefined);
  }

  /** Makes a private directory of FIFOs for one turn. */
  static async create(dir: string): Promise<ExecBridge> {
    await fs.mkdir(dir, { mode: 0o700 });
    await execa("mkfifo", ["-m", "0600", path.join(dir, "ctl"), path.join(dir, "out"), path.join(dir, "err")]);
    return new ExecBridge(dir);
  }

  get env(): Record<string, string> {
    return { [BRIDGE_ENV]: this.dir };
  }

  /** Resolves with the SDK's argv and stdin once the script has handed them over. */
  received(): Promise<BridgeRequest> {
    return this.request;
  }

  /** Ends the script's stdout/stderr and makes it exit with `code`. */
  async finish(code: number): Promise<void> {
    await fs.writeFile(path.join(this.dir, "rc"), `${code}\n`);
    await Promise.all([endSocket(this.stderr), endSocket(this.stdout)]);
  }

  /** Closes every FIFO (any relay still reading sees EOF) and removes the directory. */
  async dispose(): Promise<void> {
    for (const socket of [this.ctl, this.stdout, this.stderr]) socket.destroy();
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * A FIFO as a non-blocking socket. Read ends are opened O_NONBLOCK: no EOF is reported until a
 * writer has come and gone. Write ends are opened O_RDWR, which never blocks and never fails for
 * want of a reader; closing it gives the reader EOF.
 */
function pipeSocket(fifo: string, flags: number): net.Socket {
  const fd = openSync(fifo, flags | constants.O_NONBLOCK);
  const readable = flags === constants.O_RDONLY;
  return new net.Socket({ fd, readable, writable: !readable });
}

function endSocket(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || socket.writableEnded) {
      resolve();
      return;
    }
    socket.end(() => resolve());
    socket.once("error", () => resolve());
  });
}
