/** The reverse proxy to Alive's API: it names the calling workspace itself and drops what a tenant could spoof. */
import assert from "node:assert/strict";
import { once } from "node:events";
import { promises as fs } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { apiRequestHeaders, createApiProxy } from "../../src/egress/api-proxy.js";
import { createLogger } from "../../src/log.js";

let upstream: http.Server;
let seen: http.IncomingHttpHeaders[] = [];
let dir: string;
let proxy: http.Server;
let socketPath: string;

before(async () => {
  upstream = http.createServer((req, res) => {
    seen.push(req.headers);
    res.writeHead(200, { "content-type": "text/plain" }).end(`${req.method} ${req.url}\n`);
  });
  upstream.listen(0, "127.0.0.1");
  await once(upstream, "listening");
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "api-proxy-"));
  socketPath = path.join(dir, "api.sock");
  proxy = createApiProxy({
    target: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/api`,
    workspaceId: "ws-1",
    log: createLogger({ level: "error", write: () => undefined }),
  });
  proxy.listen(socketPath);
  await once(proxy, "listening");
});
after(async () => {
  proxy.closeAllConnections();
  upstream.closeAllConnections();
  await Promise.all([
    new Promise((resolve) => proxy.close(resolve)),
    new Promise((resolve) => upstream.close(resolve)),
  ]);
  await fs.rm(dir, { recursive: true, force: true });
});

function get(headers: http.OutgoingHttpHeaders): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request({ socketPath, path: "/api/v1/things?x=1", headers, agent: false }, (response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk.toString()));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on("error", reject);
    request.end();
  });
}

const SPOOFED = {
  "x-alive-workspace": "someone-else",
  "x-alive-user": "admin",
  "X-Forwarded-For": "10.0.0.1",
  "x-forwarded-host": "alive.internal",
  "x-forwarded-proto": "https",
  "x-forwarded-user": "admin@example.com",
  forwarded: "for=10.0.0.1;host=alive.internal",
  "x-real-ip": "10.0.0.1",
  "x-client-ip": "10.0.0.1",
  "true-client-ip": "10.0.0.1",
  "x-user-id": "user-42",
  "x-remote-user": "admin",
  "x-auth-request-email": "admin@example.com",
};

describe("API proxy: identity headers", () => {
  test("x-alive-workspace is the workspace the proxy serves, whatever the tenant sent; spoofable identity headers are dropped", async () => {
    seen = [];
    const answer = await get({
      ...SPOOFED,
      authorization: "Bearer per-workspace-token",
      "x-request-id": "r-1",
      "content-type": "application/json",
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.body, "GET /api/v1/things?x=1\n");
    const headers = seen[0]!;
    assert.equal(headers["x-alive-workspace"], "ws-1");
    for (const name of Object.keys(SPOOFED)
      .map((n) => n.toLowerCase())
      .filter((n) => n !== "x-alive-workspace")) {
      assert.equal(headers[name], undefined, `${name} reached the API`);
    }
    // The caller's own credential and ordinary headers pass as they came.
    assert.equal(headers.authorization, "Bearer per-workspace-token");
    assert.equal(headers["x-request-id"], "r-1");
    assert.equal(headers["content-type"], "application/json");
    assert.equal(headers.host, `127.0.0.1:${(upstream.address() as AddressInfo).port}`);
  });

  test("a header sent twice, or in another case, is dropped all the same", () => {
    const out = apiRequestHeaders(
      {
        "x-alive-workspace": "a, b",
        "x-forwarded-for": "1.2.3.4, 5.6.7.8",
        connection: "x-keep",
        "x-keep": "hop",
        accept: "*/*",
      },
      "ws-2",
      "api.internal",
    );
    assert.deepEqual(out, { accept: "*/*", host: "api.internal", "x-alive-workspace": "ws-2" });
  });
});
