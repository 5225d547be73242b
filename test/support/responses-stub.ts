/**
 * A scripted stand-in for the OpenAI Responses API, for driving the real codex binary in tests.
 *
 * Every `POST …/responses` consumes one scripted step and is answered with the SSE events codex
 * 0.163 expects (see the team notes, codex-cli.md); every such request is recorded.
 * `GET …/responses` (codex's WebSocket attempt) gets a quick 426, anything else a 404.
 */
import { createServer } from "node:http";
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { performance } from "node:perf_hooks";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";

/** Token counts a scripted turn reports in `response.completed`; `total_tokens` is derived. */
export interface StubUsage {
  input_tokens: number;
  cached_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
}

export const DEFAULT_STUB_USAGE: Readonly<StubUsage> = {
  input_tokens: 10,
  cached_tokens: 0,
  output_tokens: 5,
  reasoning_tokens: 0,
};

/** Options every streamed step accepts. */
interface StepTiming {
  /**
   * "Slow model": headers and `response.created` go out at once, the rest after this many ms.
   * Codex's `stream_idle_timeout_ms` applies to this gap.
   */
  delayMs?: number;
}

export type ScriptStep =
  /** An assistant message that ends the turn. */
  | ({ kind: "message"; text: string; usage?: Partial<StubUsage> } & StepTiming)
  /** An `exec_command` call; codex runs `cmd` and posts its output in the next request. */
  | ({
      kind: "command";
      cmd: string;
      callId?: string;
      workdir?: string;
      usage?: Partial<StubUsage>;
      yieldTimeMs?: number;
      maxOutputTokens?: number;
    } & StepTiming)
  /** An MCP tool call: `namespace` is `mcp__<server>`, `name` the tool. */
  | ({
      kind: "tool";
      namespace: string;
      name: string;
      arguments: Record<string, unknown>;
      callId?: string;
      usage?: Partial<StubUsage>;
    } & StepTiming)
  /** `response.failed`: `server_error` is retried by codex, `insufficient_quota` etc. fail the turn. */
  | ({ kind: "fail"; code: string; message: string } & StepTiming)
  /** A plain HTTP error instead of a stream (codex fails at once on 400, retries 401/5xx). */
  | { kind: "http"; status: number; body?: unknown }
  /** Read the request, then never answer: codex waits forever. `close()` destroys the socket. */
  | { kind: "hang" }
  /** Raw events, sent as given (each needs a `type`); nothing is added. */
  | ({ kind: "events"; events: StubEvent[] } & StepTiming);

export interface StubEvent {
  type: string;
  [key: string]: unknown;
}

export interface RecordedRequest {
  /** Request path without the query string, e.g. `/v1/responses`. */
  path: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON body (undefined if it was not JSON). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  /** `performance.now()` when the body had been read. */
  receivedAt: number;
  /** The step this request was answered with. */
  step: ScriptStep;
}

/** Requests other than `POST …/responses`, kept for diagnosis. */
export interface OtherRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

/** Picks a step for a request when the queue is empty; return undefined for the default. */
export type StubResponder = (request: Omit<RecordedRequest, "step">) => ScriptStep | undefined;

export interface ResponsesStubOptions {
  /** Address to listen on; integration tests pass the Docker bridge gateway. Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** Answer when the queue is empty and no responder chose a step. Default: message "ok". */
  defaultStep?: ScriptStep;
}

interface Waiter {
  count: number;
  resolve: (requests: RecordedRequest[]) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

const MAX_BODY_BYTES = 64 * 1024 * 1024;

export class ResponsesStub {
  readonly requests: RecordedRequest[] = [];
  readonly otherRequests: OtherRequest[] = [];

  readonly #server: Server;
  readonly #host: string;
  readonly #port: number;
  readonly #queue: ScriptStep[] = [];
  readonly #sockets = new Set<Socket | Duplex>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #waiters = new Set<Waiter>();
  readonly #defaultStep: ScriptStep;
  #responder: StubResponder | undefined;
  #sequence = 0;
  #closed = false;

