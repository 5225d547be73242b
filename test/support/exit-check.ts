/**
 * Loaded into every test file's process by scripts/test.mjs (`--import`), which also passes
 * `--test-force-exit`: the process exits as soon as its tests and after-hooks are done, and this
 * check runs at that exit. Whatever is still open then (a socket, a server, a child process, a
 * timer that keeps the loop alive) would have kept the file from exiting: the file fails, naming
 * each handle, instead of hanging until the runner's 600 s file timeout.
 */
import { execFileSync, type ChildProcess } from "node:child_process";
import net from "node:net";

interface Handle {
  hasRef?: () => boolean;
  constructor: { name: string };
}

const stdio = new Set<unknown>([process.stdin, process.stdout, process.stderr]);

function describe(handle: Handle): string {
  if (handle instanceof net.Socket) {
    const peer = handle.remoteAddress ? `${handle.remoteAddress}:${handle.remotePort}` : "a Unix socket";
    const connection = (handle as net.Socket & { _httpMessage?: { method?: string; path?: string } })._httpMessage;
    return `Socket to ${peer}${connection?.path ? ` (${connection.method ?? ""} ${connection.path})` : ""}, ${handle.bytesRead} bytes read${tracked(handle)}${execOf(connection?.path)}`;
  }
  if (handle instanceof net.Server) {
    const address = handle.address();
    const key = (handle as net.Server & { _connectionKey?: string })._connectionKey;
    return `Server listening on ${typeof address === "string" ? address : address ? `${address.address}:${address.port}` : (key ?? "?")}`;
  }
  const child = handle as unknown as Partial<ChildProcess>;
  if (typeof child.pid === "number" && Array.isArray(child.spawnargs))
    return `ChildProcess ${child.pid}: ${child.spawnargs.join(" ").slice(0, 200)}`;
  const timer = handle as unknown as { _onTimeout?: { name?: string }; _idleTimeout?: number };
  if (timer._onTimeout !== undefined)
    return `Timeout of ${timer._idleTimeout ?? "?"} ms (${timer._onTimeout?.name || "anonymous callback"})`;
  return handle.constructor.name;
}

/**
 * An exec connection startExec (src/docker/exec.ts) took over carries what it ran; one without it
 * never reached our code (the engine client made it and lost it).
 */
function tracked(socket: net.Socket): string {
  const command = (socket as unknown as Record<symbol, unknown>)[Symbol.for("alive-codex.exec-command")];
  if (typeof command === "string") return `; startExec tracked it: ${command}`;
  return (socket as net.Socket & { _httpMessage?: { path?: string } })._httpMessage?.path?.startsWith("/exec/")
    ? "; startExec never took it over"
    : "";
}

/**
 * For an exec's connection: what the engine says it ran (its command, user, whether it still runs),
 * asked synchronously (the process is exiting) of the engine's default socket; "" when it cannot say.
 */
function execOf(requestPath: string | undefined): string {
  const id = /^\/exec\/([0-9a-f]{12,64})\/start/.exec(requestPath ?? "")?.[1];
  if (!id) return "";
  try {
    const raw = execFileSync(
      "curl",
      ["-s", "--max-time", "2", "--unix-socket", "/var/run/docker.sock", `http://engine/exec/${id}/json`],
      { encoding: "utf8", timeout: 3000 },
    );
    const info = JSON.parse(raw) as {
      message?: string;
      Running?: boolean;
      ExitCode?: number;
      ContainerID?: string;
      ProcessConfig?: { entrypoint?: string; arguments?: string[]; user?: string };
    };
    if (!info.ProcessConfig)
      return `; the engine no longer knows the exec (${info.message ?? "no answer"}): its container is gone`;
    const command = [info.ProcessConfig?.entrypoint, ...(info.ProcessConfig?.arguments ?? [])].join(" ").slice(0, 300);
    return `; the exec ran ${JSON.stringify(command)} as ${info.ProcessConfig?.user || "the image's user"} in ${info.ContainerID?.slice(0, 12) ?? "?"}, ${info.Running ? "still running" : `exit ${info.ExitCode}`}`;
  } catch {
    return "";
  }
}

/**
 * Closed, but the event loop has not run the handle's close callback yet (a server emits "close"
 * before that): gone on the next turn of the loop, so it would not keep the process alive.
 */
function isClosing(handle: Handle): boolean {
  if (handle instanceof net.Server) return !handle.listening;
  if (handle instanceof net.Socket) return handle.destroyed;
  return false;
}

process.on("exit", (code) => {
  const getHandles = (process as unknown as { _getActiveHandles?: () => Handle[] })._getActiveHandles;
  const open = (getHandles?.call(process) ?? []).filter(
    (h) => !stdio.has(h) && (typeof h.hasRef !== "function" || h.hasRef()) && !isClosing(h),
  );
  if (open.length === 0) return;
  process.stderr.write(
    `exit-check: this test file left ${open.length} handle(s) open after its last test; without --test-force-exit it would not have exited:\n` +
      open.map((h) => `  - ${describe(h)}`).join("\n") +
      `\n  (process.getActiveResourcesInfo(): ${JSON.stringify(process.getActiveResourcesInfo())})\n`,
  );
  if (code === 0) process.exitCode = 1;
});
