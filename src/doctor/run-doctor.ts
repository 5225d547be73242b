/**
 * alive-codex doctor --scratch (and doctor when no sidecar answers at the configured socket): proves
 * the whole path on this install with the operator's settings (engine, image, limits, codex version)
 * but nothing of theirs touched: its own sidecar, in-process, on a temporary state
 * dir, a scratch workspace it makes and removes, and a scripted model on loopback instead of a
 * real one (no key, no internet). Checks run in order; one that cannot run after a failure is
 * skipped. Everything it made is removed afterwards, also after a failure.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { SidecarConfig } from "../config.js";
import { isImagePresent } from "../docker/base-image.js";
import { DockerEngine } from "../docker/docker-engine.js";
import { createDockerClient } from "../docker/engine.js";
import { RuntimeImage } from "../docker/images.js";
import { Labels } from "../docker/labels.js";
import { reapLabelled } from "../docker/reaper.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { disksLeftUnder, releaseDisksUnder } from "../workspace/disk-image.js";
import type { EnsureWorkspaceResult, WorkspaceParams } from "../service.js";
import type { RunningSidecar } from "../sidecar.js";
import { CheckFailure, Checks, runHostCheck, checkCancel, checkCodex, checkDisk, checkEgress, checkHardening, checkIsolation, checkTurn, CHECK_OUTPUT, type TurnPlan } from "./checks.js";
import { engineReason } from "./check-runner.js";
import type { DoctorCheck, DoctorReport } from "./report.js";
import { startScriptedModel, type ScriptedReply, type ScriptedRequest } from "./scripted-model.js";

export interface DoctorOptions {
  log: Logger;
  /** Called as each check finishes (the CLI prints progress). */
  onCheck?: (check: DoctorCheck) => void;
}

const TURN_PROMPT = "doctor: run the check command";
const CANCEL_PROMPT = "doctor: run the long command";
/** A model from codex's bundled catalog: an unknown one adds an error item to every turn. */
const DOCTOR_MODEL = "gpt-5.5";
/** The scripted model's turns: its prompts, and its answer carries the command's output. */
const SCRIPTED_TURNS: TurnPlan = { checkPrompt: TURN_PROMPT, cancelPrompt: CANCEL_PROMPT, model: DOCTOR_MODEL, timeoutMs: 90_000, finalMustCarryOutput: true };

/** The scripted model: one command per prompt, then a message carrying its output. */
export function doctorScript(request: ScriptedRequest): ScriptedReply {
  const output = request.commandOutputs.at(-1);
  if (request.prompt.includes(CANCEL_PROMPT)) return output === undefined ? { kind: "command", cmd: "sleep 1000" } : { kind: "message", text: "the long command ended" };
  if (output === undefined) return { kind: "command", cmd: `echo ${CHECK_OUTPUT}` };
  return { kind: "message", text: `the command printed: ${output.includes(CHECK_OUTPUT) ? CHECK_OUTPUT : output.slice(-200)}` };
}

const LATER_CHECKS = ["sidecar", "codex", "workspace", "disk", "hardening", "isolation", "turn", "cancel", "egress"] as const;

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
    // Never delete through a mounted workspace disk: whatever is still mounted goes first (removeEverything has normally released all).
    await releaseDisksUnder(root).catch(() => undefined);
    await fs.rm(root, { recursive: true, force: true }).catch(() => undefined);
  }
  await runHostCheck(checks, operatorConfig.hostAddresses);
  return { ok: checks.list.every((c) => c.status !== "fail"), mode: "scratch", socketPath: null, stateDir, checks: checks.list };
}

