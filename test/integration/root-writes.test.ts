/**
 * The sidecar runs as root on the host and never writes, chmods or deletes through a name the
 * tenant controls (docs/security.md, "Host file operations on tenant-controlled paths"). A process of the tenant's runs in the workspace container for the whole test
 * and keeps putting symlinks to a host file the test owns in place of every name root might use
 * for a turn's output schema: the old `.alive-turn-*` directories in TMPDIR the moment they appear,
 * and whatever it can reach of the run dir (/run/alive/turns). Symlinks are resolved by root on the
 * host, so they point at a host path the container cannot see.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { promises as fs, type Stats } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import type { TurnResult } from "../../src/service.js";
import { workspacePaths, type WorkspacePaths } from "../../src/workspace/paths.js";
import type { ResponsesStub } from "../support/responses-stub.js";
import {
  TEST_GID,
  TEST_UID,
  execIn,
  startGatewayStub,
  startTestSidecar,
  type TestSidecar,
} from "../support/sidecar.js";
import { waitFor } from "../support/wait.js";

const RACE_TURNS = 50;

/**
 * The tenant's racer (CommonJS, run by the image's node as the workspace uid). argv: the host
 * directory to aim at, the file to report its state in. It reacts to inotify events and also polls
 * every millisecond, so it is at a new name within microseconds of its creation.
 */
const RACER_SOURCE = String.raw`
const fs = require("node:fs");
const path = require("node:path");
const [victimDir, stateFile] = process.argv.slice(2);
const victimFile = path.join(victimDir, "schema.json");
const TURNS = "/run/alive/turns";
const state = { pid: process.pid, ticks: 0, tmpSwaps: 0, runAttempts: 0, runPlanted: 0, runNamesSeen: 0, rootOwnedInTmp: [] };
const seenTmp = new Set();
const seenRun = new Set();
let aside = 0;

function attackTmp(name) {
  if (seenTmp.has(name) || name.startsWith(".racer-")) return;
  seenTmp.add(name);
  const full = path.join("/tmp", name);
  let stat;
  try { stat = fs.lstatSync(full); } catch { return; }
  // A turn's stdio files are root's for the moment between their O_EXCL|O_NOFOLLOW create and the
  // fchown that hands them over (src/codex/turn-files.ts); anything else root made here is a finding.
  if (stat.uid === 0 && !name.startsWith(".alive-codex-")) state.rootOwnedInTmp.push(name);
  // The old sidecar's per-turn directory: move it away and leave a symlink to the host file's dir
  // in its place, so root's copy (and chmod) of schema.json lands there.
  if (name.startsWith(".alive-turn-") && stat.isDirectory()) {
    try {
      fs.renameSync(full, "/tmp/.racer-aside-" + aside++);
      fs.symlinkSync(victimDir, full);
      state.tmpSwaps += 1;
    } catch {}
  }
}

function plant(target, name) {
  state.runAttempts += 1;
  try { fs.rmSync(name, { force: true }); } catch {}
  try { fs.symlinkSync(target, name); state.runPlanted += 1; } catch {}
}

function attackRun() {
  let names;
  try { names = fs.readdirSync(TURNS); } catch { plant(victimDir, TURNS); return; }
  for (const name of names) {
    if (!seenRun.has(name)) { seenRun.add(name); state.runNamesSeen += 1; }
    plant(victimFile, path.join(TURNS, name));
  }
  plant(victimFile, path.join(TURNS, "next-schema.json"));
}

function scanTmp() {
  try { for (const name of fs.readdirSync("/tmp")) attackTmp(name); } catch {}
}

function report() {
  const temp = stateFile + ".tmp";
  fs.writeFileSync(temp, JSON.stringify(state));
  fs.renameSync(temp, stateFile);
}

// What TMPDIR held before: the engine's mount points for a workspace path under /tmp (the test's
// workspace root is there), made when the container was created, not by the sidecar during turns.
for (const name of fs.readdirSync("/tmp")) seenTmp.add(name);
fs.watch("/tmp", (_event, name) => { if (name) attackTmp(String(name)); });
setInterval(() => {
  state.ticks += 1;
  scanTmp();
  attackRun();
  if (state.ticks % 20 === 0) report();
}, 1);
report();
`;

