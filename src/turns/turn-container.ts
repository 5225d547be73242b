/**
 * The container half of one turn: the exec bridge the SDK talks to, codex started through the
 * workspace's launcher with its stdio on the turn's files (codex/turn-files.ts), those files
 * followed and relayed to the bridge, codex's exit awaited through the engine, host files made
 * readable inside, and the sweep of the turn's processes when it is aborted or fails.
 *
 * A turn adopted after a restart (turn-adoption.ts) launches nothing: the SDK's bridge is fed from
 * the files of the codex an earlier sidecar started, from their first byte, and its exit is that
 * exec's. Abandoning a turn (the sidecar stops and leaves it running) ends the bridge and leaves
 * codex, its files and its processes alone.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { once } from "node:events";
import type { EnginePort } from "../docker/engine-port.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { WorkspaceRecord } from "../workspace/record.js";
import { CONTAINER_TURN_FILES_DIR } from "../workspace/spec.js";
import { ExecBridge } from "../codex/bridge.js";
import { LineCapTransform, StderrRelay } from "../codex/codex-output.js";
import { sweepTurn, sweepUntilExited } from "./turn-sweep.js";
import type { FileFollower } from "../codex/file-follower.js";
import { ExecExitWatch } from "./exec-exit.js";
import { followTurnFiles, removeTurnFiles, reopenTurnFiles } from "../codex/turn-files.js";
import { launchCodex, type CodexLaunchOptions, type LaunchedCodex, type TurnLaunch } from "./codex-launch.js";

export { launchTarget, type TurnLaunch } from "./codex-launch.js";

/** Codex's launch (the launchers, what ALIVE_MCP_TOKEN holds, the trust bundle), and the turn's relay. */
export interface TurnContainerOptions extends CodexLaunchOptions {
  engine: EnginePort;
  bridgesDir: string;
  /** The longest line codex may write to stdout (ALIVE_CODEX_OUTPUT_LINE_MAX_MB), in bytes. */
  outputLineMaxBytes: number;
}

export class TurnContainer {
  private bridge: ExecBridge | null = null;
  /** This turn's file in the workspace's run dir (host path), removed with the turn. */
  private turnFile: string | null = null;
  private stderr: StderrRelay | null = null;
  private exitCode: number | null | undefined;
  private aborting: Promise<number> | null = null;
  /** Codex's stdout on its way to the bridge, its lines bounded (codex/codex-output.ts). */
  private stdout: LineCapTransform | null = null;
  /** After an abort nothing of codex's output is passed on. */
  private discarding = false;
  private abandoned = false;
  /** dispose() began: nothing more is started (a launch in flight finishes, and its output is not followed). */
  private disposed = false;
  private launch: TurnLaunch | null;
  private followers: FileFollower[] = [];
  private handles: Array<{ close(): Promise<void> }> = [];
  private exitWatch: ExecExitWatch | null = null;
  started = false;

  constructor(
    private readonly options: TurnContainerOptions,
    private readonly record: WorkspaceRecord,
    private readonly turnId: string,
    private readonly log: Logger,
    /** What codex sends as its API key: this turn's credential for the model proxy, never the real key. */
    private readonly modelCredential: string,
    /** Fails the turn with codex_output (its processes are swept): codex wrote past a bound. */
    private readonly refuseOutput: (message: string) => void,
    /** Told where codex runs once it is launched (the turn's record), before its output is followed. */
    private readonly onLaunched: (launch: TurnLaunch) => Promise<void>,
    /** A turn adopted after a restart: the codex already running, followed instead of launched. */
    adopted: TurnLaunch | null = null,
  ) {
    this.launch = adopted;
    this.started = adopted !== null;
  }

  get bridgeEnv(): Record<string, string> {
    if (!this.bridge) throw new Error("bridge not prepared");
    return this.bridge.env;
  }

  async prepare(): Promise<void> {
    await fs.mkdir(this.options.bridgesDir, { recursive: true, mode: 0o700 });
    this.bridge = await ExecBridge.create(
      path.join(this.options.bridgesDir, `${this.turnId}-${randomBytes(4).toString("hex")}`),
    );
  }

  /** Waits for the SDK's argv and prompt, runs codex in the container, relays its stdio to the bridge. */
  async run(signal: AbortSignal): Promise<void> {
    const bridge = this.bridge;
    if (!bridge) throw new Error("bridge not prepared");
    try {
      await this.runCodex(bridge, signal);
    } catch (error) {
      // Let the bridge script exit, so the SDK's stream ends instead of waiting for output.
      await bridge.finish(255).catch(() => undefined);
      throw error;
    }
  }

