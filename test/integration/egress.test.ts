/**
 * What the sidecar promises of a workspace's network (docs/security.md), proved from inside
 * workspace containers through real codex turns (a scripted model on the host's loopback, behind
 * the sidecar's model proxy): the container has no network of its own, the egress proxy refuses what the policy and the address rules refuse and
 * passes an internal destination, the real key never enters a container, Alive's API works with a
 * client that ignores proxies, a model API that is down fails the turn fast, workspace-write is
 * enforced by the container, and trusted directories are mounted read-only.
 *
 * Every destination here is refused before any lookup (denied, not_allowed, model_only), resolves
 * locally (localhost), is an IP literal, or is a server this file runs on the host's loopback: no
 * test traffic leaves the machine.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import type {
  RunTurnParams,
  TurnHooks,
  TurnResult,
  TurnRunOptions,
  WorkspaceParams,
  WorkspaceSummary,
} from "../../src/service.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { ResponsesStub, eventsFor, type ScriptStep } from "../support/responses-stub.js";
import {
  TEST_API_KEY,
  containerProcesses,
  execIn,
  startTestSidecar,
  uniqueId,
  type TestSidecar,
} from "../support/sidecar.js";
import { waitFor, withTimeout } from "../support/wait.js";

const execFileAsync = promisify(execFile);

/** A loaded 2-core machine: a turn with one command takes seconds, sometimes tens of seconds. */
const TURN_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------------------------------------
// Servers on the host, each closed (with its connections) by close()

interface HostServer {
  port: number;
  /** Connections accepted so far. */
  connections: number;
  requests: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders }>;
  close(): Promise<void>;
}

/** An HTTP server on `host` that records each request and answers `body(url)`. */
async function startHttpServer(host: string, body: (url: string) => string): Promise<HostServer> {
  const server = http.createServer((req, res) => {
    state.requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    req.resume();
    const text = body(req.url ?? "");
    res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(text) });
    res.end(text);
  });
  server.on("connection", () => (state.connections += 1));
  const port = await listen(server, host);
  const state: HostServer = {
    port,
    connections: 0,
    requests: [],
    close: () => closeServer(server, () => server.closeAllConnections()),
  };
  return state;
}

/** A plain TCP listener (think: a database on the host) that counts and drops every connection. */
async function startTcpListener(host: string): Promise<HostServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    state.connections += 1;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    socket.end();
  });
  const port = await listen(server, host);
  const state: HostServer = {
    port,
    connections: 0,
    requests: [],
    close: () => closeServer(server, () => sockets.forEach((s) => s.destroy())),
  };
  return state;
}

function listen(server: net.Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => {
      server.off("error", reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

function closeServer(server: net.Server, dropConnections: () => void): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    dropConnections();
  });
}

