/**
 * resolveDestination decides and resolves but never connects, so public addresses can appear here
 * (answered by an injected resolver; nothing is looked up or dialled).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AddressSet } from "../../src/policy/addresses.js";
import {
  parseAbsoluteTarget,
  parseConnectTarget,
  resolveDestination,
  type DestinationRules,
} from "../../src/egress/destination.js";
import { parseInternalDestinations } from "../../src/policy/internal-destinations.js";
import { LookupError } from "../../src/egress/resolver.js";
import type { EgressPolicy } from "../../src/policy/egress-policy.js";

function rules(
  policy: EgressPolicy,
  names: Record<string, string[]>,
  over: Partial<DestinationRules> = {},
): DestinationRules & { lookups: string[] } {
  const lookups: string[] = [];
  return {
    policy,
    internal: parseInternalDestinations(["http://alive.internal:8080", "10.0.0.5:9000"], "test"),
    resolve: async (host) => {
      lookups.push(host);
      const found = names[host];
      if (found === undefined) throw new Error(`getaddrinfo ENOTFOUND ${host}`);
      return found;
    },
    hostAddresses: ["127.0.0.1", "::1", "8.8.4.4"],
    lookups,
    ...over,
  };
}

describe("resolveDestination", () => {
  test("a public name with public answers resolves to all of them", async () => {
    const r = rules("public", { "pub.example": ["1.1.1.1", "2606:4700:4700::1111"] });
    assert.deepEqual(await resolveDestination({ host: "pub.example", port: 443 }, r), {
      ok: true,
      addresses: ["1.1.1.1", "2606:4700:4700::1111"],
      internal: false,
    });
  });

  test("one private answer among public ones refuses the name, in either order", async () => {
    for (const answers of [
      ["1.1.1.1", "10.0.0.1"],
      ["fd00::1", "1.1.1.1"],
    ]) {
      const result = await resolveDestination(
        { host: "mixed.example", port: 443 },
        rules("public", { "mixed.example": answers }),
      );
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.reason, "private_address");
    }
  });

  test("a public address of the host is refused as host_address, by name or literal", async () => {
    const r = rules("public", { "me.example": ["1.1.1.1", "8.8.4.4"] });
    const byName = await resolveDestination({ host: "me.example", port: 443 }, r);
    assert.deepEqual(byName, {
      ok: false,
      reason: "host_address",
      detail: "me.example resolves to an address of the host",
      logDetail: "me.example resolves to 8.8.4.4, an address of the host",
    });
    const literal = await resolveDestination({ host: "::ffff:808:404", port: 443 }, r);
    assert.equal(!literal.ok && literal.reason, "host_address");
  });

  test("a refusal of a name never tells the client what it resolved to; the log detail does", async () => {
    const r = rules("public", { "internal.example": ["1.1.1.1", "10.0.0.5"], "meta.example": ["169.254.169.254"] });
    for (const [host, address, range] of [
      ["internal.example", "10.0.0.5", "private"],
      ["meta.example", "169.254.169.254", "link-local"],
    ] as const) {
      const result = await resolveDestination({ host, port: 443 }, r);
      assert.ok(!result.ok);
      assert.equal(result.reason, "private_address");
      assert.equal(result.detail, `${host} resolves to an address that is not public`);
      for (const leak of [address, "1.1.1.1", range])
        assert.ok(!result.detail.includes(leak), `the client's detail names ${leak}: ${result.detail}`);
      assert.equal(result.logDetail, `${host} resolves to ${address}, a ${range} address`);
    }
  });

  test("an IP literal's refusal names the literal and its range: it is the client's own", async () => {
    const result = await resolveDestination({ host: "10.1.2.3", port: 443 }, rules("public", {}));
    assert.deepEqual(result, {
      ok: false,
      reason: "private_address",
      detail: "10.1.2.3 is a private address",
      logDetail: "10.1.2.3 is a private address",
    });
  });

  test("the operator's host addresses are refused as host_address, by name or literal, in any spelling", async () => {
    // Public networks: a documentation or private one is refused as private_address before this check.
    const operatorHostAddresses = new AddressSet([
      { network: "93.184.0.0", prefix: 16 },
      { network: "2606:2800::", prefix: 32 },
    ]);
    const r = rules(
      "public",
      { "nat.example": ["1.1.1.1", "93.184.216.34"], "v6.example": ["2606:2800:220:1::1"], "ok.example": ["1.1.1.1"] },
      { operatorHostAddresses },
    );
    for (const host of ["nat.example", "v6.example", "93.184.216.34", "::ffff:93.184.216.34", "2606:2800::5"]) {
      const result = await resolveDestination({ host, port: 443 }, r);
      assert.equal(!result.ok && result.reason, "host_address", host);
    }
    assert.deepEqual(await resolveDestination({ host: "ok.example", port: 443 }, r), {
      ok: true,
      addresses: ["1.1.1.1"],
      internal: false,
    });
  });

  test("a lookup refused for the workspace's bound is dns_busy; the lookup gets the client's signal", async () => {
    const signals: Array<AbortSignal | undefined> = [];
    const r = rules(
      "public",
      {},
      {
        resolve: async (_host, signal) => {
          signals.push(signal);
          throw new LookupError(
            "busy",
            "too many lookups in flight for this workspace (4 at once, 16 waiting); try again when they end",
          );
        },
      },
    );
    const controller = new AbortController();
    const result = await resolveDestination({ host: "flood.example", port: 443 }, r, controller.signal);
    assert.ok(!result.ok);
    assert.equal(result.reason, "dns_busy");
    assert.match(result.detail, /^flood\.example did not resolve: too many lookups in flight/);
    assert.equal(signals[0], controller.signal);
  });

  test("the policy decides before any lookup", async () => {
    const r = rules({ allow: ["ok.example"], deny: [] }, { "other.example": ["1.1.1.1"] });
    const result = await resolveDestination({ host: "other.example", port: 443 }, r);
    assert.equal(!result.ok && result.reason, "not_allowed");
    assert.deepEqual(r.lookups, []);
  });

  test("an internal destination skips the policy and the address checks, on its port only", async () => {
    const r = rules("model", { "alive.internal": ["10.0.0.7"] });
    assert.deepEqual(await resolveDestination({ host: "alive.internal", port: 8080 }, r), {
      ok: true,
      addresses: ["10.0.0.7"],
      internal: true,
    });
    assert.deepEqual(await resolveDestination({ host: "10.0.0.5", port: 9000 }, r), {
      ok: true,
      addresses: ["10.0.0.5"],
      internal: true,
    });
    const otherPort = await resolveDestination({ host: "10.0.0.5", port: 9001 }, r);
    assert.equal(!otherPort.ok && otherPort.reason, "model_only");
  });

  test("a failed, empty or non-address answer is dns_failed", async () => {
    const r = rules("public", { "empty.example": [], "junk.example": ["1.1.1.1", "not-an-ip"] });
    for (const host of ["nx.example", "empty.example", "junk.example"]) {
      const result = await resolveDestination({ host, port: 443 }, r);
      assert.equal(!result.ok && result.reason, "dns_failed", host);
    }
  });
});

describe("parseConnectTarget and parseAbsoluteTarget", () => {
  test("CONNECT targets are host:port or [IPv6]:port, normalised", () => {
    assert.deepEqual(parseConnectTarget("Example.COM:443"), { host: "example.com", port: 443 });
    assert.deepEqual(parseConnectTarget("[2001:DB8::1]:8443"), { host: "2001:db8::1", port: 8443 });
    assert.deepEqual(parseConnectTarget("0x7f.1:22"), { host: "127.0.0.1", port: 22 });
    for (const bad of [
      "example.com",
      "example.com:",
      ":443",
      "example.com:443/x",
      "a:b:443",
      "2001:db8::1:443",
      "[]:443",
      "example.com:123456",
    ]) {
      assert.equal(typeof parseConnectTarget(bad), "string", bad);
    }
  });

  test("absolute-form targets keep the authority and the path with its query", () => {
    assert.deepEqual(parseAbsoluteTarget("http://Example.com/a/b?c=d#frag"), {
      target: { host: "example.com", port: 80 },
      authority: "example.com",
      path: "/a/b?c=d",
    });
    assert.deepEqual(parseAbsoluteTarget("http://[::1]:8080"), {
      target: { host: "::1", port: 8080 },
      authority: "[::1]:8080",
      path: "/",
    });
    assert.match(parseAbsoluteTarget("/just/a/path") as string, /absolute-form/);
    assert.match(parseAbsoluteTarget("ftp://example.com/") as string, /use CONNECT for ftp/);
  });
});
