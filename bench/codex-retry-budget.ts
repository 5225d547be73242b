/**
 * How long a codex turn survives the model API being away: codex's retry budget, measured against
 * the real codex binary (`codex exec --json` on the host, the sidecar's provider config from
 * buildCodexConfig) and a scripted model endpoint on loopback that this script starts and stops.
 *
 *   npm run build && nice -n 10 node dist/bench/codex-retry-budget.js [--only=budget,outage,cap] [--parallel=6]
 *
 * The endpoint plays what codex meets in a workspace when the sidecar goes away:
 * - forwarder: the container's socat accepts the TCP connection, cannot reach the sidecar's Unix
 *   socket and closes it (emulated: accept, try a Unix socket nobody listens on, destroy);
 * - reset: the connection is accepted and reset at once (RST);
 * - refused: nothing listens on the port;
 * - cut: the sidecar dies with a request in flight: headers and `response.created`, then the
 *   socket is destroyed;
 * - stall / hang (for stream_idle_timeout_ms): `response.created`, then silence / no answer at all.
 * "budget" runs keep the endpoint broken from the turn's first request until codex gives up (or a
 * time limit), and print each attempt's arrival time. "outage" runs cut the turn's first response
 * mid-stream, keep the forwarder unable to reach the sidecar for T s, then answer normally: does
 * the turn complete, and how long after the sidecar is back? "cap" reads the stream retry cap from
 * codex's "Reconnecting... 1/N" event; "idle" checks which of stall and hang
 * stream_idle_timeout_ms=2000 ends. Runs go in parallel (--parallel, default 6); the whole
 * bench takes about 2 minutes. Nothing leaves loopback; every codex is killed and every temp dir
 * removed at the end, also on Ctrl-C.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { findCodexVendorDir } from "../src/codex-package.js";
import { buildCodexConfig, PROVIDER_ID, type CodexConfigObject } from "../src/codex/config-overrides.js";
import { eventsFor, formatSseEvent } from "../test/support/responses-stub.js";
import { BENCH_API_KEY, BENCH_MODEL } from "./harness.js";
import { formatTable, type TableRow } from "./stats.js";

// ---------------------------------------------------------------------------------------------
// Settings and the schedule they predict

interface RetrySetting {
  label: string;
  /** model_providers.<id>.request_max_retries; undefined = codex's default (4). */
  request?: number;
  /** model_providers.<id>.stream_max_retries; undefined = codex's default (5). */
  stream?: number;
}

const DEFAULT_REQUEST_RETRIES = 4;
const DEFAULT_STREAM_RETRIES = 5;
const SETTINGS = {
  default: { label: "default (r4/s5)" },
  r6s6: { label: "r6/s6", request: 6, stream: 6 },
  r10s10: { label: "r10/s10", request: 10, stream: 10 },
} satisfies Record<string, RetrySetting>;

/**
 * When codex's last attempt falls, in s after the first failure, from the schedule this bench
 * observes: each request is retried `r` times at the HTTP layer (no event), 0.2·2^(k−1) s apart;
 * when they are used up the turn's stream layer starts the request again, `s` times, 0.2·2^(j−1)
 * s later, each with a fresh HTTP budget. All delays ±10 % jitter, no cap. `cutFirst`: the first
 * failure is a stream cut (it uses a stream retry, not a request round).
 */
export function predictedLastAttempt(setting: RetrySetting, cutFirst: boolean): number {
  const r = Math.min(100, setting.request ?? DEFAULT_REQUEST_RETRIES);
  const s = Math.min(100, setting.stream ?? DEFAULT_STREAM_RETRIES);
  const round = 0.2 * (2 ** r - 1);
  return (cutFirst ? s : s + 1) * round + 0.2 * (2 ** s - 1);
}

/** The same when every response is cut mid-stream: no HTTP-layer rounds, only the stream retries. */
function predictedLastCut(setting: RetrySetting): number {
  return 0.2 * (2 ** Math.min(100, setting.stream ?? DEFAULT_STREAM_RETRIES) - 1);
}

