/**
 * The responses stub against the real codex binary (from @openai/codex, via @openai/codex-sdk)
 * running on the host: proves the stub's wire format and measures the host baseline of a turn.
 */
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

import { Codex, type ThreadEvent, type ThreadOptions } from "@openai/codex-sdk";

import { formatTable, summarize } from "../../bench/stats.js";
import { ResponsesStub, functionCallOutput, inputMessages, lastUserMessageText } from "../support/responses-stub.js";

const API_KEY = "sk-test-stub-0001";
const TURN_TIMEOUT_MS = 30_000;

interface Sandbox {
  root: string;
  home: string;
  work: string;
}

async function makeSandbox(): Promise<Sandbox> {
  const root = await mkdtemp(join(tmpdir(), "alive-codex-host-"));
  const home = join(root, "home");
  const work = join(root, "work");
  await mkdir(join(home, ".codex"), { recursive: true });
  await mkdir(work);
  return { root, home, work };
}

/** A Codex client on a custom provider pointing at the stub: no WebSocket detour, no background calls. */
function makeCodex(stub: ResponsesStub, sandbox: Sandbox): Codex {
  return new Codex({
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: sandbox.home,
      CODEX_HOME: join(sandbox.home, ".codex"),
      CODEX_API_KEY: API_KEY,
      ALIVE_STUB_MARKER: "visible",
    },
    config: {
      model_provider: "alive",
      model_providers: {
        alive: {
          name: "alive",
          base_url: stub.baseUrl,
          wire_api: "responses",
          supports_websockets: false,
          env_key: "CODEX_API_KEY",
          request_max_retries: 0,
          stream_max_retries: 0,
        },
      },
      features: { plugins: false },
      analytics: { enabled: false },
      shell_environment_policy: { inherit: "all", exclude: ["CODEX_API_KEY"], ignore_default_excludes: false },
    },
  });
}

function threadOptions(sandbox: Sandbox): ThreadOptions {
  return {
    model: "gpt-5.5",
    sandboxMode: "danger-full-access",
    approvalPolicy: "never",
    skipGitRepoCheck: true,
    workingDirectory: sandbox.work,
  };
}

/** Every event of a streamed turn, and the error the stream ended with (codex exits 1 on turn.failed). */
async function collectTurn(events: AsyncGenerator<ThreadEvent>): Promise<{ events: ThreadEvent[]; error: unknown }> {
  const seen: ThreadEvent[] = [];
  try {
    for await (const event of events) seen.push(event);
    return { events: seen, error: undefined };
  } catch (error) {
    return { events: seen, error };
  }
}

