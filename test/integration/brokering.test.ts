/**
 * Credentials that never enter the workspace (docs/security.md, "Brokered credentials"), through
 * real codex turns on the real engine: a private git repository served over HTTPS on loopback
 * (git http-backend behind a Node HTTPS server whose certificate comes from a CA of the test's,
 * given to the sidecar as ALIVE_CODEX_UPSTREAM_CA; an internal destination) is cloned and pushed to
 * from inside a workspace by plain `git clone https://…`. The server wants a bearer token the
 * container never holds: the egress proxy terminates TLS for that host and adds it. Nothing leaves
 * the machine.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { promises as fs } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { BrokerCa } from "../../src/egress/broker/broker-ca.js";
import { SidecarError } from "../../src/errors.js";
import type { RunTurnParams, TurnResult, WorkspaceParams } from "../../src/service.js";
import { ResponsesStub, eventsFor, type ScriptStep } from "../support/responses-stub.js";
import { startTestSidecar, uniqueId, type TestSidecar } from "../support/sidecar.js";
import { withTimeout } from "../support/wait.js";

const TOKEN = "brokered-token-8f1c2e9a77d04b5b";
/**
 * The upstream's name: inside, loopback names bypass the proxy (NO_PROXY), so the host is named,
 * and the sidecar's hosts file (ALIVE_CODEX_HOSTS_FILE) maps it to the loopback the server is on.
 */
const GIT_HOST = "git.internal.test";
const API_TOKEN = "alive-api-token-3c5e7a9b1d2f4a6c";
const TURN_TIMEOUT_MS = 120_000;

let calls = 0;
function commandStep(cmd: string): ScriptStep {
  const events = eventsFor({ kind: "command", cmd }, 5000 + ++calls).map((event) => {
    const item = event.item as { type?: string } | undefined;
    if (item?.type !== "function_call") return event;
    return { ...event, item: { ...item, arguments: JSON.stringify({ cmd, yield_time_ms: 90_000 }) } };
  });
  return { kind: "events", events };
}

/** A certificate's subject as `openssl s_client` prints an issuer: "CN = …", RDNs joined by ", ". */
const opensslName = (pem: string): string =>
  new X509Certificate(pem).subject
    .split("\n")
    .map((rdn) => rdn.replace("=", " = "))
    .join(", ");

const output = (result: TurnResult): string =>
  result.items.map((item) => (item.type === "command_execution" ? item.aggregated_output : "")).join("\n");

