/**
 * What a running turn needs to outlive the sidecar: one file per turn under `<stateDir>/turns/`
 * (root's, mode 0700; each file 0600, never mounted), written once codex is launched and while it
 * runs, removed when the turn's end is in the journal. A sidecar that starts finds here the turns it
 * can adopt (turn-adoption.ts): where codex runs (container, exec), where its output goes (the
 * turn's files in the workspace's TMPDIR), the digest of its model credential (never the credential:
 * the model proxy keeps accepting it), its deadline and budget, and the tokens counted so far.
 *
 * Everything in a record is the sidecar's own: nothing the tenant wrote is in it. A record that does
 * not parse, or names a version of this format the sidecar does not know, is not adopted.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { TurnTokens } from "../service.js";
import type { TurnBudget } from "./turn-budget.js";
import { isTurnFileBase } from "../codex/turn-files.js";

/** The format of a turn record; a sidecar refuses to adopt a record of a format it does not know. */
export const TURN_RECORD_FORMAT = 1;

export interface TurnRecord {
  format: typeof TURN_RECORD_FORMAT;
  /** The sidecar version that started the turn (for the log of an upgrade). */
  sidecarVersion: string;
  turnId: string;
  workspaceId: string;
  containerId: string;
  /** The launcher exec codex runs as. */
  execId: string;
  /** Base name of the turn's files in the workspace's TMPDIR (turn-files.ts). */
  files: string;
  /** SHA-256 of the turn's model credential (model-proxy/credentials.ts). */
  credentialDigest: string;
  /** The thread the turn resumed, if any (the thread it started is in its events). */
  threadId: string | null;
  /** ms since the epoch. */
  startedAt: number;
  /** ms since the epoch: past it the turn is stopped (timed_out). */
  deadlineAt: number;
  timeoutMs: number;
  budget: TurnBudget;
  /** The tokens the model proxy counted for the turn so far, and their total. */
  tokens: TurnTokens;
  totalTokens: number;
  /** The workspace's cgroup CPU counter at the turn's start (ns), for the CPU budget and accounting. */
  cpuStartNs: number | null;
}

export function turnRecordsDir(stateDir: string): string {
  return path.join(stateDir, "turns");
}

export class TurnRecords {
  /** Writes in flight, by turn: a record is written whole, one write at a time, the last one winning. */
  readonly #writing = new Map<string, { running: Promise<void>; next: TurnRecord | null }>();

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Opens `<stateDir>/turns` and reads the records an earlier sidecar left. */
  static async openIn(stateDir: string, log: Logger): Promise<{ records: TurnRecords; saved: TurnRecord[] }> {
    const records = new TurnRecords(turnRecordsDir(stateDir), log);
    await records.open();
    return { records, saved: await records.list() };
  }

  /** Makes the directory, root's and 0700 (refusing a symlink or one that is not ours). */
  async open(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const stat = await fs.lstat(this.dir);
    if (!stat.isDirectory()) throw new Error(`the turn records dir ${this.dir} is not a directory`);
    if (typeof process.getuid === "function" && stat.uid !== process.getuid())
      throw new Error(`the turn records dir ${this.dir} is not owned by the sidecar's user`);
    await fs.chmod(this.dir, 0o700);
  }

  /** Every record that parses; the others are logged and removed. */
  async list(): Promise<TurnRecord[]> {
    const records: TurnRecord[] = [];
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch {
      return records;
    }
    for (const name of names) {
      const file = path.join(this.dir, name);
      if (!name.endsWith(".json")) {
        // A temporary file a killed sidecar left.
        if (name.endsWith(".tmp")) await fs.rm(file, { force: true }).catch(() => undefined);
        continue;
      }
      try {
        records.push(parseTurnRecord(await fs.readFile(file, "utf8"), name.slice(0, -".json".length)));
      } catch (error) {
        this.log.warn("ignoring a turn record that cannot be adopted", { file: name, error: errorMessage(error) });
        await fs.rm(file, { force: true }).catch(() => undefined);
      }
    }
    return records;
  }

