/**
 * What the egress proxy refuses, and that a refusal connects nowhere: every case here either stops
 * before any lookup (the recording resolver stays empty) or stops at an address check, and the
 * loopback upstreams count no new connection. No test resolves or connects to a real public name.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, afterEach, before, describe, test } from "node:test";
import { AddressSet } from "../../src/policy/addresses.js";
import { parseInternalDestinations } from "../../src/policy/internal-destinations.js";
import { LookupError } from "../../src/egress/resolver.js";
import { LogLimiter } from "../../src/shared/log-limiter.js";
import { waitFor } from "../support/wait.js";
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

const LIST = { allow: ["*.allowed.example", "localhost"], deny: ["blocked.allowed.example"] };

async function start(options: Omit<TestProxyOptions, "upstreams">): Promise<TestProxy> {
  proxy = await startTestProxy({ ...options, upstreams });
  return proxy;
}

function get(socketPath: string, url: string, headers = ""): Promise<RawResponse> {
  return sendRaw(socketPath, `GET ${url} HTTP/1.1\r\nHost: ignored\r\n${headers}Connection: close\r\n\r\n`);
}

/** Asserts a 403 refusal with its reason header and a body naming the host and the reason. */
async function assertRefused(response: RawResponse, host: string, reason: string): Promise<string> {
  const text = await response.received.closedText();
  assert.equal(response.status, 403, text);
  assert.equal(response.headers["x-alive-egress-refused"], reason);
  assert.ok(response.body().includes(host), `body names ${host}: ${response.body()}`);
  assert.match(response.body(), new RegExp(`refused \\(${reason}\\)`));
  return response.body();
}

describe("egress proxy: refused by name, before any lookup", () => {
  const CASES = [
    ["a denied domain under an allow-list", LIST, "blocked.allowed.example", "denied"],
    ["an unlisted domain under an allow-list", LIST, "elsewhere.example", "not_allowed"],
    ["the apex of a *. pattern", LIST, "allowed.example", "not_allowed"],
    ["an IP literal under an allow-list", LIST, "203.0.113.10", "not_allowed"],
    ['any name under "model"', "model", "api.example.com", "model_only"],
    ['a public IP literal under "model"', "model", "203.0.113.10", "model_only"],
  ] as const;

  for (const [what, policy, host, reason] of CASES) {
    test(`${what}: CONNECT and GET are 403 ${reason}`, async () => {
      const p = await start({ policy, names: { [host]: ["203.0.113.10"] } });
      const connections = upstreams.connections();
      await assertRefused(await connectThrough(p.socketPath, `${host}:443`), host, reason);
      await assertRefused(await get(p.socketPath, `http://${host}/path`), host, reason);
      assert.deepEqual(p.lookups, []);
      assert.equal(upstreams.connections(), connections);
      assert.deepEqual(p.refusals, [
        [host, 443, reason],
        [host, 80, reason],
      ]);
    });
  }

  test("the policy is read for every request", async () => {
    const p = await start({ policy: "public" });
    const target = `127.0.0.1:${upstreams.echoPort}`;
    p.policy = "model";
    // Internal destinations stay reachable; a name is now refused without a lookup.
    const tunnel = await connectThrough(p.socketPath, target);
    assert.equal(tunnel.status, 200);
    tunnel.socket.destroy();
    await assertRefused(await connectThrough(p.socketPath, "somewhere.example:443"), "somewhere.example", "model_only");
    p.policy = { allow: ["somewhere.example"], deny: [] };
    const response = await connectThrough(p.socketPath, "somewhere.example:443");
    assert.equal(response.status, 502); // allowed by name now, and the test resolver knows no such name
    assert.deepEqual(p.lookups, ["somewhere.example"]);
  });
});

