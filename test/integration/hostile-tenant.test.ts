/**
 * One hostile workspace against the shared sidecar, while a quiet one keeps working (docs/security.md,
 * "Bounds"). The sidecar runs as `alive-codex serve` in its own mount namespace, with a
 * bind-mounted resolv.conf naming a UDP port on loopback that this test holds and never answers,
 * and an /etc/hosts that names the model API: so every lookup a tenant asks for hangs until its
 * timeout, and the model API is still reached by name, as api.openai.com is. Nothing leaves the
 * machine: the model is the scripted stub on loopback, the tunnels end at a loopback server here.
 *
 * Workspace A, from inside its container, talks straight to its proxy socket: it keeps 16 CONNECTs
 * to names that never resolve in flight and asks for 2,000 tunnels to a destination that holds
 * them. Meanwhile workspace B's turns must complete within 2x their time alone + 1 s, and the
 * sidecar's descriptors stay under 1,500.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import dgram from "node:dgram";
import { promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createDockerClient } from "../../src/docker/engine.js";
import { Labels } from "../../src/docker/labels.js";
import { reapLabelled } from "../../src/docker/reaper.js";
import { SidecarClient } from "../../src/rpc/client.js";
import { CLI, childEnv } from "../support/cli-process.js";
import { ResponsesStub } from "../support/responses-stub.js";
import { testImage, uniqueId, TEST_GID, TEST_RUN_ID, TEST_UID } from "../support/sidecar.js";
import { waitFor, withTimeout } from "../support/wait.js";

/** A loopback address of its own for the silent resolver (port 53: resolv.conf has no port syntax). */
const SILENT_RESOLVER = "127.0.0.53";
const MODEL_HOST = "model-api.test";
const LOOKUPS_IN_FLIGHT = 16;
const TUNNELS = 2000;

/** Runs inside workspace A as its user, with the image's node: the attack, and a line of counts a second. */
const ATTACK = String.raw`
const net = require("net");
const sock = "/run/alive/net/proxy.sock";
const [holdPort, lookups, tunnels, lifetimeMs] = process.argv.slice(1).map(Number);
const stats = { tunnelsOpen: 0, tunnelsRefused: 0, tunnelsFailed: 0, lookupsPending: 0, lookupsAnswered: 0, statuses: {} };
const keep = [];
function tunnel() {
  const s = net.connect(sock);
  keep.push(s);
  let answered = false;
  s.on("error", () => { if (!answered) { answered = true; stats.tunnelsFailed++; } });
  s.on("close", () => { if (!answered) { answered = true; stats.tunnelsFailed++; } else if (s.opened) { s.opened = false; stats.tunnelsOpen--; } });
  s.write("CONNECT 127.0.0.1:" + holdPort + " HTTP/1.1\r\nHost: 127.0.0.1:" + holdPort + "\r\n\r\n");
  s.once("data", (d) => {
    answered = true;
    const status = String(d).split(" ")[1];
    stats.statuses[status] = (stats.statuses[status] || 0) + 1;
    if (status === "200") { s.opened = true; stats.tunnelsOpen++; } else stats.tunnelsRefused++;
  });
}
let n = 0;
function lookup() {
  const s = net.connect(sock);
  stats.lookupsPending++;
  let done = false;
  const again = () => { if (done) return; done = true; stats.lookupsPending--; stats.lookupsAnswered++; s.destroy(); setImmediate(lookup); };
  s.on("error", again).on("close", again).on("data", again);
  const name = "n" + (n++) + "-" + process.pid + ".never.test";
  s.write("CONNECT " + name + ":443 HTTP/1.1\r\nHost: " + name + ":443\r\n\r\n");
}
for (let i = 0; i < lookups; i++) lookup();
for (let i = 0; i < tunnels; i++) tunnel();
const timer = setInterval(() => console.log(JSON.stringify(stats)), 250);
setTimeout(() => { clearInterval(timer); console.log(JSON.stringify(stats)); process.exit(0); }, lifetimeMs);
`;

interface AttackStats {
  tunnelsOpen: number;
  tunnelsRefused: number;
  tunnelsFailed: number;
  lookupsPending: number;
  lookupsAnswered: number;
  statuses: Record<string, number>;
}

function openDescriptors(pid: number): Promise<number> {
  return fs.readdir(`/proc/${pid}/fd`).then((entries) => entries.length);
}