  private async runCodex(bridge: ExecBridge, signal: AbortSignal): Promise<void> {
    const request = await bridge.received();
    // Stopped before codex was launched: the bridge script ends here (it ignores the SDK's SIGTERM).
    if (signal.aborted || this.abandoned) return void (await bridge.finish(130).catch(() => undefined));
    const hostTmp = this.record.paths.tmp;
    let launcherExit: Promise<number | null> | null = null;
    let files: LaunchedCodex["files"];
    if (this.launch !== null) {
      const reopened = await reopenTurnFiles(hostTmp, this.launch.files);
      if (reopened === null) throw new Error("the turn's output files in the workspace's TMPDIR are gone");
      files = reopened;
      this.handles.push(files.out, files.err);
    } else {
      const argv = await this.relocateHostFiles(request.argv);
      const launched = await launchCodex(
        this.options,
        this.record,
        this.turnId,
        this.modelCredential,
        argv,
        request.stdin,
        this.log,
      );
      files = launched.files;
      this.handles.push(files.out, files.err);
      launcherExit = launched.launcherExit;
      this.launch = launched.launch;
      this.started = true;
      await this.onLaunched(this.launch);
    }
    // Aborted while codex was being started: the sweep may run before the launcher has exec'd codex,
    // so it is repeated until the exec ends (bounded).
    if (this.aborting !== null || (this.disposed && !this.abandoned)) void this.sweep();
    // Disposed meanwhile (the turn ended while codex was launched): what the launch made is let go here.
    if (this.disposed) {
      await Promise.all([files.out.close(), files.err.close()].map((p) => p.catch(() => undefined)));
      if (!this.abandoned && this.launch) await removeTurnFiles(this.record.paths.tmp, this.launch.files);
      return;
    }
    const maxLineBytes = this.options.outputLineMaxBytes;
    const stdout = new LineCapTransform(maxLineBytes, () => {
      this.log.warn("codex wrote a stdout line over the bound: the turn fails", { maxLineBytes });
      this.refuseOutput(
        `codex wrote an output line over ${maxLineBytes} bytes (the bound is ALIVE_CODEX_OUTPUT_LINE_MAX_MB); the turn was stopped there and its processes swept`,
      );
    });
    this.stdout = stdout;
    stdout.pipe(bridge.stdout, { end: false });
    const stderr = new StderrRelay({
      forward: (chunk) => {
        if (!bridge.stderr.writableEnded) bridge.stderr.write(chunk);
      },
      log: (line) => this.record.sink.write(`turn=${this.turnId} codex: ${line}`),
    });
    this.stderr = stderr;
    const [outFollower, errFollower] = followTurnFiles(files, hostTmp, this.launch.files, {
      out: {
        write: (chunk) => {
          this.exitWatch?.poke();
          if (this.discarding) return;
          if (!stdout.write(chunk)) return new Promise<void>((resolve) => stdout.once("drain", resolve));
        },
      },
      err: { write: (chunk) => stderr.write(chunk) },
    });
    this.followers.push(outFollower, errFollower);
    const exitWatch = new ExecExitWatch(this.options.engine, this.launch.execId);
    this.exitWatch = exitWatch;
    if (this.abandoned) exitWatch.stop();
    void launcherExit?.then(() => exitWatch.poke());
    const code = await exitWatch.exited();
    if (this.abandoned) return;
    // Everything codex wrote is passed on before the bridge ends.
    await Promise.all([outFollower.finish(), errFollower.finish()]);
    stdout.end();
    if (!this.discarding) await once(stdout, "end").catch(() => undefined);
    stderr.end();
    if (stdout.droppedBytes > 0 || stderr.notForwardedBytes > 0 || stderr.unloggedLines > 0) {
      this.log.info("codex's output went past its bounds", {
        stdoutDroppedBytes: stdout.droppedBytes,
        stderrNotForwardedBytes: stderr.notForwardedBytes,
        stderrUnloggedLines: stderr.unloggedLines,
      });
    }
    this.exitCode = code;
    await bridge.finish(code ?? 255);
  }