/** A port on 127.0.0.1 that nothing listens on (bound once, then closed). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  const port = await listen(server, "127.0.0.1");
  await closeServer(server, () => undefined);
  return port;
}

/** Connects from the host (the control: what the container cannot reach, the host can). */
function connectsFromHost(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const deadline = setTimeout(() => done(false), 5000);
    const done = (ok: boolean): void => {
      clearTimeout(deadline);
      socket.destroy();
      resolve(ok);
    };
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/**
 * The host's IPv4 addresses: loopback, the uplink, the docker bridge gateways. os.networkInterfaces()
 * leaves out interfaces without carrier, and a docker bridge with no container attached (docker0
 * now that workspaces have no network) has none; `ip` lists every address the host answers on.
 */
async function hostIPv4Addresses(): Promise<string[]> {
  const fromNode = Object.values(os.networkInterfaces())
    .flatMap((infos) => infos ?? [])
    .filter((info) => info.family === "IPv4")
    .map((info) => info.address);
  const { stdout } = await execFileAsync("ip", ["-j", "-4", "addr", "show"]);
  const fromIp = (JSON.parse(stdout) as Array<{ addr_info?: Array<{ local?: string }> }>).flatMap((link) =>
    (link.addr_info ?? []).map((info) => info.local ?? ""),
  );
  return [...new Set([...fromNode, ...fromIp])].filter((address) => net.isIPv4(address));
}

// ---------------------------------------------------------------------------------------------
// Probes, run by bash inside the container; each prints one line

/**
 * `tcp ADDR PORT` and `udp ADDR PORT` print "TCP|UDP addr port open" or "... closed <why>" (a UDP
 * connect sends nothing; it only asks the kernel for a route). `px LABEL REQUEST` writes a raw
 * request (printf %b escapes) to the egress proxy's loopback port and prints the status, the
 * refusal header and the last line of the answer.
 */
const PROBES = [
  'tcp() { if out=$(timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1); then echo "TCP $1 $2 open"; else echo "TCP $1 $2 closed $(echo $out)"; fi; }',
  'udp() { if out=$(timeout 5 bash -c "exec 3<>/dev/udp/$1/$2" 2>&1); then echo "UDP $1 $2 open"; else echo "UDP $1 $2 closed $(echo $out)"; fi; }',
  "px() (",
  '  exec 3<>/dev/tcp/127.0.0.1/3128 || { echo "PX $1 status=noproxy"; exit 0; }',
  "  printf '%b' \"$2\" >&3",
  "  resp=$(timeout 15 cat <&3 | tr -d '\\r')",
  "  status=$(printf '%s\\n' \"$resp\" | head -n1 | cut -d' ' -f2)",
  "  refused=$(printf '%s\\n' \"$resp\" | sed -n 's/^x-alive-egress-refused: //Ip' | head -n1)",
  '  echo "PX $1 status=$status refused=${refused:-none} body=$(printf \'%s\\n\' "$resp" | tail -n1)"',
  ")",
].join("\n");

function connectRequest(authority: string): string {
  return `CONNECT ${authority} HTTP/1.1\\r\\nHost: ${authority}\\r\\n\\r\\n`;
}

function getRequest(url: string): string {
  return `GET ${url} HTTP/1.1\\r\\nHost: ${new URL(url).host}\\r\\nConnection: close\\r\\n\\r\\n`;
}

/** A `px` probe line for the command. */
function px(label: string, request: string): string {
  return `px ${label} '${request}'`;
}

/** Parsed probe lines: "PX denied status=403 refused=denied body=..." → map "PX denied" → rest. */
function probeLines(output: string): Map<string, string> {
  const lines = new Map<string, string>();
  for (const line of output.split("\n")) {
    const match = /^(TCP \S+ \S+|UDP \S+ \S+|PX \S+|\S+)\s?(.*)$/.exec(line.trim());
    if (match && /^[A-Z0-9]+$/.test(line.trim().split(" ")[0] ?? "")) lines.set(match[1]!, match[2]!);
  }
  return lines;
}

function proxyAnswer(lines: Map<string, string>, label: string): { status: string; refused: string; body: string } {
  const line = lines.get(`PX ${label}`);
  assert.ok(line !== undefined, `probe ${label} printed nothing`);
  const match = /^status=(\S*) refused=(\S*) body=(.*)$/.exec(line);
  assert.ok(match, `probe ${label}: ${line}`);
  return { status: match[1]!, refused: match[2]!, body: match[3]! };
}

// ---------------------------------------------------------------------------------------------
// Turns

let callCounter = 0;

/**
 * The model asks codex to run `cmd` (exec_command, allowed up to 60 s before codex returns while
 * it still runs: a held command must not be handed back early on a slow machine).
 */
function commandStep(cmd: string): ScriptStep {
  const n = 1000 + ++callCounter;
  const events = eventsFor({ kind: "command", cmd }, n).map((event) => {
    const item = event.item as { type?: string; arguments?: string } | undefined;
    if (item?.type !== "function_call") return event;
    return { ...event, item: { ...item, arguments: JSON.stringify({ cmd, yield_time_ms: 60_000 }) } };
  });
  return { kind: "events", events };
}

/** A command that runs `body`, then waits until the host creates `release` in the workspace. */
function heldCommand(body: string, release: string): string {
  return `${body}\nwhile [ ! -e ${release} ]; do sleep 0.1; done; echo RELEASED`;
}

function commandOutput(result: TurnResult): string {
  return result.items.map((item) => (item.type === "command_execution" ? item.aggregated_output : "")).join("\n");
}

function summaryOf(t: TestSidecar, workspaceId: string): Promise<WorkspaceSummary> {
  return t.sidecar.service.listWorkspaces().then(({ workspaces }) => {
    const found = workspaces.find((w) => w.workspaceId === workspaceId);
    assert.ok(found, `workspace ${workspaceId} is listed`);
    return found;
  });
}

interface StartedTurn {
  result: Promise<TurnResult>;
  /** Resolves once the scripted command runs in the container. */
  commandStarted: Promise<void>;
}

function startTurn(t: TestSidecar, params: RunTurnParams): StartedTurn {
  let started = false;
  const hooks: TurnHooks = {
    onEvent: (_turnId, _seq, event) => {
      if (event.type === "item.started" && event.item.type === "command_execution") started = true;
    },
  };
  const result = t.sidecar.service.runTurn(
    { ...params, options: { timeoutMs: TURN_TIMEOUT_MS, ...params.options } },
    hooks,
  );
  const commandStarted = waitFor(() => started, {
    timeoutMs: TURN_TIMEOUT_MS,
    what: "the scripted command to start",
  }).then(() => undefined);
  // If the turn ends first, the wait's failure is the turn's to report.
  commandStarted.catch(() => undefined);
  return { result, commandStarted };
}

/** Runs one turn in which the model runs `cmd` once, then answers "done"; returns the command's output. */
async function runCommandTurn(
  t: TestSidecar,
  stub: ResponsesStub,
  ws: WorkspaceParams,
  cmd: string,
  options: TurnRunOptions = {},
): Promise<string> {
  stub.script(commandStep(cmd), { kind: "message", text: "done" });
  const result = await withTimeout(
    startTurn(t, { workspaceId: ws.workspaceId, input: "run the probes", options }).result,
    TURN_TIMEOUT_MS + 10_000,
    "the turn",
  );
  assert.equal(result.status, "completed", JSON.stringify(result.error));
  return commandOutput(result);
}

/** Regular files under `dir` (never following a link, never opening a FIFO or socket). */
async function regularFiles(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath ?? entry.path, entry.name));
}

