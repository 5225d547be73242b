/** Thread rollouts on the host: findRollout reads the tenant's CODEX_HOME and never follows a symlink in it. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { findRollout } from "../../src/codex/threads.js";

const THREAD = "0199a213-81c0-7800-8aa1-bbab2a035a53";
const ROLLOUT = `rollout-2025-10-01T10-00-00-${THREAD}.jsonl`;

describe("findRollout", () => {
  let root: string;
  /** A directory outside the tenant's tree that holds a rollout-looking file. */
  let elsewhere: string;
  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-threads-"));
    elsewhere = path.join(root, "elsewhere");
    await fs.mkdir(path.join(elsewhere, "sessions", "2025"), { recursive: true });
    await fs.writeFile(path.join(elsewhere, "sessions", "2025", ROLLOUT), "");
  });
  after(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  const codexHome = async (name: string): Promise<string> => {
    const dir = path.join(root, name, ".codex");
    await fs.mkdir(path.join(dir, "sessions"), { recursive: true });
    return dir;
  };

  test("finds a rollout in sessions/YYYY/MM/DD, whatever the case of the id", async () => {
    const home = await codexHome("plain");
    const day = path.join(home, "sessions", "2025", "10", "01");
    await fs.mkdir(day, { recursive: true });
    await fs.writeFile(path.join(day, ROLLOUT), "");
    assert.equal(await findRollout(home, THREAD.toUpperCase()), path.join(day, ROLLOUT));
    assert.equal(await findRollout(home, "0199a213-81c0-7800-8aa1-000000000000"), null);
  });

  test("never descends through a directory that is a symlink", async () => {
    const home = await codexHome("linked-dir");
    await fs.symlink(path.join(elsewhere, "sessions", "2025"), path.join(home, "sessions", "2025"));
    assert.equal(await findRollout(home, THREAD), null);
  });

  test("never follows sessions or .codex themselves when they are symlinks", async () => {
    const sessions = path.join(root, "linked-sessions", ".codex");
    await fs.mkdir(sessions, { recursive: true });
    await fs.symlink(path.join(elsewhere, "sessions"), path.join(sessions, "sessions"));
    assert.equal(await findRollout(sessions, THREAD), null);

    const home = path.join(root, "linked-home");
    await fs.mkdir(home);
    await fs.symlink(elsewhere, path.join(home, ".codex"));
    assert.equal(await findRollout(path.join(home, ".codex"), THREAD), null);
  });

  test("a missing CODEX_HOME is no thread, not an error", async () => {
    assert.equal(await findRollout(path.join(root, "missing", ".codex"), THREAD), null);
  });
});
