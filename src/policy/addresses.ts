/**
 * Which IP addresses a workspace may reach: public ones only. Everything else is named by its range
 * (loopback, private, link-local with the cloud metadata address, ...) so a refusal can say why.
 * IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4
 * 2002::/16) are judged by that IPv4 address: ::ffff:127.0.0.1 is loopback, not "some IPv6".
 */
import { BlockList, isIP, isIPv4 } from "node:net";

export type AddressRange =
  | "loopback"
  | "private"
  | "shared"
  | "link_local"
  | "unspecified"
  | "multicast"
  | "broadcast"
  | "documentation"
  | "benchmark"
  | "reserved";

export type AddressClass = "public" | AddressRange;

type RangeTable = ReadonlyArray<readonly [AddressRange, string, number]>;

// First match wins: the broadcast address sits inside 240/4, which is "reserved".
const IPV4_RANGES: RangeTable = [
  ["unspecified", "0.0.0.0", 8],
  ["private", "10.0.0.0", 8],
  ["shared", "100.64.0.0", 10],
  ["loopback", "127.0.0.0", 8],
  ["link_local", "169.254.0.0", 16],
  ["private", "172.16.0.0", 12],
  ["reserved", "192.0.0.0", 24],
  ["documentation", "192.0.2.0", 24],
  ["reserved", "192.88.99.0", 24],
  ["private", "192.168.0.0", 16],
  ["benchmark", "198.18.0.0", 15],
  ["documentation", "198.51.100.0", 24],
  ["documentation", "203.0.113.0", 24],
  ["multicast", "224.0.0.0", 4],
  ["broadcast", "255.255.255.255", 32],
  ["reserved", "240.0.0.0", 4],
];

// IPv4-mapped, NAT64 and 6to4 never reach this table (they are judged as IPv4). Anything outside
// 2000::/3, the only global unicast space allocated, is "reserved" after this table.
const IPV6_RANGES: RangeTable = [
  ["unspecified", "::", 128],
  ["loopback", "::1", 128],
  ["reserved", "::", 96], // IPv4-compatible, deprecated
  ["reserved", "::ffff:0:0:0", 96], // IPv4-translated (SIIT)
  ["reserved", "64:ff9b:1::", 48], // local-use NAT64
  ["reserved", "100::", 64], // discard-only
  ["benchmark", "2001:2::", 48],
  ["reserved", "2001::", 23], // IETF protocol assignments, Teredo among them
  ["documentation", "2001:db8::", 32],
  ["documentation", "3fff::", 20],
  ["reserved", "5f00::", 16], // SRv6 SIDs
  ["private", "fc00::", 7],
  ["link_local", "fe80::", 10],
  ["private", "fec0::", 10], // site-local, deprecated
  ["multicast", "ff00::", 8],
];

const GLOBAL_UNICAST = new BlockList();
GLOBAL_UNICAST.addSubnet("2000::", 3, "ipv6");

function buildLists(table: RangeTable, family: "ipv4" | "ipv6"): Array<readonly [AddressRange, BlockList]> {
  return table.map(([range, network, prefix]) => {
    const list = new BlockList();
    list.addSubnet(network, prefix, family);
    return [range, list] as const;
  });
}

const IPV4_LISTS = buildLists(IPV4_RANGES, "ipv4");
const IPV6_LISTS = buildLists(IPV6_RANGES, "ipv6");

/** An IPv6 address as its eight 16-bit groups (zone id dropped), or undefined when it is not one. */
function ipv6Groups(address: string): number[] | undefined {
  const bare = address.replace(/%.*$/, "");
  if (isIP(bare) !== 6) return undefined;
  // The WHATWG serialiser gives one canonical shape: lowercase, hex groups only, at most one "::".
  const canonical = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  const [head = "", tail] = canonical.split("::");
  const front = head === "" ? [] : head.split(":");
  const back = tail === undefined || tail === "" ? [] : tail.split(":");
  const zeros = new Array<string>(8 - front.length - back.length).fill("0");
  return [...front, ...zeros, ...back].map((group) => Number.parseInt(group, 16));
}

function ipv4FromGroups(high: number, low: number): string {
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join(".");
}

/** The IPv4 address an IPv6 address carries (IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16). */
export function embeddedIPv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  if (g === undefined) return undefined;
  const at = (i: number): number => g[i] ?? 0;
  const zeroUpTo = (end: number): boolean => g.slice(0, end).every((group) => group === 0);
  if (zeroUpTo(5) && at(5) === 0xffff) return ipv4FromGroups(at(6), at(7));
  if (at(0) === 0x64 && at(1) === 0xff9b && g.slice(2, 6).every((group) => group === 0))
    return ipv4FromGroups(at(6), at(7));
  if (at(0) === 0x2002) return ipv4FromGroups(at(1), at(2));
  return undefined;
}

