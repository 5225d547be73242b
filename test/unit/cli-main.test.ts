import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, beforeEach, describe, it } from "node:test";
import { SETTINGS } from "../../src/config.js";
import { startCli } from "../support/cli-process.js";
import { SAMPLE_EVENTS, startTestServer, waitFor, type TestServer } from "../support/fake-service.js";

async function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = startCli(args, env);
  const { code } = await run.exit;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

describe("alive-codex without a sidecar", () => {
  it("--help lists the commands", async () => {
    const { code, stdout } = await cli(["--help"]);
    assert.equal(code, 0);
    for (const command of ["serve", "health", "ps", "run", "logs", "rm"])
      assert.match(stdout, new RegExp(`^  ${command} `, "m"));
  });

  it("an unknown command exits 2", async () => {
    assert.equal((await cli(["frobnicate"])).code, 2);
  });

  it("serve --help lists every setting, with its variable and default", async () => {
    const { code, stdout } = await cli(["serve", "--help"]);
    assert.equal(code, 0);
    for (const setting of SETTINGS) {
      assert.ok(stdout.includes(`${setting.flag} <value>`), setting.flag);
      assert.ok(stdout.includes(setting.env), setting.env);
      assert.ok(stdout.includes(`default: ${setting.defaultText}`), `${setting.flag} default`);
    }
  });

  it("a bad setting exits 2 with one line naming it", async () => {
    const fromEnv = await cli(["serve"], { ALIVE_CODEX_STATE_DIR: "rel/dir" });
    assert.equal(fromEnv.code, 2);
    assert.equal(fromEnv.stderr, 'alive-codex: ALIVE_CODEX_STATE_DIR="rel/dir": expected an absolute path\n');
    const fromFlag = await cli(["serve", "--uid-range", "5-1"]);
    assert.equal(fromFlag.code, 2);
    assert.equal(fromFlag.stderr.trimEnd().split("\n").length, 1);
    assert.match(fromFlag.stderr, /^alive-codex: --uid-range="5-1": expected /);
    const unknown = await cli(["serve", "--no-such-setting", "x"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /--no-such-setting/);
  });

  it("health exits 3 when no sidecar listens on the socket", async () => {
    const { code, stderr } = await cli([
      "health",
      "--socket",
      path.join(fileURLToPath(new URL(".", import.meta.url)), "no-such.sock"),
    ]);
    assert.equal(code, 3);
    assert.match(stderr, /cannot reach the sidecar/);
  });

  it("usage errors exit 2", async () => {
    assert.equal((await cli(["run", "no workspace given"])).code, 2);
    assert.equal((await cli(["ps", "--bogus"])).code, 2);
    assert.equal((await cli(["logs"])).code, 2);
  });

  it("logs: the workspace once, as --workspace ID or the positional alias; both or neither exit 2 naming the problem", async () => {
    const socket = ["--socket", "/nonexistent/alive-codex.sock"];
    const both = await cli(["logs", "--workspace", "ws-1", "ws-2", ...socket]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /give the workspace once: --workspace "ws-1" and "ws-2"/);
    const neither = await cli(["logs", ...socket]);
    assert.equal(neither.code, 2);
    assert.match(neither.stderr, /logs needs --workspace ID/);
    const extra = await cli(["logs", "ws-1", "ws-2", ...socket]);
    assert.equal(extra.code, 2);
    assert.match(extra.stderr, /unexpected argument "ws-2"/);
    const help = await cli(["logs", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: alive-codex logs --workspace ID /);
  });
});

describe("alive-codex against a sidecar", () => {
  let t: TestServer;
  let runArgs: (...extra: string[]) => string[];

  before(async () => {
    t = await startTestServer();
    runArgs = (...extra) => [
      "run",
      "--socket",
      t.socketPath,
      "--workspace",
      "ws-1",
      "--uid",
      "10001",
      "--gid",
      "1000",
      "--path",
      t.workspacePath,
      ...extra,
    ];
  });
  after(async () => {
    await t.stop();
  });
  beforeEach(() => {
    t.service.turnScript = () => ({ events: SAMPLE_EVENTS });
  });

  it("health --json prints the health", async () => {
    const { code, stdout } = await cli(["health", "--socket", t.socketPath, "--json"]);
    assert.equal(code, 0);
    assert.equal(JSON.parse(stdout).version, "0.0.0-test");
  });

  it("health prints the codex the workspaces run: found in the image, from the setting, tested, with its flags", async () => {
    const { code, stdout } = await cli(["health", "--socket", t.socketPath]);
    assert.equal(code, 0);
    assert.match(
      stdout,
      /^codex +0\.171\.0 \(ALIVE_CODEX_CODEX_VERSION; the SDK's is 0\.163\.0; tested; adds --ignore-user-config --ignore-rules\)$/m,
    );
  });

  it("run ensures the workspace, streams the turn readably and exits 0", async () => {
    const { code, stdout, stderr } = await cli(
      runArgs("--user-id", "ada", "--model", "gpt-test", "--timeout", "5m", "list", "the files"),
    );
    assert.equal(code, 0, stderr);
    const [ensured] = t.service.callsOf("ensureWorkspace") as Array<Record<string, unknown>>;
    assert.deepEqual([ensured?.workspaceId, ensured?.userId, ensured?.uid, ensured?.gid], ["ws-1", "ada", 10001, 1000]);
    const turn = t.service.callsOf("runTurn").at(-1) as { input: string; options: unknown };
    assert.equal(turn.input, "list the files");
    assert.deepEqual(turn.options, { model: "gpt-test", timeoutMs: 300_000 });
    assert.match(stdout, /^\$ ls -la$/m);
    assert.match(stdout, /^ {4}file\.txt$/m);
    assert.match(stdout, /^Done: one file\.$/m);
    assert.match(stdout, /^-- completed · tokens: 10 in \(2 cached\), 5 out \(1 reasoning\) · thread 0199a213/m);
  });

  it("run --json prints one JSON event per line, then the result", async () => {
    const { code, stdout } = await cli(runArgs("--json", "hello"));
    assert.equal(code, 0);
    const lines = stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(lines.length, SAMPLE_EVENTS.length + 2);
    assert.deepEqual(
      lines.slice(0, -1).map((l) => l.seq),
      lines.slice(0, -1).map((_, i) => i),
    );
    assert.equal(lines.at(-1)?.status, "completed");
  });

  it("Ctrl-C during run cancels the turn and exits 130", async () => {
    t.service.turnScript = () => ({ hold: true, events: SAMPLE_EVENTS.slice(0, 3) });
    const before = t.service.turns.size;
    const run = startCli(runArgs("take your time"));
    await waitFor(
      () => t.service.turns.size > before && run.stdout().includes("$ ls -la"),
      "the turn to be running",
      10_000,
    );
    run.child.kill("SIGINT");
    const { code } = await run.exit;
    assert.equal(code, 130, run.stderr());
    const turn = [...t.service.turns.values()].at(-1);
    assert.deepEqual(t.service.callsOf("cancelTurn").at(-1), { turnId: turn?.turnId });
    assert.equal(turn?.cancelled, true);
  });

  const ensureWs1 = () =>
    t.service.ensureWorkspace({
      workspaceId: "ws-1",
      userId: "ada",
      uid: 10001,
      gid: 1000,
      workspacePath: t.workspacePath,
    });

  it("ps --json lists the workspaces, and ps prints a table", async () => {
    await ensureWs1();
    const json = await cli(["ps", "--socket", t.socketPath, "--json"]);
    assert.equal(json.code, 0);
    const { workspaces } = JSON.parse(json.stdout) as { workspaces: Array<{ workspaceId: string }> };
    assert.deepEqual(
      workspaces.map((w) => w.workspaceId),
      ["ws-1"],
    );
    const table = await cli(["ps", "--socket", t.socketPath]);
    const [header, row] = table.stdout.split("\n");
    assert.match(header ?? "", /^WORKSPACE +USER +CONTAINER +STATE +CREATED +LAST ACTIVE +TURN$/);
    assert.match(row ?? "", /^ws-1 +\S+ +c0ffee\S{6} +running +.+ago +.+ago +-$/);
    assert.equal(header?.indexOf("USER"), row?.indexOf(row.split(/ {3,}/)[1] as string), "columns line up");
  });

  it("ps --isolation prints each workspace's measured isolation", async () => {
    await ensureWs1();
    const table = await cli(["ps", "--isolation", "--socket", t.socketPath]);
    assert.equal(table.code, 0, table.stderr);
    const [header, row] = table.stdout.split("\n");
    assert.match(
      header ?? "",
      /^WORKSPACE +RUNTIME +USER +CAPS +NNP +SECCOMP +ROOT +WRITABLE +PIDS +MEMORY +CPUS +EGRESS +KEY +HOST$/,
    );
    assert.match(
      row ?? "",
      /^ws-1 +runc +10001:10001 +none +yes +filter +ro +\/home\/alive +512 +2048MiB +1 +public via sidecar-proxy +proxy +unreachable$/,
    );
  });

  it("logs --workspace prints the workspace's log; the positional form still works; an RPC error exits 1", async () => {
    const logs = await cli(["logs", "--workspace", "ws-1", "--tail", "5", "--socket", t.socketPath]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.equal(logs.stdout, "logs of ws-1 (tail 5)\n");
    const positional = await cli(["logs", "ws-1", "--tail", "5", "--socket", t.socketPath]);
    assert.equal(positional.code, 0, positional.stderr);
    assert.equal(positional.stdout, "logs of ws-1 (tail 5)\n");
    assert.deepEqual(t.service.callsOf("workspaceLogs").slice(-2), [
      { workspaceId: "ws-1", tail: 5 },
      { workspaceId: "ws-1", tail: 5 },
    ]);
    const bad = await cli(["logs", "bad/id", "--socket", t.socketPath]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /workspaceId/);
  });

  it("client commands need only the socket: a bad server-only setting or a missing key file does not stop them", async () => {
    const env = {
      ALIVE_CODEX_SOCKET: t.socketPath,
      ALIVE_CODEX_UID_RANGE: "garbage",
      ALIVE_CODEX_API_KEY_FILE: "/nonexistent",
    };
    const ps = await cli(["ps", "--json"], env);
    assert.equal(ps.code, 0, ps.stderr);
    assert.ok(Array.isArray((JSON.parse(ps.stdout) as { workspaces: unknown }).workspaces));
    const health = await cli(["health", "--json"], env);
    assert.equal(health.code, 0, health.stderr);
    assert.equal((await cli(["serve"], env)).code, 2, "serve still refuses them");
  });

  it("rm removes the workspace", async () => {
    await ensureWs1();
    const { code, stdout } = await cli(["rm", "ws-1", "--purge", "--socket", t.socketPath, "--json"]);
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout), { removed: true });
    assert.deepEqual(t.service.callsOf("removeWorkspace").at(-1), { workspaceId: "ws-1", purgeHome: true });
  });
});
