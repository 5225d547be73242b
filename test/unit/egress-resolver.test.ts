/**
 * The sidecar's name resolution for the egress proxies: the hosts file first, then DNS through
 * c-ares against a responder on a loopback UDP port the test holds (names under .silent.test are
 * never answered: a resolver that never answers). Nothing is asked of any other server.
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  answerFromHosts,
  parseHostsFile,
  parseResolvConf,
  searchCandidates,
  WatchedFile,
} from "../../src/egress/hosts-file.js";
import { LookupError, NameResolver, type NameResolverOptions } from "../../src/egress/resolver.js";
import { startDnsResponder, type DnsResponder } from "../support/dns-responder.js";
import { waitFor, withTimeout } from "../support/wait.js";

let dns: DnsResponder;
let dir: string;
let hostsFile: string;
let resolvConf: string;

before(async () => {
  dns = await startDnsResponder({
    names: {
      "quiet.test": { a: ["203.0.113.10"], aaaa: ["2001:db8::10"], ttl: 120 },
      "v4only.test": { a: ["203.0.113.11"], ttl: 7 },
      "svc.corp.test": { a: ["10.0.0.9"] },
    },
  });
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "egress-resolver-"));
  hostsFile = path.join(dir, "hosts");
  resolvConf = path.join(dir, "resolv.conf");
  await fs.writeFile(hostsFile, "127.0.0.1 localhost\n203.0.113.20 pinned.test # the model API, say\n");
  await fs.writeFile(resolvConf, "nameserver 127.0.0.1\nsearch corp.test\n");
});
after(async () => {
  await dns.close();
  await fs.rm(dir, { recursive: true, force: true });
});

/** A resolver that asks only the test's responder. */
function resolver(options: NameResolverOptions = {}): NameResolver {
  return new NameResolver({ servers: [dns.server], hostsFile, resolvConf, timeoutMs: 2_000, ...options });
}

async function rejection(promise: Promise<unknown>): Promise<LookupError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof LookupError, `a LookupError, got ${String(error)}`);
    return error;
  }
  assert.fail("the lookup succeeded");
}

describe("hosts file and resolv.conf", () => {
  test("the hosts file: names lowercased, comments and bad lines skipped, addresses in order", () => {
    const table = parseHostsFile(
      "# comment\n10.0.0.1 A.example b.example.  # trailing\nnot-an-ip c.example\nfe80::1%eth0 zoned.example\n::1 a.example\n\n10.0.0.1 a.example\n",
    );
    assert.deepEqual(table.get("a.example"), ["10.0.0.1", "::1"]);
    assert.deepEqual(table.get("b.example"), ["10.0.0.1"]);
    assert.equal(table.get("c.example"), undefined);
    assert.equal(table.get("zoned.example"), undefined);
  });

  test("localhost names are loopback unless the file says otherwise", () => {
    const table = parseHostsFile("10.9.9.9 dev.localhost\n");
    assert.deepEqual(answerFromHosts(table, "localhost"), ["127.0.0.1", "::1"]);
    assert.deepEqual(answerFromHosts(table, "x.y.localhost"), ["127.0.0.1", "::1"]);
    assert.deepEqual(answerFromHosts(table, "dev.localhost"), ["10.9.9.9"]);
    assert.equal(answerFromHosts(table, "localhost.example"), undefined);
  });

  test("the search list is tried in glibc's order, by ndots", () => {
    const settings = parseResolvConf(
      "nameserver 10.0.0.2\ndomain old.test\nsearch ns.svc.cluster.local svc.cluster.local ; comment\noptions ndots:2 timeout:1\n",
    );
    assert.deepEqual(settings, { search: ["ns.svc.cluster.local", "svc.cluster.local"], ndots: 2 });
    assert.deepEqual(searchCandidates("api", settings), ["api.ns.svc.cluster.local", "api.svc.cluster.local", "api"]);
    assert.deepEqual(searchCandidates("api.openai.com", settings), [
      "api.openai.com",
      "api.openai.com.ns.svc.cluster.local",
      "api.openai.com.svc.cluster.local",
    ]);
    assert.deepEqual(parseResolvConf(""), { search: [], ndots: 1 });
  });

  test("a watched file is read again when it changes, and not looked at more often than asked", async () => {
    const file = path.join(dir, "watched");
    await fs.writeFile(file, "10.0.0.1 one.test\n");
    let now = 0;
    const watched = new WatchedFile(file, parseHostsFile, 1_000, () => now);
    assert.deepEqual(watched.value.get("one.test"), ["10.0.0.1"]);
    await fs.writeFile(file, "10.0.0.2 one.test two.test\n");
    now = 999;
    assert.deepEqual(watched.value.get("one.test"), ["10.0.0.1"], "not looked at again within the interval");
    now = 1_000;
    assert.deepEqual(watched.value.get("two.test"), ["10.0.0.2"]);
    await fs.rm(file);
    now = 2_000;
    assert.equal(watched.value.size, 0, "a missing file reads as empty");
  });
});