  private constructor(server: Server, host: string, port: number, defaultStep: ScriptStep) {
    this.#server = server;
    this.#host = host;
    this.#port = port;
    this.#defaultStep = defaultStep;
    server.on("connection", (socket) => this.#track(socket));
    server.on("request", (req, res) => this.#onRequest(req, res));
    server.on("upgrade", (req, socket) => this.#onUpgrade(req, socket));
  }

  static async start(options: ResponsesStubOptions = {}): Promise<ResponsesStub> {
    const host = options.host ?? "127.0.0.1";
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    return new ResponsesStub(server, host, port, options.defaultStep ?? { kind: "message", text: "ok" });
  }

  get host(): string {
    return this.#host;
  }

  get port(): number {
    return this.#port;
  }

  /** `http://host:port/v1`, what a provider's `base_url` should be. */
  get baseUrl(): string {
    const host = this.#host.includes(":") ? `[${this.#host}]` : this.#host;
    return `http://${host}:${this.#port}/v1`;
  }

  /** Queues steps; each `POST …/responses` consumes the first one. */
  script(...steps: ScriptStep[]): void {
    this.#queue.push(...steps);
  }

  /** Forgets queued steps, recorded requests and the responder (between tests sharing a stub). */
  reset(): void {
    this.#queue.length = 0;
    this.requests.length = 0;
    this.otherRequests.length = 0;
    this.#responder = undefined;
  }

  /** Steps queued and not yet consumed. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Chooses steps for requests arriving when the queue is empty (e.g. by prompt, for concurrent turns). */
  respondWith(responder: StubResponder | undefined): void {
    this.#responder = responder;
  }

  /** Resolves with the recorded requests once at least `count` have arrived. */
  waitForRequests(count: number, timeoutMs = 10_000): Promise<RecordedRequest[]> {
    if (this.requests.length >= count) return Promise.resolve([...this.requests]);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        count,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(
            new Error(
              `timed out after ${timeoutMs}ms waiting for ${count} request(s) to the responses stub (got ${this.requests.length})`,
            ),
          );
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Stops listening, destroys every open connection (hung ones included) and fails pending waits. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error("responses stub closed"));
    }
    this.#waiters.clear();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    await closed;
  }

  #track(socket: Socket | Duplex): void {
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex): void {
    this.#track(socket);
    this.otherRequests.push({ method: req.method ?? "", path: pathOf(req), headers: req.headers });
    socket.end("HTTP/1.1 426 Upgrade Required\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const path = pathOf(req);
    const isResponses = path.endsWith("/responses");
    if (req.method !== "POST" || !isResponses) {
      this.otherRequests.push({ method: req.method ?? "", path, headers: req.headers });
      req.resume();
      const status = isResponses && req.method === "GET" ? 426 : 404;
      res.writeHead(status, { "content-type": "application/json", connection: "close" });
      res.end(JSON.stringify({ error: { message: `${req.method} ${path} not served by the stub` } }));
      return;
    }
    readBody(req).then(
      (body) => this.#answer(req, res, path, body),
      (error: unknown) => {
        if (res.headersSent || res.destroyed) return;
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `unreadable body: ${String(error)}` } }));
      },
    );
  }

  #answer(req: IncomingMessage, res: ServerResponse, path: string, body: unknown): void {
    const partial = { path, headers: req.headers, body, receivedAt: performance.now() };
    const step = this.#queue.shift() ?? this.#responder?.(partial) ?? this.#defaultStep;
    this.requests.push({ ...partial, step });
    this.#notify();

    const n = ++this.#sequence;
    switch (step.kind) {
      case "hang":
        return;
      case "http":
        res.writeHead(step.status, { "content-type": "application/json" });
        res.end(
          JSON.stringify(step.body ?? { error: { message: `scripted HTTP ${step.status}`, type: "stub_error" } }),
        );
        return;
      default:
        this.#stream(res, eventsFor(step, n), step.delayMs ?? 0);
    }
  }

  #stream(res: ServerResponse, events: StubEvent[], delayMs: number): void {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const send = (batch: StubEvent[]): void => {
      for (const event of batch) res.write(formatSseEvent(event));
    };
    if (delayMs <= 0) {
      send(events);
      res.end();
      return;
    }
    const [first, ...rest] = events;
    if (first) send([first]);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (res.destroyed) return;
      send(rest);
      res.end();
    }, delayMs);
    this.#timers.add(timer);
  }

  #notify(): void {
    for (const waiter of this.#waiters) {
      if (this.requests.length < waiter.count) continue;
      clearTimeout(waiter.timer);
      this.#waiters.delete(waiter);
      waiter.resolve([...this.requests]);
    }
  }
}

