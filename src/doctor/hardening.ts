/** What doctor requires of a workspace container's configuration (docs/security.md), as pure checks over `docker inspect`. */
import type { ContainerInspect, HostSpec } from "../docker/engine-port.js";

/** The part of an inspect the checks read. */
export interface HardeningFacts {
  Config: Pick<ContainerInspect["Config"], "User">;
  HostConfig: Pick<
    HostSpec,
    "CapDrop" | "CapAdd" | "SecurityOpt" | "Privileged" | "ReadonlyRootfs" | "NetworkMode" | "PidsLimit" | "Memory"
  >;
}

/** Every way the container falls short; empty when it is hardened as the sidecar makes it. */
export function hardeningProblems(info: HardeningFacts): string[] {
  const problems: string[] = [];
  const host = info.HostConfig;
  const user = info.Config.User ?? "";
  const uid = user.split(":")[0] ?? "";
  if (uid === "" || uid === "0" || uid === "root")
    problems.push(`runs as ${JSON.stringify(user || "root")} (expected a non-root uid)`);
  if (!(host.CapDrop ?? []).some((cap: string) => cap.toUpperCase() === "ALL"))
    problems.push(`CapDrop is ${JSON.stringify(host.CapDrop ?? [])} (expected ALL)`);
  if ((host.CapAdd ?? []).length > 0) problems.push(`CapAdd is ${JSON.stringify(host.CapAdd)} (expected none)`);
  if (!(host.SecurityOpt ?? []).some((opt: string) => /^no-new-privileges(:true|=true)?$/.test(opt)))
    problems.push("no-new-privileges is not set");
  if (host.Privileged === true) problems.push("privileged");
  if (host.ReadonlyRootfs !== true) problems.push("the root filesystem is writable");
  if (host.NetworkMode !== "none") problems.push(`NetworkMode is ${JSON.stringify(host.NetworkMode)} (expected none)`);
  if (!(typeof host.PidsLimit === "number" && host.PidsLimit > 0)) problems.push("no pids limit");
  if (!(typeof host.Memory === "number" && host.Memory > 0)) problems.push("no memory limit");
  return problems;
}

/** The evidence of a pass, in one line. */
export function describeHardening(info: HardeningFacts): string {
  const host = info.HostConfig;
  const memoryMb = Math.round((host.Memory ?? 0) / (1024 * 1024));
  return `user ${info.Config.User}, CapDrop ALL, no-new-privileges, read-only root, network none, pids ${host.PidsLimit}, memory ${memoryMb} MiB`;
}
