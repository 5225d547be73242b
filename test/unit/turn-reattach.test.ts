/**
 * SidecarClient.runTurn(..., { reattach: true }) over the real RPC server and a real TurnHub (journal
 * on a tmp dir), the turns played by the fake service. The client reaches the server through a
 * socket relay the test can cut, as a lost connection would be.
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { SidecarClient, SidecarConnectionError, type TurnEventMessage } from "../../src/index.js";
import { createLogger } from "../../src/log.js";
import { TurnHub } from "../../src/turns/turn-hub.js";
import { TurnJournal } from "../../src/journal/turn-journal.js";
import { startRpcServer, type RpcServer } from "../../src/rpc/server.js";
import type { RunTurnParams, TurnHooks, TurnInfo, TurnResult, TurnSummary } from "../../src/service.js";
import { FakeSidecarService, startTestServer, type TestServer } from "../support/fake-service.js";
import { waitFor } from "../support/wait.js";

/** The fake service, its turns journaled and attachable through a TurnHub. */
class JournaledService extends FakeSidecarService {
  hub!: TurnHub;
  readonly attaches: Array<{ turnId: string; afterSeq?: number }> = [];
  override runTurn(params: RunTurnParams, hooks: TurnHooks): Promise<TurnResult> {
    return this.hub.run(params, hooks);
  }
  baseRunTurn(params: RunTurnParams, hooks: TurnHooks): Promise<TurnResult> {
    return super.runTurn(params, hooks);
  }
  override getTurn(params: { turnId: string }): Promise<TurnInfo> {
    return this.hub.get(params.turnId);
  }
  override async listTurns(params: { workspaceId?: string }): Promise<{ turns: TurnSummary[] }> {
    return { turns: this.hub.list(params) };
  }
  override attachTurn(
    params: { turnId: string; afterSeq?: number },
    hooks: { onEvent: TurnHooks["onEvent"]; signal: AbortSignal },
  ): Promise<TurnResult> {
    this.attaches.push(params);
    return this.hub.attachTurn(params, hooks);
  }
}

