/** The bounds on what one workspace, and the sidecar in all, may hold: the decisions alone. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConnectionLimits, limitAnswer, type Admission, type LimitReason } from "../../src/egress/connection-limits.js";

function admitted(admission: Admission): () => void {
  assert.ok(admission.ok, `expected admitted, got ${admission.ok ? "" : `${admission.status} ${admission.reason}`}`);
  return admission.release;
}

function refused(admission: Admission, status: number, reason: LimitReason): string {
  assert.ok(!admission.ok, "expected a refusal");
  assert.equal(admission.status, status);
  assert.equal(admission.reason, reason);
  return admission.message;
}

describe("ConnectionLimits", () => {
  test("each workspace has its own bound per socket; past it 429 too_many_connections, other workspaces and sockets unaffected", () => {
    const limits = new ConnectionLimits({ perWorkspace: 2, total: 100 });
    admitted(limits.admitConnection("a", "proxy"));
    const second = admitted(limits.admitConnection("a", "proxy"));
    assert.match(
      refused(limits.admitConnection("a", "proxy"), 429, "too_many_connections"),
      /holds 2 connections on its proxy\.sock/,
    );
    admitted(limits.admitConnection("a", "model"));
    admitted(limits.admitConnection("b", "proxy"));
    second();
    second(); // a release counts once
    admitted(limits.admitConnection("a", "proxy"));
    assert.deepEqual(limits.counts("a"), {
      proxy: 2,
      model: 1,
      api: 0,
      tunnels: 0,
      requests: 0,
      apiRequests: 0,
      refusedForLimit: 1,
      cut: 0,
    });
  });

  test("tunnels and forwarded requests share one bound; API requests have their own", () => {
    const limits = new ConnectionLimits({ perWorkspace: 2, total: 100 });
    admitted(limits.admitUpstream("a", "tunnel"));
    admitted(limits.admitUpstream("a", "request"));
    refused(limits.admitUpstream("a", "tunnel"), 429, "too_many_connections");
    refused(limits.admitUpstream("a", "request"), 429, "too_many_connections");
    admitted(limits.admitUpstream("a", "apiRequest"));
    assert.equal(limits.counts("a").refusedForLimit, 2);
  });

  test("the sidecar's total counts accepted and upstream connections of every workspace: 503 sidecar_at_capacity past it", () => {
    const reasons: Array<[string, string]> = [];
    const limits = new ConnectionLimits({
      perWorkspace: 10,
      total: 3,
      onRefused: (kind, reason) => reasons.push([kind, reason]),
    });
    admitted(limits.admitConnection("a", "proxy"));
    const tunnel = admitted(limits.admitUpstream("a", "tunnel"));
    admitted(limits.admitConnection("b", "api"));
    assert.equal(limits.held, 3);
    refused(limits.admitConnection("b", "model"), 503, "sidecar_at_capacity");
    refused(limits.admitUpstream("a", "request"), 503, "sidecar_at_capacity");
    // An API request waits in its agent for a connection: it holds no descriptor of its own.
    admitted(limits.admitUpstream("b", "apiRequest"));
    tunnel();
    admitted(limits.admitConnection("b", "model"));
    assert.deepEqual(reasons, [
      ["model", "sidecar_at_capacity"],
      ["request", "sidecar_at_capacity"],
    ]);
    assert.deepEqual(limits.totals(), { proxy: 1, model: 1, api: 1, tunnel: 0, request: 0, apiRequest: 1 });
  });

  test("near the sidecar's open-files limit every new connection is 503 sidecar_overloaded, told how many the proxies hold", () => {
    let overloaded = false;
    const told: number[] = [];
    const limits = new ConnectionLimits({
      perWorkspace: 10,
      total: 100,
      overloaded: (held) => {
        told.push(held);
        return { overloaded, open: 950, limit: 1000 };
      },
    });
    admitted(limits.admitConnection("a", "proxy"));
    overloaded = true;
    assert.match(
      refused(limits.admitConnection("b", "proxy"), 503, "sidecar_overloaded"),
      /950 of its 1000 open files/,
    );
    refused(limits.admitUpstream("a", "tunnel"), 503, "sidecar_overloaded");
    assert.deepEqual(told, [0, 1, 1]);
    // The workspace's own bound is named first: it is what the tenant can change.
    let full = false;
    const tight = new ConnectionLimits({
      perWorkspace: 1,
      total: 100,
      overloaded: () => ({ overloaded: full, open: 1, limit: 1 }),
    });
    admitted(tight.admitConnection("a", "proxy"));
    full = true;
    refused(tight.admitConnection("a", "proxy"), 429, "too_many_connections");
  });

  test("a forgotten workspace starts from zero; its old connections still give back the sidecar's total", () => {
    const limits = new ConnectionLimits({ perWorkspace: 1, total: 100 });
    const release = admitted(limits.admitConnection("a", "proxy"));
    limits.noteCut("a");
    limits.forget("a");
    assert.deepEqual(limits.counts("a"), {
      proxy: 0,
      model: 0,
      api: 0,
      tunnels: 0,
      requests: 0,
      apiRequests: 0,
      refusedForLimit: 0,
      cut: 0,
    });
    admitted(limits.admitConnection("a", "proxy"));
    assert.equal(limits.held, 2);
    release();
    assert.equal(limits.held, 1);
  });

  test("the answer names the reason in x-alive-egress-error; a model socket's is OpenAI's error shape", () => {
    const refusal = {
      ok: false as const,
      status: 429 as const,
      reason: "too_many_connections" as const,
      message: "too many",
    };
    const text = limitAnswer("proxy", refusal);
    assert.match(text, /^HTTP\/1\.1 429 Too Many Requests\r\n/);
    assert.match(text, /\r\nx-alive-egress-error: too_many_connections\r\n/);
    assert.match(text, /\r\nconnection: close\r\n\r\nalive-codex: too_many_connections: too many\n$/);
    const model = limitAnswer("model", { ...refusal, status: 503, reason: "sidecar_overloaded" });
    assert.match(model, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
    const body = JSON.parse(model.slice(model.indexOf("\r\n\r\n") + 4)) as { error: { code: string; message: string } };
    assert.deepEqual([body.error.code, body.error.message], ["sidecar_overloaded", "too many"]);
    const length = Number(/content-length: (\d+)/.exec(model)?.[1]);
    assert.equal(length, Buffer.byteLength(model.slice(model.indexOf("\r\n\r\n") + 4)));
  });
});
