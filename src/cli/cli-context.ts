/** What a command needs from the outside world, passed in so commands stay testable. */
import os from "node:os";
import type { Writable } from "node:stream";

export type SignalName = "SIGINT" | "SIGTERM";

export interface SignalSource {
  on(signal: SignalName, listener: () => void): unknown;
  off(signal: SignalName, listener: () => void): unknown;
}

export interface CliContext {
  stdout: Writable;
  stderr: Writable;
  signals: SignalSource;
  cwd: string;
  uid: number;
  gid: number;
  username: string;
  /** Leaves at once (a second Ctrl-C). */
  exit(code: number): never;
}

export function processContext(): CliContext {
  const uid = typeof process.getuid === "function" ? process.getuid() : 0;
  const gid = typeof process.getgid === "function" ? process.getgid() : 0;
  let username: string;
  try {
    username = os.userInfo().username;
  } catch {
    username = `uid-${uid}`;
  }
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    signals: process,
    cwd: process.cwd(),
    uid,
    gid,
    username,
    exit: (code) => process.exit(code),
  };
}

export function writeLine(stream: Writable, text = ""): void {
  stream.write(`${text}\n`);
}
