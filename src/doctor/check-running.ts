/**
 * alive-codex doctor against the sidecar that answers at the operator's socket (`--socket PATH`,
 * or the configured one when something answers there): its health and engine, a scratch workspace
 * ensured through it, its image and the codex it runs (read after the ensure, which builds the image
 * on a fresh sidecar), the workspace's disk, hardening, isolation report and egress; then the
 * workspace is removed through it with nothing left behind.
 *
 * The turn and cancel checks are not run unless asked for (`--turn`): a running sidecar's model is
 * the operator's real one (doctor cannot point it at a scripted model as it does its own sidecar's),
 * so a turn spends tokens of the operator's key, and its wording is the model's. With `--turn` they
 * ask that model to run `echo doctor-ok`, then `sleep 1000` to cancel.
 */
import path from "node:path";
import type { SidecarConfig } from "../config.js";
import { DockerEngine } from "../docker/docker-engine.js";
import { createDockerClient } from "../docker/engine.js";
import { errorMessage } from "../errors.js";
import { raceAbort } from "../shared/abort.js";
import type { EnsureWorkspaceResult, HealthResult, WorkspaceParams } from "../service.js";
import {
  CheckFailure,
  CheckSkipped,
  Checks,
  runHostCheck,
  checkCancel,
  checkCodex,
  checkDisk,
  checkEgress,
  checkHardening,
  checkIsolation,
  checkTurn,
  type DoctorService,
  type TurnPlan,
} from "./checks.js";
import type { DoctorCheck, DoctorReport } from "./report.js";
import { engineReason } from "./check-runner.js";
import { makeScratchWorkspace, removeScratch } from "./scratch-workspace.js";

/** The checks against a running sidecar, in order (the JSON report keys on these names). */
export const RUNNING_CHECKS = [
  "sidecar",
  "engine",
  "workspace",
  "image",
  "codex",
  "disk",
  "hardening",
  "isolation",
  "turn",
  "cancel",
  "egress",
  "cleanup",
  "host",
] as const;

/** How long the sidecar's health may take before doctor calls it unwell. */
const HEALTH_TIMEOUT_MS = 5000;

export interface RunningDoctorOptions {
  /** The sidecar, over its socket (the CLI's client adapter). */
  service: DoctorService;
  socketPath: string;
  /** The operator's settings: the engine doctor probes the container through, the workspace root and id ranges the sidecar accepts. */
  config: SidecarConfig;
  /** Run the turn and cancel checks with the sidecar's own model (tokens are spent). */
  turn: boolean;
  onCheck?: (check: DoctorCheck) => void;
}

const REAL_MODEL_TURNS: TurnPlan = {
  checkPrompt:
    "This is alive-codex doctor checking the install. Run exactly this shell command: echo doctor-ok. Then reply with its output and nothing else.",
  cancelPrompt:
    "This is alive-codex doctor checking cancellation. Run exactly this shell command and wait for it to finish: sleep 1000",
  timeoutMs: 180_000,
  finalMustCarryOutput: false,
};

const NOT_ASKED =
  "not checked: a turn through a running sidecar uses its model and key (it spends tokens); alive-codex doctor --turn runs one";

/** The report when nothing answers at the socket: the sidecar check names the path and what to do; the rest cannot run. */
export function unreachableReport(socketPath: string, reason: string, durationMs: number): DoctorReport {
  const sidecar: DoctorCheck = {
    name: "sidecar",
    status: "fail",
    detail: `nothing answers at ${socketPath}: ${reason}`,
    fix: `start the sidecar (alive-codex serve) or name the socket it serves on (--socket PATH / ALIVE_CODEX_SOCKET); alive-codex doctor --scratch checks this install with a sidecar of its own instead`,
    durationMs,
  };
  const rest = RUNNING_CHECKS.filter((name) => name !== "sidecar").map((name): DoctorCheck => ({
    name,
    status: "skip",
    detail: "not run: no sidecar answers",
    durationMs: 0,
  }));
  return { ok: false, mode: "running", socketPath, stateDir: null, checks: [sidecar, ...rest] };
}

export async function runDoctorAgainst(options: RunningDoctorOptions): Promise<DoctorReport> {
  const checks = new Checks(options.onCheck);
  await runChecks(checks, options);
  if (!checks.list.some((c) => c.name === "host")) await runHostCheck(checks, options.config.hostAddresses);
  return {
    ok: checks.list.every((c) => c.status !== "fail"),
    mode: "running",
    socketPath: options.socketPath,
    stateDir: null,
    checks: checks.list,
  };
}

