/**
 * Section 9, brokered credentials: what the egress proxy's takeover of a tunnel (TLS terminated
 * with a leaf of the sidecar's CA, a TLS connection of its own to the upstream, the bound header
 * set on every request: src/egress/broker/) costs a client, against a plain tunnel to the same
 * upstream in the same run:
 * - a small GET on a new connection: CONNECT + TLS + GET until the last byte of the answer;
 * - a small GET on a connection already open (keep-alive), as a tool that reuses its connection;
 * - a large download over an open connection, in MB/s.
 * On loopback only. In this process: a createEgressProxy on a Unix socket in a temp dir (as the
 * sidecar serves a workspace), two names declared as the operator's internal destinations and
 * resolved to 127.0.0.1, with `intercept` answering a TunnelBroker takeover for the bound name and
 * null for the other. In a forked process (broker-peer.ts), as a workspace's tools and the upstream
 * are processes apart from the sidecar: one HTTPS upstream on 127.0.0.1 whose certificates (one per
 * name, chosen by SNI) come from a test CA the broker trusts as the operator's upstream CA, and the
 * timing client, which sends CONNECT, then TLS trusting the test CA (plain) or the broker's CA
 * (brokered), then HTTP/1.1. The upstream checks that every brokered request carries the bound
 * header and no plain one does. Nothing here needs Docker.
 */
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BrokerCa } from "../src/egress/broker/broker-ca.js";
import { createEgressProxy } from "../src/egress/http-proxy.js";
import type { AppliedBinding } from "../src/egress/secret-bindings.js";
import { TunnelBroker } from "../src/egress/tunnel-broker.js";
import { createLogger } from "../src/log.js";
import { parseInternalDestinations } from "../src/policy/internal-destinations.js";
import type { Arm, Arms, PeerInit, PeerReady, PeerReply, PeerRequest } from "./broker-peer.js";
import { closeServer, listenOnSocket } from "./proxy-fixtures.js";
import { LATENCY_COLUMNS, latencyRow, ms, times, verdict, type SectionResult } from "./report.js";
import { formatTable, ratio, summarize, type TableRow } from "./stats.js";

export interface BrokeringOptions {
  /** New connections per arm (CONNECT + TLS + one small GET), after `warmup` per arm. */
  connects: number;
  /** Small GETs per arm over one open connection, after `warmup` per arm. */
  requests: number;
  warmup: number;
  /** Size of the download, and how many times each arm reads it (after one warm-up read each). */
  downloadMb: number;
  downloadRuns: number;
}

const HOST_OF: Arms<string> = { plain: "plain.internal.test", brokered: "bench.internal.test" };
const BOUND_HEADER = "authorization";
const BOUND_VALUE = "Bearer x";
/** How long the peer may take to exit once disconnected before it is killed. */
const PEER_EXIT_MS = 5_000;

type Cleanups = Array<() => unknown>;
type Timing = Extract<PeerReply, { ok: true }>;

/** ABBA: each arm goes first every other round. */
const orderOf = (round: number): Arm[] => (round % 2 === 0 ? ["plain", "brokered"] : ["brokered", "plain"]);

/** The forked process with the upstream and the timing client. */
class Peer {
  private next = 0;
  private readonly pending = new Map<number, (reply: PeerReply) => void>();

  private constructor(
    private readonly child: ChildProcess,
    readonly ready: PeerReady["ready"],
  ) {
    child.on("message", (reply: PeerReply) => {
      this.pending.get(reply.id)?.(reply);
      this.pending.delete(reply.id);
    });
    // A peer that dies fails what it was asked instead of leaving it pending.
    child.once("exit", (code, signal) => {
      for (const [id, settle] of this.pending)
        settle({ id, ok: false, error: `exited (${signal ?? `code ${String(code)}`})` });
      this.pending.clear();
    });
  }

  static async start(init: PeerInit["init"], cleanups: Cleanups): Promise<Peer> {
    const child = fork(fileURLToPath(new URL("./broker-peer.js", import.meta.url)), [], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    cleanups.push(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      if (child.connected) child.disconnect();
      const timer = setTimeout(() => child.kill("SIGKILL"), PEER_EXIT_MS);
      await exited;
      clearTimeout(timer);
    });
    child.send({ init } satisfies PeerInit);
    const [first] = (await Promise.race([
      once(child, "message"),
      once(child, "exit").then(() => {
        throw new Error("the broker bench's peer process exited before it was ready");
      }),
    ])) as [PeerReady];
    return new Peer(child, first.ready);
  }

