/**
 * doctor's checks, whichever sidecar they run against: its own scratch sidecar (run-doctor.ts) or
 * the one answering at the operator's socket (check-running.ts). Each check reaches the sidecar
 * through the service interface only (in-process, or over the socket), and the scratch workspace's
 * container through doctor's own engine connection.
 */
import { randomBytes } from "node:crypto";
import { describeCodexHealth, codexSupport } from "../codex-versions.js";
import type { Docker } from "../docker/engine.js";
import { errorMessage } from "../errors.js";
import { classifyAddress, type AddressSet } from "../policy/addresses.js";
import { hostAddressesFromInterfaces } from "../egress/host-addresses.js";
import { describeDiskHealth } from "../shared/disk-settings.js";
import type { EnsureWorkspaceResult, HealthResult, RunTurnParams, SidecarService, TurnResult, WorkspaceParams } from "../service.js";
import { METADATA_ADDRESS, probeMetadataConnect, turnProcesses } from "./container-probes.js";
import { describeHardening, hardeningProblems } from "./hardening.js";
import { describeIsolation, isolationProblems } from "./isolation.js";
import { skipped, type DoctorCheck } from "./report.js";

/** What doctor needs of a sidecar: the service's methods a client also has. */
export type DoctorService = Pick<SidecarService, "health" | "ensureWorkspace" | "listWorkspaces" | "removeWorkspace" | "runTurn" | "cancelTurn">;

export const CHECK_OUTPUT = "doctor-ok";
const CANCEL_DEADLINE_MS = 10_000;

export class Checks {
  readonly list: DoctorCheck[] = [];
  constructor(private readonly onCheck: ((check: DoctorCheck) => void) | undefined) {}

  /** Runs one check; `run` returns the evidence of a pass or throws a CheckFailure (anything else is a failure too). */
  async run(name: string, fix: string, run: () => Promise<string>): Promise<boolean> {
    const started = Date.now();
    let check: DoctorCheck;
    try {
      check = { name, status: "pass", detail: await run(), durationMs: Date.now() - started };
    } catch (error) {
      if (error instanceof CheckSkipped) {
        check = { name, status: "skip", detail: error.message, durationMs: Date.now() - started };
      } else if (error instanceof CheckWarning) {
        check = { name, status: "warn", detail: error.message, fix: error.fix, durationMs: Date.now() - started };
      } else {
        const failure = error instanceof CheckFailure ? error : null;
        check = { name, status: "fail", detail: failure?.message ?? errorMessage(error), fix: failure?.fix ?? fix, durationMs: Date.now() - started };
      }
    }
    this.add(check);
    return check.status === "pass";
  }

  add(check: DoctorCheck): void {
    this.list.push(check);
    this.onCheck?.(check);
  }

  skip(names: readonly string[], because: string): void {
    for (const name of names) this.add(skipped(name, because));
  }
}

/** A failed check's reason, and its fix when the default one of the check does not fit. */
export class CheckFailure extends Error {
  constructor(
    message: string,
    readonly fix?: string,
  ) {
    super(message);
  }
}

/** A check that found it could not, or should not, run: its row says why (status "skip"). */
export class CheckSkipped extends Error {}

/** A check that passed with something the operator should act on: its row says what, and the fix (status "warn"). */
export class CheckWarning extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/**
 * Whether the egress proxy knows the host's public address. It refuses the host's own addresses
 * (host_address), but knows only those its interfaces show: behind NAT, or in a container (compose),
 * none of them is public, and a workspace could reach the host's published ports through the public
 * address the host has outside. ALIVE_CODEX_HOST_ADDRESSES names it.
 */
export function checkHostAddresses(interfaceAddresses: readonly string[], operatorAddresses: AddressSet): string {
  const publicOnes = interfaceAddresses.filter((address) => classifyAddress(address) === "public");
  if (operatorAddresses.size > 0) {
    return `the egress proxy refuses the host's interface addresses${publicOnes.length > 0 ? ` (public: ${publicOnes.join(", ")})` : ""} and ALIVE_CODEX_HOST_ADDRESSES (${operatorAddresses.size} entr${operatorAddresses.size === 1 ? "y" : "ies"})`;
  }
  if (publicOnes.length > 0) return `the host's public address${publicOnes.length === 1 ? "" : "es"} ${publicOnes.join(", ")} ${publicOnes.length === 1 ? "is" : "are"} on its interfaces: the egress proxy refuses ${publicOnes.length === 1 ? "it" : "them"} (host_address)`;
  throw new CheckWarning(
    "the host's public address is unknown: none of its interfaces has one (behind NAT, or the sidecar in a container) and ALIVE_CODEX_HOST_ADDRESSES is empty, so a workspace could reach the host's published ports through that address",
    "set ALIVE_CODEX_HOST_ADDRESSES to the host's public address(es) and the addresses ports are published on (docs/security.md)",
  );
}

