/**
 * One workspace flooding the sidecar with names that never resolve does not starve another
 * workspace's turns (real engine, real codex turns). The sidecar's DNS server is a UDP port on
 * loopback that never answers (ALIVE_CODEX_DNS_SERVERS), and the model API is reached by name, a
 * name only the sidecar's hosts file knows (ALIVE_CODEX_HOSTS_FILE): as api.openai.com would be,
 * but nothing leaves the machine. Workspace A keeps 16 CONNECTs to never-resolving names in flight
 * on its proxy socket (straight to the Unix socket, as a process inside could through its
 * forwarder); workspace B's turns must finish in at most 2× their time alone + 1 s.
 *
 * The descriptor half of the same "Done when" (2,000 tunnels held) belongs with the connection
 * bounds and is not here.
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { workspacePaths } from "../../src/workspace/paths.js";
import { startDnsResponder, type DnsResponder } from "../support/dns-responder.js";
import { ResponsesStub } from "../support/responses-stub.js";
import { startTestSidecar, uniqueId, type TestSidecar } from "../support/sidecar.js";
import { waitFor, withTimeout } from "../support/wait.js";

const TURN_TIMEOUT_MS = 120_000;
const FLOOD = 16;

let silentDns: DnsResponder;
let stub: ResponsesStub;
let t: TestSidecar;
let hostsDir: string;

before(async () => {
  // Every query is dropped: a resolver that never answers.
  silentDns = await startDnsResponder({ silent: () => true });
  stub = await ResponsesStub.start({ host: "127.0.0.1", defaultStep: { kind: "message", text: "ok" } });
  hostsDir = await fs.mkdtemp(path.join(os.tmpdir(), "hostile-dns-"));
  const hostsFile = path.join(hostsDir, "hosts");
  await fs.writeFile(hostsFile, "127.0.0.1 localhost\n127.0.0.1 model-api.test\n");
  t = await startTestSidecar({
    flags: {
      "--openai-base-url": `http://model-api.test:${stub.port}/v1`,
      "--dns-servers": silentDns.server,
      "--hosts-file": hostsFile,
      "--dns-timeout": "30s",
    },
  });
});

after(async () => {
  await t?.cleanup();
  await stub?.close();
  await silentDns?.close();
  if (hostsDir) await fs.rm(hostsDir, { recursive: true, force: true });
});

async function timedTurn(workspaceId: string): Promise<number> {
  const started = Date.now();
  const result = await withTimeout(t.sidecar.service.runTurn({ workspaceId, input: "say ok", options: { timeoutMs: TURN_TIMEOUT_MS } }, { onEvent: () => undefined }), TURN_TIMEOUT_MS, "B's turn");
  assert.equal(result.status, "completed", JSON.stringify(result.error));
  return Date.now() - started;
}

/** Opens a CONNECT on the workspace's proxy socket and leaves it waiting for its lookup. */
function hangingConnect(socketPath: string, host: string): net.Socket {
  const socket = net.connect(socketPath);
  socket.on("error", () => {});
  socket.write(`CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n\r\n`);
  return socket;
}

describe("hostile DNS: one workspace's never-resolving names", () => {
  test("do not slow another workspace's turns", async () => {
    const a = await t.workspace(uniqueId("dns-a"));
    const b = await t.workspace(uniqueId("dns-b"));
    await t.sidecar.service.ensureWorkspace(a);
    await t.sidecar.service.ensureWorkspace(b);
    // B alone, twice (the first warms codex and the proxies).
    await timedTurn(b.workspaceId);
    const alone = await timedTurn(b.workspaceId);

    const proxySocket = path.join(workspacePaths(t.stateDir, a.workspaceId).net, "proxy.sock");
    const flood = Array.from({ length: FLOOD }, (_, i) => hangingConnect(proxySocket, `never-${i}.flood.test`));
    try {
      // The flood is in place when the silent server has seen A's queries (4 in flight; the rest wait their turn).
      await waitFor(() => silentDns.queries.some((q) => q.name.startsWith("never-")), { what: "A's lookups to reach the silent server" });
      const during = [await timedTurn(b.workspaceId), await timedTurn(b.workspaceId)];
      for (const ms of during) assert.ok(ms <= 2 * alone + 1_000, `B's turn took ${ms} ms during the flood, ${alone} ms alone`);
      process.stdout.write(`# B alone ${alone} ms; during A's flood ${during.join(", ")} ms\n`);
      // A's flood is answered by the sidecar itself, not by a hung request: its lookups are still waiting.
      assert.ok(flood.every((socket) => !socket.destroyed), "A's CONNECTs are still waiting for their lookups");
    } finally {
      for (const socket of flood) socket.destroy();
    }
  });

  test("a workspace past its lookups in flight and waiting is answered 429 dns_busy at once", async () => {
    const a = await t.workspace(uniqueId("dns-busy"));
    await t.sidecar.service.ensureWorkspace(a);
    const proxySocket = path.join(workspacePaths(t.stateDir, a.workspaceId).net, "proxy.sock");
    // The defaults: 4 in flight and 16 waiting; the 21st is refused.
    const held = Array.from({ length: 20 }, (_, i) => hangingConnect(proxySocket, `held-${i}.flood.test`));
    try {
      await waitFor(() => silentDns.queries.filter((q) => q.name.startsWith("held-")).length >= 4, { what: "A's first lookups to start" });
      const refused = hangingConnect(proxySocket, "one-more.flood.test");
      let answer = "";
      refused.on("data", (chunk: Buffer) => (answer += chunk.toString()));
      await waitFor(() => answer.includes("\r\n\r\n"), { what: "the 21st CONNECT's answer", timeoutMs: 5_000 });
      assert.match(answer, /^HTTP\/1\.1 429 /);
      assert.match(answer, /x-alive-egress-error: dns_busy/);
      assert.match(answer, /too many lookups in flight/);
      refused.destroy();
    } finally {
      for (const socket of held) socket.destroy();
    }
  });
});
