/**
 * What bounds the egress proxy's upstream connections: the idle timeout and the lifetime of tunnels
 * and forwarded requests, the workspace's bound on them, the ports it connects to, and
 * closeUpstreams(). Against loopback upstreams declared as internal destinations.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { after, afterEach, before, describe, test } from "node:test";
import { ConnectionLimits } from "../../src/egress/connection-limits.js";
import { parseInternalDestinations } from "../../src/policy/internal-destinations.js";
import {
  connectThrough,
  sendRaw,
  startTestProxy,
  startUpstreams,
  type RawResponse,
  type TestProxy,
  type TestProxyOptions,
  type Upstreams,
} from "../support/egress-proxy.js";
import { waitFor } from "../support/wait.js";

let upstreams: Upstreams;
let holder: Holder;
let proxy: TestProxy | undefined;

/** A TCP echo server that counts the connections it holds open now. */
interface Holder {
  port: number;
  open(): number;
  close(): Promise<void>;
}

async function startHolder(): Promise<Holder> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    socket.pipe(socket);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as net.AddressInfo).port,
    open: () => sockets.size,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

before(async () => {
  upstreams = await startUpstreams();
  holder = await startHolder();
});
after(async () => {
  await upstreams.close();
  await holder.close();
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

/** The test proxy, with the holder as an internal destination too and the cuts recorded. */
async function start(
  extra: TestProxyOptions["extra"] = {},
  options: Partial<TestProxyOptions> = {},
): Promise<TestProxy & { cuts: Array<[string, string]> }> {
  const cuts: Array<[string, string]> = [];
  const internal = parseInternalDestinations(
    [
      `127.0.0.1:${upstreams.httpPort}`,
      `127.0.0.1:${upstreams.echoPort}`,
      `http://upstream.internal:${upstreams.httpPort}`,
      `127.0.0.1:${holder.port}`,
    ],
    "test",
  );
  proxy = await startTestProxy({
    policy: "public",
    upstreams,
    ...options,
    extra: { internal, onCut: (kind, reason) => cuts.push([kind, reason]), ...extra },
  });
  return Object.assign(proxy, { cuts });
}

async function tunnelToHolder(socketPath: string): Promise<RawResponse> {
  const tunnel = await connectThrough(socketPath, `127.0.0.1:${holder.port}`);
  assert.equal(tunnel.status, 200);
  return tunnel;
}

describe("egress proxy: tunnel idle timeout and lifetime", () => {
  test("a tunnel with no byte either way for the idle timeout is closed, both ends, and counted", async () => {
    const p = await start({ idleTimeoutMs: 200, maxLifetimeMs: 60_000 });
    const tunnel = await tunnelToHolder(p.socketPath);
    tunnel.socket.write("ping");
    await tunnel.received.includes("ping");
    const lastByte = performance.now();
    assert.equal(holder.open(), 1);
    await tunnel.received.closedText();
    assert.ok(
      performance.now() - lastByte >= 190,
      `closed ${Math.round(performance.now() - lastByte)} ms after the last byte`,
    );
    await waitFor(() => holder.open() === 0, { what: "the upstream end closed too" });
    assert.deepEqual(p.cuts, [["tunnel", "idle"]]);
  });

  test("bytes either way keep a tunnel open past the idle timeout", async () => {
    const p = await start({ idleTimeoutMs: 300, maxLifetimeMs: 60_000 });
    const tunnel = await tunnelToHolder(p.socketPath);
    const started = performance.now();
    for (let i = 0; performance.now() - started < 900; i++) {
      tunnel.socket.write(`${i};`);
      await tunnel.received.includes(`${i};`);
      await new Promise((resolve) => setTimeout(resolve, 100)); // the workload's pace, not a wait for something
    }
    assert.equal(tunnel.received.closed, false, "still open after three idle timeouts of traffic");
    assert.deepEqual(p.cuts, []);
    await tunnel.received.closedText();
    assert.deepEqual(p.cuts, [["tunnel", "idle"]]);
  });

  test("a tunnel is closed once it outlives its maximum, busy or not", async () => {
    const p = await start({ idleTimeoutMs: 60_000, maxLifetimeMs: 300 });
    const opened = performance.now();
    const tunnel = await tunnelToHolder(p.socketPath);
    const pinging = setInterval(() => tunnel.socket.write("."), 20);
    try {
      await tunnel.received.closedText();
    } finally {
      clearInterval(pinging);
    }
    assert.ok(performance.now() - opened >= 290, `closed after ${Math.round(performance.now() - opened)} ms`);
    assert.deepEqual(p.cuts, [["tunnel", "lifetime"]]);
    await waitFor(() => holder.open() === 0, { what: "the upstream end closed too" });
  });

  test("a forwarded request whose upstream goes quiet is cut after the idle timeout", async () => {
    const p = await start({ idleTimeoutMs: 200, maxLifetimeMs: 60_000 });
    const response = await sendRaw(
      p.socketPath,
      `GET http://127.0.0.1:${upstreams.httpPort}/held HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    assert.equal(response.status, 200);
    await response.received.includes("first\n");
    await response.received.closedText();
    assert.ok(!response.body().includes("second"), "the response was cut, not completed");
    assert.deepEqual(p.cuts, [["request", "idle"]]);
    upstreams.release();
  });
});

describe("egress proxy: a workspace's bound on its upstream connections", () => {
  test("past it, a CONNECT or a forwarded request is 429 too_many_connections; a closed tunnel makes room", async () => {
    const limits = new ConnectionLimits({ perWorkspace: 2, total: 100 });
    const p = await start({ admitUpstream: (kind) => limits.admitUpstream("w", kind) });
    const tunnels = [await tunnelToHolder(p.socketPath), await tunnelToHolder(p.socketPath)];
    const refused = await connectThrough(p.socketPath, `127.0.0.1:${holder.port}`);
    await refused.received.closedText();
    assert.equal(refused.status, 429);
    assert.equal(refused.headers["x-alive-egress-error"], "too_many_connections");
    assert.match(refused.body(), /holds 2 tunnels and forwarded requests/);
    const get = await sendRaw(
      p.socketPath,
      `GET http://127.0.0.1:${upstreams.httpPort}/missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(get.status, 429);
    assert.equal(holder.open(), 2, "nothing was connected for the refused ones");
    tunnels[0]!.socket.destroy();
    await waitFor(() => limits.counts("w").tunnels === 1, { what: "the closed tunnel given back" });
    const again = await tunnelToHolder(p.socketPath);
    assert.deepEqual(limits.counts("w"), {
      proxy: 0,
      model: 0,
      api: 0,
      tunnels: 2,
      requests: 0,
      apiRequests: 0,
      refusedForLimit: 2,
      cut: 0,
    });
    for (const tunnel of [tunnels[1]!, again]) tunnel.socket.destroy();
    await waitFor(() => limits.counts("w").tunnels === 0, { what: "every tunnel given back" });
  });
});

describe("egress proxy: ports", () => {
  test("a port not on the list is 403 port_not_allowed before any lookup, for CONNECT and http:// alike", async () => {
    const p = await start({ allowedPorts: [443] }, { names: { "smtp.example": ["203.0.113.25"] } });
    for (const [request, host, port] of [
      ["CONNECT smtp.example:25 HTTP/1.1\r\nHost: smtp.example:25\r\n\r\n", "smtp.example", 25],
      ["CONNECT 203.0.113.22:22 HTTP/1.1\r\nHost: 203.0.113.22:22\r\n\r\n", "203.0.113.22", 22],
      ["GET http://smtp.example:8080/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "smtp.example", 8080],
      ["GET http://smtp.example/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "smtp.example", 80],
    ] as const) {
      const response = await sendRaw(p.socketPath, request);
      await response.received.closedText();
      assert.equal(response.status, 403, request);
      assert.equal(response.headers["x-alive-egress-refused"], "port_not_allowed");
      assert.match(
        response.body(),
        new RegExp(
          `port ${port} of ${host.replace(/\./g, "\\.")} is not one the egress proxy connects to \\(allowed: 443\\)`,
        ),
      );
    }
    assert.deepEqual(p.lookups, []);
    assert.deepEqual(
      p.refusals.map(([, port, reason]) => [port, reason]),
      [
        [25, "port_not_allowed"],
        [22, "port_not_allowed"],
        [8080, "port_not_allowed"],
        [80, "port_not_allowed"],
      ],
    );
  });

  test("by default 443 and 80 pass the port check; an internal destination keeps its own port", async () => {
    const p = await start({ allowedPorts: undefined }, { names: { "web.example": ["203.0.113.80"] } });
    // Allowed by port, so the address is what decides (and a documentation address is refused).
    const https = await connectThrough(p.socketPath, "web.example:443");
    await https.received.closedText();
    assert.equal(https.headers["x-alive-egress-refused"], "private_address");
    const other = await connectThrough(p.socketPath, "web.example:8443");
    await other.received.closedText();
    assert.equal(other.headers["x-alive-egress-refused"], "port_not_allowed");
    const internal = await tunnelToHolder(p.socketPath);
    internal.socket.destroy();
  });
});

describe("egress proxy: closeUpstreams()", () => {
  test("ends every tunnel and forwarded request, both ends, and counts them; an idle keep-alive connection stays", async () => {
    const p = await start();
    const tunnels = [await tunnelToHolder(p.socketPath), await tunnelToHolder(p.socketPath)];
    const held = await sendRaw(
      p.socketPath,
      `GET http://127.0.0.1:${upstreams.httpPort}/held HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    await held.received.includes("first\n");
    const keepAlive = await sendRaw(
      p.socketPath,
      `GET http://127.0.0.1:${upstreams.httpPort}/missing HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    await keepAlive.received.includes("not here\n");
    assert.equal(p.server.closeUpstreams(), 3);
    await Promise.all([...tunnels, held].map((r) => r.received.closedText()));
    await waitFor(() => holder.open() === 0, { what: "the tunnels' upstream ends closed" });
    assert.deepEqual(p.cuts, [
      ["tunnel", "egress_narrowed"],
      ["tunnel", "egress_narrowed"],
      ["request", "egress_narrowed"],
    ]);
    assert.equal(keepAlive.received.closed, false, "a connection without an upstream is not cut");
    assert.equal(p.server.closeUpstreams(), 0);
    keepAlive.socket.destroy();
    upstreams.release();
  });

  test("a tunnel being connected when it is called is not opened (decided under the old policy): 503 egress_changed", async () => {
    let asked: () => void = () => undefined;
    const lookup = new Promise<void>((resolve) => (asked = resolve));
    let answer: () => void = () => undefined;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const p = await start({
      resolve: async () => {
        asked();
        await answered;
        return ["127.0.0.1"];
      },
    });
    const pending = connectThrough(p.socketPath, `upstream.internal:${upstreams.httpPort}`);
    await lookup;
    assert.equal(p.server.closeUpstreams(), 0);
    const connections = upstreams.connections();
    answer();
    const response = await pending;
    await response.received.closedText();
    assert.equal(response.status, 503);
    assert.equal(response.headers["x-alive-egress-error"], "egress_changed");
    await waitFor(() => upstreams.connections() === connections + 1, {
      what: "the upstream connection (made, then dropped)",
    });
    // The next one is decided afresh.
    const next = await connectThrough(p.socketPath, `upstream.internal:${upstreams.httpPort}`);
    assert.equal(next.status, 200);
    next.socket.destroy();
  });
});
