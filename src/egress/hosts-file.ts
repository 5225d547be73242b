/**
 * The system files name resolution reads besides the DNS servers: /etc/hosts (names answered
 * before any query, as getaddrinfo does with "files" first in nsswitch.conf) and the search list
 * and ndots of /etc/resolv.conf (which c-ares's query does not apply by itself). Both are read
 * again when they change (their mtime, size or inode), looked at no more than once a second: a
 * lookup never waits on the disk, and an operator's edit counts within a second. A file that is
 * missing or unreadable reads as empty.
 */
import { statSync, readFileSync } from "node:fs";
import { isIP } from "node:net";

/** Name (lowercase, no trailing dot) → its addresses, in file order. */
export type HostsTable = ReadonlyMap<string, readonly string[]>;

export function parseHostsFile(text: string): HostsTable {
  const table = new Map<string, string[]>();
  for (const rawLine of text.split("\n")) {
    const [address = "", ...names] = rawLine.replace(/#.*$/, "").trim().split(/\s+/);
    // A zone id (fe80::1%eth0) makes no sense for a destination: such a line is skipped.
    if (isIP(address) === 0 || address.includes("%")) continue;
    for (const rawName of names) {
      const name = rawName.toLowerCase().replace(/\.$/, "");
      if (name === "") continue;
      const addresses = table.get(name) ?? [];
      if (!addresses.includes(address)) addresses.push(address);
      table.set(name, addresses);
    }
  }
  return table;
}

/** localhost and every name under .localhost (RFC 6761) are loopback even when the hosts file does not say so. */
export function isLocalhostName(name: string): boolean {
  return name === "localhost" || name.endsWith(".localhost");
}

const LOCALHOST_ADDRESSES: readonly string[] = ["127.0.0.1", "::1"];

/** What the hosts file answers for a (normalised) name, localhost names included; undefined: ask DNS. */
export function answerFromHosts(table: HostsTable, name: string): readonly string[] | undefined {
  return table.get(name) ?? (isLocalhostName(name) ? LOCALHOST_ADDRESSES : undefined);
}

/** The part of resolv.conf that decides which names are asked: the search list and ndots. */
export interface SearchSettings {
  search: readonly string[];
  ndots: number;
}

export function parseResolvConf(text: string): SearchSettings {
  let search: string[] = [];
  let ndots = 1;
  for (const rawLine of text.split("\n")) {
    const [keyword, ...args] = rawLine
      .replace(/[#;].*$/, "")
      .trim()
      .split(/\s+/);
    // The last of "search" and "domain" wins, as in glibc.
    if (keyword === "search" || keyword === "domain")
      search = args.map((d) => d.toLowerCase().replace(/\.$/, "")).filter((d) => d !== "" && d !== ".");
    if (keyword === "options") {
      for (const option of args) {
        const match = /^ndots:(\d+)$/.exec(option);
        if (match) ndots = Math.min(15, Number(match[1]));
      }
    }
  }
  return { search: search.slice(0, 6), ndots };
}

/**
 * The names to ask for `name`, in glibc's order: as given first when it has at least `ndots`
 * dots, else each search suffix first and the name as given last.
 */
export function searchCandidates(name: string, settings: SearchSettings): string[] {
  const dots = name.split(".").length - 1;
  const suffixed = settings.search.map((domain) => `${name}.${domain}`).filter((candidate) => candidate.length <= 253);
  return dots >= settings.ndots ? [name, ...suffixed] : [...suffixed, name];
}

/** A file parsed once per change, looked at (stat) at most every `checkEveryMs`. */
export class WatchedFile<T> {
  #value: T;
  #signature = "";
  #checkedAt = Number.NEGATIVE_INFINITY;

  constructor(
    readonly path: string,
    private readonly parse: (text: string) => T,
    private readonly checkEveryMs = 1_000,
    private readonly now: () => number = Date.now,
  ) {
    this.#value = parse("");
  }

  get value(): T {
    const now = this.now();
    if (now - this.#checkedAt < this.checkEveryMs) return this.#value;
    this.#checkedAt = now;
    // Synchronous on purpose: a stat of a small local file takes microseconds, while fs's
    // asynchronous calls queue on the same libuv thread pool as getaddrinfo.
    let signature: string;
    try {
      const stat = statSync(this.path, { bigint: true });
      signature = `${stat.ino}:${stat.size}:${stat.mtimeNs}`;
    } catch {
      signature = "missing";
    }
    if (signature === this.#signature) return this.#value;
    let text = "";
    try {
      if (signature !== "missing") text = readFileSync(this.path, "utf8");
    } catch {
      text = "";
    }
    this.#signature = signature;
    this.#value = this.parse(text);
    return this.#value;
  }
}