/**
 * The form two spellings of one address share: dotted IPv4 (also for IPv6 forms that carry an IPv4
 * address), or fully expanded lowercase IPv6 without a zone id. Undefined when not an IP address.
 */
export function canonicalAddress(address: string): string | undefined {
  if (isIPv4(address)) return address;
  const embedded = embeddedIPv4(address);
  if (embedded !== undefined) return embedded;
  return ipv6Groups(address)
    ?.map((group) => group.toString(16).padStart(4, "0"))
    .join(":");
}

/** "public", or the non-public range an IP address lies in. Throws a TypeError for a non-address. */
export function classifyAddress(address: string): AddressClass {
  const canonical = canonicalAddress(address);
  if (canonical === undefined) throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
  if (isIPv4(canonical)) {
    return IPV4_LISTS.find(([, list]) => list.check(canonical, "ipv4"))?.[0] ?? "public";
  }
  const range = IPV6_LISTS.find(([, list]) => list.check(canonical, "ipv6"))?.[0];
  if (range !== undefined) return range;
  return GLOBAL_UNICAST.check(canonical, "ipv6") ? "public" : "reserved";
}

export type AddressCheck =
  | { allowed: true }
  | { allowed: false; reason: "private_address"; range: AddressRange }
  | { allowed: false; reason: "host_address" };

/**
 * May a workspace connect to this address? Only a public one that is not one of the host's own
 * (a public address of the host would reach its services as surely as 127.0.0.1 does), nor in the
 * operator's list of the host's other addresses (`extra`: what the interfaces cannot show, such as
 * a NATed public address or the address compose publishes ports on).
 */
export function checkAddress(address: string, hostAddresses: readonly string[], extra?: AddressSet): AddressCheck {
  const range = classifyAddress(address);
  if (range !== "public") return { allowed: false, reason: "private_address", range };
  const canonical = canonicalAddress(address);
  if (hostAddresses.some((own) => canonicalAddress(own) === canonical))
    return { allowed: false, reason: "host_address" };
  if (extra?.has(address)) return { allowed: false, reason: "host_address" };
  return { allowed: true };
}

/**
 * A set of addresses and networks (CIDR), each entry matched in any spelling: an IPv4 entry also
 * matches ::ffff:a.b.c.d, NAT64 and 6to4 forms of its addresses (they are judged as IPv4, as
 * classifyAddress does).
 */
export class AddressSet {
  readonly #v4 = new BlockList();
  readonly #v6 = new BlockList();

  /** `entries` are already valid (parseAddressEntry); `parseAddressSet` checks text. */
  constructor(readonly entries: ReadonlyArray<{ network: string; prefix: number }> = []) {
    for (const { network, prefix } of entries) {
      if (isIPv4(network)) this.#v4.addSubnet(network, prefix, "ipv4");
      else this.#v6.addSubnet(network, prefix, "ipv6");
    }
  }

  has(address: string): boolean {
    const canonical = canonicalAddress(address);
    if (canonical === undefined) return false;
    return isIPv4(canonical) ? this.#v4.check(canonical, "ipv4") : this.#v6.check(canonical, "ipv6");
  }

  get size(): number {
    return this.entries.length;
  }
}

/** The widest networks an operator list may hold: anything wider refuses a large part of the internet. */
export const WIDEST_PREFIX = { ipv4: 8, ipv6: 16 } as const;

/**
 * One entry of an address list: an IP address or a network in CIDR notation. A string is what was
 * wrong with it.
 */
export function parseAddressEntry(text: string): { network: string; prefix: number } | string {
  const [rawAddress = "", rawPrefix, ...rest] = text.split("/");
  if (rest.length > 0) return "an address or address/prefix, with one /";
  const address = rawAddress.startsWith("[") && rawAddress.endsWith("]") ? rawAddress.slice(1, -1) : rawAddress;
  if (address.includes("%")) return "an address without a zone id";
  const family = isIP(address);
  if (family === 0) return "an IPv4 or IPv6 address (host names are not accepted: give the address)";
  const embedded = family === 6 ? embeddedIPv4(address) : undefined;
  const bits = family === 4 ? 32 : 128;
  if (rawPrefix === undefined)
    return embedded !== undefined ? { network: embedded, prefix: 32 } : { network: address, prefix: bits };
  if (!/^\d{1,3}$/.test(rawPrefix) || Number(rawPrefix) > bits) return `a prefix length from 0 to ${bits} after the /`;
  const prefix = Number(rawPrefix);
  const widest = family === 4 ? WIDEST_PREFIX.ipv4 : WIDEST_PREFIX.ipv6;
  if (prefix < widest) return `a network no wider than /${widest} (a wider one refuses a large part of the internet)`;
  if (embedded !== undefined) return "an IPv4 network written as IPv4 (a.b.c.d/n), not in an IPv6 form";
  return { network: address, prefix };
}
