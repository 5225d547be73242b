/** Argument parsing for the commands: node:util parseArgs, with its errors turned into UsageError. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./cli-errors.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Flags every client command takes. */
export const CLIENT_OPTIONS = {
  socket: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies Options;

export function parseCommandArgs<T extends ParseArgsConfig & { options: Options }>(
  command: string,
  config: T,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs<T>({ allowPositionals: true, strict: true, ...config });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error), command);
  }
}

export function parseNonNegativeInteger(flag: string, raw: string): number {
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw)))
    throw new UsageError(`${flag} must be a whole number, got ${JSON.stringify(raw)}`);
  return Number(raw);
}