async function runChecks(checks: Checks, options: RunningDoctorOptions): Promise<void> {
  const { service, socketPath, config } = options;
  let health: HealthResult | null = null;
  const sidecarOk = await checks.run(
    "sidecar",
    `the sidecar at ${socketPath} is unwell: its log says why (journalctl, or docker compose logs sidecar)`,
    async () => {
      try {
        health = await raceAbort(service.health(), AbortSignal.timeout(HEALTH_TIMEOUT_MS));
      } catch (error) {
        throw new CheckFailure(
          `the sidecar at ${socketPath} accepted the connection but sidecar.health failed: ${errorMessage(error)}`,
        );
      }
      return `alive-codex-sidecar ${health.version} answers at ${socketPath}: ${health.workspaces.running} workspace(s) running of ${health.workspaces.total}, ${health.turns.running} turn(s) running`;
    },
  );
  if (!sidecarOk || health === null)
    return checks.skip(RUNNING_CHECKS.slice(1), "the sidecar did not answer sidecar.health");
  const healthy: HealthResult = health;

  // The scratch workspace's container is probed through doctor's own engine connection: the same engine, by the same settings.
  const engine = new DockerEngine(createDockerClient(config.dockerHost));
  let dockerOk = false;
  await checks.run(
    "engine",
    `doctor reaches the engine as DOCKER_HOST / --docker-host say (${config.dockerHost}): give it the sidecar's`,
    async () => {
      if (!healthy.docker.reachable)
        throw new CheckFailure(
          "the sidecar reports its Docker engine unreachable",
          "start the engine the sidecar uses (its DOCKER_HOST), or fix its socket mount; the sidecar retries on its own",
        );
      try {
        await engine.ping(AbortSignal.timeout(5000));
      } catch (error) {
        throw new CheckFailure(
          `the sidecar reaches its engine (Docker ${healthy.docker.serverVersion ?? "?"}), but doctor does not reach ${config.dockerHost} (${engineReason(error)}): the container checks need it`,
        );
      }
      dockerOk = true;
      return `Docker ${healthy.docker.serverVersion ?? "?"}, reached by the sidecar and by doctor at ${config.dockerHost}`;
    },
  );

  let workspace: WorkspaceParams | null = null;
  let ensured: EnsureWorkspaceResult | null = null;
  let removal: DoctorCheck | null = null;
  try {
    const workspaceOk = await checks.run(
      "workspace",
      "see the reason; doctor makes its scratch workspace under the first of ALIVE_CODEX_WORKSPACE_ROOTS with the top of ALIVE_CODEX_UID_RANGE / GID_RANGE: run it with the sidecar's settings",
      async () => {
        workspace = await makeScratchWorkspace(config);
        const params: WorkspaceParams = workspace;
        ensured = await service.ensureWorkspace(params, AbortSignal.timeout(20 * 60_000));
        return `container ${ensured.containerName} ${ensured.state} (uid ${params.uid}, under ${path.dirname(params.workspacePath)})`;
      },
    );
    // After the ensure: a sidecar that builds its image builds it at the first ensure (a fresh one has none yet).
    const after = await raceAbort(service.health(), AbortSignal.timeout(HEALTH_TIMEOUT_MS)).catch(() => healthy);
    await checks.run(
      "image",
      "docker pull / docker load the image ALIVE_CODEX_IMAGE names, or unset it so the sidecar builds one (docs/image.md)",
      async () => {
        if (!after.image.present)
          throw new CheckFailure(
            `the runtime image ${after.image.ref || "(unknown: the engine is unreachable)"} is not in the engine${workspaceOk ? "" : " (see the workspace check)"}`,
          );
        return `${after.image.ref} present`;
      },
    );
    await checks.run("codex", "see the reason; docs/image.md, Codex version", async () => checkCodex(after));
    if (!workspaceOk || workspace === null || ensured === null)
      return checks.skip(RUNNING_CHECKS.slice(5, -2), "no scratch workspace");
    const params: WorkspaceParams = workspace;
    const made: EnsureWorkspaceResult = ensured;
    const user = `${params.uid}:${params.gid}`;
    const needEngine = (): void => {
      if (!dockerOk) throw new CheckSkipped("not run: doctor does not reach the engine (see the engine check)");
    };

    await checks.run("disk", "see the reason; docs/security.md, Disk", () => checkDisk(service, params));
    await checks.run(
      "hardening",
      "the container was not made as the sidecar makes it: check ALIVE_CODEX_RUNTIME and the engine's defaults (docs/security.md)",
      async () => {
        needEngine();
        return checkHardening(engine, made.containerId);
      },
    );
    await checks.run(
      "isolation",
      "the measured isolation differs from what the sidecar makes: see docs/security.md, Isolation report",
      () => checkIsolation(service, params, made),
    );
    await checks.run(
      "turn",
      "see the reason; the sidecar's log has the turn (its turnId starts with turn-)",
      async () => {
        if (!options.turn) throw new CheckSkipped(NOT_ASKED);
        return checkTurn(service, params, REAL_MODEL_TURNS);
      },
    );
    await checks.run("cancel", "see the reason: a cancelled turn left processes in its container", async () => {
      if (!options.turn) throw new CheckSkipped(NOT_ASKED);
      needEngine();
      return checkCancel(service, engine, params, made.containerId, user, REAL_MODEL_TURNS);
    });
    await checks.run(
      "egress",
      "the egress proxy let a workspace reach the metadata address: check ALIVE_CODEX_INTERNAL_DESTINATIONS (docs/security.md)",
      async () => {
        needEngine();
        return checkEgress(engine, made.containerId, user);
      },
    );
  } finally {
    removal = await removeScratch(service, dockerOk ? engine : null, workspace, ensured, socketPath);
    checks.add(removal);
  }
}