describe("NameResolver", () => {
  test("a name in the hosts file is answered from it: no query, no slot", async () => {
    const r = resolver();
    const before = dns.queries.length;
    assert.deepEqual(await r.lookup("ws-a", "Pinned.test."), {
      addresses: ["203.0.113.20"],
      ttlSeconds: 0,
      source: "hosts",
    });
    assert.deepEqual((await r.lookup("ws-a", "localhost")).addresses, ["127.0.0.1"]);
    assert.equal(dns.queries.length, before);
  });

  test("DNS answers A and AAAA, A first, with the smallest TTL", async () => {
    const r = resolver();
    assert.deepEqual(await r.lookup("ws-a", "quiet.test"), {
      addresses: ["203.0.113.10", "2001:db8::10"],
      ttlSeconds: 120,
      source: "dns",
    });
    assert.deepEqual(await r.forWorkspace("ws-a")("v4only.test"), ["203.0.113.11"]);
  });

  test("a single-label name is tried under the search list first", async () => {
    const r = resolver();
    assert.deepEqual(await r.forWorkspace("ws-a")("svc"), ["10.0.0.9"]);
    assert.ok(dns.queries.some((q) => q.name === "svc.corp.test"));
  });

  test("a name nobody knows is not_found, without naming anything but itself", async () => {
    const error = await rejection(resolver().lookup("ws-a", "nx.test"));
    assert.equal(error.failure, "not_found");
    assert.equal(error.message, "no such name");
  });

  test("a name that never answers times out at the deadline, and its slot is free again", async () => {
    const r = resolver({ timeoutMs: 300, perWorkspace: 1, queuePerWorkspace: 0 });
    const started = Date.now();
    const error = await rejection(r.lookup("ws-a", "never.silent.test"));
    assert.equal(error.failure, "timeout");
    assert.equal(error.message, "no answer within 300 ms");
    assert.ok(Date.now() - started < 2_000, "ended near its deadline");
    assert.equal(r.slots.inFlight("ws-a"), 0);
    assert.deepEqual(
      await r.forWorkspace("ws-a")("v4only.test"),
      ["203.0.113.11"],
      "the one slot serves the next lookup",
    );
  });

  test("a lookup whose client went away is cancelled at once, and frees its slot", async () => {
    const r = resolver({ timeoutMs: 10_000, perWorkspace: 1, queuePerWorkspace: 1 });
    const first = new AbortController();
    const second = new AbortController();
    const held = rejection(r.lookup("ws-a", "held.silent.test", first.signal));
    const queued = rejection(r.lookup("ws-a", "queued.silent.test", second.signal));
    await waitFor(() => r.slots.waiting("ws-a") === 1, { what: "the second lookup to wait" });
    second.abort();
    assert.equal((await withTimeout(queued, 1_000, "the queued lookup to end")).message, "the client went away");
    assert.equal(r.slots.waiting("ws-a"), 0);
    first.abort();
    assert.equal((await withTimeout(held, 1_000, "the held lookup to end")).message, "the client went away");
    assert.equal(r.slots.inFlight("ws-a"), 0);
  });

  test("past its slots and its line, a workspace's lookup is refused at once as busy", async () => {
    let busy = 0;
    const r = resolver({ timeoutMs: 10_000, perWorkspace: 2, queuePerWorkspace: 1, onBusy: () => busy++ });
    const stop = new AbortController();
    const flood = [1, 2, 3].map((i) => rejection(r.lookup("ws-a", `f${i}.silent.test`, stop.signal)));
    await waitFor(() => r.slots.inFlight("ws-a") === 2 && r.slots.waiting("ws-a") === 1, {
      what: "two lookups in flight and one waiting",
    });
    const error = await rejection(r.lookup("ws-a", "f4.silent.test", stop.signal));
    assert.equal(error.failure, "busy");
    assert.match(error.message, /too many lookups in flight for this workspace \(2 at once, 1 waiting\)/);
    assert.equal(busy, 1);
    stop.abort();
    await Promise.all(flood);
  });

  test("a workspace flooding names that never answer does not hold up another workspace's lookup", async () => {
    const r = resolver({ timeoutMs: 10_000, perWorkspace: 4, queuePerWorkspace: 16, total: 64 });
    const stop = new AbortController();
    // A keeps its 4 slots and its line of 16 full with names that never answer; more are refused.
    const flood = Array.from({ length: 24 }, (_, i) =>
      r.lookup("ws-a", `n${i}.silent.test`, stop.signal).then(
        () => "answered",
        (error: LookupError) => error.failure,
      ),
    );
    await waitFor(() => r.slots.inFlight("ws-a") === 4 && r.slots.waiting("ws-a") === 16, {
      what: "A's slots and line to fill",
    });
    // B's lookups, by DNS and by the hosts file, are answered as fast as with nobody else.
    const started = Date.now();
    assert.deepEqual(await r.forWorkspace("ws-b")("quiet.test"), ["203.0.113.10", "2001:db8::10"]);
    assert.deepEqual(await r.forWorkspace("ws-b")("pinned.test"), ["203.0.113.20"]);
    const tookMs = Date.now() - started;
    assert.ok(tookMs < 1_000, `B's lookups took ${tookMs} ms`);
    stop.abort();
    const outcomes = await Promise.all(flood);
    assert.equal(outcomes.filter((o) => o === "busy").length, 4);
    assert.equal(outcomes.filter((o) => o === "failed").length, 20, "the rest ended when their clients went away");
    assert.equal(r.slots.inFlight(), 0);
  });

  test("past the whole sidecar's cap a lookup waits, and gets the next freed slot", async () => {
    const r = resolver({ timeoutMs: 10_000, perWorkspace: 4, total: 1 });
    const stop = new AbortController();
    const held = rejection(r.lookup("ws-a", "held.silent.test", stop.signal));
    await waitFor(() => r.slots.inFlight() === 1, { what: "the cap to fill" });
    const b = r.forWorkspace("ws-b")("quiet.test");
    await waitFor(() => r.slots.waiting("ws-b") === 1, { what: "B to wait" });
    stop.abort();
    assert.deepEqual(await withTimeout(b, 2_000, "B's lookup"), ["203.0.113.10", "2001:db8::10"]);
    await held;
  });
});
