import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { loadConfig } from "../../src/config.js";
import { CODEX_ENV_ALLOWLIST, buildCodexExecEnv } from "../../src/codex/env.js";
import { IMAGE_PATH, buildCodexEnv } from "../../src/workspace/container-env.js";
import { containerEnv } from "../../src/workspace/spec.js";

/** The sidecar's own environment, stuffed with secrets and noise. */
function hostileEnvironment(): Record<string, string> {
  const env: Record<string, string> = {
    ANTHROPIC_API_KEY: "sk-ant-LEAK-anthropic-0001",
    OPENAI_API_KEY: "sk-openai-LEAK-0002",
    AWS_SECRET_ACCESS_KEY: "aws-LEAK-0003",
    DATABASE_URL: "postgres://admin:LEAK-0004@db/alive",
    GITHUB_TOKEN: "ghp_LEAK0005",
    PATH: "/host/only/bin:/usr/bin",
    HOME: "/root",
    LD_PRELOAD: "/tmp/LEAK-evil.so",
    NODE_OPTIONS: "--require /tmp/LEAK-evil.js",
  };
  for (let i = 0; i < 200; i += 1)
    env[`RANDOM_${i}_${randomBytes(3).toString("hex")}`] = `LEAK-${randomBytes(8).toString("hex")}`;
  return env;
}

describe("the explicit codex env", () => {
  const workspace = {
    workspaceId: "ws-1",
    userId: "user-1",
    uid: 10001,
    gid: 10001,
    workspacePath: "/srv/alive/workspaces/ws-1",
    git: { name: "Ada", email: "ada@example.test" },
  };

  test("whatever the sidecar's environment holds, nothing outside the allowlist comes out", () => {
    const hostile = hostileEnvironment();
    const previous = { ...process.env };
    Object.assign(process.env, hostile);
    try {
      const config = loadConfig(
        {},
        {
          ...hostile,
          CODEX_API_KEY: "sk-codex-ALLOWED",
          ALIVE_MCP_TOKEN: "mcp-token-ALLOWED",
          ALIVE_API_URL: "http://alive.internal:3000",
        },
      );
      const session = containerEnv(workspace, config);
      const exec = buildCodexExecEnv({
        turnId: "turn-1",
        codexApiKey: config.codexApiKey,
        aliveMcpToken: config.aliveMcpToken,
      });
      for (const env of [session, exec, { ...session, ...exec }]) {
        for (const name of Object.keys(env)) assert.ok(CODEX_ENV_ALLOWLIST.has(name), `${name} is not allowlisted`);
        for (const value of Object.values(env)) assert.ok(!value.includes("LEAK"), `leaked value ${value}`);
      }
      assert.equal(session.PATH, IMAGE_PATH, "the image's PATH, never the host's");
      assert.equal(session.HOME, "/home/alive");
      assert.equal(session.CODEX_HOME, "/home/alive/.codex");
      assert.equal(session.TMPDIR, "/tmp");
      assert.equal(session.CODEX_API_KEY, undefined, "the container's own env has no key");
      assert.equal(exec.CODEX_API_KEY, "sk-codex-ALLOWED");
      assert.equal(exec.ANTHROPIC_API_KEY, undefined);
      assert.equal(exec.OPENAI_API_KEY, undefined);
      assert.equal(
        session.ALIVE_API_URL,
        "http://127.0.0.1:3130",
        "Alive's API through the container's loopback end of the sidecar's reverse proxy",
      );
      assert.equal(
        session.HTTPS_PROXY,
        "http://127.0.0.1:3128",
        "agent tools reach out through the sidecar's egress proxy",
      );
      assert.deepEqual([session.GIT_AUTHOR_NAME, session.GIT_COMMITTER_EMAIL], ["Ada", "ada@example.test"]);
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in previous)) delete process.env[name];
      Object.assign(process.env, previous);
    }
  });

  test("OPENAI_API_KEY in the sidecar's env reaches codex only as CODEX_API_KEY", () => {
    const config = loadConfig({}, { OPENAI_API_KEY: "sk-openai-fallback" });
    const exec = buildCodexExecEnv({ turnId: "t", codexApiKey: config.codexApiKey, aliveMcpToken: null });
    assert.equal(exec.CODEX_API_KEY, "sk-openai-fallback");
    assert.ok(!("OPENAI_API_KEY" in exec));
  });

  test("values with NUL or newline are refused, naming the variable", () => {
    assert.throws(() => buildCodexEnv({ ...workspace, userId: "user\nINJECTED=1" }), /ALIVE_USER_ID/);
    assert.throws(() => buildCodexEnv({ ...workspace, git: { name: "a\0b" } }), /GIT_AUTHOR_NAME/);
  });

  test("optional categories appear only when given", () => {
    const env = buildCodexEnv({ workspaceId: "w", userId: "u", workspacePath: "/w" });
    for (const name of ["GIT_AUTHOR_NAME", "NODE_PATH", "ALIVE_API_URL", "ALIVE_MCP_TOKEN", "CODEX_API_KEY"])
      assert.ok(!(name in env), name);
    assert.equal(
      buildCodexEnv({ workspaceId: "w", userId: "u", workspacePath: "/w", nodePath: "/opt/alive/node_modules" })
        .NODE_PATH,
      "/opt/alive/node_modules",
    );
  });
});