/** What the host check finds on this machine with these operator addresses. */
export function hostCheckStatus(operatorAddresses: AddressSet): "pass" | "warn" {
  try {
    checkHostAddresses(hostAddressesFromInterfaces(), operatorAddresses);
    return "pass";
  } catch (error) {
    if (error instanceof CheckWarning) return "warn";
    throw error;
  }
}

/** The host check's row, the same in both modes: run by doctor on the sidecar's host with its settings. */
export async function runHostCheck(checks: Checks, operatorAddresses: AddressSet): Promise<void> {
  await checks.run("host", "set ALIVE_CODEX_HOST_ADDRESSES (docs/security.md)", async () => checkHostAddresses(hostAddressesFromInterfaces(), operatorAddresses));
}

/** The codex the sidecar reports: found in its image, driven, tested or not. */
export function checkCodex(health: HealthResult): string {
  if (health.codex === undefined) return `${health.codexVersion} (this sidecar reports no more than the version)`;
  const version = health.codex.version ?? health.codex.requested;
  if (version !== null) {
    const support = codexSupport(version);
    if (!support.supported) throw new CheckFailure(`codex ${describeCodexHealth(health.codex)}: ${support.reason}`, "unset ALIVE_CODEX_CODEX_VERSION, or set a version at or above the minimum (docs/image.md, Codex version)");
  }
  return describeCodexHealth(health.codex);
}

/**
 * The disk enforcement in force (ALIVE_CODEX_DISK; with "auto", what start-up chose and why) and,
 * when limits are in force, the scratch workspace's own disk as workspace.list reports it.
 */
export async function checkDisk(service: DoctorService, workspace: WorkspaceParams): Promise<string> {
  const disk = (await service.health()).disk;
  if (disk === undefined) throw new CheckFailure("sidecar.health reports no disk entry");
  if (disk.enforcement === "none") return describeDiskHealth(disk);
  const usage = (await service.listWorkspaces()).workspaces.find((w) => w.workspaceId === workspace.workspaceId)?.disk;
  if (!usage) throw new CheckFailure(`disk limits are in force but the scratch workspace ${workspace.workspaceId} has no disk mounted`);
  return `${describeDiskHealth(disk)}; the scratch workspace's disk: ${Math.round(usage.limitBytes / (1024 * 1024))} MiB, ${usage.limitInodes} inodes`;
}

export async function checkHardening(docker: Docker, containerId: string): Promise<string> {
  const info = await docker.getContainer(containerId).inspect();
  const problems = hardeningProblems(info);
  if (problems.length > 0) throw new CheckFailure(problems.join("; "));
  return describeHardening(info);
}

export async function checkIsolation(service: DoctorService, workspace: WorkspaceParams, ensured: EnsureWorkspaceResult): Promise<string> {
  const listed = (await service.listWorkspaces()).workspaces.find((w) => w.workspaceId === workspace.workspaceId);
  if (listed === undefined) throw new CheckFailure(`workspace.list does not list the scratch workspace ${workspace.workspaceId}`);
  const problems = [...new Set([...isolationProblems(ensured.isolation).map((p) => `workspace.ensure: ${p}`), ...isolationProblems(listed.isolation).map((p) => `workspace.list: ${p}`)])];
  if (problems.length > 0) throw new CheckFailure(problems.join("; "));
  return describeIsolation(listed.isolation as NonNullable<typeof listed.isolation>);
}

export async function checkEgress(docker: Docker, containerId: string, user: string): Promise<string> {
  const { exitCode, response } = await probeMetadataConnect(docker, containerId, user);
  const status = response.split("\n")[0] ?? "";
  if (!/^HTTP\/1\.[01] 403\b/.test(status)) throw new CheckFailure(`CONNECT ${METADATA_ADDRESS} through the proxy got ${JSON.stringify(status || `nothing (exit ${exitCode})`)}, expected 403`);
  const reason = /^x-alive-egress-refused:\s*(.*)$/im.exec(response)?.[1]?.trim();
  return `CONNECT ${METADATA_ADDRESS} refused: 403${reason ? ` (${reason})` : ""}`;
}