interface RacerState {
  pid: number;
  ticks: number;
  tmpSwaps: number;
  runAttempts: number;
  runPlanted: number;
  runNamesSeen: number;
  rootOwnedInTmp: string[];
}

/** What a chmod, a write, a truncate or a replace would change. */
function fingerprint(stat: Stats): Record<string, number> {
  return {
    mode: stat.mode,
    size: stat.size,
    uid: stat.uid,
    gid: stat.gid,
    ino: stat.ino,
    mtimeMs: stat.mtimeMs,
    ctimeMs: stat.ctimeMs,
  };
}

describe("no root file operation through a path the tenant controls", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;
  let paths: WorkspacePaths;
  let workspaceId: string;
  let containerId: string;
  let victimDir: string;
  let victimFile: string;
  const victimContent = `the test's own host file: never written by the sidecar ${randomBytes(4).toString("hex")}\n`;
  const stateFile = "/tmp/.racer-state.json";

  const readRacer = async (): Promise<RacerState> =>
    JSON.parse(await fs.readFile(path.join(paths.tmp, path.basename(stateFile)), "utf8")) as RacerState;

  before(async () => {
    stub = await startGatewayStub();
    t = await startTestSidecar({ stub });
    victimDir = path.join(t.root, "victim");
    victimFile = path.join(victimDir, "schema.json");
    await fs.mkdir(victimDir, { mode: 0o700 });
    await fs.writeFile(victimFile, victimContent, { mode: 0o600 });
    await fs.chmod(victimFile, 0o600);

    const ws = await t.workspace();
    workspaceId = ws.workspaceId;
    paths = workspacePaths(t.stateDir, workspaceId);
    const racer = path.join(ws.workspacePath, "racer.cjs");
    await fs.writeFile(racer, RACER_SOURCE, { mode: 0o644 });
    ({ containerId } = await t.sidecar.service.ensureWorkspace(ws));
    // Started outside any turn, so no turn's sweep stops it: a tenant's long-lived background job.
    const started = await execIn(
      t.docker,
      containerId,
      ["/bin/sh", "-c", `setsid node ${racer} ${victimDir} ${stateFile} </dev/null >/tmp/.racer-log 2>&1 &`],
      `${TEST_UID}:${TEST_GID}`,
    );
    assert.equal(started.exitCode, 0, started.stderr);
    await waitFor(async () => (await readRacer()).ticks > 0, { timeoutMs: 10_000, what: "the racer to run" });
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
  });

  test(
    `${RACE_TURNS} turns with an output schema complete while the tenant swaps names for symlinks; the host file is never written or chmodded`,
    { timeout: 15 * 60_000 },
    async (ctx) => {
      const before = fingerprint(await fs.stat(victimFile));
      const racerAtStart = await readRacer();
      for (let i = 0; i < RACE_TURNS; i += 1) {
        const key = `answer${i}`;
        const schema = {
          type: "object",
          properties: { [key]: { type: "string" } },
          required: [key],
          additionalProperties: false,
        };
        stub.reset();
        stub.script({ kind: "message", text: JSON.stringify({ [key]: `value ${i}` }) });
        const result: TurnResult = await t.sidecar.service.runTurn(
          { workspaceId, turnId: `race-${i}`, input: `answer ${i}`, options: { outputSchema: schema } },
          { onEvent: () => undefined },
        );
        assert.equal(await fs.readFile(victimFile, "utf8"), victimContent, `turn ${i}: the host file was written`);
        assert.deepEqual(
          fingerprint(await fs.stat(victimFile)),
          before,
          `turn ${i}: the host file was changed (chmod, write or replace)`,
        );
        assert.equal(result.status, "completed", `turn ${i}: ${JSON.stringify(result.error)}`);
        assert.deepEqual(
          JSON.parse(result.finalResponse),
          { [key]: `value ${i}` },
          `turn ${i} has its structured output`,
        );
        assert.deepEqual(
          stub.requests[0]?.body.text?.format?.schema,
          schema,
          `turn ${i}: codex sent the model exactly this turn's schema`,
        );
      }
      assert.deepEqual(await fs.readdir(victimDir), ["schema.json"], "nothing was made beside the host file");
      assert.deepEqual(await fs.readdir(paths.turnFiles), [], "every turn's schema file is gone");

      // The racer ran the whole time, saw the sidecar's files, and could plant nothing where root writes.
      const atStart = racerAtStart.ticks;
      const racer = await waitFor(
        async () => {
          const now = await readRacer();
          return now.ticks > atStart + 100 ? now : null;
        },
        { timeoutMs: 10_000, what: "the racer to still be running" },
      );
      ctx.diagnostic(
        `racer: ${racer.ticks} ticks, ${racer.runNamesSeen} schema files seen in /run/alive/turns, ${racer.runAttempts} plants tried, ${racer.tmpSwaps} swaps in TMPDIR`,
      );
      assert.ok(racer.runNamesSeen > 0, "the racer saw the sidecar's schema files, so it raced the real names");
      assert.equal(racer.runPlanted, 0, "the tenant could not plant anything in the run dir");
      assert.equal(racer.tmpSwaps, 0, "no .alive-turn-* directory ever appeared in TMPDIR");
      assert.deepEqual(racer.rootOwnedInTmp, [], "root made nothing in TMPDIR while turns ran but the turns' files");
    },
  );

  test("what the tenant left at the shell rc names is moved aside, and purgeHome never follows a symlink out of HOME", async () => {
    const ws = await t.workspace();
    const wsPaths = workspacePaths(t.stateDir, ws.workspaceId);
    const before = fingerprint(await fs.stat(victimFile));
    // HOME from an earlier container: .bashrc a directory holding a symlink to the host dir, .profile a symlink to the host file.
    await fs.mkdir(path.join(wsPaths.home, ".bashrc"), { recursive: true });
    await fs.symlink(victimDir, path.join(wsPaths.home, ".bashrc", "inner"));
    await fs.symlink(victimFile, path.join(wsPaths.home, ".profile"));
    await fs.mkdir(path.join(wsPaths.home, "deep"));
    await fs.symlink(victimDir, path.join(wsPaths.home, "deep", "link"));
    await execa("chown", ["-hR", `${TEST_UID}:${TEST_GID}`, wsPaths.root]);

    const { containerId: id } = await t.sidecar.service.ensureWorkspace(ws);
    const home = await fs.readdir(wsPaths.home);
    const bashrcAside = home.find((n) => n.startsWith(".bashrc.alive-moved-"));
    assert.ok(bashrcAside, `the .bashrc directory was moved aside: ${home.join(" ")}`);
    assert.equal(
      await fs.readlink(path.join(wsPaths.home, bashrcAside, "inner")),
      victimDir,
      "its content is the tenant's, untouched",
    );
    assert.ok(
      home.some((n) => n.startsWith(".profile.alive-moved-")),
      "the .profile symlink was moved aside",
    );
    const rc = await execIn(t.docker, id, ["/bin/sh", "-c", "cat ~/.bashrc ~/.profile"], `${TEST_UID}:${TEST_GID}`);
    assert.match(rc.stdout, /Managed by alive-codex-sidecar/);

    await t.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId, purgeHome: true });
    await assert.rejects(fs.lstat(wsPaths.root), { code: "ENOENT" });
    assert.deepEqual(await fs.readdir(victimDir), ["schema.json"], "nothing beside the host file was deleted");
    assert.equal(await fs.readFile(victimFile, "utf8"), victimContent);
    assert.deepEqual(fingerprint(await fs.stat(victimFile)), before);
  });

  test("the run dir stays root-owned and not writable by the tenant", async () => {
    for (const dir of [paths.run, paths.turnFiles]) {
      const stat = await fs.lstat(dir);
      assert.ok(stat.isDirectory(), `${dir} is a real directory`);
      assert.equal(stat.uid, 0, `${dir} owner`);
      assert.equal(stat.mode & 0o7777, 0o755, `${dir} mode`);
    }
    const write = await execIn(
      t.docker,
      containerId,
      ["/bin/sh", "-c", "touch /run/alive/turns/x || ln -s / /run/alive/turns/y || exit 9"],
      `${TEST_UID}:${TEST_GID}`,
    );
    assert.equal(write.exitCode, 9, "the tenant cannot write in /run/alive/turns");
  });
});
