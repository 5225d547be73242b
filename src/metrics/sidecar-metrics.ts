/**
 * The sidecar's Prometheus metrics, on a registry of its own (never prom-client's global one, so
 * two sidecars in one process, or a library embedding it, do not collide). Label values come from
 * small fixed sets (statuses, error codes, refusal reasons, token kinds): never a workspace, user
 * or turn id; a per-workspace view is what workspace.list is for.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** A finished turn as the metrics take it (turns/turn-execution.ts reports one). */
export interface TurnObservation {
  status: string;
  errorCode: string | null;
  durationMs: number;
  firstEventMs: number | null;
  resources: { cpuSeconds: number | null };
}

/** What the metrics read when scraped. */
export interface MetricsSources {
  /** The state of every known workspace container. */
  workspaceStates: () => readonly string[];
  runningTurns: () => number;
  /** Running turns whose client went away (onDisconnect "continue") and that nobody is attached to. */
  detachedTurns?: () => number;
  /** Open connections and requests of the proxies across every workspace, by kind (proxy, model, api, tunnel, request, apiRequest). */
  proxyConnections?: () => Readonly<Record<string, number>>;
}

export const METRIC_PREFIX = "alive_codex_";
const TOKEN_KINDS = ["input", "cached", "output", "reasoning"] as const;
/** Turns last seconds to an hour; a cold ensure builds or pulls nothing in the usual case. */
const TURN_BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
const FAST_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class SidecarMetrics {
  readonly registry = new Registry();
  private readonly turns: Counter<"status" | "error_code">;
  private readonly turnDuration: Histogram<"status">;
  private readonly firstEvent: Histogram;
  private readonly turnCpu: Counter;
  private readonly ensureDuration: Histogram<"kind">;
  private readonly egressRefusals: Counter<"reason">;
  private readonly modelRequests: Counter;
  private readonly modelTokens: Counter<"kind">;
  private readonly proxyErrors: Counter<"code">;
  private readonly sandboxStalls: Counter;
  private readonly leftTurns: Counter;
  private readonly brokered: Counter;
  private readonly modelRefusals: Counter<"reason">;
  private readonly lateTokens: Counter;
  private readonly dnsRefusals: Counter<"reason">;
  private readonly limitRefusals: Counter<"kind" | "reason">;
  private readonly egressCuts: Counter<"kind" | "reason">;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    this.turns = new Counter({
      name: `${METRIC_PREFIX}turns_total`,
      help: "Finished turns by status and error code (error_code is empty for a completed turn).",
      labelNames: ["status", "error_code"],
      registers,
    });
    this.turnDuration = new Histogram({
      name: `${METRIC_PREFIX}turn_duration_seconds`,
      help: "Wall time of finished turns, from turn.run to the result.",
      labelNames: ["status"],
      buckets: TURN_BUCKETS,
      registers,
    });
    this.firstEvent = new Histogram({
      name: `${METRIC_PREFIX}turn_first_event_seconds`,
      help: "Time from a turn's start to codex's first event.",
      buckets: FAST_BUCKETS,
      registers,
    });
    this.turnCpu = new Counter({
      name: `${METRIC_PREFIX}turn_cpu_seconds_total`,
      help: "CPU time of workspace containers over their turns.",
      registers,
    });
    this.ensureDuration = new Histogram({
      name: `${METRIC_PREFIX}workspace_ensure_duration_seconds`,
      help: "workspace.ensure duration: warm (the container was running) or cold (created, started or adopted).",
      labelNames: ["kind"],
      buckets: FAST_BUCKETS,
      registers,
    });
    this.egressRefusals = new Counter({
      name: `${METRIC_PREFIX}egress_refusals_total`,
      help: "Connections the egress proxy refused, by reason.",
      labelNames: ["reason"],
      registers,
    });
    this.modelRequests = new Counter({
      name: `${METRIC_PREFIX}model_requests_total`,
      help: "Model requests the model proxy forwarded.",
      registers,
    });
    this.modelTokens = new Counter({
      name: `${METRIC_PREFIX}model_tokens_total`,
      help: "Tokens of model responses, by kind (cached is part of input, reasoning part of output).",
      labelNames: ["kind"],
      registers,
    });
    this.proxyErrors = new Counter({
      name: `${METRIC_PREFIX}model_proxy_errors_total`,
      help: "Model requests that got no answer from the model API, by code.",
      labelNames: ["code"],
      registers,
    });
    this.sandboxStalls = new Counter({
      name: `${METRIC_PREFIX}sandbox_stalls_total`,
      help: "Turns the stall watch ended sandbox_stalled: codex never reaped a child that had exited, or the sandbox stopped answering (docs/runtimes.md).",
      registers,
    });
    this.leftTurns = new Counter({
      name: `${METRIC_PREFIX}restart_turns_total`,
      help: "Turns an earlier sidecar left running, by what start-up did: adopted, or ended container_died or sidecar_restarted (docs/operations.md).",
      labelNames: ["outcome"],
      registers,
    });
    this.brokered = new Counter({
      name: `${METRIC_PREFIX}egress_brokered_requests_total`,
      help: "Requests to a host with a secret binding that the egress proxy applied the binding to (docs/security.md, Brokered credentials); per workspace and host in workspace.list.",
      registers,
    });
    this.modelRefusals = new Counter({
      name: `${METRIC_PREFIX}model_refusals_total`,
      help: "Requests the model proxy answered itself instead of forwarding, by reason (path, credential, web_search, rate_limited, budget_exceeded...).",
      labelNames: ["reason"],
      registers,
    });
    this.lateTokens = new Counter({
      name: `${METRIC_PREFIX}model_late_tokens_total`,
      help: "Tokens of model responses that ended after their turn had (already in model_tokens_total; logged with the turn and workspace).",
      registers,
    });
    this.dnsRefusals = new Counter({
      name: `${METRIC_PREFIX}egress_dns_failures_total`,
      help: "Egress name lookups that got no answer from the sidecar's resolver, by reason: busy (the workspace already had its most lookups in flight and waiting; answered 429 dns_busy) or timeout (no answer within ALIVE_CODEX_DNS_TIMEOUT).",
      labelNames: ["reason"],
      registers,
    });
    for (const reason of ["busy", "timeout"]) this.dnsRefusals.inc({ reason }, 0);
    this.limitRefusals = new Counter({
      name: `${METRIC_PREFIX}proxy_limit_refusals_total`,
      help: "Connections and requests the proxies refused for a bound, by kind (proxy, model, api socket; tunnel, request, api_request) and reason (too_many_connections: the workspace's; sidecar_at_capacity: the sidecar's total; sidecar_overloaded: its open files).",
      labelNames: ["kind", "reason"],
      registers,
    });
    this.egressCuts = new Counter({
      name: `${METRIC_PREFIX}egress_cuts_total`,
      help: "Tunnels and forwarded requests the egress proxy closed itself, by kind (tunnel, request) and reason (idle, lifetime, egress_narrowed).",
      labelNames: ["kind", "reason"],
      registers,
    });
    new Gauge({
      name: `${METRIC_PREFIX}proxy_connections`,
      help: "Connections open on workspaces' sockets (kind proxy, model, api), tunnels and forwarded requests of the egress proxy (tunnel, request), and requests to Alive's API in flight (api_request), across every workspace.",
      labelNames: ["kind"],
      registers,
      collect() {
        this.reset();
        for (const [kind, count] of Object.entries(sources.proxyConnections?.() ?? {}))
          this.set({ kind: metricKind(kind) }, count);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}workspaces`,
      help: "Known workspace containers by state.",
      labelNames: ["state"],
      registers,
      collect() {
        this.reset();
        for (const state of sources.workspaceStates()) this.inc({ state });
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}turns_running`,
      help: "Turns running now.",
      registers,
      collect() {
        this.set(sources.runningTurns());
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}turns_detached`,
      help: 'Running turns whose client went away (onDisconnect "continue") and that no connection is attached to.',
      registers,
      collect() {
        this.set(sources.detachedTurns?.() ?? 0);
      },
    });
    for (const kind of TOKEN_KINDS) this.modelTokens.inc({ kind }, 0);
  }

  observeTurn(turn: TurnObservation): void {
    this.turns.inc({ status: turn.status, error_code: turn.errorCode ?? "" });
    this.turnDuration.observe({ status: turn.status }, turn.durationMs / 1000);
    if (turn.firstEventMs !== null) this.firstEvent.observe(turn.firstEventMs / 1000);
    if (turn.resources.cpuSeconds !== null) this.turnCpu.inc(turn.resources.cpuSeconds);
  }

  observeEnsure(kind: "cold" | "warm", seconds: number): void {
    this.ensureDuration.observe({ kind }, seconds);
  }

  countEgressRefusal(reason: string): void {
    this.egressRefusals.inc({ reason });
  }

  countModelRequest(): void {
    this.modelRequests.inc();
  }

  countTokens(usage: {
    inputTokens: number;
    cachedTokens: number;
    outputTokens: number;
    reasoningTokens: number;
  }): void {
    this.modelTokens.inc({ kind: "input" }, usage.inputTokens);
    this.modelTokens.inc({ kind: "cached" }, usage.cachedTokens);
    this.modelTokens.inc({ kind: "output" }, usage.outputTokens);
    this.modelTokens.inc({ kind: "reasoning" }, usage.reasoningTokens);
  }

  countSandboxStall(): void {
    this.sandboxStalls.inc();
  }

  countBrokeredRequest(): void {
    this.brokered.inc();
  }

  /** A turn an earlier sidecar left running: "adopted", or the code it was ended with. */
  countLeftTurn(outcome: string): void {
    this.leftTurns.inc({ outcome });
  }

  countProxyError(code: string): void {
    this.proxyErrors.inc({ code });
  }

  countModelRefusal(reason: string): void {
    this.modelRefusals.inc({ reason });
  }

  countLateTokens(total: number): void {
    this.lateTokens.inc(total);
  }

  /** An egress lookup refused for its workspace's bound ("busy") or past its deadline ("timeout"). */
  countDnsRefusal(reason: "busy" | "timeout"): void {
    this.dnsRefusals.inc({ reason });
  }

  countLimitRefusal(kind: string, reason: string): void {
    this.limitRefusals.inc({ kind: metricKind(kind), reason });
  }

  countEgressCut(kind: string, reason: string): void {
    this.egressCuts.inc({ kind, reason });
  }
}

/** Label values in Prometheus' snake_case (apiRequest → api_request). */
function metricKind(kind: string): string {
  return kind.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}
