/**
 * The RPC server on top of a REAL sidecar: startTestSidecar (real engine, real runtime image,
 * labelled containers) plus startRpcServer on its socket with the real service, so protocol tests
 * talk to the daemon exactly as Alive's server does. Gives typed clients (SidecarClient), raw line
 * connections for what a typed client cannot send, and a snapshot of everything a request could
 * have left behind (containers, state dirs, bridges, codex processes).
 */
import { onJsonLines } from "./fake-service.js";
import { promises as fs, readdirSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { createDockerClient, type Docker } from "../../src/docker/engine.js";
import { createLogger } from "../../src/log.js";
import { sidecarVersion } from "../../src/sidecar.js";
import { SidecarClient } from "../../src/rpc/client.js";
import { startRpcServer, type RpcServer } from "../../src/rpc/server.js";
import { bridgesDir } from "../../src/workspace/paths.js";
import {
  INSTANCE_LABEL,
  TEST_API_KEY,
  removeInstanceContainers,
  startTestSidecar,
  type TestSidecar,
  type TestSidecarOptions,
} from "./sidecar.js";
import { waitFor } from "./wait.js";

/** The engine the tests themselves use, whatever `--docker-host` the sidecar under test was given. */
export const HOST_DOCKER = "unix:///var/run/docker.sock";

export interface WireError {
  code: number;
  message: string;
  data?: { field?: string; reason?: string; received?: string; [key: string]: unknown };
}

/** One line the server sent: a response (id + result/error) or a notification (method + params). */
export interface WireMessage {
  jsonrpc?: string;
  id?: string | number | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: WireError;
}

const isResponse = (message: WireMessage): boolean => message.method === undefined && "id" in message;

/** A plain socket speaking lines: sends exactly the bytes it is given, records every line it gets. */
export class RawConnection {
  /** Every message received, in arrival order. */
  readonly messages: WireMessage[] = [];
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  #nextId = 1;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    onJsonLines(socket, (message) => this.messages.push(message as WireMessage));
    socket.on("error", () => {});
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
  }

  static connect(socketPath: string): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      socket.once("connect", () => {
        socket.removeListener("error", reject);
        resolve(new RawConnection(socket));
      });
      socket.once("error", reject);
    });
  }

  get isClosed(): boolean {
    return this.socket.destroyed;
  }

  /** Writes bytes as they are (no newline added). */
  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Writes one request line and returns its id (chosen here unless given). */
  send(method: string, params?: unknown, id: string | number = `r${this.#nextId++}`): string | number {
    const message = params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params };
    this.write(`${JSON.stringify(message)}\n`);
    return id;
  }

  /** The responses (not notifications) carrying `id`, at index `from` or later. */
  responses(id: string | number | null, from = 0): WireMessage[] {
    return this.messages.slice(from).filter((m) => isResponse(m) && m.id === id);
  }

  /** Waits for the first response carrying `id` at index `from` or later. */
  async response(
    id: string | number | null,
    options: { from?: number; timeoutMs?: number } = {},
  ): Promise<WireMessage> {
    const from = options.from ?? 0;
    return waitFor(() => this.responses(id, from)[0], {
      timeoutMs: options.timeoutMs ?? 10_000,
      what: `the response to id ${JSON.stringify(id)}`,
    });
  }

  /** Sends a request and waits for its response. */
  async call(
    method: string,
    params?: unknown,
    options: { id?: string | number; timeoutMs?: number } = {},
  ): Promise<WireMessage> {
    const from = this.messages.length;
    const id = this.send(method, params, options.id);
    return this.response(id, { from, ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) });
  }

  notifications(method: string): WireMessage[] {
    return this.messages.filter((m) => m.method === method && !("id" in m));
  }

  /** Half-close: the server sees EOF and may still answer. */
  end(): void {
    this.socket.end();
  }

  /** Drops the connection at once (a client that died). */
  destroy(): void {
    this.socket.destroy();
  }
}

/** The id a raw line's answer will carry: the line's own id when the server can read one, else null. */
function replyIdOf(line: string | Buffer): string | number | null {
  try {
    const value = JSON.parse(typeof line === "string" ? line : line.toString("utf8")) as unknown;
    if (typeof value === "object" && value !== null && !Array.isArray(value) && "id" in value) {
      const id = (value as { id: unknown }).id;
      if (typeof id === "string" || (typeof id === "number" && Number.isFinite(id))) return id;
    }
  } catch {
    // Not JSON: answered with id null.
  }
  return null;
}

export interface RpcHarness {
  t: TestSidecar;
  server: RpcServer;
  socketPath: string;
  /** A docker client for the real engine (t.docker talks to whatever --docker-host the sidecar got). */
  docker: Docker;
  /** A typed client on a new connection; closed by close(). */
  client(): Promise<SidecarClient>;
  /** A raw line connection; destroyed by close(). */
  raw(): Promise<RawConnection>;
  /**
   * Sends `line` (a newline is added unless it ends with one) on `conn` and waits for the reply:
   * the first response after the send carrying `id`, by default the line's own id when readable, else null.
   */
  rawLine(
    conn: RawConnection,
    line: string | Buffer,
    options?: { id?: string | number | null; timeoutMs?: number },
  ): Promise<WireMessage>;
  /** What requests could leave behind; compare two of them to prove a refusal made nothing. */
  snapshot(): Promise<MachineSnapshot>;
  /** Closes clients and the server, stops the sidecar and removes its containers and tmp dirs. */
  close(): Promise<void>;
}

