/**
 * Secret bindings without a proxy: what `secrets` may hold (and that no refusal echoes a value),
 * that a binding never widens a workspace's egress, and the store the proxy asks.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { SidecarError } from "../../src/errors.js";
import { PLACEHOLDER_PREFIX, SecretBindings } from "../../src/egress/secret-bindings.js";
import { checkBindingHosts, parseBindingHost } from "../../src/policy/binding-host.js";
import { parseInternalDestinations } from "../../src/policy/internal-destinations.js";
import { SECRET_LIMITS, parseSecretBindings } from "../../src/rpc/secret-params.js";

const VALUE = "Bearer ghp_the-real-token-0123456789";

/** The refusal's field, with a check that nothing of the value is in it. */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof SidecarError, String(error));
    assert.equal(error.code, -32602);
    assert.ok(!JSON.stringify({ message: error.message, data: error.data }).includes("ghp_"), "the value is echoed");
    return (error.data as { field: string }).field;
  }
  assert.fail("not refused");
}

describe("secrets params", () => {
  test("a host, a header, a value and an optional env; hosts are names or literals with a port", () => {
    const parsed = parseSecretBindings([
      { host: "github.com", header: "Authorization", value: VALUE, env: "GITHUB_TOKEN" },
      { host: "127.0.0.1:8443", header: "X-Api-Key", value: "k" },
      { host: "[::1]:9443", header: "Authorization", value: "v" },
    ]);
    assert.equal(parsed.length, 3);
    assert.deepEqual(parseBindingHost("GitHub.com"), { host: "github.com", port: 443 });
    assert.deepEqual(parseBindingHost("[::1]:9443"), { host: "::1", port: 9443 });
    assert.equal(parseBindingHost("exa mple.com"), null);
    assert.equal(parseBindingHost("example.com:99999"), null);
  });

  test("bad input is -32602 naming the field, and never echoes the value", () => {
    const ok = { host: "github.com", header: "Authorization", value: VALUE };
    assert.equal(
      refusal(() => parseSecretBindings("x")),
      "secrets",
    );
    assert.equal(
      refusal(() => parseSecretBindings([{ ...ok, host: "not a host" }])),
      "secrets[0].host",
    );
    assert.equal(
      refusal(() => parseSecretBindings([{ ...ok, header: "Bad Header" }])),
      "secrets[0].header",
    );
    assert.equal(
      refusal(() => parseSecretBindings([{ ...ok, header: "Host" }])),
      "secrets[0].header",
    );
    assert.equal(
      refusal(() => parseSecretBindings([{ ...ok, value: `${VALUE}\r\nX-Evil: 1` }])),
      "secrets[0].value",
    );
    assert.equal(
      refusal(() => parseSecretBindings([{ ...ok, value: "" }])),
      "secrets[0].value",
    );
    assert.equal(
      refusal(() => parseSecretBindings([{ ...ok, value: "x".repeat(SECRET_LIMITS.valueBytes + 1) }])),
      "secrets[0].value",
    );
    assert.equal(
      refusal(() => parseSecretBindings([{ ...ok, env: "PATH" }])),
      "secrets[0].env",
    );
    assert.equal(
      refusal(() => parseSecretBindings([{ ...ok, env: "CODEX_API_KEY" }])),
      "secrets[0].env",
    );
    assert.equal(
      refusal(() => parseSecretBindings([{ ...ok, env: "1BAD" }])),
      "secrets[0].env",
    );
    assert.equal(
      refusal(() => parseSecretBindings([{ ...ok, extra: 1 }])),
      "secrets[0].extra",
    );
    assert.equal(
      refusal(() => parseSecretBindings([ok, { ...ok, host: "GITHUB.com:443" }])),
      "secrets[1].host",
    );
    const many = Array.from({ length: SECRET_LIMITS.bindings + 1 }, (_, i) => ({ ...ok, host: `h${i}.example` }));
    assert.equal(
      refusal(() => parseSecretBindings(many)),
      "secrets",
    );
  });

  test("a binding never widens the egress: a refused host, an IP that is not internal, a port not served", () => {
    const internal = parseInternalDestinations(["127.0.0.1:8443"], "ALIVE_CODEX_INTERNAL_DESTINATIONS");
    const rules = { policy: { allow: ["github.com", "*.npmjs.org"], deny: [] }, internal, ports: [443] };
    checkBindingHosts([{ host: "github.com" }, { host: "registry.npmjs.org" }, { host: "127.0.0.1:8443" }], rules);
    assert.equal(
      refusal(() => checkBindingHosts([{ host: "github.com" }, { host: "evil.example" }], rules)),
      "secrets[1].host",
    );
    assert.equal(
      refusal(() => checkBindingHosts([{ host: "10.0.0.1" }], rules)),
      "secrets[0].host",
    );
    assert.equal(
      refusal(() => checkBindingHosts([{ host: "github.com:8080" }], rules)),
      "secrets[0].host",
    );
    assert.equal(
      refusal(() => checkBindingHosts([{ host: "github.com" }], { ...rules, policy: "model" })),
      "secrets[0].host",
    );
  });
});

describe("the bindings in force", () => {
  test("the turn's win over the workspace's, each counts what it touched, and nothing shows a value", () => {
    let touched = 0;
    const store = new SecretBindings(() => (touched += 1));
    store.setWorkspace("ws", [
      { host: "github.com", header: "Authorization", value: "ws-value", env: "GITHUB_TOKEN" },
      { host: "api.example:8443", header: "X-Key", value: "k" },
    ]);
    assert.equal(store.bindingFor("ws", "GitHub.com", 443)?.value, "ws-value");
    assert.equal(store.bindingFor("ws", "github.com", 8443), null, "another port is another host");
    assert.equal(store.bindingFor("other", "github.com", 443), null, "another workspace has none");
    const placeholder = store.placeholders("ws").GITHUB_TOKEN!;
    assert.ok(placeholder.startsWith(PLACEHOLDER_PREFIX));
    assert.equal(store.bindingFor("ws", "github.com", 443)?.placeholder, placeholder);

    store.setTurn("ws", [{ host: "github.com", header: "Authorization", value: "turn-value" }]);
    const applied = store.bindingFor("ws", "github.com", 443)!;
    assert.equal(applied.value, "turn-value");
    applied.touched();
    applied.touched();
    assert.equal(touched, 2);
    const shown = JSON.stringify(store.describe("ws"));
    assert.ok(!shown.includes("value") && !shown.includes("turn-value") && !shown.includes("ws-value"), shown);
    assert.deepEqual(
      store.describe("ws").map((b) => [b.scope, b.host, b.requests]),
      [
        ["workspace", "github.com", 0],
        ["workspace", "api.example:8443", 0],
        ["turn", "github.com", 2],
      ],
    );

    store.setTurn("ws", null);
    assert.equal(store.bindingFor("ws", "github.com", 443)?.value, "ws-value");
    // Set again alike, a workspace binding keeps its placeholder (a process of the workspace may hold it).
    store.setWorkspace("ws", [{ host: "github.com", header: "Authorization", value: "rotated", env: "GITHUB_TOKEN" }]);
    assert.equal(store.placeholders("ws").GITHUB_TOKEN, placeholder);
    assert.equal(store.bindingFor("ws", "github.com", 443)?.value, "rotated");
    store.forget("ws");
    assert.equal(store.has("ws"), false);
  });
});
