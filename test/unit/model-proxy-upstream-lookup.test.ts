/**
 * The model API's name: resolved by a resolver of its own, kept by TTL (clamped), served stale
 * while refreshes fail, and handed to the model proxy's Agent as its lookup. The clock is the
 * test's; the DNS server is a responder on a loopback UDP port; the model API a loopback server.
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import http from "node:http";
import type { LookupAddress } from "node:dns";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { LookupError } from "../../src/egress/resolver.js";
import { createModelProxy } from "../../src/model-proxy/server.js";
import { UpstreamLookup, type NetLookup } from "../../src/model-proxy/upstream-lookup.js";
import { startDnsResponder, type DnsResponder } from "../support/dns-responder.js";

let dns: DnsResponder;
let dir: string;

before(async () => {
  dns = await startDnsResponder({ names: { "model.test": { a: ["127.0.0.1"], ttl: 1 } } });
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "upstream-lookup-"));
  await fs.writeFile(path.join(dir, "hosts"), "127.0.0.1 pinned-model.test\n");
});
after(async () => {
  await dns.close();
  await fs.rm(dir, { recursive: true, force: true });
});

/** A resolver the test scripts: each call takes the next answer (addresses and TTL) or error. */
function scripted(answers: Array<{ addresses: string[]; ttlSeconds: number } | Error>): {
  resolve: (host: string) => Promise<{ addresses: string[]; ttlSeconds: number }>;
  calls: string[];
} {
  const calls: string[] = [];
  return {
    calls,
    resolve: async (host) => {
      calls.push(host);
      const next = answers.shift();
      if (next === undefined) throw new Error("the test gave no more answers");
      if (next instanceof Error) throw next;
      return next;
    },
  };
}

function lookupAll(lookup: NetLookup, host: string, family = 0): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) =>
    lookup(host, { all: true, family }, (error, addresses) =>
      error ? reject(error) : resolve(addresses as LookupAddress[]),
    ),
  );
}