/** One SSE frame: `event: <type>\ndata: <json>\n\n`. */
export function formatSseEvent(event: StubEvent): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** The full event sequence for a streamed step; `n` makes ids unique within a stub. */
export function eventsFor(step: Exclude<ScriptStep, { kind: "hang" } | { kind: "http" }>, n: number): StubEvent[] {
  const responseId = `resp_stub_${n}`;
  const created: StubEvent = { type: "response.created", response: { id: responseId } };
  switch (step.kind) {
    case "events":
      return step.events;
    case "fail":
      return [
        created,
        { type: "response.failed", response: { id: responseId, error: { code: step.code, message: step.message } } },
      ];
    case "message":
      return [
        created,
        {
          type: "response.output_item.done",
          item: {
            type: "message",
            role: "assistant",
            id: `msg_stub_${n}`,
            content: [{ type: "output_text", text: step.text }],
          },
        },
        completed(responseId, step.usage),
      ];
    case "command": {
      const args: Record<string, unknown> = { cmd: step.cmd };
      if (step.workdir !== undefined) args.workdir = step.workdir;
      if (step.yieldTimeMs !== undefined) args.yield_time_ms = step.yieldTimeMs;
      if (step.maxOutputTokens !== undefined) args.max_output_tokens = step.maxOutputTokens;
      return [
        created,
        {
          type: "response.output_item.done",
          item: {
            type: "function_call",
            id: `fc_stub_${n}`,
            call_id: step.callId ?? `call_stub_${n}`,
            name: "exec_command",
            arguments: JSON.stringify(args),
          },
        },
        completed(responseId, step.usage),
      ];
    }
    case "tool":
      return [
        created,
        {
          type: "response.output_item.done",
          item: {
            type: "function_call",
            id: `fc_stub_${n}`,
            call_id: step.callId ?? `call_stub_${n}`,
            namespace: step.namespace,
            name: step.name,
            arguments: JSON.stringify(step.arguments),
          },
        },
        completed(responseId, step.usage),
      ];
  }
}

function completed(responseId: string, usage: Partial<StubUsage> | undefined): StubEvent {
  const u = { ...DEFAULT_STUB_USAGE, ...usage };
  return {
    type: "response.completed",
    response: {
      id: responseId,
      usage: {
        input_tokens: u.input_tokens,
        input_tokens_details: { cached_tokens: u.cached_tokens },
        output_tokens: u.output_tokens,
        output_tokens_details: { reasoning_tokens: u.reasoning_tokens },
        total_tokens: u.input_tokens + u.output_tokens,
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Reading recorded requests

interface InputItem {
  type?: string;
  role?: string;
  call_id?: string;
  output?: unknown;
  content?: unknown;
}

/** The `input` array of a recorded request (empty if absent). */
export function inputItems(request: RecordedRequest): InputItem[] {
  const input: unknown = request.body?.input;
  return Array.isArray(input) ? (input as InputItem[]) : [];
}

/**
 * Text of a `function_call_output` in the request's input: the one for `callId`, else the last.
 * Returns undefined if there is none. Array outputs (content parts) are joined.
 */
export function functionCallOutput(request: RecordedRequest, callId?: string): string | undefined {
  const outputs = inputItems(request).filter(
    (item) => item.type === "function_call_output" && (callId === undefined || item.call_id === callId),
  );
  const last = outputs.at(-1);
  return last === undefined ? undefined : textOf(last.output);
}

/** Role and text of every message in the request's input, in order. */
export function inputMessages(request: RecordedRequest): Array<{ role: string; text: string }> {
  return inputItems(request)
    .filter((item) => item.type === "message" || (item.type === undefined && typeof item.role === "string"))
    .map((item) => ({ role: item.role ?? "", text: textOf(item.content) }));
}

/** Text of the last user message in the request's input (the prompt of the turn), or undefined. */
export function lastUserMessageText(request: RecordedRequest): string | undefined {
  return inputMessages(request)
    .filter((message) => message.role === "user")
    .at(-1)?.text;
}

function textOf(value: unknown): string {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    return value
      .map((part: unknown) =>
        typeof part === "string"
          ? part
          : typeof (part as { text?: unknown })?.text === "string"
            ? (part as { text: string }).text
            : "",
      )
      .join("");
  }
  return "";
}

// ---------------------------------------------------------------------------------------------

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const encoding = (req.headers["content-encoding"] ?? "identity").toLowerCase();
  let stream: NodeJS.ReadableStream = req;
  if (encoding === "gzip") stream = req.pipe(createGunzip());
  else if (encoding === "deflate") stream = req.pipe(createInflate());
  else if (encoding === "br") stream = req.pipe(createBrotliDecompress());
  else if (encoding !== "identity") throw new Error(`unsupported content-encoding ${encoding}`);

  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) throw new Error(`body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
