/**
 * alive-codex serve: runs the sidecar. Settings come from flags, then the environment, then defaults.
 * SIGTERM/SIGINT: stop accepting connections; then, with ALIVE_CODEX_ON_STOP=leave (the default), leave
 * running turns in their containers for the next sidecar and exit within ~2 s, or with drain, give
 * them the shutdown grace and cancel the rest; close the socket.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { SETTINGS, configSecrets, loadConfig, renderSettingsHelp, type SidecarConfig } from "../../config.js";
import { createLogger, type Logger } from "../../log.js";
import type { RunningSidecar } from "../../sidecar.js";
import { startRpcServer } from "../../rpc/server.js";
import { SocketInUseError, probeSocket } from "../../rpc/socket.js";
import { writeLine, type CliContext, type SignalName } from "../cli-context.js";
import { ExitCode, UsageError } from "../cli-errors.js";
import { readPackageVersion } from "../../version.js";

/** How long the connections get to flush when the sidecar leaves its turns running: the stop stays within 2 s. */
const LEAVE_CLOSE_GRACE_MS = 300;

export const SERVE_USAGE = `Usage: alive-codex serve [--setting value ...]

Runs the sidecar: a JSON-RPC server on a Unix socket that runs codex turns in per-workspace
containers. Every setting below is a flag or an environment variable; the flag wins.

Settings:`;

/** parseArgs options from the settings table: every setting takes a value; a boolean one may stand alone. */
const SERVE_OPTIONS: NonNullable<ParseArgsConfig["options"]> = {
  help: { type: "boolean", short: "h" },
  ...Object.fromEntries(
    SETTINGS.map((s) => [s.flag.slice("--".length), { type: s.boolean ? "boolean" : "string" } as const]),
  ),
};

/** `serve`'s arguments → the flags loadConfig takes ("--state-dir" → its value), via node:util parseArgs. */
export function parseServeArgs(args: string[], command = "serve"): { help: boolean; flags: Record<string, string> } {
  // Not strict: an unknown flag or a missing value is reported here, in the CLI's own words.
  const { tokens } = parseArgs({ args, options: SERVE_OPTIONS, strict: false, allowPositionals: true, tokens: true });
  const flags: Record<string, string> = {};
  let help = false;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i] as (typeof tokens)[number];
    if (token.kind === "option-terminator") continue;
    if (token.kind === "positional")
      throw new UsageError(`unexpected argument ${JSON.stringify(token.value)}`, command);
    if (token.name === "help") {
      help = true;
      continue;
    }
    const flag = `--${token.name}`;
    const setting = SETTINGS.find((s) => s.flag === flag);
    if (setting === undefined || !token.rawName.startsWith("--"))
      throw new UsageError(`unknown setting ${token.rawName}`, command);
    if (setting.boolean) {
      // Bare means true; as before parseArgs, a following plain word is the value ("--allow-root false").
      const next = tokens[i + 1];
      if (token.value === undefined && next?.kind === "positional") {
        flags[flag] = next.value;
        i++;
      } else flags[flag] = token.value ?? "true";
      continue;
    }
    if (token.value === undefined || (!token.inlineValue && token.value.startsWith("--"))) {
      throw new UsageError(`${flag} needs a value (write ${flag}=VALUE for one that starts with --)`, command);
    }
    flags[flag] = token.value;
  }
  return { help, flags };
}

export interface ServeDependencies {
  startSidecar(config: SidecarConfig, log: Logger): Promise<Pick<RunningSidecar, "service" | "close" | "leave">>;
  /** Where log lines go; stdout/stderr by level when absent. */
  writeLog?: (line: string) => void;
}

/** The real core, loaded only when serving so the client commands start fast. */
const defaultDependencies: ServeDependencies = {
  startSidecar: async (config, log) => (await import("../../sidecar.js")).startSidecar(config, log),
};

export async function serveCommand(
  args: string[],
  ctx: CliContext,
  deps: ServeDependencies = defaultDependencies,
): Promise<number> {
  const { help, flags } = parseServeArgs(args);
  if (help) {
    writeLine(ctx.stdout, `${SERVE_USAGE}\n${renderSettingsHelp()}`);
    return ExitCode.ok;
  }
  const config = loadConfig(flags);
  const log = createLogger({
    level: config.logLevel,
    secrets: configSecrets(config),
    ...(deps.writeLog ? { write: deps.writeLog } : {}),
  });
  const version = readPackageVersion();

  // Refuse a live socket before starting anything else (startRpcServer checks again, atomically enough).
  if ((await probeSocket(config.socketPath)) === "live") throw new SocketInUseError(config.socketPath);

  const running = await deps.startSidecar(config, log);
  let server;
  try {
    server = await startRpcServer({
      socketPath: config.socketPath,
      socketGroup: config.socketGroup,
      service: running.service,
      policy: config,
      log,
      version,
      ...(config.onStop === "leave" ? { closeGraceMs: LEAVE_CLOSE_GRACE_MS } : {}),
    });
  } catch (error) {
    await running.close(0);
    throw error;
  }
  log.info("alive-codex sidecar ready", { version, socketPath: config.socketPath });

  const signal = await new Promise<SignalName>((resolve) => {
    const onTerm = (): void => finish("SIGTERM");
    const onInt = (): void => finish("SIGINT");
    const finish = (name: SignalName): void => {
      ctx.signals.off("SIGTERM", onTerm);
      ctx.signals.off("SIGINT", onInt);
      resolve(name);
    };
    ctx.signals.on("SIGTERM", onTerm);
    ctx.signals.on("SIGINT", onInt);
  });

  const onSecondSignal = (): void => {
    log.warn("second signal during shutdown: leaving now");
    ctx.exit(ExitCode.failed);
  };
  ctx.signals.on("SIGTERM", onSecondSignal);
  ctx.signals.on("SIGINT", onSecondSignal);
  try {
    log.info("shutting down", {
      signal,
      onStop: config.onStop,
      ...(config.onStop === "drain" ? { graceMs: config.shutdownGraceMs } : {}),
    });
    await server.stopAccepting();
    if (config.onStop === "leave") {
      const left = await running.leave();
      log.info("running turns left for the next sidecar", { turns: left });
      await server.close();
    } else {
      await running.close(config.shutdownGraceMs);
      await server.close();
    }
    log.info("stopped");
    return ExitCode.ok;
  } finally {
    ctx.signals.off("SIGTERM", onSecondSignal);
    ctx.signals.off("SIGINT", onSecondSignal);
  }
}