async function runChecks(checks: Checks, operatorConfig: SidecarConfig, engine: DockerEngine, root: string, stateDir: string, log: Logger): Promise<void> {
  const engineOk = await checks.run("engine", `start the engine or point --docker-host / DOCKER_HOST at one; none installed: bash scripts/install-docker.sh`, async () => {
    try {
      await engine.ping(AbortSignal.timeout(5000));
    } catch (error) {
      throw new CheckFailure(`the Docker engine at ${operatorConfig.dockerHost} does not answer (${engineReason(error)})`);
    }
    const version = await engine.version(AbortSignal.timeout(5000));
    return `Docker ${version} at ${operatorConfig.dockerHost}`;
  });
  if (!engineOk) return checks.skip(["image", ...LATER_CHECKS], "the engine does not answer");

  const imageOk = await checks.run("image", "", () => checkImage(engine, operatorConfig, log));
  if (!imageOk) return checks.skip([...LATER_CHECKS], "no runtime image");

  const config = doctorConfig(operatorConfig, root, stateDir);
  const model = await startScriptedModel(doctorScript);
  config.openaiBaseUrl = model.baseUrl;
  let sidecar: RunningSidecar | null = null;
  let workspace: WorkspaceParams | null = null;
  try {
    const sidecarOk = await checks.run("sidecar", "see the reason; alive-codex serve with the same settings shows the full log", async () => {
      const { startSidecar } = await import("../sidecar.js");
      sidecar = await startSidecar(config, log);
      return `started on ${stateDir}`;
    });
    if (!sidecarOk || sidecar === null) return checks.skip(LATER_CHECKS.slice(1), "the sidecar did not start");
    const running: RunningSidecar = sidecar;
    await checks.run("codex", "see the reason; docs/image.md, Codex version", async () => checkCodex(await running.service.health()));
    workspace = await makeScratchWorkspace(config, root);
    const params = workspace;
    let ensured: EnsureWorkspaceResult | null = null;
    const workspaceOk = await checks.run("workspace", "see the reason; docker logs of the container may tell more", async () => {
      ensured = await running.service.ensureWorkspace(params, AbortSignal.timeout(120_000));
      return `container ${ensured.containerName} ${ensured.state} (uid ${params.uid})`;
    });
    if (!workspaceOk || ensured === null) return checks.skip(LATER_CHECKS.slice(3), "no workspace container");
    const made: EnsureWorkspaceResult = ensured;
    const user = `${params.uid}:${params.gid}`;

    await checks.run("disk", "see the reason; docs/security.md, Disk", () => checkDisk(running.service, params));
    await checks.run("hardening", "the container was not made as the sidecar makes it: check ALIVE_CODEX_RUNTIME and the engine's defaults (docs/security.md)", () => checkHardening(engine, made.containerId));
    await checks.run("isolation", "the measured isolation differs from what the sidecar makes: see docs/security.md, Isolation report (alive-codex ps --isolation shows it per workspace)", () => checkIsolation(running.service, params, made));
    await checks.run("turn", "see the reason; ALIVE_CODEX_LOG_LEVEL=debug alive-codex doctor shows the sidecar's log", () => checkTurn(running.service, params, SCRIPTED_TURNS));
    await checks.run("cancel", "see the reason: a cancelled turn left processes in its container", () => checkCancel(running.service, engine, params, made.containerId, user, SCRIPTED_TURNS));
    await checks.run("egress", "the egress proxy let a workspace reach the metadata address: check ALIVE_CODEX_INTERNAL_DESTINATIONS (docs/security.md)", () => checkEgress(engine, made.containerId, user));
  } finally {
    const removal = await removeEverything(engine, sidecar, workspace, stateDir, root);
    await model.close();
    checks.add(removal);
  }
}

/** The operator's settings with doctor's own dirs, no secrets and nothing served. */
function doctorConfig(operator: SidecarConfig, root: string, stateDir: string): SidecarConfig {
  return {
    ...operator,
    socketPath: path.join(root, "sidecar.sock"),
    stateDir,
    workspaceRoots: [path.join(root, "workspaces")],
    // The scripted model needs no key: the operator's never leaves for it.
    codexApiKey: null,
    codexApiKeyFile: null,
    aliveMcpToken: null,
    aliveApiUrl: null,
    metricsListen: null,
    idleTimeoutMs: 0,
    defaultModel: DOCTOR_MODEL,
  };
}