/** The longest wait between two attempts in that schedule. */
function predictedMaxGap(setting: RetrySetting): number {
  const r = setting.request ?? DEFAULT_REQUEST_RETRIES;
  const s = setting.stream ?? DEFAULT_STREAM_RETRIES;
  return 0.2 * 2 ** (Math.max(r, s) - 1);
}

// ---------------------------------------------------------------------------------------------
// The model endpoint

/** stall: headers and `response.created`, then silence; hang: the request is read, never answered. */
type EndpointState = "healthy" | "cut" | "forwarder" | "reset" | "refused" | "stall" | "hang";

/**
 * A loopback TCP port that behaves as `state` says. In the healthy and cut states connections go
 * to an HTTP server answering `POST …/responses`; `onCut` is called after each cut.
 */
class ModelEndpoint {
  /** performance.now() of every TCP connection accepted (none arrive while refused). */
  readonly connections: number[] = [];
  /** performance.now() of every `POST …/responses` read. */
  readonly posts: number[] = [];
  onCut: (() => void) | undefined;

  #state: EndpointState = "healthy";
  #listening = false;
  #port = 0;
  #n = 0;
  readonly #server: net.Server;
  readonly #http = createHttpServer((req, res) => this.#onRequest(req, res));
  readonly #sockets = new Set<net.Socket>();
  readonly #deadSocket: string;

  constructor(deadSocket: string) {
    this.#deadSocket = deadSocket;
    this.#server = net.createServer((socket) => this.#onConnection(socket));
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.#port}/v1`;
  }

  async start(state: EndpointState): Promise<void> {
    await this.#listen();
    await this.setState(state);
  }

