/**
 * Asking DNS servers for a name's addresses with c-ares (dns.promises.Resolver), not getaddrinfo.
 * getaddrinfo (dns.lookup) runs on libuv's thread pool of four threads, shared with the file system
 * and crypto, and cannot be cancelled: four names whose servers never answer stop every lookup in
 * the process, the model proxy's own included. c-ares queries are asynchronous sockets on the event
 * loop, and a query is cancelled once its deadline passes, which frees everything it held.
 *
 * One c-ares channel per lookup (about 30 µs to make): Resolver.cancel() ends every query of its
 * channel, so a channel is never shared by two lookups, and each new channel reads resolv.conf's
 * servers afresh. A and AAAA are asked together; once one family has answered with addresses, the
 * other has a short grace, so a server that drops AAAA queries does not cost the whole deadline.
 */
import { promises as dns } from "node:dns";
import { isIP } from "node:net";
import { searchCandidates, type SearchSettings } from "./hosts-file.js";

export type LookupFailure = "not_found" | "timeout" | "failed" | "busy";

/** Why a name has no addresses; `message` says it without any address (it reaches the tenant). */
export class LookupError extends Error {
  constructor(
    readonly failure: LookupFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "LookupError";
  }
}

export interface AddressAnswer {
  /** A records first, then AAAA, each family in the server's order. */
  addresses: string[];
  /** The smallest TTL among the records, in seconds (0 when the server gave none). */
  ttlSeconds: number;
}

export interface DnsQueryOptions {
  /** host or host:port ([v6]:port) of the servers to ask; default: those of /etc/resolv.conf. */
  servers?: readonly string[];
  search: SearchSettings;
  /** The whole lookup's deadline: aborting it cancels the queries. */
  signal: AbortSignal;
  /** Milliseconds the lookup may take in all (for the per-try timeout and the message). */
  timeoutMs: number;
  /** How long the second family may still take once the first answered with addresses. Default 500 ms. */
  familyGraceMs?: number;
}

/** The answer codes that mean "no such name or no such record" rather than "the resolver failed". */
const NOT_FOUND_CODES: ReadonlySet<string> = new Set(["ENOTFOUND", "ENODATA", "ENONAME"]);
const DEFAULT_FAMILY_GRACE_MS = 500;

type FamilyResult = { ok: true; records: Array<{ address: string; ttl: number }> } | { ok: false; code: string };

/** A name's A and AAAA addresses, trying resolv.conf's search list in glibc's order. */
export async function queryAddresses(name: string, options: DnsQueryOptions): Promise<AddressAnswer> {
  // Up to three tries within the deadline; c-ares doubles the timeout on each round.
  const resolver = new dns.Resolver({ timeout: Math.max(50, Math.floor(options.timeoutMs / 4)), tries: 3 });
  if (options.servers !== undefined) resolver.setServers(options.servers as string[]);
  const cancel = (): void => resolver.cancel();
  options.signal.addEventListener("abort", cancel, { once: true });
  let failedCode: string | null = null;
  try {
    for (const candidate of searchCandidates(name, options.search)) {
      if (options.signal.aborted) break;
      const [a, aaaa] = await queryBothFamilies(
        resolver,
        candidate,
        options.familyGraceMs ?? DEFAULT_FAMILY_GRACE_MS,
        options.signal,
      );
      const records = [...(a.ok ? a.records : []), ...(aaaa.ok ? aaaa.records : [])].filter(
        (r) => isIP(r.address) !== 0,
      );
      if (records.length > 0)
        return { addresses: records.map((r) => r.address), ttlSeconds: Math.min(...records.map((r) => r.ttl)) };
      for (const result of [a, aaaa]) {
        if (!result.ok && !NOT_FOUND_CODES.has(result.code) && result.code !== "ECANCELLED") failedCode ??= result.code;
      }
    }
  } finally {
    options.signal.removeEventListener("abort", cancel);
  }
  if (options.signal.aborted)
    throw new LookupError("timeout", `no answer within ${options.timeoutMs} ms`, { cause: options.signal.reason });
  if (failedCode !== null) throw new LookupError("failed", `the DNS servers failed to answer (${failedCode})`);
  throw new LookupError("not_found", "no such name");
}

async function queryBothFamilies(
  resolver: dns.Resolver,
  name: string,
  graceMs: number,
  signal: AbortSignal,
): Promise<[FamilyResult, FamilyResult]> {
  const settle = (query: Promise<Array<{ address: string; ttl: number }>>): Promise<FamilyResult> =>
    query.then(
      (records) => ({ ok: true, records }),
      (error: NodeJS.ErrnoException) => ({ ok: false, code: error.code ?? "EUNKNOWN" }),
    );
  const a = settle(resolver.resolve4(name, { ttl: true }));
  const aaaa = settle(resolver.resolve6(name, { ttl: true }));
  const first = await Promise.race([a.then((r) => ["a", r] as const), aaaa.then((r) => ["aaaa", r] as const)]);
  const other = first[0] === "a" ? aaaa : a;
  if (!first[1].ok || first[1].records.length === 0 || signal.aborted) return Promise.all([a, aaaa]);
  // One family answered: the other gets a grace, then its query is cancelled (the channel is this lookup's alone).
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([
    other,
    new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), graceMs))),
  ]);
  clearTimeout(timer);
  if (late === null) resolver.cancel();
  const otherResult = await other;
  return first[0] === "a" ? [first[1], otherResult] : [otherResult, first[1]];
}
