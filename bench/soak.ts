/**
 * The restart soak: mixed concurrent turns on a real `alive-codex serve` (a child process), the real
 * engine and codex, a scripted model on a bridge of its own, while the sidecar is SIGKILLed every
 * ~30 s and started again on the same state dir. Every turn runs with onDisconnect "continue"; after
 * each restart the soak attaches to the turns it had in flight (turn.attach after the last seq it
 * saw) and follows them to their end.
 *
 *   npm run soak                     5 minutes, 4 workspaces, a kill every 30 s
 *   npm run soak -- --minutes=2 --workspaces=3 --kill-every=20
 *
 * Prints, per kill, how many turns were in flight and how they ended, and at the end:
 * - the share of turns in flight at a kill (whose container lived) that ended `completed`
 *   (the aim: 95 % or more);
 * - SIGKILL → the next event of an adopted turn on the new sidecar, p50 and p95, start-up included
 *   (the target: p50 at most 1.5 s), beside the new sidecar's start-up alone (SIGKILL → its socket
 *   answers), measured in the same run: the ratio is what adoption adds;
 * - that nothing is left: no turn running in `sidecar.health`, no process of a turn in any
 *   workspace container, every container and the network removed.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { isOwnProcess } from "../src/codex/container-processes.js";
import { resolveBaseImage } from "../src/docker/base-image.js";
import { createDockerClient } from "../src/docker/engine.js";
import { RuntimeImage } from "../src/docker/images.js";
import { Labels } from "../src/docker/labels.js";
import { ensureBridgeNetwork } from "../src/docker/networks.js";
import { reapLabelled } from "../src/docker/reaper.js";
import { createLogger } from "../src/log.js";
import { SidecarClient, type TurnEventMessage } from "../src/rpc/client.js";
import type { TurnResult } from "../src/service.js";
import { startCli, type CliRun } from "../test/support/cli-process.js";
import { ResponsesStub, functionCallOutput, lastUserMessageText } from "../test/support/responses-stub.js";
import { containerProcesses } from "../test/support/sidecar.js";
import { BENCH_API_KEY, BENCH_GID, BENCH_MODEL, BENCH_UID } from "./harness.js";
import { formatTable, percentile } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "5" },
    workspaces: { type: "string", default: "4" },
    "kill-every": { type: "string", default: "30" },
  },
});
const MINUTES = Number(args.minutes);
const WORKSPACES = Number(args.workspaces);
const KILL_EVERY_MS = Number(args["kill-every"]) * 1000;
const TARGET_P50_MS = 1500;
const AIM_SHARE = 0.95;

/** The kinds of turns, by the prompt that names them: the stub answers each its own way. */
const KINDS = {
  message: { steps: 0, cmd: "" },
  short: { steps: 1, cmd: "sleep 2; echo short-done" },
  long: { steps: 1, cmd: "sleep 9; echo long-done" },
  two: { steps: 2, cmd: "sleep 3; echo step" },
  // The probe workspace's turns: the kill lands while this command runs, and it ends during the gap,
  // so its item.completed is waiting in codex's output for the new sidecar: SIGKILL → that event is
  // start-up plus adoption, nothing of the workload's.
  probe: { steps: 1, cmd: "sleep 0.2; echo probe-done" },
} as const;
type Kind = keyof typeof KINDS;
const KIND_NAMES = (Object.keys(KINDS) as Kind[]).filter((k) => k !== "probe");

interface TurnRecord {
  turnId: string;
  workspaceId: string;
  kind: Kind;
  lastSeq: number;
  /** The kills this turn was in flight at. */
  kills: number[];
  /** Its command has started and not yet ended, as far as its events said. */
  commandRunning: boolean;
  result: TurnResult | null;
}

const say = (line: string): void => void process.stdout.write(`soak: ${line}\n`);