  /** Switches state; any open connection is destroyed, as when the sidecar dies or comes back. */
  async setState(state: EndpointState): Promise<void> {
    this.#state = state;
    for (const socket of this.#sockets) socket.destroy();
    if (state === "refused" && this.#listening) {
      this.#listening = false;
      await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    } else if (state !== "refused" && !this.#listening) {
      await this.#listen();
    }
  }

  async close(): Promise<void> {
    this.onCut = undefined;
    for (const socket of this.#sockets) socket.destroy();
    if (this.#listening) {
      this.#listening = false;
      await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    }
    this.#http.close();
  }

  async #listen(): Promise<void> {
    // The same port again after a refused phase (0 the first time).
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(this.#port, "127.0.0.1", () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as net.AddressInfo).port;
    this.#listening = true;
  }

  #onConnection(socket: net.Socket): void {
    this.connections.push(performance.now());
    socket.on("error", () => {});
    if (this.#state === "reset") {
      socket.resetAndDestroy();
      return;
    }
    if (this.#state === "forwarder") {
      // socat TCP-LISTEN,fork UNIX-CONNECT: the child's connect fails and the TCP side closes.
      const upstream = net.connect(this.#deadSocket);
      upstream.on("error", () => socket.destroy());
      upstream.on("connect", () => socket.destroy());
      return;
    }
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
    this.#http.emit("connection", socket);
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    req.once("end", () => {
      if (req.method !== "POST" || !(req.url ?? "").split("?")[0]?.endsWith("/responses")) {
        res.writeHead(404, { "content-type": "application/json" });
        res.end("{}");
        return;
      }
      this.posts.push(performance.now());
      if (this.#state === "hang") return;
      const events = eventsFor({ kind: "message", text: "ok" }, ++this.#n);
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      if (this.#state === "stall") {
        res.write(formatSseEvent(events[0] as (typeof events)[number]));
        return;
      }
      if (this.#state === "cut") {
        res.write(formatSseEvent(events[0] as (typeof events)[number]));
        setTimeout(() => {
          req.socket.destroy();
          this.onCut?.();
        }, 20);
        return;
      }
      for (const event of events) res.write(formatSseEvent(event));
      res.end();
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Running codex

interface CodexRun {
  outcome: "completed" | "failed" | "retrying" | "exited";
  /** performance.now() of turn.started, turn.completed/turn.failed (or the kill). */
  startedAt: number;
  endedAt: number;
  /** `error` events (codex's retry notices and the final error), with performance.now(). */
  errors: Array<{ at: number; message: string }>;
  exitCode: number | null;
  stderrTail: string;
}

const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();

/** Flattens a config object into `--config key=value` pairs, as the Codex SDK does. */
function configArgs(value: CodexConfigObject, prefix = ""): string[] {
  const out: string[] = [];
  for (const [key, child] of Object.entries(value)) {
    const full = prefix ? `${prefix}.${key}` : key;
    if (typeof child === "object" && !Array.isArray(child)) out.push(...configArgs(child, full));
    else out.push("--config", `${full}=${toToml(child)}`);
  }
  return out;
}

function toToml(value: CodexConfigObject[string]): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return `[${value.map(toToml).join(", ")}]`;
  return `{${Object.entries(value)
    .map(([k, v]) => `${/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k)} = ${toToml(v)}`)
    .join(", ")}}`;
}

/** One `codex exec --json` turn ("say ok") against `baseUrl`, killed after `limitMs`. */
async function runCodex(
  baseUrl: string,
  setting: RetrySetting,
  limitMs: number,
  extra: Record<string, number> = {},
  stopWhen?: (run: CodexRun) => boolean,
): Promise<CodexRun> {
  const root = await mkdtemp(path.join(os.tmpdir(), "codex-retry-budget-"));
  tempDirs.add(root);
  try {
    const home = path.join(root, "home");
    const work = path.join(root, "work");
    await mkdir(path.join(home, ".codex"), { recursive: true });
    await mkdir(work);
    const config = buildCodexConfig({ modelBaseUrl: baseUrl, sessionEnvNames: [] });
    const provider = (config.model_providers as CodexConfigObject)[PROVIDER_ID] as CodexConfigObject;
    // The sidecar's own values are in the config: undefined measures codex's defaults.
    delete provider.request_max_retries;
    delete provider.stream_max_retries;
    if (setting.request !== undefined) provider.request_max_retries = setting.request;
    if (setting.stream !== undefined) provider.stream_max_retries = setting.stream;
    Object.assign(provider, extra);
    const args = [
      "exec",
      "--json",
      ...configArgs(config),
      "--config",
      'approval_policy="never"',
      "--model",
      BENCH_MODEL,
      "--sandbox",
      "danger-full-access",
      "--cd",
      work,
      "--skip-git-repo-check",
      "say ok",
    ];
    const child = spawn(path.join(findCodexVendorDir(), "bin", "codex"), args, {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: home,
        CODEX_HOME: path.join(home, ".codex"),
        CODEX_API_KEY: BENCH_API_KEY,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    live.add(child);
    const run: CodexRun = {
      outcome: "exited",
      startedAt: performance.now(),
      endedAt: NaN,
      errors: [],
      exitCode: null,
      stderrTail: "",
    };
    const kill = (): void => {
      if (run.outcome === "exited") run.outcome = "retrying";
      run.endedAt = performance.now();
      child.kill("SIGKILL");
    };
    const timer = setTimeout(kill, limitMs);
    let buffer = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        let event: { type?: string; message?: string; error?: { message?: string } };
        try {
          event = JSON.parse(line) as typeof event;
        } catch {
          continue;
        }
        const now = performance.now();
        if (event.type === "turn.started") run.startedAt = now;
        else if (event.type === "error") run.errors.push({ at: now, message: event.message ?? "" });
        else if (event.type === "turn.completed" || event.type === "turn.failed") {
          run.outcome = event.type === "turn.completed" ? "completed" : "failed";
          run.endedAt = now;
        }
        if (stopWhen?.(run)) kill();
      }
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      run.stderrTail = (run.stderrTail + chunk).slice(-2000);
    });
    run.exitCode = await new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
    clearTimeout(timer);
    live.delete(child);
    if (Number.isNaN(run.endedAt)) run.endedAt = performance.now();
    return run;
  } finally {
    await rm(root, { recursive: true, force: true });
    tempDirs.delete(root);
  }
}

async function withEndpoint<T>(fn: (endpoint: ModelEndpoint) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "codex-retry-budget-sock-"));
  tempDirs.add(dir);
  const endpoint = new ModelEndpoint(path.join(dir, "model.sock"));
  try {
    return await fn(endpoint);
  } finally {
    await endpoint.close();
    await rm(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

const s = (ms: number): number => ms / 1000;

/** Distinct `error` messages, numbers of "n/N" folded, with counts. */
function errorKinds(errors: CodexRun["errors"]): string {
  const counts = new Map<string, number>();
  for (const { message } of errors) {
    const kind = message.replace(/Reconnecting\.\.\. \d+\//, "Reconnecting... n/").slice(0, 110);
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return [...counts].map(([kind, n]) => `${n}× ${JSON.stringify(kind)}`).join("; ");
}

interface BudgetResult {
  row: TableRow;
  detail: string;
}

/** The endpoint is broken from the turn's first request on; runs until codex gives up or `limitMs`. */
async function budget(failure: EndpointState, key: keyof typeof SETTINGS, limitMs: number): Promise<BudgetResult> {
  const setting: RetrySetting = SETTINGS[key];
  return withEndpoint(async (endpoint) => {
    await endpoint.start(failure);
    const run = await runCodex(endpoint.baseUrl, setting, limitMs);
    const arrivals = failure === "cut" ? endpoint.posts : endpoint.connections;
    // t0: the first attempt (nothing arrives while refused: then turn.started).
    const t0 = arrivals[0] ?? run.startedAt;
    const times = arrivals.map((t) => s(t - t0));
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    const last = times.at(-1);
    const predicted =
      failure === "refused"
        ? NaN
        : failure === "cut"
          ? predictedLastCut(setting)
          : predictedLastAttempt(setting, false);
    const errorTimes = run.errors.map((e) => s(e.at - t0).toFixed(1)).join(" ");
    return {
      row: {
        setting: setting.label,
        failure,
        outcome: run.outcome === "retrying" ? `retrying at ${s(limitMs)} s` : run.outcome,
        "gave up s": run.outcome === "failed" ? s(run.endedAt - t0) : NaN,
        attempts: failure === "refused" ? "-" : times.length,
        "last attempt s": last ?? NaN,
        "max gap s": gaps.length > 0 ? Math.max(...gaps) : NaN,
        "predicted last s": predicted,
        "error events": run.errors.length,
      },
      detail:
        `${setting.label} / ${failure}:\n` +
        (failure === "refused" ? "" : `  attempts at (s): ${times.map((t) => t.toFixed(2)).join(" ")}\n`) +
        `  error events at (s): ${errorTimes || "none"}\n  error texts: ${errorKinds(run.errors) || "none"}`,
    };
  });
}

/**
 * The sidecar dies with the turn's first request in flight (its stream is cut), the forwarder
 * cannot reach it for `outageS` s (`down` = forwarder or refused), then it answers normally.
 */
async function outage(
  key: keyof typeof SETTINGS,
  outageS: number,
  down: EndpointState,
  limitMs: number,
): Promise<TableRow> {
  const setting: RetrySetting = SETTINGS[key];
  return withEndpoint(async (endpoint) => {
    let cutAt = NaN;
    let recovery: NodeJS.Timeout | undefined;
    await endpoint.start("cut");
    endpoint.onCut = () => {
      endpoint.onCut = undefined;
      cutAt = performance.now();
      void endpoint.setState(down);
      recovery = setTimeout(() => void endpoint.setState("healthy"), outageS * 1000);
    };
    try {
      const run = await runCodex(endpoint.baseUrl, setting, limitMs);
      const attempts = (down === "refused" ? endpoint.posts : endpoint.connections).filter((t) => t > cutAt).length;
      return {
        setting: setting.label,
        "outage s": outageS,
        down,
        outcome: run.outcome === "retrying" ? `retrying at ${s(limitMs)} s` : run.outcome,
        "ended at s": s(run.endedAt - cutAt),
        "after recovery s": run.outcome === "completed" ? s(run.endedAt - cutAt) - outageS : NaN,
        attempts,
        "error events": run.errors.length,
        "predicted limit s": down === "refused" ? NaN : predictedLastAttempt(setting, true),
      };
    } finally {
      clearTimeout(recovery);
    }
  });
}

/** stream_idle_timeout_ms=2000 against a stalled stream and a request never answered, for `limitMs`. */
async function idle(state: "stall" | "hang", limitMs: number): Promise<string> {
  return withEndpoint(async (endpoint) => {
    await endpoint.start(state);
    const run = await runCodex(endpoint.baseUrl, SETTINGS.default, limitMs, { stream_idle_timeout_ms: 2000 });
    const t0 = endpoint.posts[0] ?? run.startedAt;
    return (
      `${state} (stream_idle_timeout_ms=2000, watched ${s(limitMs)} s): ${run.outcome === "retrying" ? "still waiting" : run.outcome}; ` +
      `requests at (s) ${endpoint.posts.map((t) => s(t - t0).toFixed(1)).join(" ")}; ` +
      `error events: ${errorKinds(run.errors) || "none"}`
    );
  });
}

/** stream_max_retries=1000: codex's first "Reconnecting... 1/N" tells the cap N. */
async function streamCap(): Promise<string> {
  return withEndpoint(async (endpoint) => {
    await endpoint.start("cut");
    const run = await runCodex(
      endpoint.baseUrl,
      { label: "cap", request: 1000, stream: 1000 },
      15_000,
      {},
      (r) => r.errors.length > 0,
    );
    const first = run.errors[0]?.message ?? `no error event (exit ${run.exitCode}): ${run.stderrTail.slice(-300)}`;
    return `request_max_retries=1000, stream_max_retries=1000 accepted; first retry event: ${JSON.stringify(first.slice(0, 60))}`;
  });
}

/** Runs `jobs` with at most `parallel` at once, longest first (each job says its expected length). */
async function pool<T>(jobs: Array<{ expectS: number; run: () => Promise<T> }>, parallel: number): Promise<T[]> {
  const order = jobs.map((job, i) => ({ ...job, i })).sort((a, b) => b.expectS - a.expectS);
  const results = new Array<T>(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < order.length) {
      const job = order[next++] as (typeof order)[number];
      results[job.i] = await job.run();
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, jobs.length) }, worker));
  return results;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  let only = new Set(["budget", "outage", "cap", "idle"]);
  let parallel = 6;
  for (const arg of process.argv.slice(2)) {
    const [name, value = ""] = arg.split("=", 2) as [string, string?];
    if (name === "--only") only = new Set(value.split(","));
    else if (name === "--parallel" && Number.isInteger(Number(value)) && Number(value) > 0) parallel = Number(value);
    else throw new Error(`unknown argument ${JSON.stringify(arg)} (see the header of bench/codex-retry-budget.ts)`);
  }
  const t0 = performance.now();
  const progress = (line: string): void =>
    void process.stderr.write(`[retry-budget +${s(performance.now() - t0).toFixed(1)}s] ${line}\n`);

  const budgetJobs: Array<{ expectS: number; run: () => Promise<BudgetResult> }> = [];
  const outageJobs: Array<{ expectS: number; run: () => Promise<TableRow> }> = [];
  const idleJobs: Array<{ expectS: number; run: () => Promise<string> }> = [];
  const job = <T>(
    what: string,
    expectS: number,
    run: () => Promise<T>,
  ): { expectS: number; run: () => Promise<T> } => ({
    expectS,
    run: async () => {
      progress(`start ${what}`);
      const result = await run();
      progress(`done  ${what}`);
      return result;
    },
  });
  if (only.has("budget")) {
    budgetJobs.push(
      job("default/cut", 7, () => budget("cut", "default", 60_000)),
      job("default/forwarder", 25, () => budget("forwarder", "default", 90_000)),
      job("default/reset", 30, () => budget("reset", "default", 90_000)),
      job("default/refused", 50, () => budget("refused", "default", 50_000)),
      job("r6s6/cut", 13, () => budget("cut", "r6s6", 60_000)),
      job("r6s6/forwarder", 101, () => budget("forwarder", "r6s6", 130_000)),
      job("r10s10/forwarder", 60, () => budget("forwarder", "r10s10", 60_000)),
    );
  }
  if (only.has("outage")) {
    for (const outageS of [5, 15, 30, 60]) {
      outageJobs.push(
        job(`default/outage ${outageS}s`, Math.min(outageS, 22), () => outage("default", outageS, "forwarder", 90_000)),
        job(`r6s6/outage ${outageS}s`, outageS + 7, () => outage("r6s6", outageS, "forwarder", 130_000)),
      );
    }
    outageJobs.push(
      job("r10s10/outage 30s", 52, () => outage("r10s10", 30, "forwarder", 130_000)),
      job("r10s10/outage 60s", 103, () => outage("r10s10", 60, "forwarder", 130_000)),
      job("default/outage 60s refused", 88, () => outage("default", 60, "refused", 130_000)),
    );
  }
  if (only.has("idle")) {
    idleJobs.push(
      job("idle/stall", 10, () => idle("stall", 10_000)),
      job("idle/hang", 15, () => idle("hang", 15_000)),
    );
  }
  const cleanup = (): void => {
    for (const child of live) child.kill("SIGKILL");
  };
  const onSignal = (): void => {
    progress("interrupted: killing codex, removing temp dirs");
    cleanup();
    void Promise.all([...tempDirs].map((dir) => rm(dir, { recursive: true, force: true }))).then(() =>
      process.exit(130),
    );
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  let cap = "";
  let budgets: BudgetResult[] = [];
  let outages: TableRow[] = [];
  let idles: string[] = [];
  try {
    const all = await pool<BudgetResult | TableRow | string>([...budgetJobs, ...outageJobs, ...idleJobs], parallel);
    budgets = all.slice(0, budgetJobs.length) as BudgetResult[];
    outages = all.slice(budgetJobs.length, budgetJobs.length + outageJobs.length) as TableRow[];
    idles = all.slice(budgetJobs.length + outageJobs.length) as string[];
    if (only.has("cap")) cap = await streamCap();
  } finally {
    cleanup();
  }

  console.log(`codex retry budget (codex exec --json, provider "${PROVIDER_ID}", wire_api responses, HTTP)\n`);
  if (budgets.length > 0) {
    console.log("Retry budget: the endpoint is broken from the turn's first request on (t = 0: first attempt)\n");
    console.log(formatTable(budgets.map((b) => b.row)));
    console.log(`\n${budgets.map((b) => b.detail).join("\n")}\n`);
  }
  if (outages.length > 0) {
    console.log(
      "Outage: first response cut mid-stream (t = 0), the endpoint down for T s, then healthy; predicted limit = last attempt codex makes\n",
    );
    console.log(formatTable(outages));
    console.log("");
  }
  console.log("Schedule predicted from the observed backoff (0.2·2^(k−1) s at both layers, ±10 %):\n");
  console.log(
    formatTable(
      [SETTINGS.default, { label: "r6/s5", request: 6, stream: 5 }, SETTINGS.r6s6, SETTINGS.r10s10].map(
        (setting: RetrySetting) => ({
          setting: setting.label,
          "survives, cut first s": predictedLastAttempt(setting, true),
          "survives, down between requests s": predictedLastAttempt(setting, false),
          "longest wait between attempts s": predictedMaxGap(setting),
        }),
      ),
    ),
  );
  if (cap) console.log(`\ncap: ${cap}`);
  for (const line of idles) console.log(`idle timeout: ${line}`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  },
);
