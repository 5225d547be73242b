import assert from "node:assert/strict";
import type { NetworkInterfaceInfo } from "node:os";
import { describe, test } from "node:test";
import { hostAddressesFromInterfaces, readKernelLocalAddresses } from "../../src/egress/host-addresses.js";
import { checkAddress } from "../../src/policy/addresses.js";

describe("hostAddressesFromInterfaces", () => {
  test("lists every address of every interface", () => {
    const info = (address: string): NetworkInterfaceInfo => ({
      address,
      family: "IPv4",
      netmask: "",
      mac: "00:00:00:00:00:00",
      internal: false,
      cidr: null,
    });
    const interfaces = { lo: [info("127.0.0.1"), info("::1")], eth0: [info("8.8.4.4")], down: undefined };
    assert.deepEqual(hostAddressesFromInterfaces(interfaces), ["127.0.0.1", "::1", "8.8.4.4"]);
  });

  test("reads this machine's interfaces by default, loopback among them", () => {
    assert.ok(hostAddressesFromInterfaces().includes("127.0.0.1"));
  });
});

describe("the host's own addresses", () => {
  test("the kernel's LOCAL IPv4 addresses and every IPv6 address count, a bridge with no carrier included", () => {
    const fibTrie = [
      "Main:",
      "  +-- 0.0.0.0/0 3 0 4",
      "     +-- 172.16.0.0/15 2 0 2",
      "        +-- 172.17.0.0/31 1 0 0",
      "           |-- 172.17.0.0",
      "              /16 link UNICAST",
      "           |-- 172.17.0.1",
      "              /32 host LOCAL",
      "        |-- 172.17.255.255",
      "           /32 link BROADCAST",
      "     |-- 100.200.1.2",
      "        /32 host LOCAL",
    ].join("\n");
    const ifInet6 = "20010db8000000000000000000000001 05 40 00 80  docker0\n";
    const addresses = readKernelLocalAddresses(fibTrie, ifInet6);
    assert.deepEqual(addresses.sort(), ["100.200.1.2", "172.17.0.1", "2001:0db8:0000:0000:0000:0000:0000:0001"].sort());
    // A public address of the host (here on a bridge with no carrier) is the host all the same.
    assert.deepEqual(checkAddress("100.200.1.2", addresses), { allowed: false, reason: "host_address" });
  });
});
