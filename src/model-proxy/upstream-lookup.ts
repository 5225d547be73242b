/**
 * The model API's addresses, resolved apart from every tenant's lookups and kept. Each model
 * request connects through an http(s) Agent; without this, the Agent would call getaddrinfo for
 * every new connection, on the thread pool a tenant can fill with names that never answer, inside
 * the 5 s connect timer: one workspace's flood would fail every other workspace's turns
 * model_unreachable. Here the name has its own resolver (its own c-ares channel, no slot shared
 * with a workspace) and the answer is kept for its TTL, clamped to [minTtlMs, maxTtlMs], so a
 * model request almost never waits on DNS at all. A refresh that fails keeps the last good answer
 * for up to `staleIfErrorMs` past its expiry, asking again at most every `retryAfterErrorMs`: a
 * DNS outage does not take the model API away with it. The Agent gets `lookup` as its option, so
 * TLS still checks the certificate against the name. An IP literal never reaches a lookup.
 */
import type { LookupAddress, LookupOptions } from "node:dns";
import { isIP } from "node:net";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { LookupError, NameResolver, type NameResolverOptions } from "../egress/resolver.js";

export interface UpstreamLookupOptions {
  /** How a name is resolved; default: a NameResolver of its own made with `resolver`. */
  resolve?: (host: string) => Promise<{ addresses: string[]; ttlSeconds: number }>;
  /** Settings of the default resolver (timeout, servers, hosts file). */
  resolver?: NameResolverOptions;
  /** An answer is kept at least this long, whatever its TTL. Default 30 s. */
  minTtlMs?: number;
  /** And at most this long. Default 5 min. */
  maxTtlMs?: number;
  /** After expiry, a last good answer still serves while refreshes fail, this long. Default 30 min. */
  staleIfErrorMs?: number;
  /** After a failed refresh, the next try waits this long (the stale answer serves meanwhile). Default 5 s. */
  retryAfterErrorMs?: number;
  log?: Logger;
  now?: () => number;
}

/** The `lookup` option of net.connect and http.Agent. */
export type NetLookup = (
  hostname: string,
  options: LookupOptions,
  callback: (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void;

interface Entry {
  addresses: string[] | null;
  expiresAt: number;
  retryAt: number;
  pending: Promise<string[]> | null;
  /** A failed refresh was logged; cleared by the next good one. */
  failing: boolean;
}

export const UPSTREAM_LOOKUP_DEFAULTS = {
  minTtlMs: 30_000,
  maxTtlMs: 300_000,
  staleIfErrorMs: 1_800_000,
  retryAfterErrorMs: 5_000,
} as const;

export class UpstreamLookup {
  readonly #entries = new Map<string, Entry>();
  readonly #resolve: (host: string) => Promise<{ addresses: string[]; ttlSeconds: number }>;
  readonly #now: () => number;
  readonly #limits: { minTtlMs: number; maxTtlMs: number; staleIfErrorMs: number; retryAfterErrorMs: number };

  constructor(private readonly options: UpstreamLookupOptions = {}) {
    if (options.resolve) {
      this.#resolve = options.resolve;
    } else {
      const resolver = new NameResolver(options.resolver);
      this.#resolve = (host) => resolver.lookup("model-upstream", host);
    }
    this.#now = options.now ?? Date.now;
    this.#limits = {
      minTtlMs: options.minTtlMs ?? UPSTREAM_LOOKUP_DEFAULTS.minTtlMs,
      maxTtlMs: options.maxTtlMs ?? UPSTREAM_LOOKUP_DEFAULTS.maxTtlMs,
      staleIfErrorMs: options.staleIfErrorMs ?? UPSTREAM_LOOKUP_DEFAULTS.staleIfErrorMs,
      retryAfterErrorMs: options.retryAfterErrorMs ?? UPSTREAM_LOOKUP_DEFAULTS.retryAfterErrorMs,
    };
    if (this.#limits.minTtlMs > this.#limits.maxTtlMs)
      throw new TypeError(
        `invalid upstream lookup options: minTtlMs ${this.#limits.minTtlMs} is above maxTtlMs ${this.#limits.maxTtlMs}`,
      );
  }

  /** The host's addresses: kept, refreshed once expired (one refresh at a time), stale while refreshes fail. */
  addresses(host: string): Promise<string[]> {
    if (isIP(host) !== 0) return Promise.resolve([host]);
    const now = this.#now();
    const entry = this.#entries.get(host) ?? {
      addresses: null,
      expiresAt: 0,
      retryAt: 0,
      pending: null,
      failing: false,
    };
    this.#entries.set(host, entry);
    if (entry.addresses !== null && (now < entry.expiresAt || now < entry.retryAt))
      return Promise.resolve(entry.addresses);
    entry.pending ??= this.#refresh(host, entry).finally(() => (entry.pending = null));
    return entry.pending;
  }

  /** For an Agent's (or net.connect's) `lookup` option. */
  readonly lookup: NetLookup = (hostname, options, callback) => {
    const wanted = typeof options === "number" ? options : (options?.family ?? 0);
    const family = wanted === "IPv4" ? 4 : wanted === "IPv6" ? 6 : Number(wanted);
    this.addresses(hostname).then(
      (addresses) => {
        const found = addresses
          .map((address) => ({ address, family: isIP(address) }))
          .filter((a) => family === 0 || a.family === family);
        if (found.length === 0)
          return callback(errnoError("ENOTFOUND", `${hostname} has no IPv${family} address`), "", family);
        if (options?.all) return callback(null, found);
        callback(null, found[0]!.address, found[0]!.family);
      },
      (error: unknown) => callback(error as NodeJS.ErrnoException, "", family),
    );
  };

  async #refresh(host: string, entry: Entry): Promise<string[]> {
    const { minTtlMs, maxTtlMs, staleIfErrorMs, retryAfterErrorMs } = this.#limits;
    try {
      const answer = await this.#resolve(host);
      const now = this.#now();
      entry.addresses = answer.addresses;
      entry.expiresAt = now + Math.min(maxTtlMs, Math.max(minTtlMs, answer.ttlSeconds * 1000));
      entry.retryAt = 0;
      if (entry.failing) this.options.log?.info("model API's name resolves again", { host });
      entry.failing = false;
      return answer.addresses;
    } catch (error) {
      const now = this.#now();
      if (entry.addresses !== null && now < entry.expiresAt + staleIfErrorMs) {
        entry.retryAt = now + retryAfterErrorMs;
        if (!entry.failing)
          this.options.log?.warn("model API's name did not resolve; using its last addresses meanwhile", {
            host,
            error: errorMessage(error),
            staleForMs: staleIfErrorMs,
          });
        entry.failing = true;
        return entry.addresses;
      }
      throw errnoError(
        error instanceof LookupError && error.failure === "not_found" ? "ENOTFOUND" : "EAI_AGAIN",
        `${host}: ${errorMessage(error)}`,
        error,
      );
    }
  }
}

function errnoError(code: string, message: string, cause?: unknown): NodeJS.ErrnoException {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}