  /**
   * The output schema the SDK wrote on the host is copied where codex in the container can read it:
   * the workspace's run dir, root-owned on the host and mounted read-only. Never the tenant's TMPDIR:
   * there a process of theirs could swap the new name for a symlink between two of root's calls and
   * have root write or chmod a host file of its choosing (CWE-367/CWE-59). Nothing in the run dir's
   * path is the tenant's, and `wx` refuses to reuse a name.
   */
  private async relocateHostFiles(argv: string[]): Promise<string[]> {
    const out = [...argv];
    const index = out.indexOf("--output-schema");
    if (index >= 0 && out[index + 1] !== undefined) {
      const schema = await fs.readFile(out[index + 1] as string);
      const dir = this.record.paths.turnFiles;
      // Exactly 0755 whatever the umask: the workspace uid must be able to read it.
      if ((await fs.mkdir(dir, { recursive: true, mode: 0o755 })) !== undefined) await fs.chmod(dir, 0o755);
      const name = `${this.turnId}-${randomBytes(4).toString("hex")}-schema.json`;
      const file = await fs.open(path.join(dir, name), "wx", 0o644);
      this.turnFile = path.join(dir, name);
      try {
        await file.writeFile(schema);
        await file.chmod(0o644);
      } finally {
        await file.close();
      }
      out[index + 1] = path.posix.join(CONTAINER_TURN_FILES_DIR, name);
    }
    return out;
  }

  /** Turns whatever ended the SDK's stream into an error a person can act on. */
  async explainFailure(error: unknown): Promise<{ code: string; message: string }> {
    const { engine } = this.options;
    const { containerId } = this.record;
    if (this.exitCode === null || (this.exitCode ?? 0) >= 128) {
      // Killed, or no exit code: the container may be going down; the engine says so a moment later.
      await engine.waitNotRunning(containerId, AbortSignal.timeout(1000));
    }
    const info = await engine.inspect(containerId).catch(() => null);
    if (info === null || !info.State.Running) {
      const detail =
        info === null
          ? "was removed"
          : `stopped (exit code ${info.State.ExitCode}${info.State.OOMKilled ? ", killed for exceeding its memory limit" : ""})`;
      return { code: "container_died", message: `the workspace container ${detail} during the turn` };
    }
    const stderr = (this.stderr?.tail ?? "").trim().split("\n").slice(-5).join("\n");
    if (this.exitCode !== undefined && this.exitCode !== 0) {
      return {
        code: "codex_exit",
        message: `codex exited with code ${this.exitCode ?? "unknown"}${stderr ? `: ${stderr}` : ""}`,
      };
    }
    return {
      code: "codex_error",
      message: `${errorMessage(error)}${stderr && !errorMessage(error).includes(stderr) ? `: ${stderr}` : ""}`,
    };
  }

  /** Sweeps the turn's processes and ends the bridge, once; resolves with how many were killed. */
  abort(): Promise<number> {
    this.aborting ??= (async () => {
      this.drainStdout();
      const swept = this.started ? await this.sweep() : 0;
      await this.bridge?.finish(130).catch(() => undefined);
      return swept;
    })();
    return this.aborting;
  }

  /** After an abort nobody reads codex's output any more: what is left is dropped. */
  private drainStdout(): void {
    this.discarding = true;
    this.stdout?.unpipe();
    this.stdout?.resume();
  }

  /**
   * The sidecar stops and leaves the turn running: the bridge ends (the SDK's stream with it), and
   * codex, its processes and its files are left alone for the next sidecar to adopt.
   */
  async abandon(): Promise<void> {
    this.abandoned = true;
    this.discarding = true;
    this.exitWatch?.stop();
    await Promise.all(this.followers.map((f) => f.stop()));
    this.stdout?.unpipe();
    await this.bridge?.finish(143).catch(() => undefined);
  }

  /** Kills every process of this turn in the container (turn-sweep.ts); with an exec, until it has ended. */
  sweep(): Promise<number> {
    const target = { engine: this.options.engine, record: this.record, turnId: this.turnId, log: this.log };
    return this.launch ? sweepUntilExited(target, this.launch.execId) : sweepTurn(target);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.drainStdout();
    await Promise.all(this.followers.map((f) => f.stop()));
    await Promise.all(this.handles.map((h) => h.close().catch(() => undefined)));
    this.handles = [];
    await this.bridge?.dispose().catch(() => undefined);
    if (this.abandoned) return;
    if (this.launch) await removeTurnFiles(this.record.paths.tmp, this.launch.files);
    if (this.turnFile) await fs.rm(this.turnFile, { force: true }).catch(() => undefined);
  }
}
