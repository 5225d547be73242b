import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  ConfigError,
  SETTINGS,
  loadClientConfig,
  loadConfig,
  parseDuration,
  renderSettingsHelp,
} from "../../src/config.js";
import { RESOURCE_RANGES } from "../../src/shared/limits.js";

const expectConfigError = (fn: () => unknown, setting: string): void => {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.setting, setting);
    assert.ok(!error.message.includes("\n"), "one line");
    return true;
  });
};

describe("config", () => {
  test("defaults are valid and absolute", () => {
    const config = loadConfig({}, {});
    assert.ok(config.stateDir.startsWith("/"));
    assert.ok(config.socketPath.startsWith("/"));
    assert.deepEqual(config.workspaceRoots, ["/srv/alive/workspaces"]);
    // Above the 1000-9999 most distributions give login users: a workspace is not a person's account.
    assert.deepEqual(config.uidRange, { min: 10000, max: 65533 });
    assert.equal(config.allowRoot, false);
    assert.equal(config.codexApiKey, null);
    assert.equal(config.turnTimeoutMs, 15 * 60_000);
    assert.deepEqual(config.defaultResources, { memoryMb: 2048, cpus: 1, pids: 512 });
  });

  test("a flag wins over its variable, which wins over the default", () => {
    const env = { ALIVE_CODEX_STATE_DIR: "/var/lib/from-env", ALIVE_CODEX_MAX_TURNS: "7" };
    const config = loadConfig({ "--state-dir": "/var/lib/from-flag" }, env);
    assert.equal(config.stateDir, "/var/lib/from-flag");
    assert.equal(config.maxTurns, 7);
  });

  test("each bad setting names itself, the value and what was expected", () => {
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_STATE_DIR: "relative/dir" }), "ALIVE_CODEX_STATE_DIR");
    expectConfigError(() => loadConfig({ "--state-dir": "relative" }, {}), "--state-dir");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_UID_RANGE: "0-0" }), "ALIVE_CODEX_UID_RANGE");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_UID_RANGE: "5-2" }), "ALIVE_CODEX_UID_RANGE");
    expectConfigError(
      () => loadConfig({}, { ALIVE_CODEX_WORKSPACE_ROOTS: "/srv/ok:relative" }),
      "ALIVE_CODEX_WORKSPACE_ROOTS",
    );
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_IDLE_TIMEOUT: "soon" }), "ALIVE_CODEX_IDLE_TIMEOUT");
    expectConfigError(() => loadConfig({ "--stop-timeout": "later" }, {}), "--stop-timeout");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_TURN_TIMEOUT: "0" }), "ALIVE_CODEX_TURN_TIMEOUT");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_RESOURCES: "memoryMb=12" }), "ALIVE_CODEX_RESOURCES memoryMb");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_RESOURCES: "disk=1" }), "ALIVE_CODEX_RESOURCES");
    expectConfigError(() => loadConfig({}, { OPENAI_BASE_URL: "ftp://x" }), "OPENAI_BASE_URL");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_LOG_LEVEL: "loud" }), "ALIVE_CODEX_LOG_LEVEL");
    expectConfigError(() => loadConfig({}, { DOCKER_HOST: "docker.sock" }), "DOCKER_HOST");
    expectConfigError(() => loadConfig({ "--no-such-flag": "1" }, {}), "--no-such-flag");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_ALLOW_ROOT: "maybe" }), "ALIVE_CODEX_ALLOW_ROOT");
  });

  test("the deprecated network setting still loads, and is unset unless an operator sets it (the sidecar warns then)", () => {
    assert.equal(loadConfig({}, {}).network, null);
    assert.equal(loadConfig({}, { ALIVE_CODEX_NETWORK: "alive-codex" }).network, "alive-codex");
    assert.equal(loadConfig({ "--network": "legacy" }, {}).network, "legacy");
  });

  test("uid 0 only with the explicit allow flag", () => {
    assert.deepEqual(loadConfig({}, { ALIVE_CODEX_UID_RANGE: "0-0", ALIVE_CODEX_ALLOW_ROOT: "true" }).uidRange, {
      min: 0,
      max: 0,
    });
  });

  test("OPENAI_API_KEY is a fallback for CODEX_API_KEY, read only here", () => {
    assert.equal(loadConfig({}, { OPENAI_API_KEY: "sk-openai-fallback" }).codexApiKey, "sk-openai-fallback");
    assert.equal(loadConfig({}, { OPENAI_API_KEY: "sk-openai", CODEX_API_KEY: "sk-codex" }).codexApiKey, "sk-codex");
  });

  test("the key can come from a file (a Docker secret); CODEX_API_KEY wins over it", async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const file = `${mkdtempSync(`${tmpdir()}/key-`)}/codex_key`;
    writeFileSync(file, "sk-from-file\n");
    assert.equal(loadConfig({}, { ALIVE_CODEX_API_KEY_FILE: file }).codexApiKey, "sk-from-file");
    assert.equal(loadConfig({}, { ALIVE_CODEX_API_KEY_FILE: file, CODEX_API_KEY: "sk-env" }).codexApiKey, "sk-env");
    expectConfigError(
      () => loadConfig({}, { ALIVE_CODEX_API_KEY_FILE: `${file}.missing` }),
      "ALIVE_CODEX_API_KEY_FILE",
    );
  });

  test("a bad secret is reported without its value", () => {
    assert.throws(
      () => loadConfig({}, { CODEX_API_KEY: "sk-secret-value\nsecond line" }),
      (error: Error) => !error.message.includes("sk-secret-value"),
    );
  });

  test("the client settings load without the server-only ones: a bad range or a missing key file does not stop them", () => {
    const env = {
      ALIVE_CODEX_SOCKET: "/run/test/sidecar.sock",
      ALIVE_CODEX_UID_RANGE: "garbage",
      ALIVE_CODEX_API_KEY_FILE: "/nonexistent",
    };
    assert.deepEqual(loadClientConfig({}, env), { socketPath: "/run/test/sidecar.sock" });
    assert.deepEqual(loadClientConfig({ "--socket": "/run/flag.sock" }, env), { socketPath: "/run/flag.sock" });
    expectConfigError(() => loadConfig({}, env), "ALIVE_CODEX_UID_RANGE");
    expectConfigError(
      () => loadConfig({}, { ...env, ALIVE_CODEX_UID_RANGE: "10000-20000" }),
      "ALIVE_CODEX_API_KEY_FILE",
    );
  });

  test("the client settings are still validated, and server flags are not client flags", () => {
    expectConfigError(() => loadClientConfig({}, { ALIVE_CODEX_SOCKET: "relative.sock" }), "ALIVE_CODEX_SOCKET");
    expectConfigError(() => loadClientConfig({ "--uid-range": "1-2" }, {}), "--uid-range");
  });

  test("every setting's default passes its own parser", () => {
    const config = loadConfig({}, {});
    assert.equal(config.idleTimeoutMs, 30 * 60_000, "paused after 30 min idle");
    assert.equal(config.stopTimeoutMs, 4 * 3_600_000, "stopped after 4 h paused");
    assert.equal(config.nofile, 4096);
    assert.equal(
      config.baseImage,
      null,
      "unset: the sidecar chooses (debian:bookworm-slim when present, else the local base)",
    );
    assert.deepEqual(config.extraLabels, {});
    for (const setting of SETTINGS) assert.ok(setting.key in config, setting.key);
  });

  test("resource limits are refused at the same bounds as workspace.ensure's resources", () => {
    const { memoryMb, cpus, pids } = RESOURCE_RANGES;
    const at = (raw: string) => loadConfig({}, { ALIVE_CODEX_RESOURCES: raw }).defaultResources;
    assert.deepEqual(at(`memoryMb=${memoryMb.min},cpus=${cpus.max},pids=${pids.max}`), {
      memoryMb: memoryMb.min,
      cpus: cpus.max,
      pids: pids.max,
    });
    assert.deepEqual(at("cpus=2"), { memoryMb: 2048, cpus: 2, pids: 512 });
    expectConfigError(() => at(`memoryMb=${memoryMb.max + 1}`), "ALIVE_CODEX_RESOURCES memoryMb");
    expectConfigError(() => at(`cpus=${cpus.min / 2}`), "ALIVE_CODEX_RESOURCES cpus");
    expectConfigError(() => at(`pids=${pids.min - 1}`), "ALIVE_CODEX_RESOURCES pids");
  });

  test("extra labels: key=value pairs, Docker label keys, none of the sidecar's own but the run id", () => {
    assert.deepEqual(
      loadConfig({}, { ALIVE_CODEX_EXTRA_LABELS: "team=core, dev.alive.codex.run-id=run-42,empty=" }).extraLabels,
      {
        team: "core",
        "dev.alive.codex.run-id": "run-42",
        empty: "",
      },
    );
    assert.deepEqual(loadConfig({ "--extra-labels": "com.example/owner=ada" }, {}).extraLabels, {
      "com.example/owner": "ada",
    });
    for (const bad of [
      "Team=core",
      "-x=1",
      "no-equals",
      "dev.alive.codex.managed=true",
      "dev.alive.codex.workspace-id=ws",
      "a=1,a=2",
      "a=x\0y",
      "a=x\ny",
    ]) {
      expectConfigError(
        () => loadConfig({}, { ALIVE_CODEX_EXTRA_LABELS: bad }),
        bad.startsWith("a=x") ? "ALIVE_CODEX_EXTRA_LABELS a" : "ALIVE_CODEX_EXTRA_LABELS",
      );
    }
  });

  test("budgets and their ceilings; the metrics listen address", () => {
    const none = loadConfig({}, {});
    assert.deepEqual(
      [none.budgetTokens, none.budgetTokensMax, none.budgetCpuSeconds, none.budgetCpuSecondsMax, none.metricsListen],
      [null, null, null, null, null],
    );
    const config = loadConfig(
      { "--budget-cpu-seconds": "2.5" },
      {
        ALIVE_CODEX_BUDGET_TOKENS: "200000",
        ALIVE_CODEX_BUDGET_TOKENS_MAX: "1000000",
        ALIVE_CODEX_METRICS_LISTEN: "127.0.0.1:9464",
      },
    );
    assert.equal(config.budgetTokens, 200_000);
    assert.equal(config.budgetCpuSeconds, 2.5);
    assert.deepEqual(config.metricsListen, { host: "127.0.0.1", port: 9464 });
    assert.deepEqual(loadConfig({ "--metrics-listen": "[::1]:9100" }, {}).metricsListen, { host: "::1", port: 9100 });
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_BUDGET_TOKENS: "0" }), "ALIVE_CODEX_BUDGET_TOKENS");
    expectConfigError(
      () => loadConfig({}, { ALIVE_CODEX_BUDGET_CPU_SECONDS: "lots" }),
      "ALIVE_CODEX_BUDGET_CPU_SECONDS",
    );
    expectConfigError(
      () => loadConfig({}, { ALIVE_CODEX_BUDGET_TOKENS: "2000", ALIVE_CODEX_BUDGET_TOKENS_MAX: "1000" }),
      "ALIVE_CODEX_BUDGET_TOKENS",
    );
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_METRICS_LISTEN: "9464" }), "ALIVE_CODEX_METRICS_LISTEN");
    expectConfigError(
      () => loadConfig({}, { ALIVE_CODEX_METRICS_LISTEN: "127.0.0.1:70000" }),
      "ALIVE_CODEX_METRICS_LISTEN",
    );
  });

  test("durations", () => {
    assert.equal(parseDuration("x", "1500"), 1500);
    assert.equal(parseDuration("x", "90s"), 90_000);
    assert.equal(parseDuration("x", "2h"), 7_200_000);
  });

  test("serve --help documents every setting with its flag, variable and default", () => {
    const help = renderSettingsHelp();
    for (const setting of SETTINGS) {
      assert.ok(help.includes(setting.flag), setting.flag);
      assert.ok(help.includes(setting.env), setting.env);
      assert.ok(help.includes(setting.defaultText), setting.defaultText);
    }
  });

  test("the model proxy's settings: defaults, parsed lists, and errors naming the setting", () => {
    const defaults = loadConfig({}, {});
    assert.deepEqual(defaults.modelPaths, []);
    assert.deepEqual(defaults.modelHostedTools, []);
    assert.equal(defaults.modelMaxBodyMb, 32);
    assert.equal(defaults.modelConcurrency, 2);
    assert.equal(defaults.modelRatePerMinute, 120);
    assert.equal(defaults.openaiOrganization, null);
    assert.equal(defaults.openaiProject, null);
    const config = loadConfig(
      { "--model-paths": "get /models, POST /chat/*" },
      {
        ALIVE_CODEX_MODEL_HOSTED_TOOLS: "web_search,file_search",
        ALIVE_CODEX_MODEL_RATE: "0",
        OPENAI_ORGANIZATION: "org-abc",
        OPENAI_PROJECT: "proj_abc",
      },
    );
    assert.deepEqual(config.modelPaths, [
      { method: "GET", path: "/models" },
      { method: "POST", path: "/chat/*" },
    ]);
    assert.deepEqual(config.modelHostedTools, ["web_search", "file_search"]);
    assert.equal(config.modelRatePerMinute, 0);
    assert.equal(config.openaiOrganization, "org-abc");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_MODEL_PATHS: "/models" }), "ALIVE_CODEX_MODEL_PATHS");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_MODEL_PATHS: "GET /v1/../files" }), "ALIVE_CODEX_MODEL_PATHS");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_MODEL_PATHS: "FETCH /models" }), "ALIVE_CODEX_MODEL_PATHS");
    expectConfigError(
      () => loadConfig({}, { ALIVE_CODEX_MODEL_HOSTED_TOOLS: "mcp" }),
      "ALIVE_CODEX_MODEL_HOSTED_TOOLS",
    );
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_MODEL_CONCURRENCY: "0" }), "ALIVE_CODEX_MODEL_CONCURRENCY");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_MODEL_MAX_BODY_MB: "0" }), "ALIVE_CODEX_MODEL_MAX_BODY_MB");
    expectConfigError(() => loadConfig({ "--openai-organization": "org x" }, {}), "--openai-organization");
  });

  test("name resolution and the host's further addresses: defaults, parsed values, and errors naming the setting and the entry", () => {
    const defaults = loadConfig({}, {});
    assert.equal(defaults.dnsTimeoutMs, 5_000);
    assert.equal(defaults.dnsPerWorkspace, 4);
    assert.equal(defaults.dnsMax, 64);
    assert.equal(defaults.dnsServers, null);
    assert.equal(defaults.hostsFile, "/etc/hosts");
    assert.equal(defaults.hostAddresses.size, 0);
    const config = loadConfig(
      { "--dns-servers": "10.0.0.2, 127.0.0.1:5353,[fd00::53]:53,fd00::54" },
      {
        ALIVE_CODEX_DNS_TIMEOUT: "750ms",
        ALIVE_CODEX_HOST_ADDRESSES: "93.184.216.34, 198.51.100.0/24,2606:2800::/32,::ffff:1.2.3.4",
      },
    );
    assert.equal(config.dnsTimeoutMs, 750);
    assert.deepEqual(config.dnsServers, ["10.0.0.2", "127.0.0.1:5353", "[fd00::53]:53", "fd00::54"]);
    for (const address of ["93.184.216.34", "198.51.100.200", "2606:2800::1", "1.2.3.4", "::ffff:93.184.216.34"])
      assert.ok(config.hostAddresses.has(address), address);
    for (const address of ["93.184.216.35", "2606:2801::1"]) assert.ok(!config.hostAddresses.has(address), address);
    const entryError = (raw: string, entry: string, why: RegExp): void => {
      assert.throws(
        () => loadConfig({}, { ALIVE_CODEX_HOST_ADDRESSES: raw }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.equal(error.setting, "ALIVE_CODEX_HOST_ADDRESSES");
          assert.ok(error.message.includes(`${JSON.stringify(entry)} is not one`), error.message);
          assert.match(error.message, why);
          return true;
        },
      );
    };
    entryError("93.184.216.34,host.example", "host.example", /host names are not accepted/);
    entryError("10.0.0.0/33", "10.0.0.0/33", /prefix length from 0 to 32/);
    entryError("0.0.0.0/0", "0.0.0.0/0", /no wider than \/8/);
    entryError("2001:db8::/8", "2001:db8::/8", /no wider than \/16/);
    entryError("fe80::1%eth0", "fe80::1%eth0", /without a zone id/);
    entryError("1.2.3.4/24/1", "1.2.3.4/24/1", /with one \//);
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_DNS_TIMEOUT: "10ms" }), "ALIVE_CODEX_DNS_TIMEOUT");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_DNS_PER_WORKSPACE: "0" }), "ALIVE_CODEX_DNS_PER_WORKSPACE");
    expectConfigError(
      () => loadConfig({}, { ALIVE_CODEX_DNS_PER_WORKSPACE: "8", ALIVE_CODEX_DNS_MAX: "4" }),
      "ALIVE_CODEX_DNS_MAX",
    );
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_DNS_SERVERS: "dns.example" }), "ALIVE_CODEX_DNS_SERVERS");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_DNS_SERVERS: "10.0.0.2:99999" }), "ALIVE_CODEX_DNS_SERVERS");
    expectConfigError(() => loadConfig({}, { ALIVE_CODEX_HOSTS_FILE: "hosts" }), "ALIVE_CODEX_HOSTS_FILE");
  });

  test("the proxies' bounds: ports, connections per workspace and in all, tunnel timeouts", () => {
    const defaults = loadConfig({}, {});
    assert.deepEqual(defaults.egressPorts, [443, 80]);
    assert.equal(defaults.proxyConnectionsPerWorkspace, 256);
    assert.equal(defaults.proxyConnectionsTotal, 8192);
    assert.equal(defaults.tunnelIdleTimeoutMs, 5 * 60_000);
    assert.equal(defaults.tunnelMaxLifetimeMs, 60 * 60_000);
    const config = loadConfig(
      { "--egress-ports": " 443, 8443,443 " },
      {
        ALIVE_CODEX_PROXY_CONNECTIONS_PER_WORKSPACE: "64",
        ALIVE_CODEX_TUNNEL_IDLE_TIMEOUT: "90s",
        ALIVE_CODEX_TUNNEL_MAX_LIFETIME: "6h",
      },
    );
    assert.deepEqual(config.egressPorts, [443, 8443]);
    assert.equal(config.proxyConnectionsPerWorkspace, 64);
    assert.equal(config.tunnelIdleTimeoutMs, 90_000);
    assert.equal(config.tunnelMaxLifetimeMs, 6 * 3_600_000);
    for (const ports of ["", "0", "65536", "https", "443;80"])
      expectConfigError(
        () => loadConfig({}, { ALIVE_CODEX_EGRESS_PORTS: ports === "" ? " , " : ports }),
        "ALIVE_CODEX_EGRESS_PORTS",
      );
    expectConfigError(
      () => loadConfig({}, { ALIVE_CODEX_PROXY_CONNECTIONS_PER_WORKSPACE: "0" }),
      "ALIVE_CODEX_PROXY_CONNECTIONS_PER_WORKSPACE",
    );
    expectConfigError(
      () => loadConfig({}, { ALIVE_CODEX_PROXY_CONNECTIONS_TOTAL: "many" }),
      "ALIVE_CODEX_PROXY_CONNECTIONS_TOTAL",
    );
    expectConfigError(
      () => loadConfig({}, { ALIVE_CODEX_TUNNEL_IDLE_TIMEOUT: "0" }),
      "ALIVE_CODEX_TUNNEL_IDLE_TIMEOUT",
    );
    expectConfigError(() => loadConfig({ "--tunnel-max-lifetime": "0s" }, {}), "--tunnel-max-lifetime");
  });
});
