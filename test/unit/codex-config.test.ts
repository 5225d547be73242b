import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { buildCodexConfig } from "../../src/codex/config-overrides.js";

describe("codex config overrides", () => {
  test("codex always uses a custom provider at the model proxy: no WebSocket detour, CODEX_API_KEY (the turn's credential) as its key, retries that outlast a sidecar restart", () => {
    const config = buildCodexConfig({ modelBaseUrl: "http://127.0.0.1:3129/v1", sessionEnvNames: [] });
    assert.equal(config.model_provider, "alive");
    assert.deepEqual(config.model_providers, {
      alive: {
        name: "Alive model API",
        base_url: "http://127.0.0.1:3129/v1",
        wire_api: "responses",
        supports_websockets: false,
        env_key: "CODEX_API_KEY",
        request_max_retries: 6,
        stream_max_retries: 6,
      },
    });
  });

  test("agent commands never get the key or the MCP token", () => {
    const policy = buildCodexConfig({ modelBaseUrl: "http://127.0.0.1:3129/v1", sessionEnvNames: [] })
      .shell_environment_policy as Record<string, unknown>;
    assert.ok((policy.exclude as string[]).includes("CODEX_API_KEY"));
    assert.ok((policy.exclude as string[]).includes("ALIVE_MCP_TOKEN"));
    assert.equal(policy.ignore_default_excludes, false);
  });

  test("MCP servers get the session env forwarded (not the key), their own env on top, and approval", () => {
    const config = buildCodexConfig({
      modelBaseUrl: "http://127.0.0.1:3129/v1",
      sessionEnvNames: ["HOME", "ALIVE_WORKSPACE_ID", "CODEX_API_KEY", "ALIVE_MCP_TOKEN"],
      mcpServers: { tools: { command: "node", args: ["/srv/tools.js"], env: { EXTRA: "1" } } },
    });
    const server = (config.mcp_servers as Record<string, Record<string, unknown>>).tools!;
    assert.deepEqual(server.env_vars, ["HOME", "ALIVE_WORKSPACE_ID", "ALIVE_MCP_TOKEN"]);
    assert.deepEqual(server.env, { EXTRA: "1" });
    assert.equal(server.default_tools_approval_mode, "approve");
    assert.deepEqual(server.args, ["/srv/tools.js"]);
  });
});

describe("per-turn usage", () => {
  test("is the difference from the thread's previous cumulative usage", async () => {
    const { usageDelta } = await import("../../src/codex/threads.js");
    const first = {
      input_tokens: 100,
      cached_input_tokens: 10,
      cache_write_input_tokens: 0,
      output_tokens: 20,
      reasoning_output_tokens: 5,
    };
    const second = {
      input_tokens: 250,
      cached_input_tokens: 90,
      cache_write_input_tokens: 0,
      output_tokens: 32,
      reasoning_output_tokens: 5,
    };
    assert.deepEqual(usageDelta(second, first), {
      input_tokens: 150,
      cached_input_tokens: 80,
      cache_write_input_tokens: 0,
      output_tokens: 12,
      reasoning_output_tokens: 0,
    });
    assert.deepEqual(usageDelta(first, null), first);
    assert.deepEqual(usageDelta(first, second), first, "counts going down means a fresh count, not a negative turn");
  });
});
