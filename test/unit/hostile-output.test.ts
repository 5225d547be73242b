/**
 * A hostile codex's output through the real path, without an engine: the SDK spawns the real bridge
 * script, the turn runs through executeTurn and TurnContainer, and only the exec in the container is
 * a fake (what "codex" writes is scripted here, as a tenant's own fake model could script it). A
 * bad turn fails with codex_output and is swept; this process, and a turn beside it, carry on.
 */
import { afterEach, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import type { EnginePort } from "../../src/docker/engine-port.js";
import { installBridgeScript } from "../../src/codex/bridge.js";
import type { Launchers } from "../../src/codex/launcher.js";
import { executeTurn, type TurnExecutionOptions } from "../../src/turns/turn-execution.js";
import { TurnMeter } from "../../src/turns/turn-meter.js";
import { FINAL_RESPONSE_MAX_BYTES, RESULT_ITEMS_MAX_BYTES } from "../../src/turns/turn-state.js";
import type { StartedExec } from "../../src/docker/exec.js";
import type { TurnRef } from "../../src/egress/workspace-endpoints.js";
import { createLogger } from "../../src/log.js";
import { TurnCredentials } from "../../src/model-proxy/credentials.js";
import type { TurnResult } from "../../src/service.js";
import type { WorkspaceRecord } from "../../src/workspace/record.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { withTimeout } from "../support/wait.js";

const MiB = 1024 * 1024;
const THREAD = "0199a9c2-1f2e-7c3d-8e4f-5a6b7c8d9e0f";

/**
 * The codex process in the container, as the sidecar sees it: the launcher's exec takes the turn's
 * header on its stdin (the turn's files, as paths in the container), and "codex" appends to the
 * turn's stdout and stderr files, which the sidecar follows; the engine says when it exited.
 */
class FakeCodex {
  readonly stdout = "out" as const;
  readonly stderr = "err" as const;
  readonly stdin = new PassThrough();
  killed = false;
  running = true;
  exitCode: number | null = null;
  #files: Promise<{ out: string; err: string }>;
  readonly #launcherExit: Promise<number | null>;

  constructor(hostTmp: string) {
    const chunks: Buffer[] = [];
    this.stdin.on("data", (chunk: Buffer) => chunks.push(chunk));
    this.#files = new Promise((resolve) =>
      this.stdin.on("end", () => {
        // The header's last three fields: stdin, stdout and stderr, as paths in the container.
        const fields = Buffer.concat(chunks).toString("utf8").split("\0").slice(0, -1);
        const [, out, err] = fields.slice(-3).map((f) => path.join(hostTmp, path.posix.basename(f)));
        resolve({ out: out!, err: err! });
      }),
    );
    // The launcher's connection ends as it execs codex.
    this.#launcherExit = this.#files.then(() => null);
  }

  get exec(): StartedExec {
    const quiet = (): PassThrough => {
      const stream = new PassThrough();
      stream.end();
      return stream;
    };
    return { id: "fake", stdin: this.stdin, stdout: quiet(), stderr: quiet(), exit: this.#launcherExit };
  }

  /** Appends to codex's stdout (or stderr) file, yielding between writes as a process would; false once killed. */
  async write(data: string | Buffer, stream: "out" | "err" = "out"): Promise<boolean> {
    if (this.killed) return false;
    const files = await this.#files;
    await fs.appendFile(files[stream], data);
    await new Promise((resolve) => setImmediate(resolve));
    return !this.killed;
  }

  finish(code: number | null): void {
    this.running = false;
    this.exitCode = code;
  }

  /** What the turn's sweep does to it. */
  kill(): void {
    if (this.killed) return;
    this.killed = true;
    this.finish(137);
  }
}

const line = (event: unknown): string => `${JSON.stringify(event)}\n`;
const opening = line({ type: "thread.started", thread_id: THREAD }) + line({ type: "turn.started" });
const message = (id: string, text: string): string =>
  line({ type: "item.completed", item: { id, type: "agent_message", text } });
const completed = line({
  type: "turn.completed",
  usage: { input_tokens: 1, cached_input_tokens: 0, output_tokens: 1, reasoning_output_tokens: 0 },
});

let dir: string;
let bridgeScript: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "hostile-output-"));
  bridgeScript = await installBridgeScript(path.join(dir, "bin"));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

interface TurnRun {
  result: TurnResult;
  events: Array<{ type?: string }>;
  sink: string[];
  codex: FakeCodex;
}

