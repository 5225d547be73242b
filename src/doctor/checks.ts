/**
 * doctor's checks, whichever sidecar they run against: its own scratch sidecar (run-doctor.ts) or
 * the one answering at the operator's socket (check-running.ts). Each check reaches the sidecar
 * through the service interface only (in-process, or over the socket), and the scratch workspace's
 * container through doctor's own engine connection. How a check is run and recorded is in
 * check-runner.ts; the turn checks are in turn-checks.ts (both exported here too).
 */
import { describeCodexHealth, codexSupport } from "../codex-versions.js";
import type { EnginePort } from "../docker/engine-port.js";
import { classifyAddress, type AddressSet } from "../policy/addresses.js";
import { hostAddressesFromInterfaces } from "../egress/host-addresses.js";
import { describeDiskHealth } from "../shared/disk-settings.js";
import type { EnsureWorkspaceResult, HealthResult, WorkspaceParams } from "../service.js";
import { CheckFailure, CheckWarning, type Checks, type DoctorService } from "./check-runner.js";
import { METADATA_ADDRESS, probeMetadataConnect } from "./container-probes.js";
import { describeHardening, hardeningProblems } from "./hardening.js";
import { describeIsolation, isolationProblems } from "./isolation.js";

export { CheckFailure, CheckSkipped, CheckWarning, Checks, type DoctorService } from "./check-runner.js";
export { CHECK_OUTPUT, checkCancel, checkTurn, sleep, type TurnPlan } from "./turn-checks.js";

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
  if (publicOnes.length > 0)
    return `the host's public address${publicOnes.length === 1 ? "" : "es"} ${publicOnes.join(", ")} ${publicOnes.length === 1 ? "is" : "are"} on its interfaces: the egress proxy refuses ${publicOnes.length === 1 ? "it" : "them"} (host_address)`;
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
  await checks.run("host", "set ALIVE_CODEX_HOST_ADDRESSES (docs/security.md)", async () =>
    checkHostAddresses(hostAddressesFromInterfaces(), operatorAddresses),
  );
}

/** The codex the sidecar reports: found in its image, driven, tested or not. */
export function checkCodex(health: HealthResult): string {
  if (health.codex === undefined) return `${health.codexVersion} (this sidecar reports no more than the version)`;
  const version = health.codex.version ?? health.codex.requested;
  if (version !== null) {
    const support = codexSupport(version);
    if (!support.supported)
      throw new CheckFailure(
        `codex ${describeCodexHealth(health.codex)}: ${support.reason}`,
        "unset ALIVE_CODEX_CODEX_VERSION, or set a version at or above the minimum (docs/image.md, Codex version)",
      );
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
  if (!usage)
    throw new CheckFailure(
      `disk limits are in force but the scratch workspace ${workspace.workspaceId} has no disk mounted`,
    );
  return `${describeDiskHealth(disk)}; the scratch workspace's disk: ${Math.round(usage.limitBytes / (1024 * 1024))} MiB, ${usage.limitInodes} inodes`;
}

export async function checkHardening(engine: Pick<EnginePort, "inspect">, containerId: string): Promise<string> {
  const info = await engine.inspect(containerId);
  if (info === null) throw new CheckFailure(`the container ${containerId.slice(0, 12)} is gone`);
  const problems = hardeningProblems(info);
  if (problems.length > 0) throw new CheckFailure(problems.join("; "));
  return describeHardening(info);
}

export async function checkIsolation(
  service: DoctorService,
  workspace: WorkspaceParams,
  ensured: EnsureWorkspaceResult,
): Promise<string> {
  const listed = (await service.listWorkspaces()).workspaces.find((w) => w.workspaceId === workspace.workspaceId);
  if (listed === undefined)
    throw new CheckFailure(`workspace.list does not list the scratch workspace ${workspace.workspaceId}`);
  const problems = [
    ...new Set([
      ...isolationProblems(ensured.isolation).map((p) => `workspace.ensure: ${p}`),
      ...isolationProblems(listed.isolation).map((p) => `workspace.list: ${p}`),
    ]),
  ];
  if (problems.length > 0) throw new CheckFailure(problems.join("; "));
  return describeIsolation(listed.isolation as NonNullable<typeof listed.isolation>);
}

export async function checkEgress(
  engine: Pick<EnginePort, "exec">,
  containerId: string,
  user: string,
): Promise<string> {
  const { exitCode, response } = await probeMetadataConnect(engine, containerId, user);
  const status = response.split("\n")[0] ?? "";
  if (!/^HTTP\/1\.[01] 403\b/.test(status))
    throw new CheckFailure(
      `CONNECT ${METADATA_ADDRESS} through the proxy got ${JSON.stringify(status || `nothing (exit ${exitCode})`)}, expected 403`,
    );
  const reason = /^x-alive-egress-refused:\s*(.*)$/im.exec(response)?.[1]?.trim();
  return `CONNECT ${METADATA_ADDRESS} refused: 403${reason ? ` (${reason})` : ""}`;
}
