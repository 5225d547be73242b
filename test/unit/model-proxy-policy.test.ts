/**
 * The model proxy's body policy, through the proxy, in front of the scripted Responses stub on
 * loopback: what makes the model API fetch or connect for the tenant is refused under egress
 * "model" and an allow-list and never reaches the upstream; under "public" it passes.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import http from "node:http";
import type { IncomingMessage } from "node:http";
import os from "node:os";
import path from "node:path";
import type { EgressPolicy } from "../../src/policy/egress-policy.js";
import { checkRequestBody, codexWebSearchMode } from "../../src/model-proxy/body-policy.js";
import { createModelProxy, type ModelProxyOptions } from "../../src/model-proxy/server.js";
import { ResponsesStub } from "../support/responses-stub.js";

const TOKEN = "alive-turn-policy-test";
const REF = { workspaceId: "w1", turnId: "t1" };
type Ref = typeof REF;

let dir: string;
let stub: ResponsesStub;
let proxies = 0;

async function startProxy(
  egress: EgressPolicy,
  extra: Partial<ModelProxyOptions<Ref>> = {},
): Promise<{ socketPath: string; refusals: string[]; close(): Promise<void> }> {
  const refusals: string[] = [];
  const server = createModelProxy<Ref>({
    upstreamBaseUrl: stub.baseUrl,
    apiKey: "sk-real",
    authorize: (token) => (token === TOKEN ? REF : null),
    egress: () => egress,
    onRefusal: (_ref, reason) => refusals.push(reason),
    ...extra,
  });
  const socketPath = path.join(dir, `policy-${++proxies}.sock`);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    refusals,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      return closed;
    },
  };
}

interface Reply {
  status: number;
  refused: string | undefined;
  error: { code: string; message: string } | undefined;
}

function post(socketPath: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      socketPath,
      path: "/v1/responses",
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
      agent: false,
    });
    req.on("error", reject);
    req.on("response", async (res: IncomingMessage) => {
      let text = "";
      for await (const chunk of res) text += String(chunk);
      const refused = res.headers["x-alive-model-refused"];
      resolve({
        status: res.statusCode ?? 0,
        refused: typeof refused === "string" ? refused : undefined,
        error: refused ? (JSON.parse(text) as { error: Reply["error"] }).error : undefined,
      });
    });
    req.end(body);
  });
}

const request = (extra: Record<string, unknown>): string =>
  JSON.stringify({
    model: "gpt-5.5",
    stream: true,
    input: [{ type: "message", role: "user", content: [{ type: "input_text", text: "hi" }] }],
    ...extra,
  });
const userContent = (...content: unknown[]): string => request({ input: [{ type: "message", role: "user", content }] });

/** Each body, and the reason it is refused for under "model". */
const REFUSED: Array<[string, string, string]> = [
  [
    "an input_image URL",
    userContent({ type: "input_image", image_url: "https://attacker.example/x.png?data=secret" }),
    "remote_input",
  ],
  [
    "an input_image http URL",
    userContent({ type: "input_image", image_url: "http://attacker.example/x.png" }),
    "remote_input",
  ],
  [
    "an input_file URL",
    userContent({ type: "input_file", file_url: "https://attacker.example/doc.pdf" }),
    "remote_input",
  ],
  [
    "an input_image inside a function_call_output",
    request({
      input: [
        {
          type: "function_call_output",
          call_id: "c1",
          output: [{ type: "input_image", image_url: "https://attacker.example/y.png" }],
        },
      ],
    }),
    "remote_input",
  ],
  [
    "an input_image in a prompt variable",
    request({
      prompt: { id: "pmpt_1", variables: { v: { type: "input_image", image_url: "https://attacker.example/z.png" } } },
    }),
    "remote_input",
  ],
  ["a web_search tool", request({ tools: [{ type: "web_search" }] }), "web_search"],
  [
    "a web_search tool with cached access",
    request({ tools: [{ type: "web_search", external_web_access: false }] }),
    "web_search",
  ],
  ["a web_search_preview tool", request({ tools: [{ type: "web_search_preview" }] }), "web_search"],
  [
    "a web_search tool spelt with a \\u escape",
    '{"model":"gpt-5.5","input":"hi","tools":[{"type":"web\\u005fsearch"}]}',
    "web_search",
  ],
  [
    "a web_search tool hidden behind a duplicate key",
    '{"model":"gpt-5.5","input":"hi","tools":[{"type":"web_search","type":"function","name":"f"}]}',
    "ok-canonical",
  ],
  [
    "a remote mcp tool",
    request({ tools: [{ type: "mcp", server_label: "x", server_url: "https://attacker.example/mcp" }] }),
    "remote_mcp",
  ],
  [
    "a connector mcp tool",
    request({ tools: [{ type: "mcp", server_label: "x", connector_id: "connector_gmail" }] }),
    "remote_mcp",
  ],
  [
    "a web_search tool in a namespace",
    request({ tools: [{ type: "namespace", name: "n", tools: [{ type: "web_search" }] }] }),
    "web_search",
  ],
  ["code_interpreter", request({ tools: [{ type: "code_interpreter", container: { type: "auto" } }] }), "hosted_tool"],
  ["file_search", request({ tools: [{ type: "file_search", vector_store_ids: ["vs_1"] }] }), "hosted_tool"],
  ["background", request({ background: true }), "background"],
];