/** Runs one turn of workspace `workspaceId` whose codex does what `script` says. */
async function runTurn(
  workspaceId: string,
  script: (codex: FakeCodex) => Promise<void>,
  outputLineMaxBytes = MiB,
): Promise<TurnRun> {
  const paths = workspacePaths(path.join(dir, "state"), workspaceId);
  await fs.mkdir(paths.tmp, { recursive: true });
  const codex = new FakeCodex(paths.tmp);
  const sink: string[] = [];
  const events: Array<{ type?: string }> = [];
  const containerId = `container-${workspaceId}`;
  // The sweep is an exec in the container: here it kills the fake, then fails (there is no engine).
  const engine = {
    exec: async () => {
      codex.kill();
      throw new Error("no engine in this test");
    },
    inspect: async () => ({ State: { Running: true, ExitCode: 0, OOMKilled: false } }),
    inspectExec: async () => ({ running: codex.running, exitCode: codex.exitCode, containerId }),
    waitNotRunning: async () => undefined,
  } as unknown as EnginePort;
  const launchers = {
    take: async () => {
      void script(codex).catch(() => undefined);
      return codex.exec;
    },
  } as unknown as Launchers;
  const options: TurnExecutionOptions = {
    engine,
    launchers,
    bridgesDir: path.join(dir, "bridges"),
    aliveMcpToken: null,
    outputLineMaxBytes,
    log: createLogger({ level: "error", write: () => undefined }),
    bridgeScript,
    credentials: new TurnCredentials<TurnRef>(),
    aliveApiUrl: null,
    nodePath: null,
    defaultModel: null,
    turnTimeoutMs: 60_000,
    stallWatch: "off",
  };
  const record = {
    params: { workspaceId, userId: "user-1", uid: 10_001, gid: 10_001, workspacePath: path.join(dir, "ws") },
    containerId,
    paths,
    sink: { write: (text: string) => sink.push(text), close: () => undefined },
    runtime: "runc",
  } as unknown as WorkspaceRecord;
  const meter = new TurnMeter({
    containerId,
    budget: { tokens: null, cpuSeconds: null },
    onExceeded: () => undefined,
    cgroupRoot: path.join(dir, "no-cgroup"),
  });
  const result = await withTimeout(
    executeTurn(
      options,
      `turn-${workspaceId}`,
      { workspaceId, input: "go" },
      record,
      { onEvent: (_id, _seq, event) => events.push(event as { type?: string }) },
      new AbortController(),
      meter,
    ),
    60_000,
    `the turn of ${workspaceId}`,
  );
  return { result, events, sink, codex };
}

describe("hostile codex output through the SDK", () => {
  test("a 600 MiB line without a newline fails its turn with codex_output, is swept, and a turn beside it completes", async () => {
    let streamed = 0;
    const hostile = runTurn("hostile", async (codex) => {
      await codex.write(opening);
      await codex.write('{"type":"item.completed","item":{"id":"m","type":"agent_message","text":"');
      const chunk = Buffer.alloc(MiB, 0x61);
      while (streamed < 600 * MiB && (await codex.write(chunk))) streamed += chunk.length;
    });
    const quiet = runTurn("quiet", async (codex) => {
      await codex.write(opening + message("m1", "all done") + completed);
      codex.finish(0);
    });
    const [bad, good] = await Promise.all([hostile, quiet]);
    assert.equal(bad.result.status, "failed");
    assert.equal(bad.result.error?.code, "codex_output");
    assert.match(bad.result.error?.message ?? "", /codex wrote an output line over 1048576 bytes/);
    assert.equal(bad.codex.killed, true, "the turn's processes were swept");
    assert.ok(streamed < 600 * MiB, `codex was stopped after ${streamed} bytes`);
    assert.deepEqual(
      bad.events.map((e) => e.type),
      ["sidecar.turn.accepted", "thread.started", "turn.started"],
    );
    assert.equal(good.result.status, "completed");
    assert.equal(good.result.finalResponse, "all done");
  });

  test("events of the wrong shape fail the turn with codex_output and sweep it", async () => {
    const nested = `{"type":"item.completed","item":{"id":"x","type":"mcp_tool_call","result":${"[".repeat(5000)}${"]".repeat(5000)}}}\n`;
    for (const bad of ["5\n", nested, line({ type: "thread.started", thread_id: "../../etc/passwd" })]) {
      const run = await runTurn("shapes", async (codex) => {
        await codex.write(line({ type: "turn.started" }) + bad);
        // A real codex would carry on: only the sweep ends it.
      });
      assert.equal(run.result.error?.code, "codex_output", bad.slice(0, 60));
      assert.equal(run.codex.killed, true);
      assert.equal(run.events.length, 2, "the bad event was never passed on");
    }
  });

  test("a stderr flood is bounded in the logs and does not fail the turn", async () => {
    const run = await runTurn("chatty", async (codex) => {
      await codex.write(opening);
      const noise = Buffer.alloc(64 * 1024, 0x6e);
      for (let i = 0; i < 320; i += 1) await codex.write(noise, codex.stderr); // 20 MiB, no newline
      for (let i = 0; i < 20_000; i += 1) await codex.write(`warning ${i}\n`, codex.stderr);
      await codex.write(message("m1", "fine") + completed);
      codex.finish(0);
    });
    assert.equal(run.result.status, "completed");
    assert.equal(run.result.finalResponse, "fine");
    const logged = run.sink.filter((text) => text.includes(" codex: "));
    const bytes = logged.reduce((sum, text) => sum + Buffer.byteLength(text), 0);
    assert.ok(
      logged.length <= 2001 && bytes < 256 * 1024 + 2001 * 40,
      `${logged.length} lines, ${bytes} bytes of stderr reached the docker logs`,
    );
    assert.match(logged.at(-1) ?? "", /more stderr line\(s\) of this turn were not logged/);
  });

  test("items past the result's byte bound are counted, not kept", async () => {
    const big = "b".repeat(6 * MiB);
    const run = await runTurn(
      "items",
      async (codex) => {
        await codex.write(opening);
        for (const id of ["a", "b", "c"]) await codex.write(message(id, big));
        await codex.write(completed);
        codex.finish(0);
      },
      8 * MiB,
    );
    assert.equal(run.result.status, "completed");
    assert.deepEqual(
      run.result.items.map((item) => item.id),
      ["a", "b"],
    );
    assert.equal(run.result.itemsOmitted, 1);
    assert.ok(2 * big.length < RESULT_ITEMS_MAX_BYTES && 3 * big.length > RESULT_ITEMS_MAX_BYTES);
    assert.equal(
      run.result.finalResponse.length,
      FINAL_RESPONSE_MAX_BYTES,
      "the final response is the last message (cut at its bound), kept in the items or not",
    );
    assert.equal(run.result.finalResponseTruncated, true);
  });
});
