/**
 * alive-codex doctor --scratch (and doctor when no sidecar answers at the configured socket): proves
 * the whole path on this install with the operator's settings (engine, image, limits, codex version)
 * but nothing of theirs touched: its own sidecar, in-process, on a temporary state
 * dir, a scratch workspace it makes and removes, and a scripted model on loopback instead of a
 * real one (no key, no internet). Checks run in order; one that cannot run after a failure is
 * skipped. Everything it made is removed afterwards, also after a failure. What makes the sidecar a
 * scratch one is in scratch-sidecar.ts; the image check in image-check.ts; the removal in scratch-cleanup.ts.
 */
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { SidecarConfig } from "../config.js";
import { DockerEngine } from "../docker/docker-engine.js";
import { createDockerClient } from "../docker/engine.js";
import type { Logger } from "../log.js";
import { releaseDisksUnder } from "../workspace/disk-leftovers.js";
import type { EnsureWorkspaceResult, WorkspaceParams } from "../service.js";
import type { RunningSidecar } from "../sidecar.js";
import { engineReason } from "./check-runner.js";
import {
  CheckFailure,
  Checks,
  runHostCheck,
  checkCancel,
  checkCodex,
  checkDisk,
  checkEgress,
  checkHardening,
  checkIsolation,
  checkTurn,
} from "./checks.js";
import { checkImage } from "./image-check.js";
import type { DoctorCheck, DoctorReport } from "./report.js";
import { cleanUpScratchRun } from "./scratch-cleanup.js";
import { SCRIPTED_TURNS, doctorConfig, doctorScript, makeScratchSidecarWorkspace } from "./scratch-sidecar.js";
import { startScriptedModel } from "./scripted-model.js";

export interface DoctorOptions {
  log: Logger;
  /** Called as each check finishes (the CLI prints progress). */
  onCheck?: (check: DoctorCheck) => void;
}

const LATER_CHECKS = [
  "sidecar",
  "codex",
  "workspace",
  "disk",
  "hardening",
  "isolation",
  "turn",
  "cancel",
  "egress",
] as const;

export async function runDoctor(operatorConfig: SidecarConfig, options: DoctorOptions): Promise<DoctorReport> {
  const checks = new Checks(options.onCheck);
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-doctor-"));
  // The workspace's container bind-mounts dirs under here: its owner must be able to reach them.
  await fs.chmod(root, 0o755);
  const stateDir = path.join(root, "state");
  const engine = new DockerEngine(createDockerClient(operatorConfig.dockerHost));
  try {
    await runChecks(checks, operatorConfig, engine, root, stateDir, options.log);
  } finally {
    // Never delete through a mounted workspace disk: whatever is still mounted goes first (cleanUpScratchRun has normally released all).
    await releaseDisksUnder(root).catch(() => undefined);
    await fs.rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
  await runHostCheck(checks, operatorConfig.hostAddresses);
  return {
    ok: checks.list.every((c) => c.status !== "fail"),
    mode: "scratch",
    socketPath: null,
    stateDir,
    checks: checks.list,
  };
}

async function runChecks(
  checks: Checks,
  operatorConfig: SidecarConfig,
  engine: DockerEngine,
  root: string,
  stateDir: string,
  log: Logger,
): Promise<void> {
  const engineOk = await checks.run(
    "engine",
    `start the engine or point --docker-host / DOCKER_HOST at one; none installed: bash scripts/install-docker.sh`,
    async () => {
      try {
        await engine.ping(AbortSignal.timeout(5000));
      } catch (error) {
        throw new CheckFailure(
          `the Docker engine at ${operatorConfig.dockerHost} does not answer (${engineReason(error)})`,
        );
      }
      const version = await engine.version(AbortSignal.timeout(5000));
      return `Docker ${version} at ${operatorConfig.dockerHost}`;
    },
  );
  if (!engineOk) return checks.skip(["image", ...LATER_CHECKS], "the engine does not answer");

  const imageOk = await checks.run("image", "", () => checkImage(engine, operatorConfig, log));
  if (!imageOk) return checks.skip([...LATER_CHECKS], "no runtime image");

  const config = doctorConfig(operatorConfig, root, stateDir);
  const model = await startScriptedModel(doctorScript);
  config.openaiBaseUrl = model.baseUrl;
  let sidecar: RunningSidecar | null = null;
  let workspace: WorkspaceParams | null = null;
  try {
    const sidecarOk = await checks.run(
      "sidecar",
      "see the reason; alive-codex serve with the same settings shows the full log",
      async () => {
        const { startSidecar } = await import("../sidecar.js");
        sidecar = await startSidecar(config, log);
        return `started on ${stateDir}`;
      },
    );
    if (!sidecarOk || sidecar === null) return checks.skip(LATER_CHECKS.slice(1), "the sidecar did not start");
    const running: RunningSidecar = sidecar;
    await checks.run("codex", "see the reason; docs/image.md, Codex version", async () =>
      checkCodex(await running.service.health()),
    );
    workspace = await makeScratchSidecarWorkspace(config, root);
    const params = workspace;
    let ensured: EnsureWorkspaceResult | null = null;
    const workspaceOk = await checks.run(
      "workspace",
      "see the reason; docker logs of the container may tell more",
      async () => {
        ensured = await running.service.ensureWorkspace(params, AbortSignal.timeout(120_000));
        return `container ${ensured.containerName} ${ensured.state} (uid ${params.uid})`;
      },
    );
    if (!workspaceOk || ensured === null) return checks.skip(LATER_CHECKS.slice(3), "no workspace container");
    const made: EnsureWorkspaceResult = ensured;
    const user = `${params.uid}:${params.gid}`;

    await checks.run("disk", "see the reason; docs/security.md, Disk", () => checkDisk(running.service, params));
    await checks.run(
      "hardening",
      "the container was not made as the sidecar makes it: check ALIVE_CODEX_RUNTIME and the engine's defaults (docs/security.md)",
      () => checkHardening(engine, made.containerId),
    );
    await checks.run(
      "isolation",
      "the measured isolation differs from what the sidecar makes: see docs/security.md, Isolation report (alive-codex ps --isolation shows it per workspace)",
      () => checkIsolation(running.service, params, made),
    );
    await checks.run(
      "turn",
      "see the reason; ALIVE_CODEX_LOG_LEVEL=debug alive-codex doctor shows the sidecar's log",
      () => checkTurn(running.service, params, SCRIPTED_TURNS),
    );
    await checks.run("cancel", "see the reason: a cancelled turn left processes in its container", () =>
      checkCancel(running.service, engine, params, made.containerId, user, SCRIPTED_TURNS),
    );
    await checks.run(
      "egress",
      "the egress proxy let a workspace reach the metadata address: check ALIVE_CODEX_INTERNAL_DESTINATIONS (docs/security.md)",
      () => checkEgress(engine, made.containerId, user),
    );
  } finally {
    const removal = await cleanUpScratchRun(engine, sidecar, workspace, stateDir, root);
    await model.close();
    checks.add(removal);
  }
}
