/**
 * One workspace cannot take what the others need: its sockets' connections are bounded per
 * workspace and across the sidecar, over real Unix sockets in a temp dir and loopback upstreams,
 * and closeTunnels() ends what its egress proxy holds open.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { NET_SOCKETS } from "../../src/egress/container-net.js";
import { parseInternalDestinations } from "../../src/policy/internal-destinations.js";
import {
  WorkspaceEndpoints,
  type TurnRef,
  type WorkspaceEndpointsOptions,
} from "../../src/egress/workspace-endpoints.js";
import { createLogger } from "../../src/log.js";
import { TurnCredentials } from "../../src/model-proxy/credentials.js";
import {
  Received,
  connectThrough,
  sendRaw,
  startUpstreams,
  type RawResponse,
  type Upstreams,
} from "../support/egress-proxy.js";
import { waitFor } from "../support/wait.js";

const UID = 10001;
const GID = 10001;

let root: string;
let upstreams: Upstreams;
let endpoints: WorkspaceEndpoints | undefined;

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-bounds-"));
  upstreams = await startUpstreams();
});
after(async () => {
  await upstreams.close();
  await fs.rm(root, { recursive: true, force: true });
});
afterEach(async () => {
  await endpoints?.closeAll();
  endpoints = undefined;
});

/** Endpoints for workspaces "a" and "b" with the loopback upstreams as internal destinations. */
async function serve(
  extra: Partial<WorkspaceEndpointsOptions>,
): Promise<{ endpoints: WorkspaceEndpoints; socket: (workspaceId: string, kind: keyof typeof NET_SOCKETS) => string }> {
  const served = new WorkspaceEndpoints({
    log: createLogger({ level: "error", write: () => undefined }),
    modelUpstream: "http://127.0.0.1:9/v1",
    apiKey: "sk-never-used",
    aliveApiUrl: `http://127.0.0.1:${upstreams.httpPort}/api`,
    internal: parseInternalDestinations([`127.0.0.1:${upstreams.httpPort}`, `127.0.0.1:${upstreams.echoPort}`], "test"),
    credentials: new TurnCredentials<TurnRef>(),
    ...extra,
  });
  endpoints = served;
  const dir = await fs.mkdtemp(path.join(root, "ws-"));
  for (const workspaceId of ["a", "b"]) {
    await served.ensure({ workspaceId, dir: path.join(dir, workspaceId), uid: UID, gid: GID, policy: () => "public" });
  }
  return { endpoints: served, socket: (workspaceId, kind) => path.join(dir, workspaceId, NET_SOCKETS[kind]) };
}

/** A connection that sends nothing: it holds its place on the socket. */
async function hold(socketPath: string): Promise<Received> {
  const socket = net.connect(socketPath);
  const received = new Received(socket);
  await once(socket, "connect");
  return received;
}

async function echoTunnel(socketPath: string, port: number): Promise<RawResponse> {
  const tunnel = await connectThrough(socketPath, `127.0.0.1:${port}`);
  assert.equal(tunnel.status, 200);
  tunnel.socket.write("hello");
  await tunnel.received.includes("hello");
  return tunnel;
}

