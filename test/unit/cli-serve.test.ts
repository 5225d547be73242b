import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { SidecarConfig } from "../../src/config.js";
import { serveCommand, parseServeArgs } from "../../src/cli/commands/serve.js";
import type { CliContext, SignalName, SignalSource } from "../../src/cli/cli-context.js";
import { SidecarClient } from "../../src/rpc/client.js";
import { probeSocket } from "../../src/rpc/socket.js";
import { FakeSidecarService, startTestServer, waitFor } from "../support/fake-service.js";

const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-serve-"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function fakeContext(signals: SignalSource): CliContext & { out: () => string } {
  const stdout = new PassThrough();
  let out = "";
  stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  return {
    stdout,
    stderr: new PassThrough(),
    signals,
    cwd: dir,
    uid: 1000,
    gid: 1000,
    username: "tester",
    exit: (code) => {
      throw new Error(`exit(${code}) was not expected`);
    },
    out: () => out,
  };
}

describe("parseServeArgs", () => {
  it("reads --flag value, --flag=value and a bare --allow-root", () => {
    assert.deepEqual(parseServeArgs(["--socket", "/s.sock", "--max-turns=4", "--allow-root", "--log-level", "debug"]), {
      help: false,
      flags: { "--socket": "/s.sock", "--max-turns": "4", "--allow-root": "true", "--log-level": "debug" },
    });
    assert.equal(parseServeArgs(["-h"]).help, true);
    assert.throws(() => parseServeArgs(["--socket"]), /needs a value/);
    assert.throws(() => parseServeArgs(["--bogus", "1"]), /unknown setting --bogus/);
    assert.throws(() => parseServeArgs(["stray"]), /unexpected argument/);
  });

  it("takes its flags from the settings table, boolean ones with or without a value", () => {
    assert.deepEqual(parseServeArgs(["--extra-labels", "team=core", "--allow-root=false"]).flags, {
      "--extra-labels": "team=core",
      "--allow-root": "false",
    });
    assert.deepEqual(parseServeArgs(["--allow-root", "no", "--nofile", "64"]).flags, {
      "--allow-root": "no",
      "--nofile": "64",
    });
    assert.throws(() => parseServeArgs(["--socket", "--max-turns", "4"]), /--socket needs a value/);
    assert.deepEqual(parseServeArgs(["--socket=--odd"]).flags, { "--socket": "--odd" });
    assert.throws(() => parseServeArgs(["-x"]), /unknown setting -x/);
    assert.throws(() => parseServeArgs(["--", "--socket"]), /unexpected argument "--socket"/);
  });
});

describe("alive-codex serve", () => {
  it("serves until SIGTERM, then stops accepting, closes the sidecar with the grace and removes the socket", async () => {
    const socketPath = path.join(dir, "run", "sidecar.sock");
    const root = path.join(dir, "workspaces");
    await fs.mkdir(root);
    const service = new FakeSidecarService();
    const closes: number[] = [];
    let seenConfig: SidecarConfig | undefined;
    const signals = new EventEmitter();
    const ctx = fakeContext({
      on: (s: SignalName, l: () => void) => signals.on(s, l),
      off: (s: SignalName, l: () => void) => signals.off(s, l),
    });
    const logLines: string[] = [];
    const serving = serveCommand(
      [
        "--socket",
        socketPath,
        "--state-dir",
        path.join(dir, "state"),
        "--workspace-roots",
        root,
        "--on-stop",
        "drain",
        "--shutdown-grace",
        "7s",
        "--codex-api-key",
        "sk-test-secret-123456",
      ],
      ctx,
      {
        startSidecar: async (config) => {
          seenConfig = config;
          return {
            service,
            close: async (graceMs) => void closes.push(graceMs),
            leave: async () => {
              throw new Error("drain never leaves turns running");
            },
          };
        },
        writeLog: (line) => logLines.push(line),
      },
    );
    await waitFor(() => signals.listenerCount("SIGTERM") > 0, "serve to be ready");
    assert.equal(await probeSocket(socketPath), "live");
    assert.equal((await fs.stat(socketPath)).mode & 0o777, 0o660);
    const client = await SidecarClient.connect(socketPath);
    assert.equal((await client.health()).version, "0.0.0-test");
    await client.close();
    assert.deepEqual(seenConfig?.workspaceRoots, [root]);

    signals.emit("SIGTERM");
    assert.equal(await serving, 0);
    assert.deepEqual(closes, [7000]);
    await assert.rejects(fs.stat(socketPath), { code: "ENOENT" });
    assert.equal(signals.listenerCount("SIGTERM") + signals.listenerCount("SIGINT"), 0, "signal handlers removed");
    assert.ok(logLines.length > 0);
    assert.ok(
      logLines.every((line) => !line.includes("sk-test-secret-123456")),
      "the key never reaches a log line",
    );
  });

  it("by default, SIGTERM leaves running turns for the next sidecar and cancels nothing", async () => {
    const socketPath = path.join(dir, "leave.sock");
    const root = path.join(dir, "root");
    await fs.mkdir(root, { recursive: true });
    const signals = new EventEmitter();
    const ctx = fakeContext({
      on: (s: SignalName, l: () => void) => signals.on(s, l),
      off: (s: SignalName, l: () => void) => signals.off(s, l),
    });
    const calls: string[] = [];
    const serving = serveCommand(
      ["--socket", socketPath, "--state-dir", path.join(dir, "state"), "--workspace-roots", root],
      ctx,
      {
        startSidecar: async () => ({
          service: new FakeSidecarService(),
          close: async () => void calls.push("close"),
          leave: async () => {
            calls.push("leave");
            return 2;
          },
        }),
        writeLog: () => undefined,
      },
    );
    await waitFor(() => signals.listenerCount("SIGTERM") > 0, "serve to be ready");
    signals.emit("SIGTERM");
    assert.equal(await serving, 0);
    assert.deepEqual(calls, ["leave"]);
    await assert.rejects(fs.stat(socketPath), { code: "ENOENT" });
  });

  it("refuses to start over a live sidecar's socket, without starting anything", async () => {
    const t = await startTestServer();
    try {
      const child = spawn(
        process.execPath,
        [CLI, "serve", "--socket", t.socketPath, "--state-dir", path.join(dir, "state")],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
      const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
      assert.equal(code, 1);
      assert.match(
        stderr,
        new RegExp(`another sidecar is serving at ${t.socketPath.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`),
      );
      assert.equal(await probeSocket(t.socketPath), "live", "the live socket is untouched");
    } finally {
      await t.stop();
    }
  });
});
