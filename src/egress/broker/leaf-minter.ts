/**
 * The TLS contexts the broker presents to containers, one per brokered host, issued by the broker's
 * CA on first use and kept in a bounded LRU: a repeat costs a map lookup, and concurrent first uses
 * of one host share one issue. A leaf is issued anew once it nears its end.
 */
import tls from "node:tls";
import type { BrokerCa } from "./broker-ca.js";

export const DEFAULT_MAX_LEAVES = 1024;
/** A cached leaf is replaced this long before it expires: a connection made now outlives the minting. */
const RENEW_BEFORE_MS = 2 * 24 * 60 * 60 * 1000;

export interface LeafMinterOptions {
  /** Hosts whose context is kept; the least recently used goes first. Default 1024. */
  maxHosts?: number;
  /** The clock. Default Date.now. */
  now?: () => number;
}

interface Entry {
  context: Promise<tls.SecureContext>;
  /** When it is issued anew; infinite while the first issue is in flight. */
  renewAt: number;
}

export class LeafMinter {
  readonly #entries = new Map<string, Entry>();
  readonly #maxHosts: number;
  readonly #now: () => number;

  constructor(
    private readonly ca: Pick<BrokerCa, "issueLeaf">,
    options: LeafMinterOptions = {},
  ) {
    this.#maxHosts = options.maxHosts ?? DEFAULT_MAX_LEAVES;
    this.#now = options.now ?? Date.now;
  }

  /** The server-side TLS context for `host`, normalised as the egress policy has it (lower case, IPv6 unbracketed). */
  mint(host: string): Promise<tls.SecureContext> {
    const cached = this.#entries.get(host);
    if (cached !== undefined && cached.renewAt > this.#now()) {
      // Most recently used last: a Map iterates in insertion order, so the first key is the one to drop.
      this.#entries.delete(host);
      this.#entries.set(host, cached);
      return cached.context;
    }
    const entry: Entry = {
      renewAt: Number.POSITIVE_INFINITY,
      context: this.ca.issueLeaf(host).then((leaf) => {
        entry.renewAt = leaf.notAfter.getTime() - RENEW_BEFORE_MS;
        return tls.createSecureContext({ key: leaf.keyPem, cert: leaf.certPem });
      }),
    };
    entry.context.catch(() => {
      // A failed issue is not kept: the next connection tries again.
      if (this.#entries.get(host) === entry) this.#entries.delete(host);
    });
    this.#entries.delete(host);
    this.#entries.set(host, entry);
    while (this.#entries.size > this.#maxHosts) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
    return entry.context;
  }

  /** How many hosts have a context kept (or in the making). */
  get size(): number {
    return this.#entries.size;
  }
}
