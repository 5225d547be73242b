/** Following the engine's build and pull streams: their lines, and the error reported inside them. */
import type { Docker } from "./engine.js";

/** Colour codes the classic builder wraps a RUN step's stderr in: noise in a JSON log line. */
// eslint-disable-next-line no-control-regex
const ANSI_ESCAPE = /\u001b\[[0-9;]*[A-Za-z]/g;
/** Follows a pull or build stream to its end; rejects with the first `error` the engine reported. */
export function followStream(
  docker: Docker,
  stream: NodeJS.ReadableStream,
  onLine: (line: string) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let failure: string | null = null;
    let partial = "";
    const emit = (text: string): void => {
      const lines = (partial + text).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) emitLine(line);
    };
    const emitLine = (line: string): void => {
      const clean = line.replace(ANSI_ESCAPE, "").trimEnd();
      if (clean.trim() !== "") onLine(clean);
    };
    docker.modem.followProgress(
      stream,
      (error: Error | null) => {
        emitLine(partial);
        if (error) reject(error);
        else if (failure !== null) reject(new BuildFailure(failure));
        else resolve();
      },
      (event: {
        stream?: unknown;
        status?: unknown;
        id?: unknown;
        progressDetail?: unknown;
        error?: unknown;
        errorDetail?: { message?: unknown };
      }) => {
        if (typeof event.stream === "string") emit(event.stream);
        else if (typeof event.status === "string") {
          // Pull progress bars (progressDetail with numbers) would flood the log: keep status changes only.
          const detail = event.progressDetail as { current?: unknown } | undefined;
          if (detail?.current === undefined)
            onLine(typeof event.id === "string" ? `${event.id}: ${event.status}` : event.status);
        }
        if (event.error !== undefined || event.errorDetail !== undefined) {
          const message =
            typeof event.errorDetail?.message === "string" ? event.errorDetail.message : String(event.error);
          failure ??= message;
          onLine(`ERROR: ${message}`);
        }
      },
    );
  });
}

/** An error the engine reported inside a build or pull stream (the HTTP call itself succeeded). */
export class BuildFailure extends Error {
  override readonly name = "BuildFailure";
}