/** A relay socket in front of the server's: `cut()` drops every connection through it, as a network loss would. */
class Relay {
  readonly pairs = new Set<[net.Socket, net.Socket]>();
  accepting = true;
  private constructor(
    readonly server: net.Server,
    readonly socketPath: string,
  ) {}
  static async start(socketPath: string, target: string): Promise<Relay> {
    const server = net.createServer();
    const relay = new Relay(server, socketPath);
    server.on("connection", (downstream) => {
      if (!relay.accepting) return void downstream.destroy();
      const upstream = net.createConnection(target);
      const pair: [net.Socket, net.Socket] = [downstream, upstream];
      relay.pairs.add(pair);
      downstream.pipe(upstream).pipe(downstream);
      const drop = (): void => {
        relay.pairs.delete(pair);
        downstream.destroy();
        upstream.destroy();
      };
      downstream.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return relay;
  }
  cut(): void {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
  }
  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

let t: TestServer;
let service: JournaledService;
let server: RpcServer;
let relay: Relay;

beforeEach(async () => {
  t = await startTestServer({ closeGraceMs: 50 });
  await t.server.close();
  service = new JournaledService();
  const journal = new TurnJournal({
    dir: path.join(t.dir, "journal"),
    limits: { maxBytesPerTurn: 1 << 20, maxAgeMs: 0, maxTurns: 100 },
    log: createLogger({ level: "error", write: () => undefined }),
  });
  await journal.open({ code: "sidecar_restarted", message: "restarted" });
  service.hub = new TurnHub({
    journal,
    log: createLogger({ level: "error", write: () => undefined }),
    run: (params, hooks) => service.baseRunTurn(params, hooks),
  });
  await fs.rm(t.socketPath, { force: true });
  server = await startRpcServer({
    socketPath: t.socketPath,
    socketGroup: null,
    service,
    policy: t.policy,
    log: createLogger({ level: "error", write: () => undefined }),
    version: "0.0.0-test",
    closeGraceMs: 50,
  });
  relay = await Relay.start(path.join(t.dir, "relay.sock"), t.socketPath);
});

afterEach(async () => {
  await relay.close();
  await server.close();
  await fs.rm(t.dir, { recursive: true, force: true });
});

async function ensure(client: SidecarClient): Promise<void> {
  await client.ensureWorkspace({
    workspaceId: "ws-1",
    userId: "u-1",
    uid: 10001,
    gid: 1000,
    workspacePath: t.workspacePath,
  });
}

describe("runTurn with reattach", () => {
  it("a lost socket mid-turn: the run reconnects, attaches after its last seq, and the iteration sees every event once, then the result", async () => {
    const client = await SidecarClient.connect(relay.socketPath);
    await ensure(client);
    service.turnScript = () => ({
      events: [{ type: "thread.started", thread_id: "0199a213-81c0-7800-8aa1-bbab2a035a53" }, { type: "turn.started" }],
      hold: true,
    });
    const run = client.runTurn(
      { workspaceId: "ws-1", input: "hold", turnId: "t-re" },
      { reattach: { initialDelayMs: 10 } },
    );
    const seen: TurnEventMessage[] = [];
    const iterating = (async () => {
      for await (const message of run) seen.push(message);
    })();
    await waitFor(() => seen.length === 3, { what: "the first three events" });
    // The server keeps the turn ("continue" is what reattach asks for) when the connection is cut.
    assert.deepEqual((service.callsOf("runTurn").at(-1) as RunTurnParams).options, { onDisconnect: "continue" });
    relay.cut();
    await waitFor(() => service.attaches.length === 1, { what: "the run to reconnect and attach" });
    assert.deepEqual(service.attaches, [{ turnId: "t-re", afterSeq: 2 }]);
    const turn = service.turns.get("t-re")!;
    turn.release();
    const result = await run.result;
    await iterating;
    assert.equal(result.status, "completed");
    assert.deepEqual(
      seen.map((m) => m.seq),
      [0, 1, 2],
    );
    assert.equal(turn.aborted, false);
    await client.close();
  });

  it("without reattach, a lost socket cancels the turn and the run fails with SidecarConnectionError (today's behaviour)", async () => {
    const client = await SidecarClient.connect(relay.socketPath);
    await ensure(client);
    service.turnScript = () => ({ events: [], hold: true });
    const run = client.runTurn({ workspaceId: "ws-1", input: "hold", turnId: "t-plain" });
    await run.turnId;
    relay.cut();
    await assert.rejects(run.result, SidecarConnectionError);
    await waitFor(() => service.turns.get("t-plain")?.aborted === true, { what: "the turn to be cancelled" });
    await client.close();
  });

  it("gives up after its attempts when the sidecar stays away, with SidecarConnectionError", async () => {
    const client = await SidecarClient.connect(relay.socketPath);
    await ensure(client);
    service.turnScript = () => ({ events: [], hold: true });
    const run = client.runTurn(
      { workspaceId: "ws-1", input: "hold", turnId: "t-gone" },
      { reattach: { attempts: 3, initialDelayMs: 5, maxDelayMs: 10 } },
    );
    await run.turnId;
    relay.accepting = false;
    relay.cut();
    await assert.rejects(
      run.result,
      (error: unknown) =>
        error instanceof SidecarConnectionError &&
        /could not reattach to turn t-gone in 3 attempts/.test(error.message),
    );
    service.turns.get("t-gone")?.release();
    await client.close();
  });

  it("attachTurn on a second connection follows a running turn; getTurn and listTurns describe it", async () => {
    const client = await SidecarClient.connect(relay.socketPath);
    await ensure(client);
    service.turnScript = () => ({ events: [{ type: "turn.started" }], hold: true });
    const run = client.runTurn({ workspaceId: "ws-1", input: "hold", turnId: "t-two" });
    await run.turnId;
    const other = await SidecarClient.connect(t.socketPath);
    const follower = other.attachTurn("t-two", { afterSeq: 0 });
    const got = await other.getTurn("t-two");
    assert.deepEqual([got.status, got.result], ["running", null]);
    assert.deepEqual(
      (await other.listTurns({ workspaceId: "ws-1" })).turns.map((x) => x.turnId),
      ["t-two"],
    );
    const followed: number[] = [];
    const following = (async () => {
      for await (const message of follower) followed.push(message.seq);
    })();
    service.turns.get("t-two")?.release();
    assert.equal((await follower.result).status, "completed");
    await following;
    assert.deepEqual(followed, [1]);
    assert.equal((await other.getTurn("t-two")).result?.status, "completed");
    await other.close();
    await client.close();
  });
});