export interface RpcHarnessOptions extends TestSidecarOptions {
  /** Passed to startRpcServer. */
  maxInFlightPerConnection?: number;
}

export async function startRpcHarness(options: RpcHarnessOptions = {}): Promise<RpcHarness> {
  const t = await startTestSidecar(options);
  const docker = createDockerClient(HOST_DOCKER);
  const log = createLogger({
    level: "debug",
    secrets: [TEST_API_KEY],
    write: (line) => {
      t.logLines.push(line);
      if (process.env.ALIVE_CODEX_TEST_DEBUG) process.stderr.write(`${line}\n`);
    },
  });
  let server: RpcServer;
  try {
    server = await startRpcServer({
      socketPath: t.config.socketPath,
      socketGroup: null,
      service: t.sidecar.service,
      policy: t.config,
      log,
      version: sidecarVersion(),
      ...(options.maxInFlightPerConnection === undefined
        ? {}
        : { maxInFlightPerConnection: options.maxInFlightPerConnection }),
    });
  } catch (error) {
    await closeSidecar(t, docker);
    throw error;
  }
  const clients = new Set<SidecarClient>();
  const raws = new Set<RawConnection>();
  let closing: Promise<void> | null = null;
  return {
    t,
    server,
    socketPath: t.config.socketPath,
    docker,
    async client() {
      const client = await SidecarClient.connect(t.config.socketPath);
      clients.add(client);
      return client;
    },
    async raw() {
      const conn = await RawConnection.connect(t.config.socketPath);
      raws.add(conn);
      return conn;
    },
    async rawLine(conn, line, lineOptions = {}) {
      const from = conn.messages.length;
      const id = lineOptions.id === undefined ? replyIdOf(line) : lineOptions.id;
      const endsWithNewline = typeof line === "string" ? line.endsWith("\n") : line.at(-1) === 0x0a;
      conn.write(endsWithNewline ? line : Buffer.concat([Buffer.from(line), Buffer.from("\n")]));
      return conn.response(id, {
        from,
        ...(lineOptions.timeoutMs === undefined ? {} : { timeoutMs: lineOptions.timeoutMs }),
      });
    },
    snapshot: () => takeSnapshot(t, docker),
    close() {
      closing ??= (async () => {
        await Promise.all([...clients].map((c) => c.close().catch(() => undefined)));
        for (const conn of raws) conn.destroy();
        await server.close();
        await closeSidecar(t, docker);
      })();
      return closing;
    },
  };
}

/** t.cleanup(), but reaping through the real engine: a sidecar given an unreachable --docker-host cannot list its own containers. */
async function closeSidecar(t: TestSidecar, docker: Docker): Promise<void> {
  await t.stop();
  await removeInstanceContainers(docker, t.instance);
  await fs.rm(t.root, { recursive: true, force: true });
}

export interface MachineSnapshot {
  /** "<name> <id>" of every container carrying this sidecar's instance label. */
  containers: string[];
  /** Entries of <stateDir>/workspaces. */
  workspaceDirs: string[];
  /** Entries of <stateDir>/bridges: one per turn in flight. */
  bridges: string[];
  /** "<container> <cmd>" of every codex process in this sidecar's running containers (docker top). */
  codexInContainers: string[];
  /** Host processes running this sidecar's exec bridge script (the SDK's "codex", under the state dir). */
  bridgeProcesses: string[];
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/** A codex process as `docker top` shows it: the binary exec'd as `codex ...` (or by its path). */
const CODEX_COMMAND = /(^|\/)codex(\s|$)/;

export async function takeSnapshot(t: TestSidecar, docker: Docker): Promise<MachineSnapshot> {
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`${INSTANCE_LABEL}=${t.instance}`] },
  });
  const codexInContainers: string[] = [];
  for (const container of containers.filter((c) => c.State === "running")) {
    const name = (container.Names[0] ?? container.Id).replace(/^\//, "");
    const top = await docker
      .getContainer(container.Id)
      .top()
      .catch(() => null);
    if (top === null) continue;
    const cmdColumn = top.Titles.findIndex((title: string) => title === "CMD" || title === "COMMAND");
    for (const row of top.Processes as string[][]) {
      const cmd = row[cmdColumn] ?? "";
      if (CODEX_COMMAND.test(cmd)) codexInContainers.push(`${name} ${cmd}`);
    }
  }
  return {
    containers: containers.map((c) => `${(c.Names[0] ?? "").replace(/^\//, "")} ${c.Id}`).sort(),
    workspaceDirs: await listDir(path.join(t.stateDir, "workspaces")),
    bridges: await listDir(bridgesDir(t.stateDir)),
    codexInContainers: codexInContainers.sort(),
    bridgeProcesses: hostProcessesMentioning(path.join(t.stateDir, "bin")),
  };
}

/** "<pid> <cmdline>" of host processes whose command line contains `needle`. */
export function hostProcessesMentioning(needle: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0/g, " ").trim();
    } catch {
      continue; // gone meanwhile
    }
    if (cmdline.includes(needle)) out.push(`${entry} ${cmdline}`);
  }
  return out.sort();
}
