/** The allowed paths of the egress proxy, against upstreams on 127.0.0.1 declared as internal destinations. */
import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import { after, afterEach, before, describe, test } from "node:test";
import type { EgressPolicy } from "../../src/policy/egress-policy.js";
import {
  connectThrough,
  sendRaw,
  startTestProxy,
  startUpstreams,
  type TestProxy,
  type Upstreams,
} from "../support/egress-proxy.js";
import { waitFor, withTimeout } from "../support/wait.js";

let upstreams: Upstreams;
let proxy: TestProxy | undefined;

before(async () => {
  upstreams = await startUpstreams();
});
after(() => upstreams.close());
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

function requestThrough(socketPath: string, url: string, options: http.RequestOptions = {}): http.ClientRequest {
  return http.request({ socketPath, path: url, agent: false, ...options });
}

async function bodyOf(response: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

describe("egress proxy: CONNECT", () => {
  for (const policy of ["public", "model", { allow: [], deny: [] }] satisfies EgressPolicy[]) {
    test(`tunnels to an internal destination and echoes bytes both ways (policy ${JSON.stringify(policy)})`, async () => {
      proxy = await startTestProxy({ policy, upstreams });
      const tunnel = await connectThrough(proxy.socketPath, `127.0.0.1:${upstreams.echoPort}`);
      assert.equal(tunnel.status, 200);
      tunnel.socket.write("ping\n");
      await tunnel.received.includes("ping\n");
      tunnel.socket.write("pong\n");
      assert.equal(tunnel.body(), "ping\n");
      await tunnel.received.includes("pong\n");
      tunnel.socket.end();
      await tunnel.received.closedText();
      assert.deepEqual(proxy.lookups, []);
      assert.deepEqual(proxy.refusals, []);
    });
  }

  test("an internal destination named by host is resolved on the sidecar's side, then tunnelled", async () => {
    proxy = await startTestProxy({ policy: "model", upstreams });
    const tunnel = await connectThrough(proxy.socketPath, `upstream.internal:${upstreams.httpPort}`);
    assert.equal(tunnel.status, 200);
    tunnel.socket.write("GET /held HTTP/1.1\r\nHost: upstream.internal\r\nConnection: close\r\n\r\n");
    await tunnel.received.includes("first\n");
    upstreams.release();
    await tunnel.received.includes("second\n");
    assert.deepEqual(proxy.lookups, ["upstream.internal"]);
    tunnel.socket.destroy();
  });

  test("bytes sent right after the CONNECT head reach the upstream", async () => {
    proxy = await startTestProxy({ policy: "public", upstreams });
    const target = `127.0.0.1:${upstreams.echoPort}`;
    const tunnel = await sendRaw(proxy.socketPath, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\neager bytes`);
    assert.equal(tunnel.status, 200);
    await tunnel.received.includes("eager bytes");
    tunnel.socket.destroy();
  });

  test("server.close() completes once the tunnels have ended: no socket is left behind", async () => {
    proxy = await startTestProxy({ policy: "public", upstreams });
    const tunnels = await Promise.all(
      [1, 2].map(() => connectThrough(proxy!.socketPath, `127.0.0.1:${upstreams.echoPort}`)),
    );
    const closed = new Promise((resolve) => proxy!.server.close(resolve));
    tunnels[0]!.socket.end(); // a half-close travels through and back
    tunnels[1]!.socket.destroy(); // an abrupt close ends the upstream side too
    await withTimeout(closed, 5_000, "server.close() after the tunnels ended");
    await Promise.all(tunnels.map((t) => t.received.closedText()));
  });

  test("closeAllConnections() ends open tunnels", async () => {
    proxy = await startTestProxy({ policy: "public", upstreams });
    const tunnel = await connectThrough(proxy.socketPath, `127.0.0.1:${upstreams.echoPort}`);
    const closed = new Promise((resolve) => proxy!.server.close(resolve));
    proxy.server.closeAllConnections();
    await withTimeout(closed, 5_000, "server.close() after closeAllConnections()");
    await tunnel.received.closedText();
  });

  test("an upstream that refuses the connection is a 502 connect_failed", async () => {
    const spare = http.createServer();
    spare.listen(0, "127.0.0.1");
    await once(spare, "listening");
    const port = (spare.address() as { port: number }).port;
    await new Promise((resolve) => spare.close(resolve));
    proxy = await startTestProxy({
      policy: "public",
      upstreams,
      extra: { internal: [{ host: "127.0.0.1", port, entry: "spare" }] },
    });
    const response = await connectThrough(proxy.socketPath, `127.0.0.1:${port}`);
    assert.equal(response.status, 502);
    assert.equal(response.headers["x-alive-egress-error"], "connect_failed");
    assert.match(await response.received.closedText(), /could not connect to 127\.0\.0\.1 port \d+/);
  });
});

describe("egress proxy: absolute-form requests", () => {
  test("a GET is forwarded and its response streams back as it arrives", async () => {
    proxy = await startTestProxy({ policy: "model", upstreams });
    const request = requestThrough(proxy.socketPath, `http://127.0.0.1:${upstreams.httpPort}/held`);
    request.end();
    const [response] = (await once(request, "response")) as [http.IncomingMessage];
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers["x-upstream"], "yes");
    const [first] = (await once(response, "data")) as [Buffer];
    assert.equal(first.toString(), "first\n"); // before the upstream has finished
    upstreams.release();
    assert.equal(await bodyOf(response), "second\n");
  });

  test("a request body streams through while the response streams back", async () => {
    proxy = await startTestProxy({ policy: "public", upstreams });
    const request = requestThrough(proxy.socketPath, `http://127.0.0.1:${upstreams.httpPort}/echo`, { method: "POST" });
    request.write("part one;");
    const [response] = (await once(request, "response")) as [http.IncomingMessage];
    let echoed = "";
    response.on("data", (chunk: Buffer) => (echoed += chunk.toString()));
    await waitFor(() => echoed === "part one;", { what: "the first part back before the body ended" });
    request.end("part two");
    await once(response, "end");
    assert.equal(echoed, "part one;part two");
  });

  test("hop-by-hop and proxy headers stay behind; Host is the URL's authority; the response's hop-by-hop headers too", async () => {
    proxy = await startTestProxy({ policy: "public", upstreams });
    const before = upstreams.requests.length;
    const request = requestThrough(proxy.socketPath, `http://upstream.internal:${upstreams.httpPort}/missing?q=1`, {
      headers: {
        "proxy-authorization": "Basic c2VjcmV0",
        "proxy-connection": "keep-alive",
        connection: "x-drop",
        "x-drop": "1",
        "x-keep": "2",
        host: "elsewhere",
      },
    });
    request.end();
    const [response] = (await once(request, "response")) as [http.IncomingMessage];
    assert.equal(response.statusCode, 404);
    assert.notEqual(response.headers["keep-alive"], "timeout=77"); // the proxy's own connection may be kept alive
    assert.equal(response.headers["x-hop"], undefined);
    assert.equal(await bodyOf(response), "not here\n");
    const seen = upstreams.requests[before];
    assert.equal(seen?.url, "/missing?q=1");
    assert.equal(seen?.headers.host, `upstream.internal:${upstreams.httpPort}`);
    assert.equal(seen?.headers["x-keep"], "2");
    for (const gone of ["proxy-authorization", "proxy-connection", "x-drop"])
      assert.equal(seen?.headers[gone], undefined, gone);
  });
});
