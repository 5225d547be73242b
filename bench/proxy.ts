/**
 * Section 6, the workspace's network on the sidecar's side, against the same traffic sent direct:
 * - model proxy overhead: the same one-message SSE request (POST /v1/responses to a ResponsesStub
 *   on 127.0.0.1) sent N times direct and N times through createModelProxy on a Unix socket in a
 *   temp dir, with a TurnCredentials credential; arms interleaved (ABBA), keep-alive both ways (as
 *   codex keeps its connection), full response time;
 * - SSE throughput: one long Responses stream (small text deltas, then response.completed) from a
 *   loopback server, read to the end direct and through the proxy, in MB/s;
 * - the body check: checkRequestBody on a 200 KB codex-like /responses body under egress "model",
 *   as codex sends it (no word that matters: passed unparsed) and with an inline image (parsed,
 *   checked and serialised again), in this process;
 * - egress tunnel setup: a CONNECT through createEgressProxy (on a Unix socket, the destination an
 *   operator's internal one on loopback) until one byte came back through the tunnel, vs a direct
 *   TCP connect and the same byte.
 * The upstreams and the timing client run in a forked process (proxy-peer.ts), the proxies in this
 * one, as the sidecar is a process apart from codex and the model API. Not included: the socat
 * forwarder inside the container (loopback TCP to the Unix socket), which the turn-overhead section
 * pays for. Nothing here needs Docker or leaves loopback.
 */
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { createEgressProxy } from "../src/egress/http-proxy.js";
import { parseInternalDestinations } from "../src/policy/internal-destinations.js";
import type { Logger } from "../src/log.js";
import { TurnCredentials } from "../src/model-proxy/credentials.js";
import { createModelProxy } from "../src/model-proxy/server.js";
import { checkRequestBody } from "../src/model-proxy/body-policy.js";
import { SseUsageReader } from "../src/model-proxy/sse-usage.js";
import { BENCH_API_KEY, BENCH_MODEL } from "./harness.js";
import { buildLongStream, closeServer, listenOnSocket } from "./proxy-fixtures.js";
import type { PeerReady, PeerReply, PeerRequest } from "./proxy-peer.js";
import { LATENCY_COLUMNS, latencyRow, ms, times, verdict, type SectionResult } from "./report.js";
import { formatTable, ratio, summarize, type TableRow } from "./stats.js";

export interface ProxyOptions {
  /** Requests per arm for the overhead, after `warmup` per arm. */
  n: number;
  warmup: number;
  /** Size of the long stream, and how many times each arm reads it (after one warm-up read each). */
  streamMb: number;
  streamRuns: number;
  /** Tunnels per arm. */
  tunnels: number;
  log: Logger;
}

const REQUEST_BODY = JSON.stringify({
  model: BENCH_MODEL,
  stream: true,
  input: [{ type: "message", role: "user", content: [{ type: "input_text", text: "Say ok." }] }],
});

type Arm = "direct" | "proxy";
type Arms<T> = Record<Arm, T>;
type Cleanups = Array<() => Promise<unknown>>;
type Timing = Extract<PeerReply, { ok: true }>;
type Throughput = Arms<number[]> & { bytes: number; reader: number[] };

/** ABBA: each arm goes first every other round. */
const orderOf = (round: number): Arm[] => (round % 2 === 0 ? ["direct", "proxy"] : ["proxy", "direct"]);