describe("codex on the host against the responses stub", { timeout: 120_000 }, () => {
  let stub: ResponsesStub;
  let sandbox: Sandbox;

  before(async () => {
    stub = await ResponsesStub.start();
  });
  after(() => stub.close());
  beforeEach(async () => {
    assert.equal(stub.pending, 0, "a previous test left scripted steps behind");
    stub.reset();
    sandbox = await makeSandbox();
  });
  afterEach(async () => {
    await rm(sandbox.root, { recursive: true, force: true });
  });

  it(
    "runs a message turn: final response, bearer key, no WebSocket attempt",
    { timeout: TURN_TIMEOUT_MS },
    async () => {
      stub.script({
        kind: "message",
        text: "Hello from the stub.",
        usage: { input_tokens: 120, cached_tokens: 20, output_tokens: 9, reasoning_tokens: 2 },
      });
      const thread = makeCodex(stub, sandbox).startThread(threadOptions(sandbox));
      const turn = await thread.run("Say hello.");

      assert.equal(turn.finalResponse, "Hello from the stub.");
      assert.deepEqual(
        turn.items.map((item) => item.type),
        ["agent_message"],
      );
      assert.equal(turn.usage?.input_tokens, 120);
      assert.equal(turn.usage?.cached_input_tokens, 20);
      assert.equal(turn.usage?.output_tokens, 9);
      assert.equal(turn.usage?.reasoning_output_tokens, 2);
      assert.match(thread.id ?? "", /^[0-9a-f-]{36}$/);

      assert.equal(stub.requests.length, 1);
      const request = stub.requests[0];
      assert.ok(request);
      assert.equal(request.path, "/v1/responses");
      assert.equal(request.headers.authorization, `Bearer ${API_KEY}`);
      assert.equal(request.body.model, "gpt-5.5");
      assert.equal(request.body.stream, true);
      assert.equal(lastUserMessageText(request), "Say hello.");
      assert.deepEqual(stub.otherRequests, [], "codex made no request besides POST /v1/responses");
    },
  );

  it(
    "runs a command turn: the file is written, the output goes back, the key is not in the command's env",
    { timeout: TURN_TIMEOUT_MS },
    async () => {
      stub.script(
        {
          kind: "command",
          callId: "call_write",
          cmd: `printf 'written by codex' > out.txt && echo "keys=$(env | grep -c CODEX_API_KEY) marker=$(env | grep -c ALIVE_STUB_MARKER)"`,
        },
        { kind: "message", text: "Done." },
      );
      const thread = makeCodex(stub, sandbox).startThread(threadOptions(sandbox));
      const { events, error } = await collectTurn((await thread.runStreamed("Write the file.")).events);
      assert.equal(error, undefined);

      assert.equal(await readFile(join(sandbox.work, "out.txt"), "utf8"), "written by codex");

      const commands = events.flatMap((event) =>
        event.type === "item.completed" && event.item.type === "command_execution" ? [event.item] : [],
      );
      assert.equal(commands.length, 1);
      assert.equal(commands[0]?.exit_code, 0);
      // The marker proves the grep sees codex's env; the key alone is excluded.
      assert.match(commands[0]?.aggregated_output ?? "", /keys=0 marker=1/);
      assert.ok(events.some((event) => event.type === "item.started" && event.item.type === "command_execution"));
      assert.equal(events.at(-1)?.type, "turn.completed");

      assert.equal(stub.requests.length, 2);
      const second = stub.requests[1];
      assert.ok(second);
      const output = functionCallOutput(second, "call_write");
      assert.ok(output !== undefined, "the second request carries the function_call_output");
      assert.match(output, /Process exited with code 0/);
      assert.match(output, /keys=0 marker=1/);
      assert.equal(second.body.input.at(-1).type, "function_call_output", "the output is the last input item");
    },
  );

  it(
    "resumes a thread: the second turn's request carries the first turn's messages",
    { timeout: TURN_TIMEOUT_MS },
    async () => {
      stub.script({ kind: "message", text: "First answer." }, { kind: "message", text: "Second answer." });
      const first = makeCodex(stub, sandbox).startThread(threadOptions(sandbox));
      assert.equal((await first.run("First prompt.")).finalResponse, "First answer.");
      const threadId = first.id;
      assert.ok(threadId);

      const resumed = makeCodex(stub, sandbox).resumeThread(threadId, threadOptions(sandbox));
      const { events, error } = await collectTurn((await resumed.runStreamed("Second prompt.")).events);
      assert.equal(error, undefined);
      assert.deepEqual(events[0], { type: "thread.started", thread_id: threadId });
      assert.equal(resumed.id, threadId);

      const request = stub.requests[1];
      assert.ok(request);
      const conversation = inputMessages(request).filter((m) => m.role === "assistant" || m.text.endsWith("prompt."));
      assert.deepEqual(conversation, [
        { role: "user", text: "First prompt." },
        { role: "assistant", text: "First answer." },
        { role: "user", text: "Second prompt." },
      ]);
    },
  );

  it(
    "ends the turn with turn.failed on insufficient_quota, without retrying",
    { timeout: TURN_TIMEOUT_MS },
    async () => {
      stub.script({ kind: "fail", code: "insufficient_quota", message: "You exceeded your current quota." });
      const thread = makeCodex(stub, sandbox).startThread(threadOptions(sandbox));
      const { events, error } = await collectTurn((await thread.runStreamed("Anything.")).events);

      const failed = events.find((event) => event.type === "turn.failed");
      assert.ok(failed, `turn.failed expected, got ${events.map((e) => e.type).join(", ")}`);
      assert.match(failed.error.message, /quota/i);
      assert.ok(error instanceof Error, "the SDK stream ends with codex's non-zero exit");
      assert.equal(stub.requests.length, 1, "insufficient_quota is not retried");
    },
  );

  it("waits on a hung request until the turn's signal aborts it", { timeout: TURN_TIMEOUT_MS }, async () => {
    stub.script({ kind: "hang" });
    const thread = makeCodex(stub, sandbox).startThread(threadOptions(sandbox));
    const controller = new AbortController();
    const streamed = await thread.runStreamed("Wait for me.", { signal: controller.signal });
    const turn = collectTurn(streamed.events);

    const [request] = await stub.waitForRequests(1, 10_000);
    assert.equal(lastUserMessageText(request!), "Wait for me.");
    controller.abort();
    const { events, error } = await turn;
    assert.ok(error instanceof Error, "the aborted turn ends the stream with an error");
    assert.ok(
      !events.some((event) => event.type === "turn.completed" || event.type === "turn.failed"),
      "codex never finished the turn itself",
    );
    assert.equal(stub.requests.length, 1);
  });

  it("measures the host baseline of a one-message turn", { timeout: 90_000 }, async (t) => {
    const runs = 10;
    const codex = makeCodex(stub, sandbox);
    const samples: number[] = [];
    for (let i = -1; i < runs; i++) {
      stub.script({ kind: "message", text: `pong ${i}` });
      const start = performance.now();
      const turn = await codex.startThread(threadOptions(sandbox)).run(`ping ${i}`);
      const elapsed = performance.now() - start;
      assert.equal(turn.finalResponse, `pong ${i}`);
      if (i >= 0) samples.push(elapsed); // run -1 warms the page cache
    }
    const s = summarize(samples);
    t.diagnostic("host one-message turn (ms):");
    for (const line of formatTable([{ case: "host codex exec", ...s }]).split("\n")) t.diagnostic(line);
    assert.ok(s.p50 < 10_000, `a one-message turn should not take ${s.p50}ms`);
  });
});
