/**
 * The state dir's format: what a sidecar upgrading (or downgrading) in place can rely on. Turns
 * outlive the sidecar, so the next one reads what this one left: the journal, the turn records
 * (turns/turn-records.ts), the workspaces' run dirs.
 *
 *   1  0.1.0 and before: the journal and run dirs; no turn records (a running turn ended with its sidecar).
 *   2  the turn records under <stateDir>/turns/, the turns' files in each workspace's TMPDIR.
 *
 * A state dir without the file is format 1. A sidecar takes any format up to its own and writes its
 * own; it refuses a newer one, naming both versions: an older sidecar would end or sweep the turns of
 * a newer one it does not understand.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import type { Logger } from "./log.js";

export const STATE_FORMAT = 2;
const FILE = "state-format.json";

interface FormatFile {
  format: number;
  writtenBy: string;
}

export class StateFormatError extends Error {}

/** Checks the state dir's format against this sidecar's and records this one's. Returns the format found. */
export async function claimStateFormat(stateDir: string, version: string, log?: Logger): Promise<number> {
  const file = path.join(stateDir, FILE);
  let found: FormatFile = { format: 1, writtenBy: "0.1.0 or earlier" };
  try {
    const parsed = JSON.parse(await fs.readFile(file, "utf8")) as Partial<FormatFile>;
    if (!Number.isInteger(parsed.format) || typeof parsed.writtenBy !== "string")
      throw new StateFormatError(`${file} is not a state format file: remove it only if this state dir is unused`);
    found = parsed as FormatFile;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  if (found.format > STATE_FORMAT)
    throw new StateFormatError(
      `the state dir ${stateDir} was last used by alive-codex-sidecar ${found.writtenBy} (state format ${found.format}); ` +
        `this sidecar (${version}) knows state formats up to ${STATE_FORMAT} and would lose its running turns: ` +
        `run ${found.writtenBy} or later on it, or give this one another state dir`,
    );
  const temp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(temp, `${JSON.stringify({ format: STATE_FORMAT, writtenBy: version })}\n`, { mode: 0o600 });
  await fs.rename(temp, file);
  if (found.format < STATE_FORMAT)
    log?.info("state dir upgraded", { from: found.format, to: STATE_FORMAT, writtenBy: found.writtenBy });
  return found.format;
}
