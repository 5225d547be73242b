/**
 * The name resolution behind every workspace's egress proxy, shared by the sidecar: /etc/hosts
 * first (localhost names always loopback), then DNS through c-ares (dns-query.ts), each lookup
 * bounded by a deadline and cancelled when it passes, or when its client goes away. Lookups that
 * reach DNS take a slot (lookup-slots.ts): a few per workspace, a cap for the whole sidecar, so a
 * workspace flooding names that never answer cannot hold up another workspace's lookups. An answer
 * from the hosts file takes no slot.
 *
 * What a lookup says when it fails never names an address: it reaches the tenant.
 */
import {
  answerFromHosts,
  parseHostsFile,
  parseResolvConf,
  WatchedFile,
  type HostsTable,
  type SearchSettings,
} from "./hosts-file.js";
import { LookupError, queryAddresses, type AddressAnswer } from "./dns-query.js";
import { LookupSlots } from "./lookup-slots.js";

export { LookupError, type LookupFailure } from "./dns-query.js";

/** A workspace's resolver: all addresses of a name; rejects with a LookupError. */
export type Resolver = (host: string, signal?: AbortSignal) => Promise<string[]>;

export interface NameResolverOptions {
  /** Each lookup's deadline, waiting for a slot included. Default 5 s. */
  timeoutMs?: number;
  /** Lookups in flight per workspace. Default 4. */
  perWorkspace?: number;
  /** Lookups waiting per workspace; past it, refused as busy. Default 4 × perWorkspace. */
  queuePerWorkspace?: number;
  /** Lookups in flight for the whole sidecar. Default 64. */
  total?: number;
  /** DNS servers (host or host:port); default: those of /etc/resolv.conf, read for each lookup. */
  servers?: readonly string[];
  hostsFile?: string;
  resolvConf?: string;
  /** Called for a lookup refused because its workspace had too many (the metrics). */
  onBusy?: () => void;
  /** Called for a lookup that reached its deadline. */
  onTimeout?: () => void;
}

export const DNS_DEFAULTS = {
  timeoutMs: 5_000,
  perWorkspace: 4,
  total: 64,
  hostsFile: "/etc/hosts",
  resolvConf: "/etc/resolv.conf",
} as const;

/** How a name was answered, with the TTL a cache may keep it for. */
export interface ResolvedName extends AddressAnswer {
  source: "hosts" | "dns";
}

export class NameResolver {
  readonly timeoutMs: number;
  readonly slots: LookupSlots;
  readonly #hosts: WatchedFile<HostsTable>;
  readonly #search: WatchedFile<SearchSettings>;
  readonly #servers: readonly string[] | undefined;

  constructor(private readonly options: NameResolverOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? DNS_DEFAULTS.timeoutMs;
    const perWorkspace = options.perWorkspace ?? DNS_DEFAULTS.perWorkspace;
    this.slots = new LookupSlots({
      perKey: perWorkspace,
      queuePerKey: options.queuePerWorkspace ?? 4 * perWorkspace,
      total: options.total ?? DNS_DEFAULTS.total,
    });
    this.#hosts = new WatchedFile(options.hostsFile ?? DNS_DEFAULTS.hostsFile, parseHostsFile);
    this.#search = new WatchedFile(options.resolvConf ?? DNS_DEFAULTS.resolvConf, parseResolvConf);
    this.#servers = options.servers;
  }

  /** The resolver of one workspace: its lookups share that workspace's slots. */
  forWorkspace(workspaceId: string): Resolver {
    return async (host, signal) => (await this.lookup(workspaceId, host, signal)).addresses;
  }

  /** A name's addresses for `key`'s workspace: hosts file, else DNS within a slot and the deadline. */
  async lookup(key: string, host: string, signal?: AbortSignal): Promise<ResolvedName> {
    const name = host.toLowerCase().replace(/\.$/, "");
    const fromHosts = answerFromHosts(this.#hosts.value, name);
    if (fromHosts !== undefined) return { addresses: [...fromHosts], ttlSeconds: 0, source: "hosts" };
    const deadline = AbortSignal.timeout(this.timeoutMs);
    const stop = signal === undefined ? deadline : AbortSignal.any([deadline, signal]);
    const slot = await this.slots.acquire(key, stop);
    if (!slot.ok) {
      if (slot.reason === "busy") {
        this.options.onBusy?.();
        const { perKey, queuePerKey } = this.slots.options;
        throw new LookupError(
          "busy",
          `too many lookups in flight for this workspace (${perKey} at once, ${queuePerKey} waiting); try again when they end`,
        );
      }
      throw this.#stopped(deadline, signal);
    }
    try {
      return {
        ...(await queryAddresses(name, {
          servers: this.#servers,
          search: this.#search.value,
          signal: stop,
          timeoutMs: this.timeoutMs,
        })),
        source: "dns",
      };
    } catch (error) {
      if (stop.aborted) throw this.#stopped(deadline, signal);
      throw error;
    } finally {
      slot.release();
    }
  }

  #stopped(deadline: AbortSignal, signal: AbortSignal | undefined): LookupError {
    if (signal?.aborted && !deadline.aborted)
      return new LookupError("failed", "the client went away", { cause: signal.reason });
    this.options.onTimeout?.();
    return new LookupError("timeout", `no answer within ${this.timeoutMs} ms`);
  }
}
