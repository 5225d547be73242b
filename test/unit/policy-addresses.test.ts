import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  AddressSet,
  canonicalAddress,
  checkAddress,
  parseAddressEntry,
  classifyAddress,
  embeddedIPv4,
  type AddressClass,
} from "../../src/policy/addresses.js";

const CASES: ReadonlyArray<readonly [string, AddressClass]> = [
  // IPv4
  ["0.0.0.0", "unspecified"],
  ["0.255.1.2", "unspecified"],
  ["10.1.2.3", "private"],
  ["100.64.0.1", "shared"],
  ["100.127.255.254", "shared"],
  ["100.128.0.1", "public"],
  ["127.0.0.1", "loopback"],
  ["127.255.255.254", "loopback"],
  ["169.254.169.254", "link_local"],
  ["172.15.255.255", "public"],
  ["172.16.0.1", "private"],
  ["172.31.255.255", "private"],
  ["172.32.0.1", "public"],
  ["192.0.0.8", "reserved"],
  ["192.0.2.1", "documentation"],
  ["192.88.99.1", "reserved"],
  ["192.168.1.1", "private"],
  ["198.18.0.1", "benchmark"],
  ["198.19.255.255", "benchmark"],
  ["198.51.100.7", "documentation"],
  ["203.0.113.10", "documentation"],
  ["224.0.0.251", "multicast"],
  ["239.255.255.250", "multicast"],
  ["240.0.0.1", "reserved"],
  ["255.255.255.255", "broadcast"],
  ["1.1.1.1", "public"],
  ["8.8.8.8", "public"],
  // IPv6
  ["::", "unspecified"],
  ["::1", "loopback"],
  ["0:0:0:0:0:0:0:1", "loopback"],
  ["::127.0.0.1", "reserved"],
  ["::ffff:0:a00:1", "reserved"],
  ["fc00::1", "private"],
  ["fd12:3456::1", "private"],
  ["fe80::1", "link_local"],
  ["fe80::1%eth0", "link_local"],
  ["febf::1", "link_local"],
  ["fec0::1", "private"],
  ["ff02::1", "multicast"],
  ["2001:db8::1", "documentation"],
  ["2001:DB8:0:0::1", "documentation"],
  ["3fff::1", "documentation"],
  ["2001:2::1", "benchmark"],
  ["2001::1", "reserved"],
  ["100::1", "reserved"],
  ["64:ff9b:1::1", "reserved"],
  ["5f00::1", "reserved"],
  ["4000::1", "reserved"],
  ["2606:4700:4700::1111", "public"],
  ["2a00:1450:4001::1", "public"],
  // IPv6 forms of IPv4 addresses are judged as the IPv4 address
  ["::ffff:127.0.0.1", "loopback"],
  ["::ffff:7f00:1", "loopback"],
  ["::FFFF:10.0.0.1", "private"],
  ["::ffff:169.254.169.254", "link_local"],
  ["::ffff:8.8.8.8", "public"],
  ["64:ff9b::169.254.169.254", "link_local"],
  ["64:ff9b::a00:1", "private"],
  ["64:ff9b::8.8.8.8", "public"],
  ["2002:7f00:1::", "loopback"],
  ["2002:0808:0808::1", "public"],
];

describe("classifyAddress", () => {
  for (const [address, expected] of CASES) {
    test(`${address} is ${expected}`, () => assert.equal(classifyAddress(address), expected));
  }

  test("a name or garbage is not an address", () => {
    for (const value of ["localhost", "", "1.2.3", "::g", "[::1]", "2130706433"]) {
      assert.throws(() => classifyAddress(value), TypeError, value);
    }
  });
});