/** A bare repository served by git http-backend over HTTPS; every request must carry the bearer token. */
async function startGitServer(root: string, cert: { keyPem: string; certPem: string }) {
  const repos = path.join(root, "repos");
  await fs.mkdir(repos, { recursive: true });
  await execa("git", ["init", "--bare", "-q", "-b", "main", path.join(repos, "private.git")]);
  await execa("git", ["-C", path.join(repos, "private.git"), "config", "http.receivepack", "true"]);
  const seed = path.join(root, "seed");
  await execa("git", ["init", "-q", "-b", "main", seed]);
  await fs.writeFile(path.join(seed, "README"), "private\n");
  await execa("git", ["-C", seed, "add", "README"]);
  await execa("git", ["-C", seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "seed"]);
  await execa("git", ["-C", seed, "push", "-q", path.join(repos, "private.git"), "main"]);
  const seen: Array<{ authorization: string | undefined }> = [];
  const server = https.createServer({ key: cert.keyPem, cert: cert.certPem }, (req, res) => {
    seen.push({ authorization: req.headers.authorization });
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { "www-authenticate": 'Bearer realm="test"', "content-type": "text/plain" });
      res.end("no token\n");
      req.resume();
      return;
    }
    const url = new URL(req.url ?? "/", "https://localhost");
    const cgi = spawn("/usr/lib/git-core/git-http-backend", [], {
      env: {
        GIT_PROJECT_ROOT: repos,
        GIT_HTTP_EXPORT_ALL: "1",
        REQUEST_METHOD: req.method ?? "GET",
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        REMOTE_USER: "tester",
        REMOTE_ADDR: "127.0.0.1",
        ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] } : {}),
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headDone = false;
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (headDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      headDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
        const colon = line.indexOf(":");
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === "status") status = Number(value.split(" ")[0]);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    cgi.stdout.on("end", () => res.end());
    cgi.on("error", () => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    seen,
    repos,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe("credentials brokered by the egress proxy", () => {
  let root: string;
  let stub: ResponsesStub;
  let t: TestSidecar;
  let git: Awaited<ReturnType<typeof startGitServer>>;
  let api: http.Server;
  let apiSeen: Array<string | undefined>;
  let host: string;
  /** The subjects of the test's upstream CA and of the sidecar's broker CA, as openssl prints an issuer. */
  let upstreamCaName: string;
  let sidecarCaName: string;

  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-brokering-"));
    const upstreamCa = await BrokerCa.open(path.join(root, "upstream-ca"));
    const leaf = await upstreamCa.issueLeaf(GIT_HOST);
    await fs.writeFile(path.join(root, "hosts"), `127.0.0.1 localhost\n::1 localhost\n127.0.0.1 ${GIT_HOST}\n`);
    upstreamCaName = opensslName(upstreamCa.certPem);
    await fs.writeFile(path.join(root, "upstream-ca.pem"), upstreamCa.certPem);
    git = await startGitServer(root, leaf);
    host = `${GIT_HOST}:${git.port}`;
    apiSeen = [];
    api = http.createServer((req, res) => {
      apiSeen.push(req.headers.authorization);
      res.end(req.headers.authorization === `Bearer ${API_TOKEN}` ? "api-authorized\n" : "api-anonymous\n");
    });
    await new Promise<void>((resolve) => api.listen(0, "127.0.0.1", resolve));
    stub = await ResponsesStub.start({ host: "127.0.0.1" });
    t = await startTestSidecar({
      stub,
      flags: {
        "--internal-destinations": `${host},http://127.0.0.1:${(api.address() as AddressInfo).port}`,
        "--upstream-ca": path.join(root, "upstream-ca.pem"),
        "--hosts-file": path.join(root, "hosts"),
        "--alive-api-url": `http://127.0.0.1:${(api.address() as AddressInfo).port}/api`,
      },
    });
    const ca = await BrokerCa.open(path.join(t.stateDir, "broker"));
    sidecarCaName = opensslName(ca.certPem);
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
    await git?.close();
    await new Promise((resolve) => api?.close(resolve));
    if (root) await fs.rm(root, { recursive: true, force: true });
  });

  async function runCommand(ws: WorkspaceParams, cmd: string, extra: Partial<RunTurnParams> = {}): Promise<string> {
    stub.reset();
    stub.script(commandStep(cmd), { kind: "message", text: "done" });
    const result = await withTimeout(
      t.sidecar.service.runTurn(
        { workspaceId: ws.workspaceId, input: "run it", options: { timeoutMs: TURN_TIMEOUT_MS }, ...extra },
        { onEvent: () => undefined },
      ),
      TURN_TIMEOUT_MS + 10_000,
      "the turn",
    );
    assert.equal(result.status, "completed", JSON.stringify(result.error));
    return output(result);
  }

  test("git clone and a push of 3 MB work through the proxy with a token the container never holds; an unbound workspace gets 401", async () => {
    const ws = await t.workspace(uniqueId("broker"));
    const ensured = await t.sidecar.service.ensureWorkspace({
      ...ws,
      secrets: [{ host, header: "Authorization", value: `Bearer ${TOKEN}`, env: "GIT_TOKEN" }],
      aliveApiToken: API_TOKEN,
    });
    const url = `https://${host}/private.git`;
    const script = [
      "set -e",
      `echo "PLACEHOLDER $GIT_TOKEN"`,
      // Codex's own env (its commands never get ALIVE_MCP_TOKEN): a placeholder.
      `tr '\\0' '\\n' < /proc/$(pgrep -xo codex)/environ | grep '^ALIVE_MCP_TOKEN=' | sed 's/^/MCP /'`,
      `git clone -q ${url} /tmp/repo`,
      "cd /tmp/repo && head -c 3000000 /dev/urandom > blob && git add blob README",
      "git -c user.name=agent -c user.email=a@b commit -q -m 'from the agent'",
      "git push -q origin HEAD:main && echo PUSHED",
      // The issuer the client sees: the broker's CA, not the upstream's.
      `echo | openssl s_client -connect ${host} -proxy 127.0.0.1:3128 -servername ${GIT_HOST} 2>/dev/null | grep -m1 '^issuer=' || true`,
      `node -e "fetch(process.env.ALIVE_API_URL + '/whoami').then(r => r.text()).then(t => console.log('API', t.trim()))"`,
      // Every environ and file the workspace can read, for the tokens (spelled in halves: this command
      // line itself is in codex's output and session files).
      `a=${TOKEN.slice(0, 8)}; b=${TOKEN.slice(8)}; c=${API_TOKEN.slice(0, 8)}; d=${API_TOKEN.slice(8)}`,
      `grep -rlE "$a$b|$c$d" /proc/[0-9]*/environ /tmp /home/alive /run/alive 2>/dev/null | head -5 | sed 's/^/LEAK /' || true`,
    ].join("\n");
    const out = await runCommand(ws, script);
    assert.match(out, /PLACEHOLDER alive-secret-placeholder-[0-9a-f]{32}/, out);
    assert.match(
      out,
      /MCP ALIVE_MCP_TOKEN=alive-secret-placeholder-[0-9a-f]{32}/,
      `ALIVE_MCP_TOKEN holds a placeholder:\n${out}`,
    );
    assert.match(out, /PUSHED/, out);
    assert.ok(out.includes(`issuer=${sidecarCaName}`), `the client sees the broker's CA as issuer:\n${out}`);
    assert.match(out, /API api-authorized/, out);
    assert.doesNotMatch(out, /LEAK/, out);
    assert.ok(!out.includes(TOKEN) && !out.includes(API_TOKEN));
    // The push reached the repository.
    const log = await execa("git", ["-C", path.join(git.repos, "private.git"), "log", "--oneline", "main"]);
    assert.match(log.stdout, /from the agent/);
    assert.ok(
      git.seen.every((r) => r.authorization === `Bearer ${TOKEN}`),
      "every request carried the token",
    );

    // Outside: no inspect output, log line or journal holds either token; workspace.list shows names and counts.
    const inspect = JSON.stringify(await t.docker.getContainer(ensured.containerId).inspect());
    assert.ok(!inspect.includes(TOKEN) && !inspect.includes(API_TOKEN), "docker inspect");
    assert.ok(!t.logLines.some((l) => l.includes(TOKEN) || l.includes(API_TOKEN)), "a sidecar log line");
    const journal = path.join(t.stateDir, "journal");
    for (const file of await fs.readdir(journal)) {
      const text = await fs.readFile(path.join(journal, file), "utf8");
      assert.ok(!text.includes(TOKEN) && !text.includes(API_TOKEN), `journal ${file}`);
    }
    const listed = (await t.sidecar.service.listWorkspaces()).workspaces.find((w) => w.workspaceId === ws.workspaceId);
    assert.deepEqual(
      listed?.secrets?.map((s) => [s.host, s.header, s.env, s.scope]),
      [[host, "Authorization", "GIT_TOKEN", "workspace"]],
    );
    assert.ok((listed?.secrets?.[0]?.requests ?? 0) >= 3, JSON.stringify(listed?.secrets));
    assert.ok(!JSON.stringify(listed).includes(TOKEN));

    // Another workspace, without the binding: a plain tunnel (the upstream's own certificate) and 401.
    const other = await t.workspace(uniqueId("unbound"));
    await t.sidecar.service.ensureWorkspace(other);
    const plain = await runCommand(
      other,
      [
        `printf 'GET /private.git/info/refs HTTP/1.1\\r\\nHost: ${host}\\r\\nConnection: close\\r\\n\\r\\n' | openssl s_client -quiet -connect ${host} -proxy 127.0.0.1:3128 2>/dev/null | head -1 | sed 's/^/STATUS /'`,
        `echo | openssl s_client -connect ${host} -proxy 127.0.0.1:3128 2>/dev/null | grep -m1 '^issuer=' || true`,
      ].join("\n"),
    );
    assert.match(plain, /STATUS HTTP\/1.1 401/, plain);
    assert.ok(plain.includes(`issuer=${upstreamCaName}`), `an unbound host is not intercepted:\n${plain}`);
  });

  test("a turn's own binding is in force for that turn only", async () => {
    const ws = await t.workspace(uniqueId("turn-bound"));
    await t.sidecar.service.ensureWorkspace(ws);
    const lsRemote = `git ls-remote https://${host}/private.git >/dev/null 2>&1 && echo REACHED || echo REFUSED`;
    const bound = await runCommand(ws, lsRemote, {
      secrets: [{ host, header: "Authorization", value: `Bearer ${TOKEN}` }],
    });
    assert.match(bound, /REACHED/, bound);
    const listed = (await t.sidecar.service.listWorkspaces()).workspaces.find((w) => w.workspaceId === ws.workspaceId);
    assert.equal(listed?.secrets, undefined, "the turn's binding ended with it");
    // The next turn has no binding: the host is a plain tunnel, its certificate not trusted inside.
    assert.match(await runCommand(ws, lsRemote), /REFUSED/);
  });

  test("bad secrets are -32602 naming the field, and nothing is made", async () => {
    const ws = await t.workspace(uniqueId("bad"));
    const cases: Array<[unknown, string]> = [
      [[{ host: "evil.example", header: "Authorization", value: "v" }], "secrets[0].host"],
      [[{ host, header: "Bad Header", value: "v" }], "secrets[0].header"],
      [[{ host, header: "Authorization", value: "a\r\nb" }], "secrets[0].value"],
      [Array.from({ length: 33 }, (_, i) => ({ host: `h${i}.example`, header: "A", value: "v" })), "secrets"],
    ];
    for (const [secrets, field] of cases) {
      const { parseEnsureWorkspaceParams } = await import("../../src/rpc/workspace-params.js");
      const attempt = async (): Promise<unknown> => {
        const params = await parseEnsureWorkspaceParams({ ...ws, secrets }, t.config);
        return t.sidecar.service.ensureWorkspace({ ...params, egress: { allow: ["github.com"], deny: [] } });
      };
      await assert.rejects(attempt(), (error: unknown) => {
        assert.ok(error instanceof SidecarError, String(error));
        assert.equal(error.code, -32602);
        assert.equal((error.data as { field?: string }).field, field);
        return true;
      });
    }
    assert.equal(
      (await t.sidecar.service.listWorkspaces()).workspaces.some((w) => w.workspaceId === ws.workspaceId),
      false,
      "no workspace was made",
    );
  });
});
