/**
 * A tenant trying to crash the sidecar by its output, end to end: a tenant replaces the socat forwarder on
 * 127.0.0.1:3129 inside its own container with a fake model of its own (as the workspace's uid,
 * which the forwarder runs as), and the fake model answers codex's request with one assistant
 * message of 64 MiB (see HUGE_MIB) on a single SSE line. Codex turns it
 * into one item.completed line of that size on its stdout. The sidecar must fail that turn with
 * codex_output (if codex itself gives out first, its own failure is accepted and said so), never
 * read the line whole, stay up, and finish another workspace's turn that runs at the same time.
 *
 * Needs the engine, the runtime image (nodejs, procps and socat are in it) and enough memory for
 * codex to build the line: the container gets up to 4 GiB (a quarter of the host's memory, if less).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { journalDir } from "../../src/journal/turn-journal.js";
import type { TurnResult } from "../../src/service.js";
import { ResponsesStub } from "../support/responses-stub.js";
import { TEST_GID, TEST_UID, execIn, startTestSidecar, type TestSidecar } from "../support/sidecar.js";
import { waitFor } from "../support/wait.js";

const MiB = 1024 * 1024;
const TURN_TIMEOUT_MS = Number(process.env.HOSTILE_OUTPUT_TIMEOUT_MS ?? 120_000);
/** The container's memory: enough for codex to hold the line a few times over. */
const MEMORY_MB = Math.max(1024, Math.min(4096, Math.floor(os.totalmem() / MiB / 4)));
/**
 * The message: 64 MiB (four times the default line bound), or half the container's memory if less.
 * Not 600 MiB: codex 0.163 took 26 s to turn a 64 MiB SSE line into its stdout line, and over
 * 5 min for 600 MiB (the bound is what is under test, not codex's parser). The 600 MiB line is
 * streamed through the real SDK and bridge in test/unit/hostile-output.test.ts. HOSTILE_OUTPUT_MIB
 * and HOSTILE_OUTPUT_TIMEOUT_MS run it bigger by hand.
 */
const HUGE_MIB = Math.min(Number(process.env.HOSTILE_OUTPUT_MIB ?? 64), Math.floor(MEMORY_MB / 2));

/**
 * The tenant's fake model (run with the image's node as the workspace's uid): kills the forwarder
 * listening on 3129 and takes the port before the forwarder's loop starts socat again (it waits a
 * second), then answers POST …/responses with one assistant message of HUGE_MIB MiB on a single SSE
 * line, streamed in 1 MiB pieces. It notes what it did in LOG (in the workspace, readable on the host).
 */
const FAKE_MODEL = String.raw`
const http = require("node:http");
const fs = require("node:fs");
const { execFileSync } = require("node:child_process");
const LOG = process.env.LOG;
const HUGE_MIB = Number(process.env.HUGE_MIB);
const note = (text) => fs.appendFileSync(LOG, text + "\n");
const sse = (event) => "event: " + event.type + "\ndata: " + JSON.stringify(event) + "\n\n";
const server = http.createServer((req, res) => {
  note("request " + req.method + " " + req.url);
  if (req.method !== "POST" || !req.url.endsWith("/responses")) {
    res.writeHead(req.method === "GET" && req.url.endsWith("/responses") ? 426 : 404, { connection: "close" });
    res.end();
    return;
  }
  req.resume();
  req.on("end", async () => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.write(sse({ type: "response.created", response: { id: "resp_fake" } }));
    res.write('event: response.output_item.done\ndata: {"type":"response.output_item.done","item":{"type":"message","role":"assistant","id":"msg_fake","content":[{"type":"output_text","text":"');
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    let sent = 0;
    const drained = () => new Promise((resolve) => {
      const done = () => { res.off("drain", done); res.off("close", done); resolve(); };
      res.on("drain", done);
      res.on("close", done);
    });
    for (; sent < HUGE_MIB && !res.destroyed; sent += 1) {
      if (!res.write(chunk)) await drained();
    }
    note("sent " + sent + " MiB");
    if (res.destroyed) return;
    res.write('"}]}}\n\n');
    res.end(sse({ type: "response.completed", response: { id: "resp_fake", usage: { input_tokens: 1, input_tokens_details: { cached_tokens: 0 }, output_tokens: 1, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 2 } } }));
  });
});
// Only socat's own processes: the container's main shell holds the forwarder loop's text in its
// command line too, and killing it would stop the container.
const takeOver = () => {
  try { execFileSync("pkill", ["-f", "^socat TCP-LISTEN:3129,"]); } catch {}
  server.listen(3129, "127.0.0.1");
};
server.on("error", () => setTimeout(takeOver, 5));
server.on("listening", () => note("listening"));
takeOver();
`;

