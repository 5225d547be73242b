/** Reading a request body into memory, bounded: the body policy must see the whole of it before anything is forwarded. */
import type { IncomingMessage } from "node:http";

/** Reads a request body of at most `maxBytes`; stops reading past it. */
export function readBody(
  req: IncomingMessage,
  maxBytes: number,
  signal: AbortSignal,
): Promise<Buffer | "too_large" | "aborted"> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.resolve("too_large");
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: Buffer | "too_large" | "aborted"): void => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onAborted);
      signal.removeEventListener("abort", onAborted);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) finish("too_large");
      else chunks.push(chunk);
    };
    const onEnd = (): void => finish(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onAborted = (): void => finish("aborted");
    if (signal.aborted) return finish("aborted");
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onAborted);
    signal.addEventListener("abort", onAborted, { once: true });
  });
}