describe("model proxy body policy", () => {
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "model-proxy-policy-"));
    stub = await ResponsesStub.start();
  });
  after(async () => {
    await stub.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => stub.reset());

  test('under egress "model" each way of making the model API fetch or connect is 403 with its reason, and never reaches the upstream', async () => {
    const proxy = await startProxy("model");
    try {
      for (const [name, body, reason] of REFUSED) {
        const reply = await post(proxy.socketPath, body);
        if (reason === "ok-canonical") {
          // JSON.parse keeps the last key: the upstream gets exactly that, serialised again.
          assert.equal(reply.status, 200, name);
          assert.deepEqual(stub.requests.at(-1)?.body.tools, [{ type: "function", name: "f" }], name);
          continue;
        }
        assert.equal(reply.status, 403, name);
        assert.equal(reply.refused, reason, name);
        assert.equal(reply.error?.code, reason, name);
        assert.match(reply.error?.message ?? "", /not allowed/, name);
      }
      assert.equal(stub.requests.length, 1, "only the duplicate-key body was forwarded");
      assert.equal(proxy.refusals.length, REFUSED.length - 1);
    } finally {
      await proxy.close();
    }
  });

  test('what honest codex sends passes under "model": function, custom and tool_search tools, inline data: images', async () => {
    const proxy = await startProxy("model");
    try {
      const body = request({
        tools: [
          { type: "function", name: "exec_command", parameters: { type: "object" } },
          { type: "custom", name: "apply_patch" },
          { type: "tool_search" },
        ],
        input: [
          {
            type: "message",
            role: "user",
            content: [
              { type: "input_text", text: "look at https://example.com, mention web_search and input_image" },
              { type: "input_image", image_url: "data:image/png;base64,iVBORw0KGgo=" },
            ],
          },
          { type: "function_call_output", call_id: "c1", output: "curl https://example.com \u001b[0m" },
        ],
      });
      const reply = await post(proxy.socketPath, body);
      assert.equal(reply.status, 200);
      assert.equal(stub.requests.length, 1);
      assert.deepEqual(proxy.refusals, []);
    } finally {
      await proxy.close();
    }
  });

  test('under "public" hosted tools and URLs pass; background never does', async () => {
    const proxy = await startProxy("public");
    try {
      for (const [name, body, reason] of REFUSED) {
        const reply = await post(proxy.socketPath, body);
        assert.equal(reply.status, reason === "background" ? 403 : 200, name);
      }
      assert.equal(stub.requests.length, REFUSED.length - 1);
    } finally {
      await proxy.close();
    }
  });

  test("under an allow-list a URL on an allowed host passes, any other is refused", async () => {
    const proxy = await startProxy({ allow: ["*.example.org", "cdn.example.com"], deny: ["bad.example.org"] });
    try {
      const image = (url: string): string => userContent({ type: "input_image", image_url: url });
      assert.equal((await post(proxy.socketPath, image("https://img.example.org/a.png"))).status, 200);
      assert.equal((await post(proxy.socketPath, image("https://cdn.example.com/a.png"))).status, 200);
      assert.equal((await post(proxy.socketPath, image("https://bad.example.org/a.png"))).refused, "remote_input");
      assert.equal((await post(proxy.socketPath, image("https://attacker.example/a.png"))).refused, "remote_input");
      assert.equal((await post(proxy.socketPath, image("https://93.184.216.34/a.png"))).refused, "remote_input");
      assert.equal((await post(proxy.socketPath, request({ tools: [{ type: "web_search" }] }))).refused, "web_search");
      assert.equal(stub.requests.length, 2);
    } finally {
      await proxy.close();
    }
  });

  test("the operator can allow hosted tools under a restricted egress; remote mcp and URLs stay refused", async () => {
    const proxy = await startProxy("model", { hostedTools: ["web_search", "code_interpreter", "file_search"] });
    try {
      for (const tool of [
        { type: "web_search" },
        { type: "code_interpreter", container: { type: "auto" } },
        { type: "file_search", vector_store_ids: ["vs_1"] },
      ]) {
        assert.equal((await post(proxy.socketPath, request({ tools: [tool] }))).status, 200, tool.type);
      }
      assert.equal(
        (
          await post(
            proxy.socketPath,
            request({ tools: [{ type: "mcp", server_label: "x", server_url: "https://a.example/mcp" }] }),
          )
        ).refused,
        "remote_mcp",
      );
      assert.equal(
        (await post(proxy.socketPath, userContent({ type: "input_image", image_url: "https://a.example/x.png" })))
          .refused,
        "remote_input",
      );
    } finally {
      await proxy.close();
    }
  });

  test("a body over the limit is 413, a compressed one 415, one that is not JSON 400: none reaches the upstream", async () => {
    const proxy = await startProxy("model", { maxBodyBytes: 1024 });
    try {
      const big = request({ input: "x".repeat(2048) });
      const tooLarge = await post(proxy.socketPath, big);
      assert.equal(tooLarge.status, 413);
      assert.equal(tooLarge.refused, "body_too_large");
      assert.match(tooLarge.error?.message ?? "", /larger than the model proxy's limit of 1024 bytes/);
      // Without a content-length (chunked), the limit holds as it is read.
      const chunked = await new Promise<number>((resolve, reject) => {
        const req = http.request({
          socketPath: proxy.socketPath,
          path: "/v1/responses",
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}`, "transfer-encoding": "chunked" },
          agent: false,
        });
        req.on("error", reject);
        req.on("response", (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.write(big.slice(0, 900));
        req.end(big.slice(900));
      });
      assert.equal(chunked, 413);
      const gzipped = await post(proxy.socketPath, request({}), { "content-encoding": "gzip" });
      assert.equal(gzipped.status, 415);
      assert.equal(gzipped.refused, "content_encoding");
      const broken = await post(proxy.socketPath, '{"tools":[{"type":"web_search"');
      assert.equal(broken.status, 400);
      assert.equal(broken.refused, "invalid_body");
      assert.equal(stub.requests.length + stub.otherRequests.length, 0);
    } finally {
      await proxy.close();
    }
  });
});

describe("checkRequestBody", () => {
  test("a body with none of the words that matter is passed as is, unparsed", () => {
    const body = Buffer.from('{"model":"m","input":"not json at all');
    const verdict = checkRequestBody(body, { egress: "model", hostedTools: new Set() });
    assert.ok(verdict.ok && verdict.body === body);
  });
});

describe("codexWebSearchMode", () => {
  test('codex is told "disabled" wherever the proxy would refuse its web_search tool', () => {
    const none = new Set<string>();
    assert.equal(codexWebSearchMode("model", undefined, none), "disabled");
    assert.equal(codexWebSearchMode("model", "live", none), "disabled");
    assert.equal(codexWebSearchMode({ allow: ["example.com"], deny: [] }, "cached", none), "disabled");
    assert.equal(codexWebSearchMode("public", undefined, none), undefined);
    assert.equal(codexWebSearchMode("public", "live", none), "live");
    assert.equal(codexWebSearchMode("model", "cached", new Set(["web_search"])), "cached");
  });
});