async function main(): Promise<number> {
  const runId = `soak-${randomBytes(4).toString("hex")}`;
  const labels = { [Labels.runId]: runId };
  const docker = createDockerClient("unix:///var/run/docker.sock");
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-soak-"));
  await fs.chmod(root, 0o755);
  const stateDir = path.join(root, "state");
  const socketPath = path.join(root, "sidecar.sock");
  const workspaceRoot = path.join(root, "workspaces");
  await fs.mkdir(workspaceRoot, { recursive: true, mode: 0o755 });
  const log = createLogger({ level: "warn" });
  const image = new RuntimeImage({
    docker,
    baseImage: await resolveBaseImage(docker, process.env.ALIVE_CODEX_BASE_IMAGE || null),
    explicitRef: process.env.ALIVE_CODEX_IMAGE || null,
    log,
    onProgress: say,
  });
  const imageRef = (await image.ensure()).ref;
  const network = await ensureBridgeNetwork(docker, `alive-codex-${runId}`, labels);
  if (!network.gateway) throw new Error("the soak's network has no gateway");
  const stub = await ResponsesStub.start({ host: network.gateway });
  stub.respondWith((request) => {
    const prompt = lastUserMessageText(request as never) ?? "";
    const kind = (/kind=(\w+)/.exec(prompt)?.[1] ?? "message") as Kind;
    const spec = KINDS[kind] ?? KINDS.message;
    const done = (request.body?.input as Array<{ type?: string }> | undefined)?.filter(
      (item) => item.type === "function_call_output",
    ).length;
    if ((done ?? 0) < spec.steps) return { kind: "command", cmd: spec.cmd };
    const output = functionCallOutput(request as never) ?? "";
    return { kind: "message", text: `${kind} finished${output.includes("done") ? " after its command" : ""}` };
  });
  // prettier-ignore
  const flags = [
    "--socket", socketPath, "--state-dir", stateDir, "--workspace-roots", workspaceRoot,
    "--image", imageRef, "--extra-labels", `${Labels.runId}=${runId}`, "--disk", "off",
    "--openai-base-url", stub.baseUrl, "--codex-api-key", BENCH_API_KEY, "--model", BENCH_MODEL,
    "--uid-range", "10000-60000", "--gid-range", "10000-60000", "--idle-timeout", "0", "--log-level", "warn",
  ];
  let serve: CliRun | null = null;
  const startServe = async (): Promise<number> => {
    const started = performance.now();
    const run = startCli(["serve", ...flags]);
    serve = run;
    for (;;) {
      if (run.child.exitCode !== null) throw new Error(`serve exited: ${run.stderr().slice(-2000)}`);
      try {
        const client = await SidecarClient.connect(socketPath, { timeoutMs: 1000 });
        await client.close();
        return performance.now() - started;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  };

  const turns = new Map<string, TurnRecord>();
  const kills: Array<{ at: number; inFlight: string[]; readyMs: number; nextEventMs: number | null }> = [];
  let client: SidecarClient | null = null;
  let stopping = false;
  let code = 0;
  try {
    await startServe();
    client = await SidecarClient.connect(socketPath);
    const workspaceIds: string[] = [];
    for (let i = 0; i <= WORKSPACES; i += 1) {
      const workspaceId = `${runId}-ws${i}`;
      const workspacePath = path.join(workspaceRoot, workspaceId);
      await fs.mkdir(workspacePath);
      await fs.chown(workspacePath, BENCH_UID + i, BENCH_GID + i);
      await client.ensureWorkspace({
        workspaceId,
        userId: `u-${i}`,
        uid: BENCH_UID + i,
        gid: BENCH_GID + i,
        workspacePath,
      });
      workspaceIds.push(workspaceId);
    }

    /** Follows a turn's events on `c` until it ends or the connection goes. */
    const follow = async (
      c: SidecarClient,
      turn: TurnRecord,
      run: ReturnType<SidecarClient["runTurn"]>,
      onEvent?: () => void,
    ): Promise<void> => {
      try {
        for await (const message of run as AsyncIterable<TurnEventMessage>) {
          turn.lastSeq = message.seq;
          const { event } = message;
          if (event.type === "item.started" && event.item.type === "command_execution") turn.commandRunning = true;
          if (event.type === "item.completed" && event.item.type === "command_execution") turn.commandRunning = false;
          onEvent?.();
        }
        turn.result = await run.result;
      } catch {
        // The sidecar went away: the turn is picked up after the restart.
      }
      void c;
    };

    // One loop per workspace: a turn after another, until the end.
    const loops = workspaceIds.map(async (workspaceId, i) => {
      let n = 0;
      while (!stopping) {
        const kind: Kind = i === WORKSPACES ? "probe" : KIND_NAMES[(i + n) % KIND_NAMES.length]!;
        n += 1;
        const turnId = `${workspaceId}-t${n}`;
        const turn: TurnRecord = {
          turnId,
          workspaceId,
          kind,
          lastSeq: -1,
          kills: [],
          commandRunning: false,
          result: null,
        };
        turns.set(turnId, turn);
        while (client === null && !stopping) await new Promise((resolve) => setTimeout(resolve, 20));
        const c = client;
        if (c === null) break;
        await follow(
          c,
          turn,
          c.runTurn({ workspaceId, turnId, input: `kind=${kind}`, options: { onDisconnect: "continue" } }),
        );
        // Not ended on this connection: wait for the restart, then attach where it left off.
        while (turn.result === null && !stopping) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          if (attachers.has(turnId)) await attachers.get(turnId);
        }
      }
    });
    const attachers = new Map<string, Promise<void>>();

    const endAt = Date.now() + MINUTES * 60_000;
    while (Date.now() + KILL_EVERY_MS < endAt) {
      await new Promise((resolve) => setTimeout(resolve, KILL_EVERY_MS * (0.8 + Math.random() * 0.4)));
      // The kill lands while the probe's command runs (see KINDS.probe).
      const probeDeadline = performance.now() + 30_000;
      while (
        ![...turns.values()].some((t) => t.kind === "probe" && t.result === null && t.commandRunning) &&
        performance.now() < probeDeadline
      )
        await new Promise((resolve) => setTimeout(resolve, 5));
      const inFlight = [...turns.values()].filter((t) => t.result === null).map((t) => t.turnId);
      for (const id of inFlight) turns.get(id)!.kills.push(kills.length);
      const killedAt = performance.now();
      (serve as CliRun | null)?.child.kill("SIGKILL");
      await (serve as CliRun | null)?.exit;
      await client?.close().catch(() => undefined);
      client = null;
      const readyMs = await startServe();
      const fresh = await SidecarClient.connect(socketPath);
      client = fresh;
      const first: { ms: number | null } = { ms: null };
      for (const id of inFlight) {
        const turn = turns.get(id)!;
        const run = fresh.attachTurn(id, { afterSeq: turn.lastSeq });
        attachers.set(
          id,
          follow(fresh, turn, run, () => {
            if (turn.kind === "probe") first.ms ??= performance.now() - killedAt;
          }).finally(() => attachers.delete(id)),
        );
      }
      // The first event of an adopted turn after the kill (a turn quiet for long may have none yet).
      const deadline = performance.now() + 15_000;
      while (first.ms === null && performance.now() < deadline && inFlight.length > 0)
        await new Promise((resolve) => setTimeout(resolve, 10));
      kills.push({ at: killedAt, inFlight, readyMs, nextEventMs: first.ms });
      say(
        `kill ${kills.length}: ${inFlight.length} turn(s) in flight; serve ready ${readyMs.toFixed(0)} ms, next event ${first.ms === null ? "none in 15 s" : `${first.ms.toFixed(0)} ms`} after the kill`,
      );
    }
    stopping = true;
    // Let every turn end (their loops stop starting new ones).
    const settle = Date.now() + 120_000;
    while ([...turns.values()].some((t) => t.result === null) && Date.now() < settle)
      await new Promise((resolve) => setTimeout(resolve, 200));
    await Promise.allSettled(loops);

    const atKill = [...turns.values()].filter((t) => t.kills.length > 0);
    const completed = atKill.filter((t) => t.result?.status === "completed");
    const byCode = new Map<string, number>();
    for (const t of atKill) {
      const key = t.result === null ? "no result" : (t.result.error?.code ?? t.result.status);
      byCode.set(key, (byCode.get(key) ?? 0) + 1);
    }
    const share = atKill.length === 0 ? 1 : completed.length / atKill.length;
    const next = kills.map((k) => k.nextEventMs).filter((v): v is number => v !== null);
    const ready = kills.map((k) => k.readyMs);
    const p50 = next.length > 0 ? percentile(next, 50) : NaN;
    process.stdout.write(
      `\n${formatTable(
        [
          { measure: "turns", value: String(turns.size) },
          { measure: "kills", value: String(kills.length) },
          { measure: "turns in flight at a kill", value: String(atKill.length) },
          {
            measure: "of those, completed",
            value: `${completed.length} (${(share * 100).toFixed(1)} %; aim ≥ ${AIM_SHARE * 100} %)`,
          },
          {
            measure: "how the others ended",
            value:
              [...byCode]
                .filter(([k]) => k !== "completed")
                .map(([k, v]) => `${k} ${v}`)
                .join(", ") || "-",
          },
          {
            measure: "serve start-up alone (SIGKILL → socket answers), p50",
            value: `${percentile(ready, 50).toFixed(0)} ms`,
          },
          {
            measure: "SIGKILL → an adopted turn's next event, p50 / p95",
            value: `${p50.toFixed(0)} / ${(next.length ? percentile(next, 95) : NaN).toFixed(0)} ms (target p50 ≤ ${TARGET_P50_MS} ms)`,
          },
          { measure: "ratio to start-up alone (p50)", value: `${(p50 / percentile(ready, 50)).toFixed(2)}×` },
        ],
        ["measure", "value"],
      )}\n`,
    );
    const health = client ? await (client as SidecarClient).health() : null;
    const stray: string[] = [];
    for (const workspaceId of workspaceIds) {
      const info = (await (client as SidecarClient).listWorkspaces()).workspaces.find(
        (w) => w.workspaceId === workspaceId,
      );
      if (!info) continue;
      const left = (await containerProcesses(docker, info.containerId)).filter(
        (p) => !isOwnProcess(p) && p.args !== "",
      );
      stray.push(...left.map((p) => `${workspaceId}: ${p.args}`));
    }
    say(
      `after the soak: sidecar.health turns ${JSON.stringify(health?.turns)}; stray processes: ${stray.length === 0 ? "none" : stray.join("; ")}`,
    );
    if (share < AIM_SHARE || !(p50 <= TARGET_P50_MS) || stray.length > 0 || (health?.turns.running ?? 0) > 0) code = 1;
    say(`${code === 0 ? "PASS" : "MISS"}: ${(share * 100).toFixed(1)} % completed, p50 ${p50.toFixed(0)} ms`);
  } finally {
    stopping = true;
    await client?.close().catch(() => undefined);
    (serve as CliRun | null)?.child.kill("SIGKILL");
    await (serve as CliRun | null)?.exit;
    await stub.close();
    const reaped = await reapLabelled(docker, [`${Labels.runId}=${runId}`]);
    if (reaped.failures.length > 0) say(`cleanup failures: ${reaped.failures.join("; ")}`);
    await fs.rm(root, { recursive: true, force: true });
  }
  return code;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`soak failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