describe("egress proxy: refused by address", () => {
  test("localhost, allowed by name, resolves (for real, through the hosts file) to loopback: private_address, without saying to what", async () => {
    const p = await start({ policy: LIST, realResolver: true });
    const connections = upstreams.connections();
    const body = await assertRefused(
      await connectThrough(p.socketPath, `localhost:${upstreams.echoPort}`),
      "localhost",
      "private_address",
    );
    assert.match(body, /localhost resolves to an address that is not public/);
    for (const leak of ["127.0.0.1", "::1", "loopback"])
      assert.ok(!body.includes(leak), `the answer names ${leak}: ${body}`);
    // The sidecar's own log keeps what it resolved to.
    assert.ok(
      p.logLines.some((line) => /"detail":"localhost resolves to (127\.0\.0\.1|::1), a loopback address"/.test(line)),
      p.logLines.join("\n"),
    );
    await assertRefused(
      await get(p.socketPath, `http://localhost:${upstreams.httpPort}/`),
      "localhost",
      "private_address",
    );
    assert.equal(upstreams.connections(), connections);
  });

  const LITERALS = [
    ["169.254.169.254:80", "169.254.169.254", /link-local/],
    ["10.1.2.3:443", "10.1.2.3", /private/],
    [`[::1]:${8080}`, "::1", /loopback/],
    ["[::ffff:127.0.0.1]:443", "::ffff:127.0.0.1", /is a loopback address/],
    ["[fd00::1]:443", "fd00::1", /private/],
    ["0.0.0.0:443", "0.0.0.0", /unspecified/],
    ["2130706433:443", "127.0.0.1", /loopback/],
  ] as const;
  for (const [target, host, range] of LITERALS) {
    test(`the literal ${target} is refused without a lookup`, async () => {
      const p = await start({ policy: "public" });
      assert.match(await assertRefused(await connectThrough(p.socketPath, target), host, "private_address"), range);
      assert.deepEqual(p.lookups, []);
    });
  }

  test("an absolute-form GET to the metadata address is refused", async () => {
    const p = await start({ policy: "public" });
    await assertRefused(
      await get(p.socketPath, "http://169.254.169.254/latest/meta-data/"),
      "169.254.169.254",
      "private_address",
    );
  });

  test("a name with one non-public address among its answers is refused, whichever comes first", async () => {
    const p = await start({
      policy: "public",
      names: { "mixed.example": ["203.0.113.10", "127.0.0.1"], "mixed2.example": ["127.0.0.1", "203.0.113.10"] },
    });
    const connections = upstreams.connections();
    await assertRefused(
      await connectThrough(p.socketPath, `mixed.example:${upstreams.echoPort}`),
      "mixed.example",
      "private_address",
    );
    await assertRefused(
      await connectThrough(p.socketPath, `mixed2.example:${upstreams.echoPort}`),
      "mixed2.example",
      "private_address",
    );
    assert.equal(upstreams.connections(), connections);
  });

  test("a name that resolves to an internal destination's address is not that destination", async () => {
    const p = await start({ policy: "public", names: { "alias.example": ["127.0.0.1"] } });
    await assertRefused(
      await connectThrough(p.socketPath, `alias.example:${upstreams.echoPort}`),
      "alias.example",
      "private_address",
    );
  });

  test("the operator's further host addresses are refused as host_address, naming no address", async () => {
    const p = await start({
      policy: "public",
      names: { "nat.example": ["93.184.216.34"] },
      extra: { operatorHostAddresses: new AddressSet([{ network: "93.184.216.0", prefix: 24 }]) },
    });
    const body = await assertRefused(
      await connectThrough(p.socketPath, "nat.example:443"),
      "nat.example",
      "host_address",
    );
    assert.match(body, /nat\.example resolves to an address of the host/);
    assert.ok(!body.includes("93.184"), body);
    await assertRefused(await connectThrough(p.socketPath, "93.184.216.1:443"), "93.184.216.1", "host_address");
  });
});

describe("egress proxy: malformed requests and failed lookups", () => {
  const BAD = [
    ["an origin-form request", "GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", /absolute-form/],
    [
      "an https:// absolute-form request",
      "GET https://example.com/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      /use CONNECT for https/,
    ],
    ["a CONNECT without a port", "CONNECT example.com HTTP/1.1\r\n\r\n", /CONNECT needs host:port/],
    ["a CONNECT to port 0", "CONNECT example.com:0 HTTP/1.1\r\n\r\n", /port 0 is not a port/],
    ["a CONNECT to port 70000", "CONNECT example.com:70000 HTTP/1.1\r\n\r\n", /port 70000 is not a port/],
    ["a CONNECT with user info", "CONNECT user@example.com:443 HTTP/1.1\r\n\r\n", /CONNECT needs host:port/],
    ["a CONNECT to a zone id", "CONNECT [fe80::1%eth0]:443 HTTP/1.1\r\n\r\n", /zone ids/],
    ["a CONNECT to a bad name", "CONNECT bad..name:443 HTTP/1.1\r\n\r\n", /not a host name/],
  ] as const;
  for (const [what, request, message] of BAD) {
    test(`${what} is a 400 that says what was wrong`, async () => {
      const p = await start({ policy: "public" });
      const response = await sendRaw(p.socketPath, request);
      await response.received.closedText();
      assert.equal(response.status, 400);
      assert.equal(response.headers["x-alive-egress-error"], "bad_request");
      assert.match(response.body(), message);
      assert.deepEqual(p.lookups, []);
      assert.deepEqual(p.refusals, []);
    });
  }

  test("a name that does not resolve is a 502 dns_failed, and so is an empty answer", async () => {
    const p = await start({ policy: "public", names: { "empty.example": [] } });
    for (const host of ["nxdomain.example", "empty.example"]) {
      const response = await connectThrough(p.socketPath, `${host}:443`);
      await response.received.closedText();
      assert.equal(response.status, 502);
      assert.equal(response.headers["x-alive-egress-error"], "dns_failed");
      assert.match(response.body(), new RegExp(host.replace(".", "\\.")));
    }
    assert.deepEqual(p.refusals, []);
  });
});