/** Host pids of every process in the container (docker top: the PID column is the host's). */
async function hostPidsOf(t: TestSidecar, containerId: string): Promise<number[]> {
  const top = (await t.docker.getContainer(containerId).top()) as { Titles: string[]; Processes: string[][] };
  const column = top.Titles.indexOf("PID");
  assert.ok(column >= 0, `docker top has a PID column: ${top.Titles.join(",")}`);
  return top.Processes.map((row) => Number(row[column]));
}

// ---------------------------------------------------------------------------------------------

describe("a workspace's network and the model key live outside its container", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;
  let internal: HostServer;
  let aliveApi: HostServer;
  let trustedDir: string;

  before(async () => {
    stub = await ResponsesStub.start({ host: "127.0.0.1" });
    internal = await startHttpServer("127.0.0.1", (url) => `internal-ok ${url}`);
    aliveApi = await startHttpServer("127.0.0.1", (url) => `alive-api-pong ${url}`);
    trustedDir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-egress-trusted-"));
    // World-writable on the host: inside, only the read-only mount can refuse a write.
    await fs.chmod(trustedDir, 0o777);
    await fs.writeFile(path.join(trustedDir, "tool.js"), "trusted-content-42\n");
    await fs.chmod(path.join(trustedDir, "tool.js"), 0o666);
    t = await startTestSidecar({
      stub,
      flags: {
        "--internal-destinations": `http://127.0.0.1:${internal.port}`,
        "--alive-api-url": `http://127.0.0.1:${aliveApi.port}/api`,
        "--trusted-dirs": trustedDir,
      },
    });
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
    await internal?.close();
    await aliveApi?.close();
    if (trustedDir) await fs.rm(trustedDir, { recursive: true, force: true });
  });
  beforeEach(() => stub.reset());

  test("inside: no route, only lo; host ports on every host address, dockerd's port and another workspace are unreachable", async () => {
    const listener = await startTcpListener("0.0.0.0");
    try {
      const addresses = await hostIPv4Addresses();
      assert.ok(addresses.includes("127.0.0.1") && addresses.length >= 2, `host addresses: ${addresses.join(", ")}`);
      process.stdout.write(`# host addresses probed: ${addresses.join(", ")}\n`);
      // The control: from the host, the listener answers on every one of its addresses.
      for (const address of addresses)
        assert.ok(await connectsFromHost(address, listener.port), `the host reaches ${address}:${listener.port}`);
      await waitFor(() => listener.connections === addresses.length, {
        timeoutMs: 5000,
        what: "the listener to count the host's connections",
      });
      listener.connections = 0;

      const ws = await t.workspace(uniqueId("net"));
      const other = await t.workspace(uniqueId("other"));
      await t.sidecar.service.ensureWorkspace(ws);
      const { containerId: otherId } = await t.sidecar.service.ensureWorkspace(other);
      const cmd = [
        PROBES,
        `echo "ROUTES $(tail -n +2 /proc/net/route | wc -l) DEFAULT $(awk 'NR>1 && $2=="00000000"' /proc/net/route | wc -l)"`,
        `echo "V6DEFAULT $(awk '$1 ~ /^0+$/ && $2=="00" && $10!="lo"' /proc/net/ipv6_route 2>/dev/null | wc -l)"`,
        `echo "IFACES $(ls /sys/class/net | tr '\\n' ' ')"`,
        `echo "NETDEV $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')"`,
        // Inside, 127.0.0.1 is the container's own loopback; every other address is the host's.
        ...addresses.flatMap((address) => [
          `tcp ${address} ${listener.port}`,
          `tcp ${address} 2375`,
          ...(address === "127.0.0.1" ? [] : [`udp ${address} 53`]),
        ]),
        // Link-local (cloud metadata) and a documentation address standing in for "anywhere".
        "tcp 169.254.169.254 80",
        "tcp 198.51.100.7 443",
        "udp 198.51.100.7 53",
        // The probe itself works: the egress proxy's forwarder answers on the container's loopback.
        "tcp 127.0.0.1 3128",
      ].join("\n");
      const output = await runCommandTurn(t, stub, ws, cmd);
      const lines = probeLines(output);

      assert.equal(lines.get("ROUTES"), "0 DEFAULT 0", `no route at all, so no default route:\n${output}`);
      assert.equal(lines.get("V6DEFAULT"), "0", "no IPv6 default route");
      assert.equal(lines.get("IFACES")?.trim(), "lo", "no interface but loopback");
      assert.equal(lines.get("NETDEV")?.trim(), "lo");
      assert.equal(lines.get("TCP 127.0.0.1 3128"), "open", `the probe detects an open port:\n${output}`);
      for (const address of addresses) {
        // 127.0.0.1 inside is the container's own loopback (nothing listens there: refused); no other address has a route.
        const why = address === "127.0.0.1" ? /^closed .*Connection refused/ : /^closed .*Network is unreachable/;
        const keys = [
          `TCP ${address} ${listener.port}`,
          `TCP ${address} 2375`,
          ...(address === "127.0.0.1" ? [] : [`UDP ${address} 53`]),
        ];
        for (const key of keys) assert.match(lines.get(key) ?? "missing", why, `${key} is unreachable:\n${output}`);
      }
      for (const key of ["TCP 169.254.169.254 80", "TCP 198.51.100.7 443", "UDP 198.51.100.7 53"]) {
        assert.match(lines.get(key) ?? "missing", /^closed .*Network is unreachable/, `${key}:\n${output}`);
      }
      assert.equal(listener.connections, 0, "the host's listener saw no connection from the container");

      // The other workspace has no address anyone could reach it on: network none, no IP.
      for (const id of [otherId, (await summaryOf(t, ws.workspaceId)).containerId]) {
        const info = await t.docker.getContainer(id).inspect();
        assert.equal(info.HostConfig.NetworkMode, "none");
        assert.deepEqual(Object.keys(info.NetworkSettings.Networks), ["none"]);
        assert.equal(info.NetworkSettings.IPAddress, "");
        assert.equal(info.NetworkSettings.Networks.none?.IPAddress, "");
        assert.equal(info.NetworkSettings.Networks.none?.GlobalIPv6Address ?? "", "");
      }
    } finally {
      await listener.close();
    }
  });

  test("the egress proxy refuses denied, unlisted, private and metadata destinations with a clear 403 and passes an internal one", async () => {
    const ws = await t.workspace(uniqueId("list"), {
      egress: { allow: ["*.example.test", "localhost"], deny: ["bad.example.test"] },
    });
    await t.sidecar.service.ensureWorkspace(ws);
    const before = await summaryOf(t, ws.workspaceId);
    assert.deepEqual(before.egress, {
      mode: "list",
      allow: ["*.example.test", "localhost"],
      deny: ["bad.example.test"],
    });
    assert.equal(before.network.egressRefusals, 0);
    const internalUrl = `http://127.0.0.1:${internal.port}/internal-check?n=1`;
    const cmd = [
      PROBES,
      px("denied", connectRequest("bad.example.test:443")),
      px("unlisted", connectRequest("unlisted.invalid:443")),
      px("localhost", connectRequest("localhost:443")),
      px("metadata", connectRequest("169.254.169.254:80")),
      px("metadata_get", getRequest("http://169.254.169.254/latest/meta-data/")),
      px("internal", getRequest(internalUrl)),
    ].join("\n");
    const output = await runCommandTurn(t, stub, ws, cmd);
    const lines = probeLines(output);

    assert.equal(proxyAnswer(lines, "denied").status, "403", output);
    assert.equal(proxyAnswer(lines, "denied").refused, "denied");
    assert.match(proxyAnswer(lines, "denied").body, /bad\.example\.test/, "the answer names the host");
    assert.equal(proxyAnswer(lines, "unlisted").status, "403");
    assert.equal(proxyAnswer(lines, "unlisted").refused, "not_allowed");
    // Allowed by name, refused by address: localhost resolves (on the sidecar's side) to loopback.
    assert.equal(proxyAnswer(lines, "localhost").status, "403");
    assert.equal(proxyAnswer(lines, "localhost").refused, "private_address");
    // Not what it resolved to: the sidecar is no oracle for the names it can resolve and the tenant cannot.
    assert.match(proxyAnswer(lines, "localhost").body, /localhost resolves to an address that is not public/);
    assert.doesNotMatch(proxyAnswer(lines, "localhost").body, /127\.0\.0\.1|::1/);
    assert.equal(proxyAnswer(lines, "metadata").status, "403");
    assert.equal(proxyAnswer(lines, "metadata_get").status, "403");
    // The allowed path works: the internal destination (the operator's list) answers through the proxy.
    assert.equal(proxyAnswer(lines, "internal").status, "200", output);
    assert.equal(proxyAnswer(lines, "internal").refused, "none");
    assert.equal(proxyAnswer(lines, "internal").body, "internal-ok /internal-check?n=1");
    assert.deepEqual(
      internal.requests.map((r) => r.url),
      ["/internal-check?n=1"],
    );

    const afterTurn = await summaryOf(t, ws.workspaceId);
    assert.equal(
      afterTurn.network.egressRefusals,
      5,
      "every refusal was counted (the model's own traffic is not egress)",
    );
    const logged = t.logLines.filter((line) => line.includes('"egress refused"') && line.includes(ws.workspaceId));
    assert.ok(
      logged.some((line) => line.includes("bad.example.test") && line.includes('"denied"')),
      logged.join("\n"),
    );
  });

  test('"public" still refuses private and metadata addresses; "model" refuses every name with model_only', async () => {
    const pub = await t.workspace(uniqueId("pub"));
    const model = await t.workspace(uniqueId("model"), { egress: "model" });
    await Promise.all([t.sidecar.service.ensureWorkspace(pub), t.sidecar.service.ensureWorkspace(model)]);
    assert.deepEqual((await summaryOf(t, pub.workspaceId)).egress, { mode: "public" });
    assert.deepEqual((await summaryOf(t, model.workspaceId)).egress, { mode: "model" });

    const pubOutput = await runCommandTurn(
      t,
      stub,
      pub,
      [
        PROBES,
        px("metadata", connectRequest("169.254.169.254:80")),
        px("loopback", connectRequest("127.0.0.1:443")),
        px("ssh", connectRequest("127.0.0.1:22")),
        px("localhost", connectRequest("localhost:443")),
        px("mapped", connectRequest("[::ffff:127.0.0.1]:443")),
        px("private", getRequest("http://10.0.0.1/")),
      ].join("\n"),
    );
    const pubLines = probeLines(pubOutput);
    for (const label of ["metadata", "loopback", "localhost", "mapped", "private"]) {
      const answer = proxyAnswer(pubLines, label);
      assert.deepEqual([answer.status, answer.refused], ["403", "private_address"], `${label}:\n${pubOutput}`);
    }
    // A port outside ALIVE_CODEX_EGRESS_PORTS (443, 80) is refused before any other check.
    assert.deepEqual(
      [proxyAnswer(pubLines, "ssh").status, proxyAnswer(pubLines, "ssh").refused],
      ["403", "port_not_allowed"],
      pubOutput,
    );

    const modelOutput = await runCommandTurn(
      t,
      stub,
      model,
      [
        PROBES,
        px("name", connectRequest("pkg.example.test:443")),
        px("get", getRequest("http://pkg.example.test/x")),
      ].join("\n"),
    );
    const modelLines = probeLines(modelOutput);
    assert.equal(proxyAnswer(modelLines, "name").refused, "model_only", modelOutput);
    assert.equal(proxyAnswer(modelLines, "get").refused, "model_only");
    assert.equal((await summaryOf(t, model.workspaceId)).network.egressRefusals, 2);
  });

  test("the real key never enters the container: not in any process's environment, HOME, TMPDIR or docker inspect", async () => {
    const ws = await t.workspace(uniqueId("key"));
    const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
    const release = ".release-key";
    stub.script(commandStep(heldCommand("echo holding", release)), { kind: "message", text: "done" });
    const turn = startTurn(t, { workspaceId: ws.workspaceId, input: "hold" });
    try {
      await turn.commandStarted;
      const pids = await hostPidsOf(t, containerId);
      const environs: Array<{ pid: number; env: string }> = [];
      for (const pid of pids) {
        // A process may end between the listing and the read.
        const env = await fs.readFile(`/proc/${pid}/environ`, "latin1").catch(() => null);
        if (env !== null) environs.push({ pid, env });
      }
      assert.ok(environs.length >= 3, `read the environ of the container's processes (${pids.join(",")})`);
      for (const { pid, env } of environs)
        assert.ok(!env.includes(TEST_API_KEY), `process ${pid} has the real key in its environment`);
      const withCredential = environs.filter(({ env }) =>
        /(^|\0)CODEX_API_KEY=alive-turn-[A-Za-z0-9_-]{43}(\0|$)/.test(env),
      );
      assert.ok(withCredential.length >= 1, "codex has a per-turn credential instead of the key");
    } finally {
      await fs.writeFile(path.join(ws.workspacePath, release), "");
    }
    const result = await withTimeout(turn.result, TURN_TIMEOUT_MS, "the held turn");
    assert.equal(result.status, "completed", JSON.stringify(result.error));
    assert.match(commandOutput(result), /RELEASED/);

    const paths = workspacePaths(t.stateDir, ws.workspaceId);
    const files = [
      ...(await regularFiles(paths.home)),
      ...(await regularFiles(paths.tmp)),
      ...(await regularFiles(paths.run)),
      ...(await regularFiles(ws.workspacePath)),
    ];
    assert.ok(
      files.some((file) => file.startsWith(paths.codexHome)),
      "codex wrote its files under HOME",
    );
    for (const file of files)
      assert.ok(!(await fs.readFile(file, "latin1")).includes(TEST_API_KEY), `${file} holds the key`);
    assert.ok(
      !JSON.stringify(await t.docker.getContainer(containerId).inspect()).includes(TEST_API_KEY),
      "docker inspect holds the key",
    );
    assert.ok(stub.requests.length >= 2);
    for (const request of stub.requests)
      assert.equal(
        request.headers.authorization,
        `Bearer ${TEST_API_KEY}`,
        "the model API got the real key, swapped in by the proxy",
      );
  });

  test("ALIVE_API_URL inside works with a client that ignores proxy variables", async () => {
    const ws = await t.workspace(uniqueId("api"));
    await t.sidecar.service.ensureWorkspace(ws);
    const seen = aliveApi.requests.length;
    const output = await runCommandTurn(
      t,
      stub,
      ws,
      [
        'echo "URL $ALIVE_API_URL"',
        `node -e "fetch(process.env.ALIVE_API_URL + '/ping', { headers: { authorization: 'Bearer mcp-token-7' } }).then((r) => r.text()).then((t) => console.log('API ' + t.trim()), (e) => console.log('API failed ' + e.cause?.code))" 2>&1`,
      ].join("\n"),
    );
    const lines = probeLines(output);
    assert.equal(lines.get("URL"), "http://127.0.0.1:3130/api", output);
    assert.equal(lines.get("API"), "alive-api-pong /api/ping", output);
    const requests = aliveApi.requests.slice(seen);
    assert.equal(requests.length, 1);
    assert.equal(requests[0]?.method, "GET");
    assert.equal(requests[0]?.url, "/api/ping");
    assert.equal(
      requests[0]?.headers.authorization,
      "Bearer mcp-token-7",
      "the caller's own Authorization reaches the API",
    );
  });

  test('network "none" runs a turn; workspace-write writes only the workspace and narrows egress unless networkAccessEnabled', async () => {
    const none = await t.workspace(uniqueId("none"), { network: "none" });
    await t.sidecar.service.ensureWorkspace(none);
    assert.deepEqual((await summaryOf(t, none.workspaceId)).egress, { mode: "model" });
    const noneOutput = await runCommandTurn(
      t,
      stub,
      none,
      [PROBES, px("name", connectRequest("pkg.example.test:443"))].join("\n"),
    );
    assert.equal(proxyAnswer(probeLines(noneOutput), "name").refused, "model_only", noneOutput);

    const ws = await t.workspace(uniqueId("ww"));
    await t.sidecar.service.ensureWorkspace(ws);
    assert.deepEqual((await summaryOf(t, ws.workspaceId)).egress, { mode: "public" });
    const narrowed = [
      PROBES,
      'echo written > ww.txt && echo "WS $(cat ww.txt)"',
      'echo "ETC $( (echo x > /etc/alive-x) 2>&1 )"',
      'echo "OPT $( (echo x > /opt/alive-x) 2>&1 )"',
      px("narrowed", connectRequest("169.254.169.254:80")),
    ].join("\n");
    stub.script(commandStep(heldCommand(narrowed, ".release-ww1")), { kind: "message", text: "done" });
    const first = startTurn(t, {
      workspaceId: ws.workspaceId,
      input: "write",
      options: { sandboxMode: "workspace-write" },
    });
    try {
      await first.commandStarted;
      assert.deepEqual(
        (await summaryOf(t, ws.workspaceId)).egress,
        { mode: "model" },
        "during the turn, the policy in force is the model API only",
      );
    } finally {
      await fs.writeFile(path.join(ws.workspacePath, ".release-ww1"), "");
    }
    const firstResult = await withTimeout(first.result, TURN_TIMEOUT_MS, "the workspace-write turn");
    assert.equal(firstResult.status, "completed", JSON.stringify(firstResult.error));
    const lines = probeLines(commandOutput(firstResult));
    assert.equal(lines.get("WS"), "written");
    assert.equal((await fs.readFile(path.join(ws.workspacePath, "ww.txt"), "utf8")).trim(), "written");
    assert.match(lines.get("ETC") ?? "", /Read-only file system/);
    assert.match(lines.get("OPT") ?? "", /Read-only file system/);
    assert.equal(
      proxyAnswer(lines, "narrowed").refused,
      "model_only",
      "the turn's egress is narrowed to the model API",
    );
    assert.deepEqual(
      (await summaryOf(t, ws.workspaceId)).egress,
      { mode: "public" },
      "after the turn, the workspace's own policy again",
    );

    stub.reset();
    stub.script(
      commandStep(heldCommand([PROBES, px("open", connectRequest("169.254.169.254:80"))].join("\n"), ".release-ww2")),
      { kind: "message", text: "done" },
    );
    const second = startTurn(t, {
      workspaceId: ws.workspaceId,
      input: "with network",
      options: { sandboxMode: "workspace-write", networkAccessEnabled: true },
    });
    try {
      await second.commandStarted;
      assert.deepEqual(
        (await summaryOf(t, ws.workspaceId)).egress,
        { mode: "public" },
        "networkAccessEnabled keeps the workspace's policy",
      );
    } finally {
      await fs.writeFile(path.join(ws.workspacePath, ".release-ww2"), "");
    }
    const secondResult = await withTimeout(second.result, TURN_TIMEOUT_MS, "the networked workspace-write turn");
    assert.equal(secondResult.status, "completed", JSON.stringify(secondResult.error));
    assert.equal(
      proxyAnswer(probeLines(commandOutput(secondResult)), "open").refused,
      "private_address",
      "judged by address under the workspace's own policy",
    );
  });

  test("a trusted dir is readable at its host path inside and not writable; additionalDirectories elsewhere is -32006", async () => {
    const ws = await t.workspace(uniqueId("trusted"));
    await t.sidecar.service.ensureWorkspace(ws);
    const file = path.join(trustedDir, "tool.js");
    const output = await runCommandTurn(
      t,
      stub,
      ws,
      [
        `echo "READ $(cat ${file})"`,
        `echo "MOUNT $(awk -v d=${trustedDir} '$2 == d { split($4, o, ","); print o[1] }' /proc/mounts)"`,
        `echo "WRITE $( (echo x > ${trustedDir}/new.js) 2>&1 )"`,
        `echo "APPEND $( (echo x >> ${file}) 2>&1 )"`,
      ].join("\n"),
      { additionalDirectories: [trustedDir] },
    );
    const lines = probeLines(output);
    assert.equal(lines.get("READ"), "trusted-content-42", output);
    assert.equal(lines.get("MOUNT"), "ro", "mounted read-only at its host path");
    assert.match(lines.get("WRITE") ?? "", /Read-only file system/);
    assert.match(lines.get("APPEND") ?? "", /Read-only file system/);
    assert.equal(await fs.readFile(file, "utf8"), "trusted-content-42\n");
    await assert.rejects(fs.stat(path.join(trustedDir, "new.js")));

    stub.reset();
    for (const dir of ["/etc", t.root, path.dirname(trustedDir)]) {
      await assert.rejects(
        t.sidecar.service.runTurn(
          { workspaceId: ws.workspaceId, input: "x", options: { additionalDirectories: [dir] } },
          { onEvent: () => undefined },
        ),
        (error: SidecarError) => {
          assert.equal(error.code, ErrorCode.notAllowed);
          assert.equal(error.code, -32006);
          assert.equal(error.data?.field, "options.additionalDirectories[0]");
          return true;
        },
        dir,
      );
    }
    assert.equal(stub.requests.length, 0, "a refused turn never reached the model");
  });
});

