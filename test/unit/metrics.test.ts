import { describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { silentLogger } from "../../src/log.js";
import { startMetricsServer } from "../../src/metrics/metrics-server.js";
import { SidecarMetrics } from "../../src/metrics/sidecar-metrics.js";

/** One GET on a connection of its own, closed after the answer (fetch would keep it alive past the test). */
function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent: false, headers: { connection: "close" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      // Resolved once the connection is gone, not merely the body read.
      res.on("end", () => {
        res.socket.destroy();
        request.once("close", () =>
          resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"] ?? "", body }),
        );
      });
    });
    request.on("error", reject);
  });
}

function makeMetrics(): SidecarMetrics {
  return new SidecarMetrics({ workspaceStates: () => ["running", "running", "exited"], runningTurns: () => 2 });
}

describe("metrics", () => {
  test("names and units follow Prometheus conventions; label values are never ids", async () => {
    const metrics = makeMetrics();
    metrics.observeTurn({
      status: "failed",
      errorCode: "budget_exceeded",
      durationMs: 1500,
      firstEventMs: 200,
      resources: { cpuSeconds: 0.5 },
    });
    metrics.observeEnsure("cold", 0.8);
    metrics.countEgressRefusal("private_address");
    metrics.countModelRequest();
    metrics.countTokens({ inputTokens: 10, cachedTokens: 4, outputTokens: 5, reasoningTokens: 1 });
    metrics.countProxyError("model_unreachable");
    metrics.countDnsRefusal("busy");
    const all = await metrics.registry.getMetricsAsJSON();
    for (const metric of all) {
      assert.match(metric.name, /^alive_codex_[a-z0-9_]+$/, metric.name);
      if (String(metric.type) === "counter")
        assert.match(metric.name, /_total$/, `counter ${metric.name} ends in _total`);
      if (String(metric.type) === "histogram")
        assert.match(metric.name, /_seconds$/, `histogram ${metric.name} is in seconds`);
    }
    const names = all.map((m) => m.name);
    for (const name of [
      "alive_codex_turns_total",
      "alive_codex_turn_duration_seconds",
      "alive_codex_turn_first_event_seconds",
      "alive_codex_workspace_ensure_duration_seconds",
      "alive_codex_workspaces",
      "alive_codex_turns_running",
      "alive_codex_egress_refusals_total",
      "alive_codex_model_requests_total",
      "alive_codex_model_tokens_total",
      "alive_codex_model_proxy_errors_total",
      "alive_codex_process_cpu_user_seconds_total",
    ]) {
      assert.ok(names.includes(name), `${name} is exported`);
    }
    const text = await metrics.registry.metrics();
    assert.match(text, /alive_codex_turns_total\{status="failed",error_code="budget_exceeded"\} 1/);
    assert.match(text, /alive_codex_workspaces\{state="running"\} 2/);
    assert.match(text, /alive_codex_turns_running 2/);
    assert.match(text, /alive_codex_egress_dns_failures_total\{reason="busy"\} 1/);
    assert.match(text, /alive_codex_egress_dns_failures_total\{reason="timeout"\} 0/);
    assert.match(text, /alive_codex_model_tokens_total\{kind="cached"\} 4/);
    assert.match(text, /alive_codex_turn_duration_seconds_count\{status="failed"\} 1/);
    const labelKeys = new Set([...text.matchAll(/[{,]([a-z_]+)="/g)].map((m) => m[1]));
    for (const key of labelKeys) assert.ok(!/workspace|user|turn_id|thread/.test(key!), `label ${key}`);
  });

  test("the proxies' bounds: open connections by kind, refusals for a bound and cuts by kind and reason", async () => {
    const metrics = new SidecarMetrics({
      workspaceStates: () => [],
      runningTurns: () => 0,
      proxyConnections: () => ({ proxy: 3, model: 1, api: 0, tunnel: 2, request: 1, apiRequest: 4 }),
    });
    metrics.countLimitRefusal("proxy", "too_many_connections");
    metrics.countLimitRefusal("apiRequest", "sidecar_overloaded");
    metrics.countEgressCut("tunnel", "idle");
    const text = await metrics.registry.metrics();
    assert.match(text, /alive_codex_proxy_connections\{kind="proxy"\} 3/);
    assert.match(text, /alive_codex_proxy_connections\{kind="api_request"\} 4/);
    assert.match(text, /alive_codex_proxy_limit_refusals_total\{kind="proxy",reason="too_many_connections"\} 1/);
    assert.match(text, /alive_codex_proxy_limit_refusals_total\{kind="api_request",reason="sidecar_overloaded"\} 1/);
    assert.match(text, /alive_codex_egress_cuts_total\{kind="tunnel",reason="idle"\} 1/);
  });

  test("two sidecars in one process keep their own registries", () => {
    assert.doesNotThrow(() => [makeMetrics(), makeMetrics()]);
  });

  test("the server answers GET /metrics in the exposition format, and 404 elsewhere", async () => {
    const metrics = makeMetrics();
    const server = await startMetricsServer({ host: "127.0.0.1", port: 0 }, metrics.registry, silentLogger);
    try {
      const base = `http://127.0.0.1:${server.address.port}`;
      const response = await get(`${base}/metrics`);
      assert.equal(response.status, 200);
      assert.match(response.type, /^text\/plain; version=0\.0\.4/);
      assert.match(response.body, /# TYPE alive_codex_turns_total counter/);
      assert.equal((await get(`${base}/`)).status, 404);
    } finally {
      await server.close();
    }
  });
});