describe("egress proxy: lookups", () => {
  test("a lookup refused for the workspace's bound is a 429 dns_busy saying so", async () => {
    const p = await start({
      policy: "public",
      extra: {
        resolve: async () =>
          Promise.reject(
            new LookupError(
              "busy",
              "too many lookups in flight for this workspace (4 at once, 16 waiting); try again when they end",
            ),
          ),
      },
    });
    for (const response of [
      await connectThrough(p.socketPath, "flood.example:443"),
      await get(p.socketPath, "http://flood.example/"),
    ]) {
      await response.received.closedText();
      assert.equal(response.status, 429);
      assert.equal(response.headers["x-alive-egress-error"], "dns_busy");
      assert.match(response.body(), /flood\.example did not resolve: too many lookups in flight/);
    }
  });

  test("a client that goes away while its name is looked up ends the lookup", async () => {
    const started: string[] = [];
    const ended: string[] = [];
    const resolve = (host: string, signal?: AbortSignal): Promise<string[]> =>
      new Promise((_, reject) => {
        started.push(host);
        signal?.addEventListener("abort", () => {
          ended.push(host);
          reject(new LookupError("failed", "the client went away"));
        });
      });
    const p = await start({ policy: "public", extra: { resolve } });
    const clients = [
      "CONNECT slow.example:443 HTTP/1.1\r\n\r\n",
      "GET http://slow2.example/ HTTP/1.1\r\nHost: slow2.example\r\n\r\n",
    ].map((head) => {
      const socket = net.connect(p.socketPath);
      socket.on("error", () => {});
      socket.write(head);
      return socket;
    });
    await waitFor(() => started.length === 2, { what: "both lookups to start" });
    assert.deepEqual(ended, []);
    for (const socket of clients) socket.destroy();
    await waitFor(() => ended.length === 2, { what: "both lookups to end" });
    assert.deepEqual(ended.sort(), ["slow.example", "slow2.example"]);
  });

  test("a connect failure to a name does not say which address was tried", async () => {
    const p = await start({
      policy: "public",
      names: { "closed.internal": ["127.0.0.1"] },
      extra: { internal: parseInternalDestinations(["closed.internal:1"], "test") },
    });
    const response = await connectThrough(p.socketPath, "closed.internal:1");
    await response.received.closedText();
    assert.equal(response.status, 502);
    assert.equal(response.headers["x-alive-egress-error"], "connect_failed");
    assert.match(response.body(), /could not connect to closed\.internal port 1: ECONNREFUSED/);
    assert.ok(!response.body().includes("127.0.0.1"), response.body());
  });
});

describe("egress proxy: refusal logs and counts", () => {
  test("each refusal is counted and logged (the log may say what a name resolved to), without paths or credentials", async () => {
    const p = await start({ policy: LIST, names: { localhost: ["127.0.0.1"] } });
    const secretHeaders = "Authorization: Bearer sk-secret-bearer\r\nProxy-Authorization: Basic c2VjcmV0LXByb3h5\r\n";
    for (let i = 0; i < 3; i++)
      await (
        await get(p.socketPath, "http://blocked.allowed.example/x?token=secret-query", secretHeaders)
      ).received.closedText();
    await (await connectThrough(p.socketPath, "elsewhere.example:443")).received.closedText();
    await (await connectThrough(p.socketPath, "localhost:443")).received.closedText();
    assert.equal(p.refusals.length, 5);
    const refused = p.logLines
      .filter((line) => line.includes("egress refused"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(
      refused.map((r) => [r.level, r.host, r.reason]),
      [
        ["warn", "blocked.allowed.example", "denied"],
        ["warn", "blocked.allowed.example", "denied"],
        ["warn", "blocked.allowed.example", "denied"],
        ["warn", "elsewhere.example", "not_allowed"],
        ["warn", "localhost", "private_address"],
      ],
    );
    assert.equal(refused[4]?.detail, "localhost resolves to 127.0.0.1, a loopback address");
    const all = p.logLines.join("\n");
    for (const secret of ["sk-secret-bearer", "c2VjcmV0LXByb3h5", "secret-query", "/x?"])
      assert.ok(!all.includes(secret), `the log holds ${secret}`);
  });

  test("a flood of refusals is logged at a bounded rate, then summed up in one line", async () => {
    let now = 0;
    const p = await start({ policy: LIST, extra: { logLimiter: new LogLimiter({ perMinute: 2, now: () => now }) } });
    for (let i = 0; i < 6; i++) await (await connectThrough(p.socketPath, `h${i}.example:443`)).received.closedText();
    assert.equal(p.refusals.length, 6, "every refusal is still counted");
    const refusedLines = (): Array<Record<string, unknown>> =>
      p.logLines
        .filter((line) => line.includes("egress refused"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.deepEqual(
      refusedLines().map((r) => r.host),
      ["h0.example", "h1.example"],
    );
    now = 30_000;
    await (await connectThrough(p.socketPath, "h6.example:443")).received.closedText();
    assert.deepEqual(
      refusedLines()
        .slice(2)
        .map((r) => [r.msg, r.suppressed ?? null, r.host]),
      [
        ["egress refused: 4 more suppressed", 4, "h5.example"],
        ["egress refused", null, "h6.example"],
      ],
    );
  });
});