describe("a hostile workspace and a quiet one on one sidecar (own resolver that never answers)", () => {
  const docker = createDockerClient("unix:///var/run/docker.sock");
  let stub: ResponsesStub;
  let silent: dgram.Socket;
  let holder: net.Server;
  const held = new Set<net.Socket>();
  let root: string;
  let stateDir: string;
  let socketPath: string;
  let serve: ChildProcess | undefined;
  let serveExit: Promise<unknown> = Promise.resolve();
  let output = "";
  let attacker: ChildProcess | undefined;
  let attackerExit: Promise<unknown> = Promise.resolve();

  before(async () => {
    silent = dgram.createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      silent.once("error", reject);
      silent.bind(53, SILENT_RESOLVER, () => resolve());
    });
    stub = await ResponsesStub.start({ host: "127.0.0.1" });
    holder = net.createServer((socket) => {
      held.add(socket);
      socket.on("error", () => undefined).on("close", () => held.delete(socket));
    });
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-hostile-"));
    await fs.chmod(root, 0o755);
    stateDir = path.join(root, "state");
    socketPath = path.join(root, "sidecar.sock");
    await fs.mkdir(path.join(root, "workspaces"), { recursive: true, mode: 0o755 });
    const resolvConf = path.join(root, "resolv.conf");
    const hosts = path.join(root, "hosts");
    await fs.writeFile(resolvConf, `nameserver ${SILENT_RESOLVER}\noptions timeout:30 attempts:1\n`);
    await fs.writeFile(hosts, `127.0.0.1 localhost\n::1 localhost\n127.0.0.1 ${MODEL_HOST}\n`);
    const holdPort = (holder.address() as net.AddressInfo).port;
    // prettier-ignore
    const flags = [
      "--socket", socketPath,
      "--state-dir", stateDir,
      "--workspace-roots", path.join(root, "workspaces"),
      "--image", testImage(),
      "--extra-labels", `${Labels.runId}=${TEST_RUN_ID}`,
      "--disk", "off",
      "--openai-base-url", `http://${MODEL_HOST}:${stub.port}/v1`,
      "--codex-api-key", "sk-test-hostile-0123456789",
      "--model", "gpt-5.5",
      "--internal-destinations", `127.0.0.1:${holdPort}`,
      "--uid-range", "10000-60000",
      "--gid-range", "10000-60000",
      "--idle-timeout", "0",
      "--log-level", "info",
    ];
    // Its own mount namespace: the bind mounts are the sidecar's alone, and go when it does.
    const script = `mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"`;
    serve = spawn(
      "unshare",
      [
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        resolvConf,
        hosts,
        process.execPath,
        CLI,
        "serve",
        ...flags,
      ],
      {
        env: childEnv(),
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    serve.stdout?.setEncoding("utf8").on("data", (chunk: string) => (output = (output + chunk).slice(-200_000)));
    serve.stderr?.setEncoding("utf8").on("data", (chunk: string) => (output = (output + chunk).slice(-200_000)));
    serveExit = new Promise((resolve) => serve?.once("close", resolve));
    await waitFor(
      async () => {
        if (serve?.exitCode !== null) throw new Error(`serve exited (code ${serve?.exitCode}):\n${output}`);
        const client = await SidecarClient.connect(socketPath, { timeoutMs: 1000 });
        await client.close();
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 50, what: "alive-codex serve (own resolver) to answer on its socket" },
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${output.slice(-4000)}`);
    });
  });

  after(async () => {
    // The test's own listeners close first (their handles are gone by the time the hook ends): the
    // holder without waiting for its tunnels, which end with the sidecar below.
    silent?.close();
    holder?.close();
    if (attacker) {
      attacker.kill("SIGKILL");
      await withTimeout(attackerExit, 10_000, "the attack's docker exec to end").catch(() => undefined);
      for (const stream of [attacker.stdout, attacker.stderr]) stream?.destroy();
    }
    if (serve && serve.exitCode === null && serve.signalCode === null) {
      serve.kill("SIGTERM");
      await withTimeout(serveExit, 15_000, "serve to stop").catch(() => {
        serve?.kill("SIGKILL");
      });
    }
    if (stateDir) await reapLabelled(docker, [`${Labels.stateDir}=${stateDir}`], { deadlineMs: 30_000 });
    for (const stream of [serve?.stdout, serve?.stderr]) stream?.destroy();
    if (root) await fs.rm(root, { recursive: true, force: true });
    for (const socket of held) socket.destroy();
    await stub?.close();
  });

  test("A floods lookups and tunnels; B's turns stay within 2x alone + 1 s; the sidecar's descriptors stay under 1,500", async () => {
    const client = await SidecarClient.connect(socketPath);
    try {
      const ensure = async (name: string, uid: number) => {
        const workspaceId = uniqueId(name);
        const workspacePath = path.join(root, "workspaces", workspaceId);
        await fs.mkdir(workspacePath);
        await fs.chown(workspacePath, uid, TEST_GID);
        return client.ensureWorkspace({ workspaceId, userId: `user-${name}`, uid, gid: TEST_GID, workspacePath });
      };
      const a = await ensure("hostile-a", TEST_UID);
      const b = await ensure("quiet-b", TEST_UID + 1);
      const turnOfB = async (): Promise<number> => {
        const started = Date.now();
        const result = await client.runTurn({ workspaceId: b.workspaceId, input: "hello" }).result;
        assert.equal(result.status, "completed", `B's turn: ${JSON.stringify(result.error)}`);
        return Date.now() - started;
      };
      await turnOfB(); // warm: the first turn of a container pays for its launcher
      const alone = [await turnOfB(), await turnOfB(), await turnOfB()].sort((x, y) => x - y)[1] as number;

      const pid = serve?.pid;
      assert.ok(pid !== undefined);
      let peakFds = await openDescriptors(pid);
      const sampling = setInterval(() => {
        openDescriptors(pid).then(
          (n) => (peakFds = Math.max(peakFds, n)),
          () => undefined,
        );
      }, 50);
      let stats: AttackStats | undefined;
      let attackOutput = "";
      try {
        const holdPort = (holder.address() as net.AddressInfo).port;
        attacker = spawn(
          "docker",
          [
            "exec",
            "-u",
            `${TEST_UID}:${TEST_GID}`,
            a.containerId,
            "node",
            "-e",
            ATTACK,
            String(holdPort),
            String(LOOKUPS_IN_FLIGHT),
            String(TUNNELS),
            "120000",
          ],
          {
            stdio: ["ignore", "pipe", "pipe"],
          },
        );
        const spawned = attacker;
        attackerExit = new Promise((resolve) => spawned.once("close", resolve));
        attacker.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
          attackOutput = (attackOutput + chunk).slice(-10_000);
          const last = attackOutput.trim().split("\n").at(-1);
          try {
            stats = JSON.parse(last ?? "") as AttackStats;
          } catch {
            // a partial line: the next chunk completes it
          }
        });
        attacker.stderr?.setEncoding("utf8").on("data", (chunk: string) => (attackOutput += chunk));
        // Every tunnel asked for has its answer, and the lookups are in flight.
        await waitFor(
          () =>
            stats !== undefined &&
            stats.tunnelsOpen + stats.tunnelsRefused + stats.tunnelsFailed >= TUNNELS &&
            stats.lookupsPending >= LOOKUPS_IN_FLIGHT,
          {
            timeoutMs: 60_000,
            what: "the attack to be in place",
          },
        ).catch((error: Error) => {
          throw new Error(`${error.message}: ${JSON.stringify(stats)} ${attackOutput.slice(-2000)}`);
        });
        const underAttack = [await turnOfB(), await turnOfB(), await turnOfB()];
        const bound = 2 * alone + 1000;
        process.stdout.write(
          `# hostile tenant: B alone ${alone} ms, under attack ${underAttack.join("/")} ms (bound ${bound} ms); sidecar fds peak ${peakFds}; attack ${JSON.stringify(stats)}\n`,
        );
        for (const ms of underAttack)
          assert.ok(ms <= bound, `B's turn took ${ms} ms under attack, over 2 x ${alone} + 1000 ms`);
        assert.ok(peakFds < 1500, `the sidecar's descriptors peaked at ${peakFds}`);
        // The bound held A: it did not get its 2,000 tunnels, and was told why.
        assert.ok((stats?.tunnelsOpen ?? 0) < TUNNELS, `A holds ${stats?.tunnelsOpen} tunnels`);
        assert.ok((stats?.statuses["429"] ?? 0) > 0, `A was never answered 429: ${JSON.stringify(stats?.statuses)}`);
        // A's own lookups did not all vanish: the sidecar is still answering it.
        const before = stats?.lookupsAnswered ?? 0;
        await waitFor(() => (stats?.lookupsAnswered ?? 0) > before, {
          timeoutMs: 30_000,
          what: "A's lookups to be answered (refused or timed out)",
        });
      } finally {
        clearInterval(sampling);
        attacker?.kill("SIGKILL");
      }
      const listed = (await client.listWorkspaces()).workspaces.find((w) => w.workspaceId === a.workspaceId);
      assert.ok(listed !== undefined);
      // The sidecar is up and B still works after the attack.
      await turnOfB();
      await client.removeWorkspace(a.workspaceId);
      await client.removeWorkspace(b.workspaceId);
    } finally {
      await client.close();
    }
  });
});
