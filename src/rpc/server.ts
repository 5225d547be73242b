/**
 * The RPC server: a Unix socket (mode 0660, optionally group-owned) speaking newline-delimited
 * JSON-RPC 2.0, dispatching to a SidecarService through the method table.
 */
import net from "node:net";
import type { Logger } from "../log.js";
import type { SidecarService } from "../service.js";
import type { WorkspacePolicy } from "../policy/workspace-policy.js";
import { MAX_LINE_BYTES } from "./framing.js";
import { METHOD_TABLE, type ServedMethod } from "./methods.js";
import { MAX_UNREAD_BYTES, ServerConnection } from "./server-connection.js";
import { SocketInUseError, applySocketPermissions, prepareSocketPath, probeSocket } from "./socket.js";

export interface RpcServerOptions {
  socketPath: string;
  /** Group name or numeric gid to own the socket; null leaves the sidecar's own group. */
  socketGroup?: string | null;
  service: SidecarService;
  /** uid/gid ranges, allowRoot and workspace roots for param validation (a SidecarConfig fits). */
  policy: WorkspacePolicy;
  log: Logger;
  version: string;
  /** Defaults to 1 MiB, the protocol's bound. */
  maxLineBytes?: number;
  /** Requests in flight per connection before -32007; defaults to 1024. */
  maxInFlightPerConnection?: number;
  /** Output a client may leave unread before it is dropped (and its turns cancelled); default 64 MiB. */
  maxUnreadBytes?: number;
  /** How long close() lets in-flight answers go out per connection; defaults to 1000 ms. */
  closeGraceMs?: number;
  /** The methods answered, by wire name; defaults to every method of the protocol (METHOD_TABLE). */
  methods?: ReadonlyMap<string, ServedMethod>;
}

export interface RpcServer {
  readonly socketPath: string;
  /** Connections open right now. */
  readonly connections: number;
  /** Stops accepting new connections (the socket file goes away); open connections carry on. */
  stopAccepting(): Promise<void>;
  /** Stops accepting, aborts what is in flight, ends every connection. Idempotent. */
  close(): Promise<void>;
}

export async function startRpcServer(options: RpcServerOptions): Promise<RpcServer> {
  const log = options.log.child({ component: "rpc" });
  const connections = new Set<ServerConnection>();
  let nextConnectionId = 1;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const connection = new ServerConnection(
      {
        socket,
        methods: options.methods ?? METHOD_TABLE,
        service: options.service,
        policy: options.policy,
        log,
        maxLineBytes: options.maxLineBytes ?? MAX_LINE_BYTES,
        maxInFlight: options.maxInFlightPerConnection ?? 1024,
        maxUnreadBytes: options.maxUnreadBytes ?? MAX_UNREAD_BYTES,
      },
      nextConnectionId++,
    );
    connections.add(connection);
    void connection.closed.then(() => connections.delete(connection));
  });

  await prepareSocketPath(options.socketPath, log);
  try {
    await listen(server, options.socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE") throw error;
    // Lost a race with another starter: decide again, once.
    if ((await probeSocket(options.socketPath)) === "live") throw new SocketInUseError(options.socketPath);
    await prepareSocketPath(options.socketPath, log);
    await listen(server, options.socketPath);
  }
  server.on("error", (error) => log.error("rpc server error", { error }));

  try {
    await applySocketPermissions(options.socketPath, options.socketGroup);
  } catch (error) {
    await closeServer(server);
    throw error;
  }
  log.info("rpc server listening", {
    socketPath: options.socketPath,
    version: options.version,
    socketGroup: options.socketGroup ?? null,
  });

  let stopping: Promise<void> | null = null;
  let closing: Promise<void> | null = null;
  const stopAccepting = (): Promise<void> => {
    stopping ??= closeServer(server);
    return Promise.resolve();
  };
  return {
    socketPath: options.socketPath,
    get connections() {
      return connections.size;
    },
    stopAccepting,
    close: () => {
      closing ??= (async () => {
        await stopAccepting();
        await Promise.all([...connections].map((connection) => connection.close(options.closeGraceMs)));
        await stopping;
        log.info("rpc server closed", { socketPath: options.socketPath });
      })();
      return closing;
    },
  };
}

function listen(server: net.Server, socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      server.off("listening", onListening);
      reject(error);
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(socketPath);
  });
}

/** Stops listening; resolves once every connection has gone too (net.Server semantics). */
function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
  });
}
