/**
 * One hostile tenant cannot exhaust the shared sidecar, proved from inside real workspace
 * containers through real codex turns (a scripted model on the host's loopback): workspace A
 * connects straight to its proxy.sock (a read-only mount does not stop connect()) and asks for
 * 2,000 tunnels to a destination that holds them. It gets at most its bound, the rest 429; the
 * sidecar's open descriptors stay under 1,500; workspace B's turns complete in at most twice
 * their time alone plus a second, and B's egress still works. A port other than 443 and 80 is
 * refused from inside. Every destination is a server this file runs on the host's loopback (an
 * internal destination) or is refused before any lookup: nothing leaves the machine.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import type { RunTurnParams, TurnHooks, TurnResult, WorkspaceParams, WorkspaceSummary } from "../../src/service.js";
import { countOpenDescriptors } from "../../src/shared/descriptor-guard.js";
import { ResponsesStub } from "../support/responses-stub.js";
import { startTestSidecar, uniqueId, type TestSidecar } from "../support/sidecar.js";
import { waitFor, withTimeout } from "../support/wait.js";

const TURN_TIMEOUT_MS = 120_000;
const TUNNELS_ASKED = 2000;
const PER_WORKSPACE = 256;

/**
 * Opens `n` connections to the egress proxy's socket, asks each for a tunnel to `target`, keeps
 * those answered 200, writes the statuses seen to `out`, then holds them until `release` exists.
 */
const FLOOD_PL = String.raw`
use strict; use Socket; use IO::Handle;
$SIG{PIPE} = 'IGNORE';
my ($n, $target, $out, $release) = @ARGV;
my (@held, %status);
for my $i (1 .. $n) {
  socket(my $s, PF_UNIX, SOCK_STREAM, 0) or do { $status{"socket_failed"}++; next };
  unless (connect($s, pack_sockaddr_un("/run/alive/net/proxy.sock"))) { $status{"connect_failed"}++; close $s; next }
  $s->autoflush(1);
  print $s "CONNECT $target HTTP/1.1\r\nHost: $target\r\n\r\n";
  my $line;
  eval { local $SIG{ALRM} = sub { die "timeout\n" }; alarm 10; $line = <$s>; alarm 0; };
  my $code = defined $line && $line =~ m{^HTTP/1\.1 (\d{3})} ? $1 : "none";
  $status{$code}++;
  if ($code eq "200") { push @held, $s } else { close $s }
}
open(my $f, ">", "$out.tmp") or die; print $f join(" ", map { "$_=$status{$_}" } sort keys %status), "\n"; close $f;
rename("$out.tmp", $out);
sleep 1 until -e $release;
print "HELD ", scalar(@held), "\n";
`;

/** A TCP server on the host's loopback that holds every connection open (echoing) and counts them. */
async function startHolder(): Promise<{ port: number; open(): number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => socket.destroy());
    socket.on("close", () => sockets.delete(socket));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    open: () => sockets.size,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

function summaryOf(t: TestSidecar, workspaceId: string): Promise<WorkspaceSummary> {
  return t.sidecar.service.listWorkspaces().then(({ workspaces }) => {
    const found = workspaces.find((w) => w.workspaceId === workspaceId);
    assert.ok(found, `workspace ${workspaceId} is listed`);
    return found;
  });
}

function commandOutput(result: TurnResult): string {
  return result.items.map((item) => (item.type === "command_execution" ? item.aggregated_output : "")).join("\n");
}

/** Starts a turn with the sidecar's default deadline raised for a loaded machine. */
function startTurn(t: TestSidecar, params: RunTurnParams): { result: Promise<TurnResult> } {
  const hooks: TurnHooks = { onEvent: () => undefined };
  return {
    result: t.sidecar.service.runTurn({ ...params, options: { timeoutMs: TURN_TIMEOUT_MS, ...params.options } }, hooks),
  };
}

/** A turn of workspace `ws` that only answers (the stub's default message): its wall time in ms. */
async function timedTurn(t: TestSidecar, ws: WorkspaceParams): Promise<number> {
  const started = performance.now();
  const result = await withTimeout(
    startTurn(t, { workspaceId: ws.workspaceId, input: "say ok" }).result,
    TURN_TIMEOUT_MS + 10_000,
    "B's turn",
  );
  assert.equal(result.status, "completed", JSON.stringify(result.error));
  return performance.now() - started;
}

/** One raw request to the egress proxy's loopback port from inside; prints the status line and x-alive-egress-* headers. */
function proxyProbe(label: string, request: string): string {
  return [
    // A granted tunnel stays open: the answer is its head, read up to the blank line (sed -u quits
    // there and has written each line as it came; a killed head would have written nothing).
    `exec 3<>/dev/tcp/127.0.0.1/3128 && printf '%b' '${request}' >&3 && resp=$(timeout 3 sed -u '/^\\r\\?$/q' <&3 | tr -d '\\r')`,
    `echo "PX ${label} $(printf '%s\\n' "$resp" | head -n1 | cut -d' ' -f2) $(printf '%s\\n' "$resp" | sed -n 's/^x-alive-egress-[a-z]*: //Ip' | head -n1)"`,
    "exec 3>&-",
  ].join("\n");
}