describe("canonicalAddress and embeddedIPv4", () => {
  test("spellings of one address meet in one form", () => {
    assert.equal(canonicalAddress("::ffff:7f00:1"), "127.0.0.1");
    assert.equal(canonicalAddress("::FFFF:127.0.0.1"), "127.0.0.1");
    assert.equal(canonicalAddress("2001:DB8::1"), "2001:0db8:0000:0000:0000:0000:0000:0001");
    assert.equal(canonicalAddress("2001:db8:0:0:0:0:0:1"), "2001:0db8:0000:0000:0000:0000:0000:0001");
    assert.equal(canonicalAddress("fe80::1%eth0"), "fe80:0000:0000:0000:0000:0000:0000:0001");
    assert.equal(canonicalAddress("example.com"), undefined);
  });

  test("only mapped, NAT64 and 6to4 addresses carry an IPv4 address", () => {
    assert.equal(embeddedIPv4("::ffff:c000:201"), "192.0.2.1");
    assert.equal(embeddedIPv4("64:ff9b::c633:6407"), "198.51.100.7");
    assert.equal(embeddedIPv4("2002:cb00:710a::1"), "203.0.113.10");
    assert.equal(embeddedIPv4("2001:db8::1"), undefined);
    assert.equal(embeddedIPv4("64:ff9b:1::a00:1"), undefined);
    assert.equal(embeddedIPv4("10.0.0.1"), undefined);
  });
});

describe("checkAddress", () => {
  const host = ["127.0.0.1", "::1", "10.0.0.4", "8.8.4.4", "2606:4700::6810:1"];

  test("a public address that is not the host's is allowed", () => {
    assert.deepEqual(checkAddress("1.1.1.1", host), { allowed: true });
    assert.deepEqual(checkAddress("2606:4700::1", host), { allowed: true });
  });

  test("a non-public address is refused with its range", () => {
    assert.deepEqual(checkAddress("169.254.169.254", host), {
      allowed: false,
      reason: "private_address",
      range: "link_local",
    });
    assert.deepEqual(checkAddress("::1", host), { allowed: false, reason: "private_address", range: "loopback" });
  });

  test("a public address of the host is refused, in any spelling", () => {
    for (const address of [
      "8.8.4.4",
      "::ffff:8.8.4.4",
      "::ffff:808:404",
      "64:ff9b::8.8.4.4",
      "2606:4700:0:0:0:0:6810:1",
    ]) {
      assert.deepEqual(checkAddress(address, host), { allowed: false, reason: "host_address" }, address);
    }
  });
});

describe("the operator's further host addresses", () => {
  test("entries: an address, or a network no wider than /8 or /16, IPv4 ones in IPv4 form", () => {
    assert.deepEqual(parseAddressEntry("93.184.216.34"), { network: "93.184.216.34", prefix: 32 });
    assert.deepEqual(parseAddressEntry("[2606:2800::1]"), { network: "2606:2800::1", prefix: 128 });
    assert.deepEqual(parseAddressEntry("::ffff:93.184.216.34"), { network: "93.184.216.34", prefix: 32 });
    assert.deepEqual(parseAddressEntry("100.0.0.0/8"), { network: "100.0.0.0", prefix: 8 });
    for (const bad of [
      "",
      "host.example",
      "1.2.3.4/",
      "1.2.3.4/x",
      "1.2.3.4/7",
      "2001:db8::/15",
      "::ffff:1.2.3.0/120",
      "fe80::1%lo",
    ]) {
      assert.equal(typeof parseAddressEntry(bad), "string", bad);
    }
  });

  test("an address in the set is refused as host_address in any spelling; outside it, allowed", () => {
    const extra = new AddressSet([
      { network: "93.184.216.0", prefix: 24 },
      { network: "2606:2800::", prefix: 32 },
    ]);
    for (const address of ["93.184.216.34", "::ffff:93.184.216.34", "64:ff9b::93.184.216.34", "2606:2800:220:1::1"]) {
      assert.deepEqual(checkAddress(address, [], extra), { allowed: false, reason: "host_address" }, address);
    }
    assert.deepEqual(checkAddress("93.184.217.1", [], extra), { allowed: true });
    // A non-public address keeps its own, more precise reason.
    assert.deepEqual(checkAddress("10.0.0.1", [], new AddressSet([{ network: "10.0.0.0", prefix: 8 }])), {
      allowed: false,
      reason: "private_address",
      range: "private",
    });
  });
});