describe("bounds per workspace and for the whole sidecar", () => {
  test("a workspace at its bound gets 429 too_many_connections on its next connection; another workspace keeps being served", async () => {
    const refusals: Array<[string, string]> = [];
    const { endpoints: e, socket } = await serve({
      connectionLimits: { perWorkspace: 3, total: 1000 },
      onLimitRefusal: (kind, reason) => refusals.push([kind, reason]),
    });
    const tunnels = [];
    for (let i = 0; i < 3; i++) tunnels.push(await echoTunnel(socket("a", "proxy"), upstreams.echoPort));
    assert.deepEqual(e.connections("a"), {
      proxy: 3,
      model: 0,
      api: 0,
      tunnels: 3,
      requests: 0,
      apiRequests: 0,
      refusedForLimit: 0,
      cut: 0,
    });
    for (let i = 0; i < 5; i++) {
      const refused = await connectThrough(socket("a", "proxy"), `127.0.0.1:${upstreams.echoPort}`);
      await refused.received.closedText();
      assert.equal(refused.status, 429);
      assert.equal(refused.headers["x-alive-egress-error"], "too_many_connections");
      assert.match(refused.body(), /this workspace holds 3 connections on its proxy\.sock/);
    }
    // Its other sockets have bounds of their own, and the other workspace is untouched.
    const model = await sendRaw(
      socket("a", "model"),
      "GET /v1/responses HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.equal(model.status, 401);
    const other = await echoTunnel(socket("b", "proxy"), upstreams.echoPort);
    assert.equal(e.connections("a").refusedForLimit, 5);
    assert.equal(e.connections("b").refusedForLimit, 0);
    assert.deepEqual(refusals, Array(5).fill(["proxy", "too_many_connections"]));
    for (const tunnel of [...tunnels, other]) tunnel.socket.destroy();
    await waitFor(() => e.connections("a").proxy === 0 && e.connections("a").tunnels === 0, {
      what: "the closed tunnels given back",
    });
    assert.equal(e.heldConnections, 0);
    (await echoTunnel(socket("a", "proxy"), upstreams.echoPort)).socket.destroy();
  });

  test("the sidecar's total across workspaces: 503 sidecar_at_capacity, for any workspace", async () => {
    const { endpoints: e, socket } = await serve({ connectionLimits: { perWorkspace: 100, total: 3 } });
    const held = [await hold(socket("a", "proxy")), await hold(socket("a", "api")), await hold(socket("b", "model"))];
    await waitFor(() => e.heldConnections === 3, { what: "three connections held" });
    const refused = await sendRaw(
      socket("b", "proxy"),
      `GET http://127.0.0.1:${upstreams.httpPort}/missing HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    await refused.received.closedText();
    assert.equal(refused.status, 503);
    assert.equal(refused.headers["x-alive-egress-error"], "sidecar_at_capacity");
    assert.equal(refused.headers["retry-after"], "1");
    // A forwarded request holds two: its connection and its upstream one.
    held[0]!.socket.destroy();
    held[1]!.socket.destroy();
    await waitFor(() => e.heldConnections === 1, { what: "two connections given back" });
    const served = await sendRaw(
      socket("b", "proxy"),
      `GET http://127.0.0.1:${upstreams.httpPort}/missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(served.status, 404);
    for (const r of held) r.socket.destroy();
  });

  test("near the sidecar's open-files limit: 503 sidecar_overloaded on every socket, the model socket's in OpenAI's shape", async () => {
    let overloaded = true;
    const { socket } = await serve({
      connectionLimits: {
        perWorkspace: 100,
        total: 1000,
        overloaded: () => ({ overloaded, open: 9500, limit: 10000 }),
      },
    });
    const proxy = await connectThrough(socket("a", "proxy"), `127.0.0.1:${upstreams.echoPort}`);
    await proxy.received.closedText();
    assert.equal(proxy.status, 503);
    assert.equal(proxy.headers["x-alive-egress-error"], "sidecar_overloaded");
    const model = await sendRaw(
      socket("b", "model"),
      "POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    );
    await model.received.closedText();
    assert.equal(model.status, 503);
    assert.equal(model.headers["content-type"], "application/json");
    assert.equal((JSON.parse(model.body()) as { error: { code: string } }).error.code, "sidecar_overloaded");
    overloaded = false;
    (await echoTunnel(socket("a", "proxy"), upstreams.echoPort)).socket.destroy();
  });

  test("requests to Alive's API in flight are bounded per workspace too: 429 past it", async () => {
    const { endpoints: e, socket } = await serve({ connectionLimits: { perWorkspace: 2, total: 1000 } });
    // One connection, requests pipelined: each would otherwise be a request upstream at once.
    const pipelined = await sendRaw(
      socket("a", "api"),
      "GET /held HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2) + "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert.equal(pipelined.status, 200);
    await waitFor(() => e.connections("a").apiRequests === 2, { what: "two API requests in flight" });
    upstreams.release();
    upstreams.release();
    const text = await pipelined.received.includes("too_many_connections");
    assert.match(text, /HTTP\/1\.1 429 Too Many Requests/);
    assert.equal(e.connections("a").refusedForLimit, 1);
    pipelined.socket.destroy();
  });
});

describe("closeTunnels", () => {
  test("ends a workspace's tunnels and forwarded requests (not its model or API connections), returns how many, and counts them", async () => {
    const cuts: Array<[string, string]> = [];
    const { endpoints: e, socket } = await serve({ onUpstreamCut: (kind, reason) => cuts.push([kind, reason]) });
    const tunnels = [
      await echoTunnel(socket("a", "proxy"), upstreams.echoPort),
      await echoTunnel(socket("a", "proxy"), upstreams.echoPort),
    ];
    const forwarded = await sendRaw(
      socket("a", "proxy"),
      `GET http://127.0.0.1:${upstreams.httpPort}/held HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    await forwarded.received.includes("first\n");
    const model = await hold(socket("a", "model"));
    const api = await hold(socket("a", "api"));
    const otherWorkspace = await echoTunnel(socket("b", "proxy"), upstreams.echoPort);

    assert.equal(e.closeTunnels("a"), 3);
    await Promise.all([...tunnels, forwarded].map((r) => r.received.closedText()));
    assert.deepEqual(cuts, [
      ["tunnel", "egress_narrowed"],
      ["tunnel", "egress_narrowed"],
      ["request", "egress_narrowed"],
    ]);
    assert.equal(e.connections("a").cut, 3);
    assert.equal(model.closed || api.closed, false, "the model and API connections stay");
    otherWorkspace.socket.write("still there");
    await otherWorkspace.received.includes("still there");
    await waitFor(() => e.connections("a").tunnels === 0 && e.connections("a").requests === 0, {
      what: "the cut upstreams given back",
    });
    assert.equal(e.closeTunnels("a"), 0);
    assert.equal(e.closeTunnels("unknown"), 0);
    upstreams.release();
    for (const r of [model, api]) r.socket.destroy();
    otherWorkspace.socket.destroy();
  });
});