/** How doctor's turns are asked for: the prompts, the model (absent: the sidecar's default), and what the answer must show. */
export interface TurnPlan {
  checkPrompt: string;
  cancelPrompt: string;
  model?: string;
  timeoutMs: number;
  /** The scripted model echoes the output back; a real one may word its answer as it likes. */
  finalMustCarryOutput: boolean;
}

function runTurn(service: DoctorService, params: RunTurnParams, onEvent: (type: string, item?: { type: string }) => void = () => undefined): Promise<TurnResult> {
  return service.runTurn(params, {
    onEvent: (_turnId, _seq, event) => {
      if (event !== null) onEvent(event.type, "item" in event ? event.item : undefined);
    },
  });
}

function turnOptions(plan: TurnPlan): NonNullable<RunTurnParams["options"]> {
  return { ...(plan.model === undefined ? {} : { model: plan.model }), timeoutMs: plan.timeoutMs };
}

/** A turn whose model runs `echo doctor-ok` in the container: the command ran there and its output came back. */
export async function checkTurn(service: DoctorService, workspace: WorkspaceParams, plan: TurnPlan): Promise<string> {
  const result = await runTurn(service, { workspaceId: workspace.workspaceId, input: plan.checkPrompt, options: turnOptions(plan) });
  if (result.status !== "completed") throw new CheckFailure(`the turn ${result.status}: ${result.error?.message ?? "no reason given"}`);
  const command = result.items.find((item) => item.type === "command_execution" && item.aggregated_output.includes(CHECK_OUTPUT)) ?? result.items.find((item) => item.type === "command_execution");
  if (command?.type !== "command_execution") throw new CheckFailure("the turn completed without running the command");
  if (command.exit_code !== 0 || !command.aggregated_output.includes(CHECK_OUTPUT)) {
    throw new CheckFailure(`\`${command.command}\` exited ${command.exit_code ?? "?"} with ${JSON.stringify(command.aggregated_output.slice(0, 200))}`);
  }
  if (plan.finalMustCarryOutput && !result.finalResponse.includes(CHECK_OUTPUT)) throw new CheckFailure(`the command's output did not reach the model: final message ${JSON.stringify(result.finalResponse.slice(0, 200))}`);
  return `echo ${CHECK_OUTPUT} ran in the container and its output came back (${result.resources.wallMs} ms, ${result.tokens.input + result.tokens.output} tokens)`;
}

/** turn.cancel while the turn's model has `sleep 1000` running: the turn ends cancelled and no process of it is left. */
export async function checkCancel(service: DoctorService, docker: Docker, workspace: WorkspaceParams, containerId: string, user: string, plan: TurnPlan): Promise<string> {
  const turnId = `doctor-cancel-${randomBytes(4).toString("hex")}`;
  let started = false;
  const turn = runTurn(service, { workspaceId: workspace.workspaceId, turnId, input: plan.cancelPrompt, options: turnOptions(plan) }, (type, item) => {
    if (type === "item.started" && item?.type === "command_execution") started = true;
  });
  let ended: TurnResult | null = null;
  void turn.then(
    (result) => (ended = result),
    () => undefined,
  );
  const deadline = Date.now() + 60_000;
  while (!(started && (await turnProcesses(docker, containerId, user)).some((p) => /sleep 1000/.test(p)))) {
    const over = ended as TurnResult | null;
    if (over !== null) throw new CheckFailure(`the turn ended ${over.status} before its command ran \`sleep 1000\`${over.error ? `: ${over.error.message}` : ""}`);
    if (Date.now() > deadline) {
      await service.cancelTurn({ turnId }).catch(() => undefined);
      await turn.catch(() => undefined);
      throw new CheckFailure("the long command did not start within 60 s");
    }
    await sleep(100);
  }
  const cancelledAt = Date.now();
  await service.cancelTurn({ turnId });
  const result = await turn;
  if (result.status !== "cancelled") throw new CheckFailure(`the cancelled turn ended ${result.status}`);
  let left = await turnProcesses(docker, containerId, user);
  while (left.length > 0 && Date.now() - cancelledAt < CANCEL_DEADLINE_MS) {
    await sleep(100);
    left = await turnProcesses(docker, containerId, user);
  }
  if (left.length > 0) throw new CheckFailure(`${left.length} process(es) of the cancelled turn still run ${CANCEL_DEADLINE_MS / 1000} s after cancel: ${left.join(", ").slice(0, 300)}`);
  return `turn.cancel during \`sleep 1000\`: no turn process left after ${Date.now() - cancelledAt} ms`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