describe("one hostile tenant cannot exhaust the shared sidecar", () => {
  let stub: ResponsesStub;
  let holder: Awaited<ReturnType<typeof startHolder>>;
  let t: TestSidecar;

  before(async () => {
    stub = await ResponsesStub.start({ host: "127.0.0.1" });
    holder = await startHolder();
    t = await startTestSidecar({
      stub,
      flags: {
        "--internal-destinations": `127.0.0.1:${holder.port}`,
        "--proxy-connections-per-workspace": String(PER_WORKSPACE),
      },
    });
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
    await holder?.close();
  });
  beforeEach(() => stub.reset());

  test("2,000 tunnels asked on one proxy socket: at most its bound held, the rest 429; the sidecar's descriptors stay under 1,500; another workspace's turns complete in time", async () => {
    const a = await t.workspace(uniqueId("flood"));
    const b = await t.workspace(uniqueId("quiet"));
    await t.sidecar.service.ensureWorkspace(a);
    await t.sidecar.service.ensureWorkspace(b);
    await timedTurn(t, b); // warm-up: the first turn of a workspace pays for codex's first start
    const alone = await timedTurn(t, b);

    await fs.writeFile(path.join(a.workspacePath, "flood.pl"), FLOOD_PL, { mode: 0o644 });
    // In its own session, so it outlives the command (and the turn) that starts it, as a tenant's daemon would.
    stub.script({
      kind: "command",
      cmd: `setsid nohup perl flood.pl ${TUNNELS_ASKED} 127.0.0.1:${holder.port} .tunnels .release-flood > .flood.out 2>&1 < /dev/null & echo STARTED`,
    });
    const flood = await withTimeout(
      startTurn(t, { workspaceId: a.workspaceId, input: "flood" }).result,
      TURN_TIMEOUT_MS + 10_000,
      "A's turn",
    );
    assert.equal(flood.status, "completed", JSON.stringify(flood.error));
    assert.match(commandOutput(flood), /STARTED/);
    let statuses = "";
    let descriptors = 0;
    let holderOpen = 0;
    let underLoad = 0;
    let summaryA: WorkspaceSummary | undefined;
    let egressB = "";
    try {
      const counts = path.join(a.workspacePath, ".tunnels");
      statuses = await waitFor(() => fs.readFile(counts, "utf8"), {
        timeoutMs: 90_000,
        intervalMs: 200,
        what: "the flood's counts",
      });
      descriptors = countOpenDescriptors() ?? 0;
      holderOpen = holder.open();
      summaryA = await summaryOf(t, a.workspaceId);
      underLoad = await timedTurn(t, b);
      stub.script(
        {
          kind: "command",
          cmd: [
            proxyProbe("holder", `CONNECT 127.0.0.1:${holder.port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n`),
            proxyProbe("smtp", "CONNECT 203.0.113.5:25 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"),
          ].join("\n"),
        },
        { kind: "message", text: "probed" },
      );
      const probe = await withTimeout(
        startTurn(t, { workspaceId: b.workspaceId, input: "probe" }).result,
        TURN_TIMEOUT_MS + 10_000,
        "B's probe turn",
      );
      assert.equal(probe.status, "completed", JSON.stringify(probe.error));
      egressB = commandOutput(probe);
    } finally {
      await fs.writeFile(path.join(a.workspacePath, ".release-flood"), "");
    }
    const held = await waitFor(
      async () => /HELD \d+/.exec(await fs.readFile(path.join(a.workspacePath, ".flood.out"), "utf8"))?.[0],
      { timeoutMs: 30_000, intervalMs: 200, what: "the flood to let go" },
    );
    process.stdout.write(
      `# flood statuses: ${statuses.trim()}; ${held}; sidecar descriptors ${descriptors}; B alone ${Math.round(alone)} ms, under load ${Math.round(underLoad)} ms\n`,
    );

    const seen = Object.fromEntries(
      statuses
        .trim()
        .split(" ")
        .map((pair) => pair.split("=") as [string, string])
        .map(([k, v]) => [k, Number(v)]),
    );
    assert.ok(
      (seen["200"] ?? 0) <= PER_WORKSPACE && (seen["200"] ?? 0) >= PER_WORKSPACE - 8,
      `A holds its bound of tunnels (some of its connections may be mid-close): ${statuses}`,
    );
    assert.equal((seen["200"] ?? 0) + (seen["429"] ?? 0), TUNNELS_ASKED, `every other ask is a 429: ${statuses}`);
    assert.ok(descriptors > 0 && descriptors < 1500, `the sidecar's open descriptors: ${descriptors}`);
    assert.ok(holderOpen <= PER_WORKSPACE, `the destination held ${holderOpen} connections`);
    const connections = summaryA?.network.connections;
    assert.ok(connections !== undefined, "workspace.list shows A's connections");
    assert.ok(connections.tunnels <= PER_WORKSPACE && connections.proxy <= PER_WORKSPACE, JSON.stringify(connections));
    assert.ok(connections.refusedForLimit >= TUNNELS_ASKED - PER_WORKSPACE, JSON.stringify(connections));
    assert.ok(
      underLoad <= 2 * alone + 1000,
      `B's turn under load took ${Math.round(underLoad)} ms, alone ${Math.round(alone)} ms`,
    );
    assert.match(egressB, /PX holder 200/, `B's egress works meanwhile:\n${egressB}`);
    assert.match(egressB, /PX smtp 403 port_not_allowed/, `a port other than 443 and 80 is refused:\n${egressB}`);
    // Once A's command has exited, all it held is given back.
    await waitFor(
      async () => {
        const c = (await summaryOf(t, a.workspaceId)).network.connections;
        return c !== undefined && c.proxy === 0 && c.tunnels === 0;
      },
      { timeoutMs: 30_000, what: "A's connections given back" },
    );
    await waitFor(() => holder.open() === 0, { timeoutMs: 30_000, what: "the destination's connections closed" });
  });
});
