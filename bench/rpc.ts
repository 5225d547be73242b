/**
 * Section 5, the RPC layer over a real Unix socket (startRpcServer + SidecarClient):
 * - sidecar.health round trips, one after another, against (a) the bench's real SidecarService
 *   (its health asks the engine for its version and the image) and (b) a service whose health
 *   returns a constant, which isolates the RPC layer (framing, dispatch, socket) from the engine;
 * - turn.event throughput: a service whose runTurn emits N synthetic item.completed events through
 *   hooks.onEvent (batches of 1,000 per event-loop turn); a SidecarClient iterates the TurnRun and
 *   counts events until the result arrives. This is the RPC layer's fan-out, not codex's pace;
 * - for reference, a real codex turn through the real service whose scripted model answers with
 *   many small message items (bounded by codex, not by the RPC layer).
 */
import path from "node:path";
import { performance } from "node:perf_hooks";
import { setImmediate as nextTurn } from "node:timers/promises";
import { sdkCodexVersion } from "../src/codex-package.js";
import { isImagePresent } from "../src/docker/base-image.js";
import { ErrorCode, SidecarError } from "../src/errors.js";
import { SidecarClient } from "../src/index.js";
import { sidecarVersion } from "../src/sidecar.js";
import { startRpcServer, type RpcServer } from "../src/rpc/server.js";
import type { HealthResult, SidecarService, TurnResult, WorkspaceParams } from "../src/service.js";
import type { StubEvent } from "../test/support/responses-stub.js";
import type { BenchEnv } from "./harness.js";
import { LATENCY_COLUMNS, latencyRow, ms, verdict, type SectionResult } from "./report.js";
import { formatTable, summarize, type TableRow } from "./stats.js";

export interface RpcOptions {
  healthN: number;
  healthWarmup: number;
  /** Synthetic events per throughput run. */
  events: number;
  eventRuns: number;
}

const CONSTANT_HEALTH: HealthResult = {
  version: "bench",
  codexVersion: "bench",
  docker: { reachable: true, serverVersion: "bench" },
  image: { ref: "alive-codex-runtime:bench", present: true },
  workspaces: { running: 0, total: 0 },
  turns: { running: 0, detached: 0 },
};

/** A service that answers health with a constant and runs "turns" that only emit synthetic events. */
function syntheticService(eventsPerTurn: () => number): SidecarService {
  const unsupported = (): Promise<never> =>
    Promise.reject(new SidecarError(ErrorCode.internal, "not part of the bench's synthetic service"));
  return {
    health: async () => CONSTANT_HEALTH,
    ensureWorkspace: unsupported,
    listWorkspaces: unsupported,
    removeWorkspace: unsupported,
    workspaceLogs: unsupported,
    cancelTurn: unsupported,
    attachTurn: unsupported,
    getTurn: unsupported,
    listTurns: unsupported,
    async runTurn(params, hooks): Promise<TurnResult> {
      const turnId = params.turnId ?? "synthetic";
      const count = eventsPerTurn();
      hooks.onEvent(turnId, 0, {
        type: "sidecar.turn.accepted",
        turn_id: turnId,
        workspace_id: params.workspaceId,
        thread_id: null,
      });
      for (let i = 1; i <= count; i++) {
        hooks.onEvent(turnId, i, {
          type: "item.completed",
          item: { id: `item_${i}`, type: "agent_message", text: `synthetic event ${i}` },
        });
        if (i % 1000 === 0) await nextTurn();
      }
      return {
        turnId,
        threadId: null,
        status: "completed",
        finalResponse: "",
        items: [],
        usage: null,
        turnUsage: null,
        resources: { cpuSeconds: null, peakMemoryBytes: null, wallMs: 0 },
        tokens: { input: 0, cached: 0, output: 0, reasoning: 0 },
      };
    },
  };
}

async function timeHealth(client: SidecarClient, n: number, warmup: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = -warmup; i < n; i++) {
    const start = performance.now();
    await client.health();
    if (i >= 0) samples.push(performance.now() - start);
  }
  return samples;
}