/** The forked process with the upstreams and the timing client. */
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
  }

  static async start(streamMb: number, cleanups: Cleanups): Promise<Peer> {
    const child = fork(fileURLToPath(new URL("./proxy-peer.js", import.meta.url)), [String(streamMb)], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    cleanups.push(async () => {
      if (child.exitCode !== null) return;
      child.disconnect();
      await once(child, "exit");
    });
    const [first] = (await Promise.race([
      once(child, "message"),
      once(child, "exit").then(() => {
        throw new Error("the proxy bench's peer process exited before it was ready");
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
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export async function benchProxy(options: ProxyOptions): Promise<SectionResult> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-bench-proxy-"));
  const cleanups: Cleanups = [() => fs.rm(dir, { recursive: true, force: true })];
  try {
    const peer = await Peer.start(options.streamMb, cleanups);
    const overhead = await measureOverhead(peer, dir, options, cleanups);
    const throughput = await measureThroughput(peer, dir, options, cleanups);
    const tunnel = await measureTunnel(peer, dir, options, cleanups);
    return report(overhead, throughput, tunnel, measureBodyCheck(options), options);
  } finally {
    for (const step of cleanups.reverse()) await step().catch(() => undefined);
  }
}

/** A model proxy on `<dir>/<name>` forwarding to `upstream`, with one live credential; counts usage reports. */
async function startModelProxy(
  upstream: string,
  dir: string,
  name: string,
  log: Logger,
  cleanups: Cleanups,
): Promise<{ socketPath: string; credential: string; usageReports(): number }> {
  const credentials = new TurnCredentials<{ turnId: string }>();
  const credential = credentials.issue({ turnId: "bench" });
  let usageReports = 0;
  const server = createModelProxy({
    upstreamBaseUrl: upstream,
    apiKey: BENCH_API_KEY,
    authorize: (token) => credentials.resolve(token),
    logger: log,
    // What is measured is a request's path through the proxy, not its rate limit (ALIVE_CODEX_MODEL_RATE).
    ratePerMinute: 0,
    onUsage: () => {
      usageReports += 1;
    },
  });
  const socketPath = path.join(dir, name);
  await listenOnSocket(server, socketPath);
  cleanups.push(() => closeServer(server));
  return { socketPath, credential, usageReports: () => usageReports };
}

/** One request, direct (the real key) or through the proxy (the credential), timed by the peer. */
function post(
  peer: Peer,
  arm: Arm,
  upstream: string,
  proxy: { socketPath: string; credential: string },
  channel: string,
): Promise<Timing> {
  return arm === "direct"
    ? peer.ask({
        op: "post",
        arm: `${channel}-direct`,
        target: { url: `${upstream}/responses` },
        apiKey: BENCH_API_KEY,
        body: REQUEST_BODY,
      })
    : peer.ask({
        op: "post",
        arm: `${channel}-proxy`,
        target: { socketPath: proxy.socketPath, path: "/v1/responses" },
        apiKey: proxy.credential,
        body: REQUEST_BODY,
      });
}

async function measureOverhead(
  peer: Peer,
  dir: string,
  options: ProxyOptions,
  cleanups: Cleanups,
): Promise<Arms<number[]>> {
  const upstream = peer.ready.stubUrl;
  const proxy = await startModelProxy(upstream, dir, "model.sock", options.log, cleanups);
  const samples: Arms<number[]> = { direct: [], proxy: [] };
  for (let i = -options.warmup; i < options.n; i++) {
    for (const arm of orderOf(i)) {
      const result = await post(peer, arm, upstream, proxy, "small");
      if (!result.tail.includes("response.completed"))
        throw new Error(`${arm}: the stub's stream did not end with response.completed`);
      if (i >= 0) samples[arm].push(result.ms);
    }
    if (i % 500 === 0) await peer.ask({ op: "reset-stub" }); // the stub records every request
  }
  const expected = options.warmup + options.n;
  if (proxy.usageReports() !== expected)
    throw new Error(`the model proxy reported usage ${proxy.usageReports()} times for ${expected} responses`);
  return samples;
}

async function measureThroughput(
  peer: Peer,
  dir: string,
  options: ProxyOptions,
  cleanups: Cleanups,
): Promise<Throughput> {
  const { longUrl, longBytes } = peer.ready;
  const proxy = await startModelProxy(longUrl, dir, "model-long.sock", options.log, cleanups);
  const rates: Arms<number[]> = { direct: [], proxy: [] };
  for (let i = -1; i < options.streamRuns; i++) {
    for (const arm of orderOf(i)) {
      const result = await post(peer, arm, longUrl, proxy, "long");
      if (result.bytes !== longBytes || !result.tail.includes("response.completed"))
        throw new Error(`${arm}: got ${result.bytes} of ${longBytes} bytes`);
      if (i >= 0) rates[arm].push(result.bytes / 1e6 / (result.ms / 1000));
    }
  }
  if (proxy.usageReports() !== options.streamRuns + 1)
    throw new Error(`the model proxy read usage off ${proxy.usageReports()} of ${options.streamRuns + 1} long streams`);
  return { ...rates, bytes: longBytes, reader: measureUsageReader(options) };
}

/** For scale: the proxy's usage reader alone, fed the same stream in 64 KiB chunks, in this process. */
function measureUsageReader(options: ProxyOptions): number[] {
  const stream = buildLongStream(options.streamMb * 1e6);
  const rates: number[] = [];
  for (let i = -1; i < options.streamRuns; i++) {
    const reader = new SseUsageReader();
    const start = performance.now();
    let reports = 0;
    for (let offset = 0; offset < stream.length; offset += 65_536)
      reports += reader.push(stream.subarray(offset, offset + 65_536)).length;
    const elapsed = performance.now() - start;
    if (reports !== 1) throw new Error(`the usage reader found ${reports} usage reports in the long stream`);
    if (i >= 0) rates.push(stream.length / 1e6 / (elapsed / 1000));
  }
  return rates;
}

interface BodyCheck {
  bytes: number;
  /** A body as codex sends it under egress "model": none of the words that matter. */
  plain: number[];
  /** The same body with an inline data: image (and an escaped control character): parsed and checked. */
  parsed: number[];
}

/** A codex-like /responses body of about `bytes`: tools, then command outputs. */
function codexLikeBody(bytes: number, extra: unknown[]): Buffer {
  const input: unknown[] = [
    { type: "message", role: "user", content: [{ type: "input_text", text: "Fix the failing test." }] },
    ...extra,
  ];
  const tools = [
    { type: "function", name: "exec_command", parameters: { type: "object", properties: { cmd: { type: "string" } } } },
    { type: "custom", name: "apply_patch" },
  ];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const item = {
      type: "function_call_output",
      call_id: `call_${i}`,
      output: `Process exited with code 0\nOutput:\n${"src/app.ts:12: expected 3 to equal 4 (é)\n".repeat(40)}`,
    };
    size += JSON.stringify(item).length;
    input.push(item);
  }
  return Buffer.from(JSON.stringify({ model: BENCH_MODEL, stream: true, input, tools, store: false }));
}

export function measureBodyCheck(options: Pick<ProxyOptions, "n" | "warmup">): BodyCheck {
  const plain = codexLikeBody(200 * 1024, []);
  const withImage = codexLikeBody(200 * 1024, [
    {
      type: "message",
      role: "user",
      content: [
        { type: "input_image", image_url: "data:image/png;base64,iVBORw0KGgo=" },
        { type: "input_text", text: "\u001b[0m" },
      ],
    },
  ]);
  const policy = { egress: "model" as const, hostedTools: new Set<string>() };
  const time = (body: Buffer): number[] => {
    const samples: number[] = [];
    for (let i = -options.warmup; i < options.n; i++) {
      const start = performance.now();
      const verdict = checkRequestBody(body, policy);
      const elapsed = performance.now() - start;
      if (!verdict.ok) throw new Error(`the body check refused the bench body: ${verdict.message}`);
      if (i >= 0) samples.push(elapsed);
    }
    return samples;
  };
  return { bytes: plain.length, plain: time(plain), parsed: time(withImage) };
}

async function measureTunnel(
  peer: Peer,
  dir: string,
  options: ProxyOptions,
  cleanups: Cleanups,
): Promise<Arms<number[]>> {
  const port = peer.ready.echoPort;
  const egress = createEgressProxy({
    policy: () => "public",
    internal: parseInternalDestinations([`127.0.0.1:${port}`], "bench"),
    log: options.log,
  });
  const socketPath = path.join(dir, "proxy.sock");
  await listenOnSocket(egress, socketPath);
  cleanups.push(() => closeServer(egress));
  const samples: Arms<number[]> = { direct: [], proxy: [] };
  for (let i = -Math.min(options.warmup, 50); i < options.tunnels; i++) {
    for (const arm of orderOf(i)) {
      const result = await peer.ask({
        op: "tunnel",
        host: "127.0.0.1",
        port,
        ...(arm === "proxy" ? { via: socketPath } : {}),
      });
      if (i >= 0) samples[arm].push(result.ms);
    }
  }
  return samples;
}

function report(
  overhead: Arms<number[]>,
  throughput: Throughput,
  tunnel: Arms<number[]>,
  bodyCheck: BodyCheck,
  options: ProxyOptions,
): SectionResult {
  const bodyCheckP50 = summarize(bodyCheck.plain).p50;
  const bodyCheckPass = bodyCheckP50 <= 1;
  const direct = summarize(overhead.direct);
  const viaProxy = summarize(overhead.proxy);
  const added = viaProxy.p50 - direct.p50;
  const overheadPass = added <= 5;
  const rate = { direct: summarize(throughput.direct).p50, proxy: summarize(throughput.proxy).p50 };
  const rateRatio = ratio(rate.proxy, rate.direct);
  const ratePass = rateRatio >= 0.9;
  const tunnelDirect = summarize(tunnel.direct);
  const rateRow = (label: string, values: number[], target: string, result: string): TableRow => {
    const s = summarize(values);
    return {
      case: label,
      runs: s.n,
      "p50 MB/s": s.p50,
      "min MB/s": s.min,
      "max MB/s": s.max,
      "vs direct p50": times(ratio(s.p50, rate.direct)),
      target,
      result,
    };
  };
  return {
    title: "6. Model proxy and egress proxy (Unix socket, loopback upstreams)",
    tables: [
      formatTable(
        [
          latencyRow("model request through the model proxy", overhead.proxy, direct, {
            target: "p50 <= direct + 5 ms",
            result: verdict(overheadPass),
          }),
          latencyRow("same request direct to the upstream (baseline)", overhead.direct, direct, {
            target: "-",
            result: "-",
          }),
          latencyRow(
            `body check, ${Math.round(bodyCheck.bytes / 1024)} KB as codex sends it (egress "model")`,
            bodyCheck.plain,
            undefined,
            { target: "p50 <= +1 ms", result: verdict(bodyCheckPass) },
          ),
          latencyRow(
            `body check, ${Math.round(bodyCheck.bytes / 1024)} KB with an inline image (parsed)`,
            bodyCheck.parsed,
            undefined,
            { target: "-", result: "-" },
          ),
          latencyRow("CONNECT tunnel through the egress proxy", tunnel.proxy, tunnelDirect, {
            target: "-",
            result: "-",
          }),
          latencyRow("direct TCP connect (baseline)", tunnel.direct, tunnelDirect, { target: "-", result: "-" }),
        ],
        LATENCY_COLUMNS,
        { decimals: 3 },
      ),
      formatTable(
        [
          rateRow(
            `SSE stream through the model proxy (${(throughput.bytes / 1e6).toFixed(0)} MB)`,
            throughput.proxy,
            ">= 0.90x direct",
            verdict(ratePass),
          ),
          rateRow("same stream direct (baseline)", throughput.direct, "-", "-"),
          rateRow("for scale: the proxy's usage reader alone", throughput.reader, "-", "-"),
        ],
        ["case", "runs", "p50 MB/s", "min MB/s", "max MB/s", "vs direct p50", "target", "result"],
      ),
    ],
    checks: [
      {
        metric: "model proxy: p50 added per request",
        measured: `${added >= 0 ? "+" : ""}${ms(added)}`,
        target: "<= +5 ms",
        pass: overheadPass,
      },
      {
        metric: "model proxy: body check of a 200 KB request, p50",
        measured: `+${ms(bodyCheckP50)}`,
        target: "<= +1 ms",
        pass: bodyCheckPass,
      },
      {
        metric: "model proxy: SSE throughput vs direct",
        measured: `${times(rateRatio)} (${rate.proxy.toFixed(0)} MB/s)`,
        target: ">= 0.90x",
        pass: ratePass,
      },
    ],
    notes: [
      `model request: POST /v1/responses answered by the ResponsesStub with one message (${REQUEST_BODY.length} bytes in, 3 SSE events out), timed from the call to the last byte; ${options.n} per arm after ${options.warmup} warm-up, ABBA, keep-alive connections both ways; every proxied response had its usage counted`,
      `SSE stream: response.created, 64-character text deltas (~230 bytes per event), response.completed, written in 64 KiB slices with backpressure; ${options.streamRuns} reads per arm after 1 warm-up, alternating`,
      `body check: checkRequestBody alone on a ${bodyCheck.bytes}-byte codex-like body (tools, command outputs) under egress "model", ${options.n} runs after ${options.warmup} warm-up; a body with none of the words that matter (and no \\u escape) is passed unparsed, one with an inline image or an escape is parsed, checked and serialised again (p50 ${ms(summarize(bodyCheck.parsed).p50)})`,
      `CONNECT: to 127.0.0.1 on the operator's internal list (the only loopback destination the proxy connects to), timed from the connect call until one byte came back through the tunnel; the baseline sends the same byte over a direct TCP connection; ${options.tunnels} per arm`,
      "upstreams and client run in a forked process, the proxies in the bench's (as the sidecar is a process apart); the socat forwarder inside the container (loopback TCP to the Unix socket) is not in these figures, a real turn pays it (section 3)",
      `model proxy p50 ${ms(viaProxy.p50)} vs direct ${ms(direct.p50)}; CONNECT setup p50 ${ms(summarize(tunnel.proxy).p50)} vs direct connect ${ms(tunnelDirect.p50)}`,
    ],
  };
}
