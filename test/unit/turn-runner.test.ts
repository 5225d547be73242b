/**
 * The turns' admission, through their facade (src/turns/turns.ts), over an in-memory engine
 * (test/support/fake-engine.ts): what refuses a turn refuses it before anything is made, held or
 * journaled. Turns themselves (codex, the bridge, cancel and
 * its sweep) run against the real engine and the real codex (test/integration/turns.test.ts).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Launchers } from "../../src/codex/launcher.js";
import { NO_BUDGET_LIMITS } from "../../src/turns/turn-budget.js";
import { Turns } from "../../src/turns/turns.js";
import { TurnJournal } from "../../src/journal/turn-journal.js";
import type { TurnRef } from "../../src/egress/workspace-endpoints.js";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import { TurnCredentials } from "../../src/model-proxy/credentials.js";
import type { RunTurnParams, TurnHooks, WorkspaceParams } from "../../src/service.js";
import { WorkspaceManager } from "../../src/workspace/manager.js";
import { WorkspaceRuntimes } from "../../src/workspace/runtimes.js";
import { FakeEngine } from "../support/fake-engine.js";
import { unitManagerOptions } from "../support/fake-workspaces.js";

const log = createLogger({ level: "error", write: () => undefined });
const hooks: TurnHooks = { onEvent: () => undefined };

function refusedWith(code: number, field?: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof SidecarError, String(error));
    assert.equal(error.code, code, error.message);
    if (field !== undefined) assert.equal(error.data?.field, field);
    return true;
  };
}

describe("turn admission over an in-memory engine", () => {
  let stateDir: string;
  const closers: Array<() => Promise<void>> = [];
  const { uid, gid } = os.userInfo();

  before(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-turns-"));
  });
  after(async () => {
    for (const close of closers) await close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  async function setUp(): Promise<{ engine: FakeEngine; workspaces: WorkspaceManager; turns: Turns }> {
    const engine = new FakeEngine();
    const workspaces = new WorkspaceManager(
      await unitManagerOptions(stateDir, log, {
        engine,
        runtimes: new WorkspaceRuntimes(engine, { defaultRuntime: null, allowed: ["runc"] }),
      }),
    );
    await workspaces.start();
    const journal = new TurnJournal({
      dir: await fs.mkdtemp(path.join(stateDir, "journal-")),
      limits: { maxBytesPerTurn: 1 << 20, maxAgeMs: 0, maxTurns: 100 },
      log,
    });
    await journal.open({ code: "sidecar_restarted", message: "restarted" });
    const turns = new Turns({
      engine,
      journal,
      records: null,
      sidecarVersion: "test",
      launchers: new Launchers(engine),
      log,
      workspaces,
      bridgeScript: path.join(stateDir, "no-bridge"),
      bridgesDir: path.join(stateDir, "bridges"),
      credentials: new TurnCredentials<TurnRef>(),
      trustedDirs: [],
      aliveApiUrl: null,
      aliveMcpToken: null,
      nodePath: null,
      defaultModel: null,
      turnTimeoutMs: 60_000,
      maxTurns: 4,
      stallWatch: "off",
      outputLineMaxBytes: 1024 * 1024,
      budgets: NO_BUDGET_LIMITS,
    });
    closers.push(async () => {
      await turns.shutdown(0);
      journal.close();
      await workspaces.close();
    });
    return { engine, workspaces, turns };
  }

  let next = 0;
  function workspace(): WorkspaceParams {
    next += 1;
    const workspaceId = `turns-${next}`;
    return { workspaceId, userId: "tenant", uid, gid, workspacePath: path.join(stateDir, "tenants", workspaceId) };
  }

  test("a turn refused at admission makes nothing, not even the workspace it carries", async () => {
    const { engine, workspaces, turns } = await setUp();
    const ws = workspace();
    const params: RunTurnParams = {
      workspaceId: ws.workspaceId,
      workspace: ws,
      input: [{ type: "local_image", path: "/etc/passwd" }],
    };
    await assert.rejects(turns.run(params, hooks), refusedWith(ErrorCode.notAllowed));
    const outside: RunTurnParams = {
      workspaceId: ws.workspaceId,
      workspace: ws,
      input: "hi",
      options: { additionalDirectories: ["/etc"] },
    };
    await assert.rejects(turns.run(outside, hooks), refusedWith(ErrorCode.notAllowed));
    assert.equal(engine.count("create"), 0);
    assert.equal(workspaces.find(ws.workspaceId), undefined);
    assert.equal(turns.running, 0);
    assert.deepEqual(turns.list({ workspaceId: ws.workspaceId }), [], "nothing was journaled");
  });

  test("a turn for a workspace never ensured is -32002; one for a workspace running a turn is -32003, and takes nothing", async () => {
    const { engine, workspaces, turns } = await setUp();
    const ws = workspace();
    await assert.rejects(
      turns.run({ workspaceId: ws.workspaceId, input: "hi" }, hooks),
      refusedWith(ErrorCode.unknownWorkspace),
    );
    await workspaces.ensure(ws);
    workspaces.acquireTurn(ws.workspaceId, "held");
    await assert.rejects(
      turns.run({ workspaceId: ws.workspaceId, input: "hi" }, hooks),
      refusedWith(ErrorCode.workspaceBusy),
    );
    assert.equal(workspaces.get(ws.workspaceId).activeTurnId, "held");
    assert.equal(engine.count("exec"), 1, "only the isolation probe ran in the container");
    await assert.rejects(turns.cancel("no-such-turn"), refusedWith(ErrorCode.unknownTurn, "turnId"));
  });

  test("a read-only turn is refused where codex's sandbox cannot work, probed once per container, before the workspace is held", async () => {
    const { engine, workspaces, turns } = await setUp();
    const ws = workspace();
    let probes = 0;
    engine.onExec = (_container, options) => {
      if (!options.cmd[0]?.endsWith("/bwrap")) return undefined;
      probes += 1;
      return { exitCode: 1, stdout: "", stderr: "bwrap: No permissions to create new namespace" };
    };
    const params: RunTurnParams = {
      workspaceId: ws.workspaceId,
      workspace: ws,
      input: "hi",
      options: { sandboxMode: "read-only" },
    };
    for (let i = 0; i < 2; i++) {
      await assert.rejects(turns.run(params, hooks), (error: unknown) => {
        refusedWith(ErrorCode.notAllowed, "options.sandboxMode")(error);
        assert.match(String((error as SidecarError).data?.reason), /No permissions to create new namespace/);
        return true;
      });
    }
    assert.equal(probes, 1, "the probe's answer is kept per container");
    assert.equal(workspaces.get(ws.workspaceId).activeTurnId, null);
    assert.equal(engine.count("create"), 1);
  });
});