  ask(request: DistributiveOmit<PeerRequest, "id">): Promise<Timing> {
    const id = ++this.next;
    return new Promise((resolve, reject) => {
      this.pending.set(id, (reply) => (reply.ok ? resolve(reply) : reject(new Error(`peer: ${reply.error}`))));
      this.child.send({ ...request, id });
    });
  }

  /** A small GET over the slot's connection (a tunnel opened first if it has none), timed by the peer. */
  async small(arm: Arm, slot: string): Promise<Timing> {
    const result = await this.ask({ op: "get", arm, slot, path: "/small" });
    if (result.bytes !== this.ready.smallBytes) throw new Error(`${arm}: got ${result.bytes} bytes for /small`);
    return result;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** The proxy (with the broker) in this process, and the peer that sends through it. */
interface Rig {
  peer: Peer;
  /** Requests the broker applied the binding to (AppliedBinding.touched). */
  touched(): number;
  /** Warnings and errors the proxy and the broker logged. */
  problems: string[];
}

export async function benchBrokering(options: BrokeringOptions): Promise<SectionResult> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-bench-broker-"));
  const cleanups: Cleanups = [() => fs.rm(dir, { recursive: true, force: true })];
  try {
    const rig = await startRig(dir, cleanups);
    const connects = await measureNewConnections(rig, options);
    const kept = await measureKeptConnection(rig, options, cleanups);
    const download = await measureDownloads(rig, options);
    const answered = await checkCounts(rig, options);
    return report(connects, kept, download, rig, answered, options);
  } finally {
    for (const step of cleanups.reverse()) await Promise.resolve(step()).catch(() => undefined);
  }
}

async function startRig(dir: string, cleanups: Cleanups): Promise<Rig> {
  const problems: string[] = [];
  const log = createLogger({ level: "warn", secrets: [BOUND_VALUE], write: (line) => problems.push(line) });
  const upstreamCa = await BrokerCa.open(path.join(dir, "upstream-ca"));
  const [plainLeaf, brokeredLeaf] = await Promise.all([
    upstreamCa.issueLeaf(HOST_OF.plain),
    upstreamCa.issueLeaf(HOST_OF.brokered),
  ]);

  const stateDir = path.join(dir, "state");
  const broker = await TunnelBroker.open(stateDir, upstreamCa.certPem);
  // The CA the broker made in its state dir: what a workspace's clients are given to trust.
  const brokerCa = await BrokerCa.open(path.join(stateDir, "broker"));
  const socketPath = path.join(dir, "egress.sock");
  const peer = await Peer.start(
    {
      socketPath,
      hosts: HOST_OF,
      header: BOUND_HEADER,
      value: BOUND_VALUE,
      leaves: {
        plain: { keyPem: plainLeaf.keyPem, certPem: plainLeaf.certPem },
        brokered: { keyPem: brokeredLeaf.keyPem, certPem: brokeredLeaf.certPem },
      },
      trust: { plain: upstreamCa.certPem, brokered: brokerCa.certPem },
    },
    cleanups,
  );

  let touched = 0;
  const binding: AppliedBinding = { header: BOUND_HEADER, value: BOUND_VALUE, touched: () => void touched++ };
  const egress = createEgressProxy({
    policy: () => "public",
    internal: parseInternalDestinations(
      Object.values(HOST_OF).map((host) => `${host}:${peer.ready.port}`),
      "bench",
    ),
    resolve: async () => ["127.0.0.1"],
    log,
    intercept: async (target) => (target.host === HOST_OF.brokered ? broker.takeover(target, binding, log) : null),
  });
  await listenOnSocket(egress, socketPath);
  cleanups.push(() => closeServer(egress));
  return { peer, touched: () => touched, problems };
}

/** (a) Each sample a new tunnel: CONNECT + TLS + a small GET, until its last byte. Leaves are minted in the warm-up. */
async function measureNewConnections(rig: Rig, options: BrokeringOptions): Promise<Arms<number[]>> {
  const samples: Arms<number[]> = { plain: [], brokered: [] };
  for (let i = -options.warmup; i < options.connects; i++) {
    for (const arm of orderOf(i)) {
      try {
        const result = await rig.peer.small(arm, "new");
        if (i >= 0) samples[arm].push(result.ms);
      } finally {
        await rig.peer.ask({ op: "close", slot: "new" });
      }
    }
  }
  return samples;
}

/** (b) One connection per arm, opened in the warm-up, then small GETs over it, alternating. */
async function measureKeptConnection(rig: Rig, options: BrokeringOptions, cleanups: Cleanups): Promise<Arms<number[]>> {
  const slot = (arm: Arm): string => `kept-${arm}`;
  cleanups.push(() =>
    Promise.all((["plain", "brokered"] as const).map((arm) => rig.peer.ask({ op: "close", slot: slot(arm) }))),
  );
  const samples: Arms<number[]> = { plain: [], brokered: [] };
  const connections: Arms<number> = { plain: 0, brokered: 0 };
  for (let i = -Math.max(1, options.warmup); i < options.requests; i++) {
    for (const arm of orderOf(i)) {
      const result = await rig.peer.small(arm, slot(arm));
      connections[arm] = result.connections;
      if (i >= 0) samples[arm].push(result.ms);
    }
  }
  for (const arm of ["plain", "brokered"] as const) {
    const made = connections[arm];
    if (made !== 1) throw new Error(`${arm}: the requests on an open connection used ${made} connections, not one`);
  }
  return samples;
}

/** Per download: MB/s (as the client saw it), and the CPU time this process (the proxy and the broker) spent per MB. */
interface Downloads {
  rates: Arms<number[]>;
  cpuMsPerMb: Arms<number[]>;
}

/** (c) The download over a connection opened (with a small GET) just before it; MB/s = bytes / (request → last byte). */
async function measureDownloads(rig: Rig, options: BrokeringOptions): Promise<Downloads> {
  const bytes = options.downloadMb * 1e6;
  const rates: Arms<number[]> = { plain: [], brokered: [] };
  const cpuMsPerMb: Arms<number[]> = { plain: [], brokered: [] };
  for (let i = -1; i < options.downloadRuns; i++) {
    for (const arm of orderOf(i)) {
      try {
        await rig.peer.small(arm, "download");
        const cpuBefore = process.cpuUsage();
        const result = await rig.peer.ask({ op: "get", arm, slot: "download", path: `/download?bytes=${bytes}` });
        const cpu = process.cpuUsage(cpuBefore);
        if (result.bytes !== bytes) throw new Error(`${arm}: got ${result.bytes} of ${bytes} bytes`);
        if (i < 0) continue;
        rates[arm].push(bytes / 1e6 / (result.ms / 1000));
        cpuMsPerMb[arm].push((cpu.user + cpu.system) / 1000 / (bytes / 1e6));
      } finally {
        await rig.peer.ask({ op: "close", slot: "download" });
      }
    }
  }
  return { rates, cpuMsPerMb };
}

/** Every request reached the upstream, and every brokered one through the binding; returns the upstream's count per arm. */
async function checkCounts(rig: Rig, options: BrokeringOptions): Promise<Arms<number>> {
  const { answered } = await rig.peer.ask({ op: "answered" });
  const expected =
    options.warmup + options.connects + Math.max(1, options.warmup) + options.requests + 2 * (options.downloadRuns + 1);
  for (const arm of ["plain", "brokered"] as const)
    if (answered[arm] !== expected)
      throw new Error(`${arm}: the upstream answered ${answered[arm]} requests of ${expected}`);
  if (rig.touched() !== expected)
    throw new Error(`the binding was applied to ${rig.touched()} brokered requests of ${expected}`);
  return answered;
}

function report(
  connects: Arms<number[]>,
  kept: Arms<number[]>,
  download: Downloads,
  rig: Rig,
  answered: Arms<number>,
  options: BrokeringOptions,
): SectionResult {
  const connectBase = summarize(connects.plain);
  const connectAdded = summarize(connects.brokered).p50 - connectBase.p50;
  const keptBase = summarize(kept.plain);
  const keptAdded = summarize(kept.brokered).p50 - keptBase.p50;
  const keptPass = keptAdded <= 5;
  const rate = { plain: summarize(download.rates.plain).p50, brokered: summarize(download.rates.brokered).p50 };
  const cpu = {
    plain: summarize(download.cpuMsPerMb.plain).p50,
    brokered: summarize(download.cpuMsPerMb.brokered).p50,
  };
  const brokerCpu = cpu.brokered - cpu.plain;
  const rateRatio = ratio(rate.brokered, rate.plain);
  const ratePass = rateRatio >= 0.5;
  const signed = (value: number): string => `${value >= 0 ? "+" : ""}${ms(value)}`;
  const rateRow = (label: string, arm: Arm, target: string, result: string): TableRow => {
    const s = summarize(download.rates[arm]);
    return {
      case: label,
      runs: s.n,
      "p50 MB/s": s.p50,
      "min MB/s": s.min,
      "max MB/s": s.max,
      "vs plain p50": times(ratio(s.p50, rate.plain)),
      "CPU ms/MB": cpu[arm],
      target,
      result,
    };
  };
  const columns = [...LATENCY_COLUMNS.slice(0, -2), "added p50", ...LATENCY_COLUMNS.slice(-2)];
  const mb = options.downloadMb;
  return {
    title: "9. Brokered credentials (egress interception, loopback)",
    tables: [
      formatTable(
        [
          latencyRow("new connection: CONNECT + TLS + GET, brokered", connects.brokered, connectBase, {
            "added p50": signed(connectAdded),
            target: "-",
            result: "-",
          }),
          latencyRow("new connection: CONNECT + TLS + GET, plain tunnel", connects.plain, connectBase, {
            "added p50": "-",
            target: "-",
            result: "-",
          }),
          latencyRow("open connection: GET, brokered", kept.brokered, keptBase, {
            "added p50": signed(keptAdded),
            target: "p50 <= plain + 5 ms",
            result: verdict(keptPass),
          }),
          latencyRow("open connection: GET, plain tunnel (baseline)", kept.plain, keptBase, {
            "added p50": "-",
            target: "-",
            result: "-",
          }),
        ],
        columns,
        { decimals: 3 },
      ),
      formatTable(
        [
          rateRow(`${mb} MB download, brokered`, "brokered", ">= 0.50x plain", verdict(ratePass)),
          rateRow(`${mb} MB download, plain tunnel (baseline)`, "plain", "-", "-"),
        ],
        ["case", "runs", "p50 MB/s", "min MB/s", "max MB/s", "vs plain p50", "CPU ms/MB", "target", "result"],
        { decimals: 2 },
      ),
    ],
    checks: [
      {
        metric: "broker: p50 added per request (open connection)",
        measured: signed(keptAdded),
        target: "<= +5 ms",
        pass: keptPass,
      },
      {
        metric: `broker: ${mb} MB download vs plain tunnel`,
        measured: `${times(rateRatio)} (${rate.brokered.toFixed(0)} MB/s)`,
        target: ">= 0.50x",
        pass: ratePass,
      },
    ],
    notes: [
      `in a forked process: one HTTPS upstream on 127.0.0.1 (a leaf per name from a test CA, by SNI) and the timing client; in this one: createEgressProxy on a Unix socket, ${HOST_OF.plain} tunnelled, ${HOST_OF.brokered} taken over by a TunnelBroker (leaf minted in the warm-up, cached after) that sets ${BOUND_HEADER} on every request; both names internal destinations resolved to 127.0.0.1`,
      `new connection: ${options.connects} per arm after ${options.warmup} warm-up, ABBA, timed by the client from the request to the last byte of a ${rig.peer.ready.smallBytes}-byte answer (CONNECT, the client's TLS, and for the brokered arm the broker's TLS to the upstream); added p50 ${signed(connectAdded)}`,
      `open connection: ${options.requests} GETs per arm over one keep-alive connection each, after ${Math.max(1, options.warmup)} warm-up, ABBA`,
      `download: ${mb} MB of a 64 KiB pattern streamed with backpressure, over a connection opened just before; ${options.downloadRuns} runs per arm after 1 warm-up, alternating; MB = 10^6 bytes; CPU ms/MB: this process's (the proxy's and the broker's, not the client's or the upstream's) user + system time over the download (p50), so the broker's own cost is the difference, +${brokerCpu.toFixed(2)} ms per MB (${(1000 / brokerCpu).toFixed(0)} MB/s of one core)`,
      `the upstream answered every request (${answered.brokered} per arm); each brokered one carried the bound header and no plain one did; the proxy and broker logged ${rig.problems.length} warning(s)${rig.problems.length > 0 ? `, the first: ${rig.problems[0] ?? ""}` : ""}`,
      `the client and the upstream share the peer's event loop, the proxy and the broker have this one: the download ratio is what a client sees of the proxy's extra work (TLS in and out once more, HTTP parsed twice) when the proxy has a core of its own; on a loaded machine it is also which process got a CPU`,
    ],
  };
}
