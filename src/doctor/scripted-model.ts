/**
 * The model doctor's turns talk to: a tiny Responses API on 127.0.0.1 that answers from a script
 * instead of a model, so a new install proves a whole turn with no key and no internet.
 *
 * Each `POST …/responses` is answered by `respond(request)` with the SSE events codex 0.163 reads
 * (`event: <type>\ndata: <json>\n\n`): `response.created`, one `response.output_item.done`,
 * `response.completed` with usage. Only the sidecar's model proxy reaches it (containers have no
 * network): loopback is enough. Codex's WebSocket attempt (`GET …/responses`) gets a quick 426.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** What the script answers with: a command for codex to run, or a message that ends the turn. */
export type ScriptedReply = { kind: "command"; cmd: string } | { kind: "message"; text: string };

/** What the script sees of a request: the prompt and the outputs of the commands run so far. */
export interface ScriptedRequest {
  prompt: string;
  commandOutputs: string[];
}

export interface ScriptedModel {
  /** `http://127.0.0.1:<port>/v1`: OPENAI_BASE_URL for doctor's sidecar. */
  baseUrl: string;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;

export async function startScriptedModel(respond: (request: ScriptedRequest) => ScriptedReply): Promise<ScriptedModel> {
  const sockets = new Set<Socket>();
  let sequence = 0;
  const server = createServer((req, res) => {
    if (req.method !== "POST" || !pathOf(req).endsWith("/responses")) {
      req.resume();
      res.writeHead(req.method === "GET" ? 426 : 404, { connection: "close" }).end();
      return;
    }
    readJson(req).then(
      (body) => {
        const reply = respond(describeRequest(body));
        streamReply(res, reply, ++sequence);
      },
      () => res.writeHead(400).end(),
    );
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

function streamReply(res: ServerResponse, reply: ScriptedReply, n: number): void {
  const id = `resp_doctor_${n}`;
  const item =
    reply.kind === "command"
      ? {
          type: "function_call",
          id: `fc_doctor_${n}`,
          call_id: `call_doctor_${n}`,
          name: "exec_command",
          arguments: JSON.stringify({ cmd: reply.cmd }),
        }
      : {
          type: "message",
          role: "assistant",
          id: `msg_doctor_${n}`,
          content: [{ type: "output_text", text: reply.text }],
        };
  const usage = {
    input_tokens: 1,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: 1,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: 2,
  };
  const events = [
    { type: "response.created", response: { id } },
    { type: "response.output_item.done", item },
    { type: "response.completed", response: { id, usage } },
  ];
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  for (const event of events) res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
  res.end();
}

interface InputItem {
  type?: string;
  role?: string;
  content?: unknown;
  output?: unknown;
}

function describeRequest(body: unknown): ScriptedRequest {
  const input = (body as { input?: unknown } | undefined)?.input;
  const items = Array.isArray(input) ? (input as InputItem[]) : [];
  const prompt =
    items
      .filter((item) => item.role === "user")
      .map((item) => textOf(item.content))
      .at(-1) ?? "";
  const commandOutputs = items
    .filter((item) => item.type === "function_call_output")
    .map((item) => textOf(item.output));
  return { prompt, commandOutputs };
}

function textOf(value: unknown): string {
  if (typeof value === "string") return value;
  if (!Array.isArray(value)) return "";
  return value
    .map((part: unknown) =>
      typeof (part as { text?: unknown })?.text === "string" ? (part as { text: string }).text : "",
    )
    .join("");
}

function pathOf(req: IncomingMessage): string {
  return (req.url ?? "/").split("?")[0] ?? "/";
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new Error("body too large");
    chunks.push(chunk as Buffer);
  }
  // The sidecar's model proxy may pass a compressed body on; codex 0.163 sends plain JSON to a custom provider.
  return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
}
