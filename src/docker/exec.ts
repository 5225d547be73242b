/** Running processes inside a container through the engine's exec API (no docker CLI). */
import { PassThrough, type Duplex } from "node:stream";
import type Docker from "dockerode";
import type { ExecOptions, ExecResult, StartedExec } from "./engine-port.js";
import { toSidecarError } from "./engine.js";
import { collectExecOutput } from "./exec-output.js";
import { ExecStreams } from "./exec-streams.js";

export type { ExecOptions, ExecResult, StartedExec };

/** The key under which an exec's connection carries the container and command it ran. */
export const EXEC_COMMAND = Symbol.for("alive-codex.exec-command");

/** Starts a process in the container and streams its output (demultiplexed: no TTY). */
export async function startExec(docker: Docker, containerId: string, options: ExecOptions): Promise<StartedExec> {
  const container = docker.getContainer(containerId);
  const withStdin = options.stdin !== undefined;
  const registry = ExecStreams.of(docker);
  // Until the client's start settles, its connection is not ours to close: shutdown waits for it.
  const settled = registry.begin();
  let exec: Docker.Exec;
  let stream: NodeJS.ReadWriteStream;
  let started = false;
  try {
    exec = await container.exec({
      Cmd: options.cmd,
      Env: options.env ?? [],
      ...(options.user === undefined ? {} : { User: options.user }),
      ...(options.workingDir === undefined ? {} : { WorkingDir: options.workingDir }),
      AttachStdin: withStdin,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      ...(options.signal === undefined ? {} : { abortSignal: options.signal }),
    });
    // The start is not handed the signal: aborted mid-upgrade, the engine client drops the socket
    // the engine has already upgraded, and the process's output keeps it open (CI runs left such
    // connections behind). An abort ends the wait here instead, and a socket arriving later is closed.
    const startSettled = registry.expect(containerId, exec.id);
    const starting = exec.start({ hijack: true, stdin: withStdin }) as Promise<NodeJS.ReadWriteStream>;
    started = true;
    const waiting = untilAborted(starting, options.signal, (late) => (late as unknown as Duplex).destroy());
    // After untilAborted's own handler: a late socket is destroyed, or ours, before this settles.
    const both = (): void => {
      startSettled();
      settled();
    };
    starting.then(both, both);
    stream = await waiting;
  } catch (error) {
    if (!started) settled();
    throw toSidecarError(error, `run ${options.cmd[0] ?? "a command"} in container ${containerId.slice(0, 12)}`);
  }
  // The engine may never end this connection (see exec-streams.ts): it is tracked until it closes,
  // and an abort after the start closes it too. The client hands over the upgraded socket itself,
  // or, when the engine answers without upgrading, the response on it: the socket is what is closed.
  const connection = (stream as { socket?: Duplex }).socket ?? (stream as unknown as Duplex);
  registry.add(containerId, connection);
  // What ran on this connection, for the test suite's open-handle report (test/support/exit-check.ts).
  Object.defineProperty(connection, EXEC_COMMAND, {
    value: `${containerId.slice(0, 12)}: ${options.cmd.join(" ").slice(0, 160)}`,
  });
  closeOnAbort(connection, options.signal);
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  docker.modem.demuxStream(stream, stdout, stderr);
  if (withStdin && options.stdin !== "open") {
    stream.write(options.stdin as Buffer | string);
    stream.end();
  }
  const exit = new Promise<number | null>((resolve) => {
    let settled = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      stdout.end();
      stderr.end();
      // The output is complete: nothing more comes on this connection, so it is closed here rather
      // than left for the engine to close (a socket still open after the process is a leaked descriptor).
      connection.destroy();
      exec.inspect().then(
        (info) => resolve(info.Running ? null : (info.ExitCode ?? null)),
        () => resolve(null),
      );
    };
    stream.on("end", finish);
    stream.on("close", finish);
    stream.on("error", finish);
  });
  return { id: exec.id, stdin: options.stdin === "open" ? stream : null, stdout, stderr, exit };
}

/** `promise`, or an AbortError once `signal` aborts; what the promise gives after that goes to `discard`. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined, discard: (late: T) => void): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void =>
      reject(
        signal.reason instanceof Error ? signal.reason : new DOMException("The operation was aborted", "AbortError"),
      );
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) discard(value);
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

function closeOnAbort(stream: Duplex, signal: AbortSignal | undefined): void {
  if (!signal) return;
  if (signal.aborted) {
    stream.destroy();
    return;
  }
  const onAbort = (): void => void stream.destroy();
  signal.addEventListener("abort", onAbort, { once: true });
  stream.once("close", () => signal.removeEventListener("abort", onAbort));
}

/** Runs a short command and collects its output (capped at 1 MiB per stream). */
export async function runExec(docker: Docker, containerId: string, options: ExecOptions): Promise<ExecResult> {
  return collectExecOutput(await startExec(docker, containerId, options));
}

/** Joins the engine's multiplexed stream frames (no TTY: 8-byte header, then payload) as text. */
export function demuxFrames(raw: Buffer | string): string {
  if (typeof raw === "string") return raw;
  const out: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= raw.length) {
    const size = raw.readUInt32BE(offset + 4);
    out.push(raw.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return Buffer.concat(out).toString("utf8");
}