/** A workspace dir owned by the top of the configured ranges (the least likely to be a real account). */
async function makeScratchWorkspace(config: SidecarConfig, root: string): Promise<WorkspaceParams> {
  const workspaceId = `doctor-${randomBytes(4).toString("hex")}`;
  const dir = path.join(root, "workspaces", workspaceId);
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const uid = config.uidRange.max;
  const gid = config.gidRange.max;
  await fs.chown(dir, uid, gid);
  return { workspaceId, userId: "alive-codex-doctor", uid, gid, workspacePath: dir };
}

async function checkImage(engine: DockerEngine, config: SidecarConfig, log: Logger): Promise<string> {
  if (config.image !== null) {
    if (await isImagePresent(engine.docker, config.image)) return `${config.image} present`;
    throw new CheckFailure(
      `the runtime image ${config.image} is missing`,
      `docker pull / docker load ${config.image}, or unset ALIVE_CODEX_IMAGE (--image) so the sidecar builds it (npm test builds one too)`,
    );
  }
  const image = new RuntimeImage({ docker: engine.docker, baseImage: config.baseImage, explicitRef: null, codexVersion: config.codexVersion, npmRegistry: config.npmRegistry, log });
  try {
    const { ref, built } = await image.ensure(AbortSignal.timeout(20 * 60_000));
    return built ? `${ref} built` : `${ref} present`;
  } catch (error) {
    throw new CheckFailure(
      `the runtime image cannot be built: ${errorMessage(error)}`,
      "without a registry, make the local base image first: node scripts/make-base-image.mjs (docs/image.md)",
    );
  }
}

/**
 * Removes the scratch workspace (its HOME and disk), closes the sidecar, and makes sure no container
 * of doctor's state dir is left, nor a mount or loop device under doctor's temporary root. The
 * reaper (docker/) takes the adapter's client, which doctor hands on and never uses itself.
 */
async function removeEverything(engine: DockerEngine, sidecar: RunningSidecar | null, workspace: WorkspaceParams | null, stateDir: string, root: string): Promise<DoctorCheck> {
  const started = Date.now();
  const problems: string[] = [];
  if (sidecar !== null) {
    const running: RunningSidecar = sidecar;
    if (workspace !== null) {
      await running.service.removeWorkspace({ workspaceId: workspace.workspaceId, purgeHome: true }).catch((error: unknown) => problems.push(`workspace.remove: ${errorMessage(error)}`));
    }
    await running.close(0).catch((error: unknown) => problems.push(`closing the sidecar: ${errorMessage(error)}`));
  }
  // A backstop for whatever the steps above could not remove: everything labelled with doctor's state dir.
  try {
    const reaped = await reapLabelled(engine.docker, [`${Labels.stateDir}=${stateDir}`], { deadlineMs: 30_000 });
    problems.push(...reaped.failures);
    if (reaped.containers > 0 && sidecar !== null) problems.push(`${reaped.containers} container(s) were left and had to be reaped`);
  } catch (error) {
    if (sidecar !== null) problems.push(`listing leftovers: ${errorMessage(error)}`);
  }
  // The same for workspace disks: released if anything is left (then a failure: workspace.remove should have), and verified gone.
  try {
    const released = await releaseDisksUnder(root);
    if (released.mounts.length + released.loopDevices.length > 0) problems.push(`workspace disks were left and had to be released: ${[...released.mounts, ...released.loopDevices].join(", ")}`);
    const left = await disksLeftUnder(root);
    if (left.mounts.length + left.loopDevices.length > 0) problems.push(`still mounted or attached: ${[...left.mounts, ...left.loopDevices].join(", ")}`);
  } catch (error) {
    problems.push(`releasing workspace disks: ${errorMessage(error)}`);
  }
  const durationMs = Date.now() - started;
  if (problems.length > 0) {
    return { name: "cleanup", status: "fail", detail: problems.join("; "), fix: `docker ps -a --filter label=${Labels.stateDir}=${stateDir}; remove what is listed; for disks: losetup -a and findmnt, looking for ${root}`, durationMs };
  }
  return { name: "cleanup", status: "pass", detail: sidecar === null ? "nothing was made" : "scratch workspace, its container, HOME and disk removed (nothing mounted or attached left); sidecar closed", durationMs };
}