/** Runs one turn through the client; returns events received (checked for order) and seconds taken. */
async function countTurnEvents(
  client: SidecarClient,
  workspaceId: string,
  input: string,
): Promise<{ events: number; seconds: number; status: string }> {
  const start = performance.now();
  const run = client.runTurn({ workspaceId, input });
  let events = 0;
  let expectedSeq = 0;
  for await (const { seq } of run) {
    if (seq !== expectedSeq) throw new Error(`turn.event seq ${seq} arrived where ${expectedSeq} was expected`);
    expectedSeq += 1;
    events += 1;
  }
  const result = await run.result;
  return { events, seconds: (performance.now() - start) / 1000, status: result.status };
}

export async function benchRpc(env: BenchEnv, warm: WorkspaceParams, options: RpcOptions): Promise<SectionResult> {
  const servers: RpcServer[] = [];
  const clients: SidecarClient[] = [];
  const start = async (name: string, service: SidecarService): Promise<SidecarClient> => {
    const socketPath = path.join(env.root, `${name}.sock`);
    servers.push(
      await startRpcServer({ socketPath, service, policy: env.config, log: env.log, version: sidecarVersion() }),
    );
    const client = await SidecarClient.connect(socketPath);
    clients.push(client);
    return client;
  };

  let eventsPerTurn = options.events;
  try {
    const real = await start("rpc-real", env.sidecar.service);
    const synthetic = await start(
      "rpc-synthetic",
      syntheticService(() => eventsPerTurn),
    );

    // Interleave the two health variants in blocks, so load drift hits both.
    const healthReal: number[] = [];
    const healthConst: number[] = [];
    const blocks = 4;
    for (let b = 0; b < blocks; b++) {
      const n = Math.ceil(options.healthN / blocks);
      healthReal.push(...(await timeHealth(real, n, b === 0 ? options.healthWarmup : 10)));
      healthConst.push(...(await timeHealth(synthetic, n, b === 0 ? options.healthWarmup : 10)));
    }

    eventsPerTurn = Math.min(10_000, options.events);
    await countTurnEvents(synthetic, "bench-rpc", "warm-up");
    eventsPerTurn = options.events;
    const rates: number[] = [];
    for (let i = 0; i < options.eventRuns; i++) {
      const { events, seconds } = await countTurnEvents(synthetic, "bench-rpc", "synthetic events");
      if (events !== options.events + 1)
        throw new Error(`received ${events} turn.event notifications, expected ${options.events + 1}`);
      rates.push(events / seconds);
    }

    // Reference: codex itself producing many small items, through the real service and the socket.
    const items = 300;
    let codexRate = NaN;
    let codexEvents = 0;
    try {
      await env.sidecar.service.ensureWorkspace(warm);
      env.stub.reset();
      env.stub.script({ kind: "events", events: manyMessages(items) });
      const outcome = await countTurnEvents(real, warm.workspaceId, "Say many small things.");
      if (outcome.status !== "completed") throw new Error(`turn ${outcome.status}`);
      codexEvents = outcome.events;
      codexRate = outcome.events / outcome.seconds;
    } finally {
      env.stub.reset();
    }

    // Where the real health's time goes: the calls it makes, one by one.
    const parts = {
      version: [] as number[],
      ref: [] as number[],
      present: [] as number[],
      codex: [] as number[],
      ping: [] as number[],
    };
    for (let i = -10; i < 200; i++) {
      const t0 = performance.now();
      await env.docker.version();
      const t1 = performance.now();
      const ref = await env.runtimeImage.ref();
      const t2 = performance.now();
      await isImagePresent(env.docker, ref);
      const t3 = performance.now();
      sdkCodexVersion();
      const t4 = performance.now();
      await env.docker.ping();
      const t5 = performance.now();
      if (i >= 0) {
        parts.version.push(t1 - t0);
        parts.ref.push(t2 - t1);
        parts.present.push(t3 - t2);
        parts.codex.push(t4 - t3);
        parts.ping.push(t5 - t4);
      }
    }
    const partRow = (call: string, values: number[]): TableRow => {
      const p = summarize(values);
      return { "call made by the real health": call, n: p.n, "p50 ms": p.p50, "p95 ms": p.p95 };
    };
    const healthParts = formatTable(
      [
        partRow("docker.version()", parts.version),
        partRow(
          `image.ref() (${env.config.image === null ? "derived tag: inspects the base image, hashes images/runtime" : "explicit --image"})`,
          parts.ref,
        ),
        partRow("isImagePresent(ref) (image inspect)", parts.present),
        partRow("sdkCodexVersion() (cached; the image's codex is read once per image)", parts.codex),
        partRow("not called; for comparison: docker.ping() (GET /_ping)", parts.ping),
      ],
      undefined,
      { decimals: 3 },
    );

    const real50 = summarize(healthReal).p50;
    const const50 = summarize(healthConst).p50;
    const rate = summarize(rates);
    const healthPass = real50 < 1;
    const ratePass = rate.p50 >= 20_000;
    const eventRows = [
      {
        case: `synthetic: ${options.events.toLocaleString("en")} item.completed via hooks.onEvent`,
        runs: rate.n,
        "p50 events/s": Math.round(rate.p50),
        "min events/s": Math.round(rate.min),
        target: ">= 20,000 events/s",
        result: verdict(ratePass),
      },
      {
        case: `real codex turn, ${items} message items (reference)`,
        runs: 1,
        "p50 events/s": Math.round(codexRate),
        "min events/s": Math.round(codexRate),
        target: `- (${codexEvents} events, whole turn incl. codex start)`,
        result: "-",
      },
    ];
    return {
      title: "5. RPC over the Unix socket (startRpcServer + SidecarClient)",
      tables: [
        formatTable(
          [
            latencyRow("sidecar.health, real service", healthReal, undefined, {
              target: "p50 < 1 ms",
              result: verdict(healthPass),
            }),
            latencyRow("sidecar.health, constant service (RPC layer only)", healthConst, undefined, {
              target: "(p50 < 1 ms)",
              result: verdict(const50 < 1),
            }),
          ],
          LATENCY_COLUMNS,
          { decimals: 3 },
        ),
        "Where the real health's time goes (each call timed alone, same process):\n" + healthParts,
        formatTable(eventRows),
      ],
      checks: [
        { metric: "rpc: sidecar.health p50 (real service)", measured: ms(real50), target: "< 1 ms", pass: healthPass },
        {
          metric: "rpc: sidecar.health p50 (RPC layer only)",
          measured: ms(const50),
          target: "< 1 ms",
          pass: const50 < 1,
        },
        {
          metric: "rpc: turn.event throughput (synthetic)",
          measured: `${Math.round(rate.p50).toLocaleString("en")} events/s`,
          target: ">= 20,000 events/s",
          pass: ratePass,
        },
      ],
      notes: [
        "one client, one call at a time (latency, not throughput); the real service's health pings the engine on every call and re-reads its version and the image state at most every 5 s",
        "throughput = events received by the client / (runTurn call -> result), every event's seq checked in order",
      ],
    };
  } finally {
    for (const client of clients) await client.close().catch(() => undefined);
    for (const server of servers) await server.close().catch(() => undefined);
  }
}

/** One response made of `count` small assistant message items. */
function manyMessages(count: number): StubEvent[] {
  const events: StubEvent[] = [{ type: "response.created", response: { id: "resp_bench_many" } }];
  for (let i = 0; i < count; i++) {
    events.push({
      type: "response.output_item.done",
      item: {
        type: "message",
        role: "assistant",
        id: `msg_bench_${i}`,
        content: [{ type: "output_text", text: `item ${i}` }],
      },
    });
  }
  events.push({
    type: "response.completed",
    response: {
      id: "resp_bench_many",
      usage: {
        input_tokens: 10,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: count,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 10 + count,
      },
    },
  });
  return events;
}
