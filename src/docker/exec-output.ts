/** A short command's whole output, collected from a started exec: for probes and sweeps, never for a turn's stream. */
import type { Readable } from "node:stream";
import type { EnginePort, ExecOptions, ExecResult, StartedExec } from "./engine-port.js";

const MAX_BUFFERED = 1024 * 1024;

/** Waits for the process to end and collects its output (capped at 1 MiB per stream). */
export async function collectExecOutput(started: StartedExec): Promise<ExecResult> {
  const collect = (readable: Readable): Promise<string> =>
    new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      readable.on("data", (chunk: Buffer) => {
        if (size < MAX_BUFFERED) chunks.push(chunk);
        size += chunk.length;
      });
      readable.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    });
  const [stdout, stderr, exitCode] = await Promise.all([
    collect(started.stdout),
    collect(started.stderr),
    started.exit,
  ]);
  return { exitCode, stdout, stderr };
}

/** Runs a short command in the container through the engine port and collects its output. */
export async function runCommand(
  engine: Pick<EnginePort, "exec">,
  containerId: string,
  options: ExecOptions,
): Promise<ExecResult> {
  return collectExecOutput(await engine.exec(containerId, options));
}