describe("a model API that is down", () => {
  test("fails the turn with model_unreachable within seconds", async () => {
    const port = await closedPort();
    const t = await startTestSidecar({ flags: { "--openai-base-url": `http://127.0.0.1:${port}/v1` } });
    try {
      const ws = await t.workspace(uniqueId("down"));
      await t.sidecar.service.ensureWorkspace(ws);
      const started = Date.now();
      const result = await withTimeout(
        t.sidecar.service.runTurn(
          { workspaceId: ws.workspaceId, input: "anyone there?", options: { timeoutMs: 120_000 } },
          { onEvent: () => undefined },
        ),
        120_000,
        "the turn",
      );
      const elapsedMs = Date.now() - started;
      assert.equal(result.status, "failed");
      assert.equal(result.error?.code, "model_unreachable", JSON.stringify(result.error));
      assert.match(result.error?.message ?? "", /ECONNREFUSED/);
      assert.ok(elapsedMs < 30_000, `failed after ${elapsedMs} ms`);
      assert.ok(
        t.logLines.some((line) => line.includes("model API unreachable")),
        "the proxy's log says why",
      );
      // Diagnostic for the report: how fast it failed on this machine.
      process.stdout.write(`# model_unreachable after ${elapsedMs} ms\n`);
    } finally {
      await t.cleanup();
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** A TCP upstream on the host's loopback that holds every connection and counts what it receives. */
interface HoldingUpstream {
  port: number;
  connections: Array<{ bytes: number; ended: boolean }>;
  close(): Promise<void>;
}

async function startHoldingUpstream(): Promise<HoldingUpstream> {
  const sockets = new Set<net.Socket>();
  const connections: HoldingUpstream["connections"] = [];
  const server = net.createServer((socket) => {
    const connection = { bytes: 0, ended: false };
    connections.push(connection);
    sockets.add(socket);
    socket.on("data", (chunk: Buffer) => (connection.bytes += chunk.length));
    socket.on("close", () => {
      connection.ended = true;
      sockets.delete(socket);
    });
    socket.on("error", () => socket.destroy());
  });
  const port = await listen(server, "127.0.0.1");
  return { port, connections, close: () => closeServer(server, () => sockets.forEach((s) => s.destroy())) };
}

/**
 * The container's own long-lived processes: its main process and the forwarders, their loops and
 * listeners (src/codex/container-processes.ts; a connection a listener forked is not one of them).
 * "pid role cmdline".
 */
async function ownProcesses(t: TestSidecar, containerId: string): Promise<string[]> {
  const procs = await containerProcesses(t.docker, containerId);
  return procs
    .filter((p) => p.role === "main" || p.role === "forwarder")
    .map((p) => `${p.pid} ${p.role} ${p.args}`)
    .sort();
}

describe("narrowing a turn's egress closes what earlier turns left open", () => {
  let stub: ResponsesStub;
  let upstream: HoldingUpstream;
  let t: TestSidecar;
  before(async () => {
    stub = await ResponsesStub.start({ host: "127.0.0.1" });
    upstream = await startHoldingUpstream();
    t = await startTestSidecar({ stub, flags: { "--internal-destinations": `127.0.0.1:${upstream.port}` } });
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
    await upstream?.close();
  });

  test("a process turn 1 left holding a tunnel is swept, and its tunnel closed, before a workspace-write turn's codex starts", async () => {
    const ws = await t.workspace(uniqueId("narrow"));
    const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
    const target = `127.0.0.1:${upstream.port}`;
    // Turn 1, under the workspace's own policy: a process that outlives the turn (its environment
    // cleared, in its own session, adopted by the init) opens a tunnel to the upstream through the
    // egress proxy and keeps sending through it, whatever happens to the tunnel.
    const holder = [
      "cat > /tmp/holder.sh <<'EOF'",
      "echo $$ > /tmp/holder.pid",
      "trap '' PIPE",
      "exec 3<>/dev/tcp/127.0.0.1/3128 || exit 1",
      `printf 'CONNECT ${target} HTTP/1.1\\r\\nHost: ${target}\\r\\n\\r\\n' >&3`,
      "while :; do printf 'tick\\n' >&3 2>/dev/null; sleep 0.2; done",
      "EOF",
      "env -i setsid /bin/bash /tmp/holder.sh </dev/null >/dev/null 2>&1 &",
      "for i in $(seq 100); do [ -s /tmp/holder.pid ] && break; sleep 0.1; done",
      'echo "HOLDER $(cat /tmp/holder.pid)"',
    ].join("\n");
    const firstOutput = await runCommandTurn(t, stub, ws, holder);
    const holderPid = probeLines(firstOutput).get("HOLDER") ?? "";
    assert.match(holderPid, /^\d+$/, firstOutput);
    await waitFor(() => upstream.connections.length === 1 && upstream.connections[0]!.bytes > 0, {
      timeoutMs: 15_000,
      what: "the holder's tunnel to carry data",
    });
    const afterFirst = upstream.connections[0]!.bytes;
    await waitFor(() => upstream.connections[0]!.bytes > afterFirst, {
      timeoutMs: 15_000,
      what: "data through the tunnel after turn 1 ended",
    });
    const own = await ownProcesses(t, containerId);
    assert.ok(own.length >= 3, `the main process and the forwarders: ${own.join("; ")}`);

    // Turn 2 narrows the egress to the model API: the holder is gone before codex runs anything.
    stub.reset();
    const logged = t.logLines.length;
    const secondOutput = await runCommandTurn(
      t,
      stub,
      ws,
      'if kill -0 "$(cat /tmp/holder.pid)" 2>/dev/null; then echo "HOLDER alive"; else echo "HOLDER gone"; fi',
      { sandboxMode: "workspace-write" },
    );
    assert.equal(probeLines(secondOutput).get("HOLDER"), "gone", secondOutput);
    await waitFor(() => upstream.connections[0]!.ended, {
      timeoutMs: 10_000,
      what: "the upstream to see the tunnel end",
    });
    assert.equal(upstream.connections.length, 1, "nothing opened a new tunnel");
    assert.notEqual(
      (await execIn(t.docker, containerId, ["/bin/sh", "-c", `kill -0 ${holderPid}`])).exitCode,
      0,
      "the holder is gone after turn 2 too",
    );
    assert.deepEqual(await ownProcesses(t, containerId), own, "the main process and the forwarders survive the sweep");

    const narrowed = t.logLines
      .slice(logged)
      .filter((line) => line.includes("egress narrowed to the model API for the turn"))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.workspaceId === ws.workspaceId);
    assert.equal(narrowed.length, 1, "logged once, for the narrowed turn");
    assert.ok(Number(narrowed[0]!.processes) >= 1, `processes swept: ${JSON.stringify(narrowed[0])}`);
    // null: the sidecar does not close tunnels itself (onEgressNarrowed is not wired to WorkspaceEndpoints.closeTunnels).
    assert.ok(Number(narrowed[0]!.tunnels) >= 1, `tunnels closed: ${JSON.stringify(narrowed[0])}`);
  });
});