describe("a tenant's fake model makes codex write a huge line", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;
  before(async () => {
    stub = await ResponsesStub.start({ host: "127.0.0.1" });
    t = await startTestSidecar({ stub });
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
  });

  test(`the turn fails with codex_output (a ${HUGE_MIB} MiB line, container ${MEMORY_MB} MiB), the sidecar stays up and another workspace's turn completes`, async () => {
    const hostile = await t.workspace(undefined, { resources: { memoryMb: MEMORY_MB } });
    const quiet = await t.workspace();
    const hostileContainer = (await t.sidecar.service.ensureWorkspace(hostile)).containerId;
    await t.sidecar.service.ensureWorkspace(quiet);

    // The tenant, outside any turn (no sweep stops it): its fake model takes the model port.
    const script = path.join(hostile.workspacePath, ".fake-model.js");
    const log = path.join(hostile.workspacePath, ".fake-model.log");
    await fs.writeFile(script, FAKE_MODEL, { mode: 0o644 });
    await fs.writeFile(log, "");
    await fs.chown(log, TEST_UID, TEST_GID);
    const started = await execIn(
      t.docker,
      hostileContainer,
      ["/bin/sh", "-c", `LOG='${log}' HUGE_MIB=${HUGE_MIB} nohup node '${script}' </dev/null >/dev/null 2>&1 &`],
      `${TEST_UID}:${TEST_GID}`,
    );
    assert.equal(started.exitCode, 0, started.stderr);
    await waitFor(async () => (await fs.readFile(log, "utf8")).includes("listening"), {
      timeoutMs: 15_000,
      what: "the fake model to take 127.0.0.1:3129",
    });

    // The quiet workspace's model answers after a while, so its turn runs across the hostile one.
    stub.script({ kind: "message", text: "quiet and done", delayMs: 3000 });
    const hostileTypes: string[] = [];
    let peakRss = process.memoryUsage().rss;
    const baseRss = peakRss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
    let results: [TurnResult, TurnResult];
    try {
      results = await Promise.all([
        t.sidecar.service.runTurn(
          {
            workspaceId: hostile.workspaceId,
            turnId: "turn-hostile",
            input: "say something long",
            options: { timeoutMs: TURN_TIMEOUT_MS },
          },
          { onEvent: (_id, _seq, event) => hostileTypes.push(event.type) },
        ),
        t.sidecar.service.runTurn(
          { workspaceId: quiet.workspaceId, input: "say something short", options: { timeoutMs: TURN_TIMEOUT_MS } },
          { onEvent: () => undefined },
        ),
      ]);
    } finally {
      clearInterval(sampler);
    }
    const [bad, good] = results;
    const fakeLog = await fs.readFile(log, "utf8");
    console.log(
      `hostile turn: ${bad.status} ${JSON.stringify(bad.error)}; fake model: ${fakeLog.trim().split("\n").join(" | ")}; sidecar rss ${(baseRss / MiB).toFixed(0)} -> peak ${(peakRss / MiB).toFixed(0)} MiB`,
    );

    assert.match(
      fakeLog,
      /request POST \/v1\/responses/,
      "codex asked the tenant's fake model, not the sidecar's model proxy",
    );
    assert.equal(bad.status, "failed");
    if (bad.error?.code !== "codex_output") {
      // Codex gave out before it wrote the line (its memory, or the stream): the sidecar's bound was
      // not reached, and what is left to check is that the sidecar took it in its stride.
      console.log(`NOTE: codex failed first (${bad.error?.code}); the line bound was not exercised by this run`);
      assert.notEqual(bad.error?.code, "internal", JSON.stringify(bad.error));
    } else {
      assert.match(bad.error.message, /codex wrote an output line over 16777216 bytes/);
      assert.ok(!hostileTypes.includes("item.completed"), "the huge item never reached the client");
    }
    assert.ok(
      peakRss - baseRss < 512 * MiB,
      `the sidecar's process grew by ${((peakRss - baseRss) / MiB).toFixed(0)} MiB`,
    );
    const journal = await fs.stat(path.join(journalDir(t.stateDir), "turn-hostile.jsonl"));
    assert.ok(journal.size < MiB, `the hostile turn's journal holds ${journal.size} bytes`);

    assert.equal(good.status, "completed", JSON.stringify(good.error));
    assert.equal(good.finalResponse, "quiet and done");

    // Still up: it answers, and runs the next turn.
    assert.equal((await t.sidecar.service.health()).docker.reachable, true);
    stub.script({ kind: "message", text: "still here" });
    const next = await t.sidecar.service.runTurn(
      { workspaceId: quiet.workspaceId, input: "again", options: { timeoutMs: TURN_TIMEOUT_MS } },
      { onEvent: () => undefined },
    );
    assert.equal(next.status, "completed", JSON.stringify(next.error));
    assert.equal(next.finalResponse, "still here");
  });
});