  /** Writes (or rewrites) a turn's record; resolves once it is in place. Never throws: logged. */
  write(record: TurnRecord): Promise<void> {
    const pending = this.#writing.get(record.turnId);
    if (pending) {
      pending.next = record;
      return pending.running;
    }
    const entry = { running: Promise.resolve(), next: record as TurnRecord | null };
    entry.running = (async () => {
      while (entry.next !== null) {
        const next = entry.next;
        entry.next = null;
        await this.#writeNow(next);
      }
      this.#writing.delete(record.turnId);
    })();
    this.#writing.set(record.turnId, entry);
    return entry.running;
  }

  /** Removes a turn's record (its end is in the journal). Never throws. */
  async remove(turnId: string): Promise<void> {
    await this.#writing.get(turnId)?.running;
    await fs.rm(this.#file(turnId), { force: true }).catch(() => undefined);
  }

  async #writeNow(record: TurnRecord): Promise<void> {
    const file = this.#file(record.turnId);
    const temp = `${file}.${process.pid}.tmp`;
    try {
      await fs.writeFile(temp, `${JSON.stringify(record)}\n`, { mode: 0o600, flag: "w" });
      await fs.rename(temp, file);
    } catch (error) {
      this.log.warn("cannot write a turn record: the turn would not survive a sidecar restart", {
        turnId: record.turnId,
        error: errorMessage(error),
      });
      await fs.rm(temp, { force: true }).catch(() => undefined);
    }
  }

  #file(turnId: string): string {
    if (!/^[A-Za-z0-9._-]{1,200}$/.test(turnId) || turnId.startsWith("."))
      throw new Error(`not a turn id for a record: ${JSON.stringify(turnId)}`);
    return path.join(this.dir, `${turnId}.json`);
  }
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0;
const isNullableCount = (v: unknown): v is number | null => v === null || isCount(v);
const isText = (v: unknown): v is string => typeof v === "string" && v.length > 0 && v.length <= 1024;

/** A record's text as a TurnRecord; throws naming what is wrong. */
export function parseTurnRecord(text: string, turnId: string): TurnRecord {
  const value = JSON.parse(text) as Partial<TurnRecord> | null;
  if (typeof value !== "object" || value === null) throw new Error("not an object");
  if (value.format !== TURN_RECORD_FORMAT)
    throw new Error(`format ${JSON.stringify(value.format)}, this sidecar knows ${TURN_RECORD_FORMAT}`);
  if (value.turnId !== turnId) throw new Error("its turn id is not its file's");
  for (const key of ["sidecarVersion", "workspaceId", "containerId", "execId", "credentialDigest"] as const)
    if (!isText(value[key])) throw new Error(`${key} is missing`);
  if (typeof value.files !== "string" || !isTurnFileBase(value.files)) throw new Error("files is not a turn file name");
  if (value.threadId !== null && typeof value.threadId !== "string") throw new Error("threadId is not a string");
  for (const key of ["startedAt", "deadlineAt", "timeoutMs", "totalTokens"] as const)
    if (!isCount(value[key])) throw new Error(`${key} is not a count`);
  if (!isNullableCount(value.cpuStartNs)) throw new Error("cpuStartNs is not a count");
  const budget = value.budget;
  if (
    typeof budget !== "object" ||
    budget === null ||
    !isNullableCount(budget.tokens) ||
    !isNullableCount(budget.cpuSeconds)
  )
    throw new Error("budget is malformed");
  const tokens = value.tokens;
  if (
    typeof tokens !== "object" ||
    tokens === null ||
    !isCount(tokens.input) ||
    !isCount(tokens.cached) ||
    !isCount(tokens.output) ||
    !isCount(tokens.reasoning)
  )
    throw new Error("tokens is malformed");
  return value as TurnRecord;
}