describe("UpstreamLookup", () => {
  test("an answer is kept for its TTL, but never less than the floor nor more than the ceiling", async () => {
    let now = 0;
    const dnsAnswers = scripted([
      { addresses: ["192.0.2.1"], ttlSeconds: 1 },
      { addresses: ["192.0.2.2"], ttlSeconds: 3_600 },
      { addresses: ["192.0.2.3"], ttlSeconds: 60 },
    ]);
    const cache = new UpstreamLookup({
      resolve: dnsAnswers.resolve,
      minTtlMs: 30_000,
      maxTtlMs: 300_000,
      now: () => now,
    });
    assert.deepEqual(await cache.addresses("api.test"), ["192.0.2.1"]);
    now = 29_999; // a 1 s TTL, kept for the 30 s floor
    assert.deepEqual(await cache.addresses("api.test"), ["192.0.2.1"]);
    now = 30_000;
    assert.deepEqual(await cache.addresses("api.test"), ["192.0.2.2"]);
    now = 30_000 + 299_999; // a one-hour TTL, kept for the 5 min ceiling
    assert.deepEqual(await cache.addresses("api.test"), ["192.0.2.2"]);
    now = 330_000;
    assert.deepEqual(await cache.addresses("api.test"), ["192.0.2.3"]);
    assert.equal(dnsAnswers.calls.length, 3);
  });

  test("concurrent requests share one refresh", async () => {
    const dnsAnswers = scripted([{ addresses: ["192.0.2.1"], ttlSeconds: 60 }]);
    const cache = new UpstreamLookup({ resolve: dnsAnswers.resolve });
    const all = await Promise.all([1, 2, 3].map(() => cache.addresses("api.test")));
    assert.deepEqual(all, [["192.0.2.1"], ["192.0.2.1"], ["192.0.2.1"]]);
    assert.equal(dnsAnswers.calls.length, 1);
  });

  test("a failed refresh serves the last good answer for a while, asking again only after a pause", async () => {
    let now = 0;
    const lines: string[] = [];
    const log = {
      debug: () => {},
      info: (msg: string) => lines.push(msg),
      warn: (msg: string) => lines.push(msg),
      error: () => {},
      child: () => log,
    };
    const dnsAnswers = scripted([
      { addresses: ["192.0.2.1"], ttlSeconds: 60 },
      new LookupError("timeout", "no answer within 5000 ms"),
      new LookupError("timeout", "no answer within 5000 ms"),
      { addresses: ["192.0.2.9"], ttlSeconds: 60 },
      new LookupError("not_found", "no such name"),
    ]);
    const cache = new UpstreamLookup({
      resolve: dnsAnswers.resolve,
      minTtlMs: 60_000,
      staleIfErrorMs: 600_000,
      retryAfterErrorMs: 5_000,
      log,
      now: () => now,
    });
    await cache.addresses("api.test");
    now = 60_000;
    assert.deepEqual(await cache.addresses("api.test"), ["192.0.2.1"], "stale after a failed refresh");
    now = 64_999;
    assert.deepEqual(await cache.addresses("api.test"), ["192.0.2.1"]);
    assert.equal(dnsAnswers.calls.length, 2, "no new try within the pause");
    now = 65_000;
    assert.deepEqual(await cache.addresses("api.test"), ["192.0.2.1"]);
    now = 70_000;
    assert.deepEqual(await cache.addresses("api.test"), ["192.0.2.9"], "fresh again");
    assert.deepEqual(lines, [
      "model API's name did not resolve; using its last addresses meanwhile",
      "model API's name resolves again",
    ]);
    // Past the stale window the failure is the caller's, with an errno code the model proxy reports.
    now = 70_000 + 60_000 + 600_000;
    await assert.rejects(
      cache.addresses("api.test"),
      (error: NodeJS.ErrnoException) => error.code === "ENOTFOUND" && /api\.test: no such name/.test(error.message),
    );
  });

  test("an IP literal is never looked up", async () => {
    const dnsAnswers = scripted([]);
    const cache = new UpstreamLookup({ resolve: dnsAnswers.resolve });
    assert.deepEqual(await cache.addresses("2001:db8::1"), ["2001:db8::1"]);
    assert.equal(dnsAnswers.calls.length, 0);
  });

  test("as a net lookup: all addresses, or one of the family asked for", async () => {
    const cache = new UpstreamLookup({
      resolve: scripted([{ addresses: ["192.0.2.1", "2001:db8::1"], ttlSeconds: 60 }]).resolve,
    });
    assert.deepEqual(await lookupAll(cache.lookup, "api.test"), [
      { address: "192.0.2.1", family: 4 },
      { address: "2001:db8::1", family: 6 },
    ]);
    assert.deepEqual(await lookupAll(cache.lookup, "api.test", 6), [{ address: "2001:db8::1", family: 6 }]);
    const one = await new Promise<[string, number | undefined]>((resolve, reject) =>
      cache.lookup("api.test", { family: 6 }, (error, address, family) =>
        error ? reject(error) : resolve([address as string, family]),
      ),
    );
    assert.deepEqual(one, ["2001:db8::1", 6]);
  });

  test("by DNS, a 1 s TTL is kept for the floor: the second lookup sends no query", async () => {
    let now = 0;
    const cache = new UpstreamLookup({
      resolver: { servers: [dns.server], hostsFile: path.join(dir, "hosts"), timeoutMs: 2_000 },
      now: () => now,
    });
    assert.deepEqual(await cache.addresses("model.test"), ["127.0.0.1"]);
    const asked = dns.queries.filter((q) => q.name === "model.test").length;
    now = 29_000;
    assert.deepEqual(await cache.addresses("model.test"), ["127.0.0.1"]);
    assert.equal(dns.queries.filter((q) => q.name === "model.test").length, asked);
  });

  test("the model proxy connects through it: a name only its hosts file knows reaches the upstream", async () => {
    const upstream = http.createServer((req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ host: req.headers.host }));
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const port = (upstream.address() as AddressInfo).port;
    const cache = new UpstreamLookup({
      resolver: { servers: [dns.server], hostsFile: path.join(dir, "hosts"), timeoutMs: 2_000 },
    });
    const proxy = createModelProxy<string>({
      upstreamBaseUrl: `http://pinned-model.test:${port}/v1`,
      apiKey: "sk-real",
      authorize: () => "turn",
      lookup: cache.lookup,
    });
    const socketPath = path.join(dir, "model.sock");
    await new Promise<void>((resolve) => proxy.listen(socketPath, resolve));
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const request = http.request(
          {
            socketPath,
            path: "/v1/responses",
            method: "POST",
            headers: { authorization: "Bearer t", "content-type": "application/json" },
            agent: false,
          },
          (res) => {
            let text = "";
            res.on("data", (chunk: Buffer) => (text += chunk.toString()));
            res.on("end", () => resolve(text));
          },
        );
        request.on("error", reject);
        request.end("{}");
      });
      assert.deepEqual(JSON.parse(body), { host: `pinned-model.test:${port}` });
      assert.ok(!dns.queries.some((q) => q.name === "pinned-model.test"), "answered from the hosts file");
    } finally {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
      upstream.closeAllConnections();
      await new Promise((resolve) => upstream.close(resolve));
    }
  });
});
