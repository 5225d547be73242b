/**
 * The proxy section's other process (bench/proxy.ts forks it): the upstreams (a ResponsesStub, the
 * long-stream server, a TCP echo server) and the timing client, as codex and the model API are
 * processes of their own in production. So the proxies under test, in the bench's process, do
 * not share an event loop with the traffic they carry. Driven over IPC; every timing is taken here.
 */
import http from "node:http";
import { ResponsesStub } from "../test/support/responses-stub.js";
import {
  buildLongStream,
  startEchoServer,
  startLongStreamServer,
  timedPost,
  timedTunnel,
  type RequestTarget,
} from "./proxy-fixtures.js";

/** What bench/proxy.ts asks; `arm` picks the keep-alive connection the request reuses. */
export type PeerRequest =
  | {
      id: number;
      op: "post";
      arm: string;
      target: { url: string } | { socketPath: string; path: string };
      apiKey: string;
      body: string;
    }
  | { id: number; op: "tunnel"; host: string; port: number; via?: string }
  | { id: number; op: "reset-stub" };

export type PeerReply =
  { id: number; ok: true; ms: number; bytes: number; tail: string } | { id: number; ok: false; error: string };

/** Sent once, when the upstreams listen. */
export interface PeerReady {
  ready: { stubUrl: string; longUrl: string; longBytes: number; echoPort: number };
}

async function main(): Promise<void> {
  const send = (message: PeerReply | PeerReady): void => {
    process.send?.(message);
  };
  const longStream = buildLongStream(Number(process.argv[2] ?? "1") * 1e6);
  const stub = await ResponsesStub.start({ host: "127.0.0.1" });
  const long = await startLongStreamServer(longStream);
  const echo = await startEchoServer();
  const agents = new Map<string, http.Agent>();
  const agentFor = (arm: string): http.Agent => {
    let agent = agents.get(arm);
    if (!agent) agents.set(arm, (agent = new http.Agent({ keepAlive: true, maxSockets: 1 })));
    return agent;
  };
  const handle = async (request: PeerRequest): Promise<PeerReply> => {
    switch (request.op) {
      case "post": {
        const target: RequestTarget = "url" in request.target ? { url: new URL(request.target.url) } : request.target;
        return {
          id: request.id,
          ok: true,
          ...(await timedPost(target, agentFor(request.arm), request.apiKey, request.body)),
        };
      }
      case "tunnel":
        return {
          id: request.id,
          ok: true,
          ms: await timedTunnel(request.host, request.port, request.via),
          bytes: 0,
          tail: "",
        };
      case "reset-stub":
        stub.reset();
        return { id: request.id, ok: true, ms: 0, bytes: 0, tail: "" };
    }
  };
  process.on("message", (request: PeerRequest) => {
    handle(request).then(send, (error: unknown) =>
      send({ id: request.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
    );
  });
  process.once("disconnect", () => {
    for (const agent of agents.values()) agent.destroy();
    void Promise.all([stub.close(), long.close(), echo.close()]).finally(() => process.exit(0));
  });
  send({ ready: { stubUrl: stub.baseUrl, longUrl: long.baseUrl, longBytes: longStream.length, echoPort: echo.port } });
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
