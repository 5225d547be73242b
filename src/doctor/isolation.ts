/** What doctor requires of the scratch workspace's measured isolation report (docs/security.md, "Isolation report"), as pure checks. */
import type { IsolationReport } from "../service.js";

const ZERO_CAPS = /^0+$/;

/** Every way the report falls short; empty when the container is isolated as the sidecar means it to be. */
export function isolationProblems(report: IsolationReport | null | undefined): string[] {
  if (report === undefined) return ["workspace.ensure and workspace.list carry no isolation report"];
  if (report === null) return ["the isolation report was not measured (null)"];
  const problems: string[] = [];
  if (report.user.uid === 0) problems.push("runs as uid 0");
  if (!ZERO_CAPS.test(report.capabilities.effective))
    problems.push(`effective capabilities ${report.capabilities.effective} (expected zero)`);
  if (!ZERO_CAPS.test(report.capabilities.bounding))
    problems.push(`bounding capabilities ${report.capabilities.bounding} (expected zero)`);
  if (!report.noNewPrivs) problems.push("no_new_privs is off");
  if (report.seccomp !== "filter" && report.seccomp !== "gvisor-sentry")
    problems.push(`seccomp is ${JSON.stringify(report.seccomp)} (expected "filter", or "gvisor-sentry" under runsc)`);
  if (!report.readOnlyRoot) problems.push("the root filesystem is writable");
  if (report.network.interfaces.length !== 1 || report.network.interfaces[0] !== "lo")
    problems.push(`network interfaces ${JSON.stringify(report.network.interfaces)} (expected only lo)`);
  if (report.network.defaultRoute) problems.push("a default route exists");
  if (report.hostReachable) problems.push(`the host is reachable from inside (${report.hostProbe})`);
  if (report.modelKey !== "proxy")
    problems.push(`the model key is ${JSON.stringify(report.modelKey)} (expected "proxy")`);
  return problems;
}

/** The evidence of a pass, in one line. */
export function describeIsolation(report: IsolationReport): string {
  const { user, capabilities, limits } = report;
  const memoryMb = limits.memoryBytes === null ? "none" : `${Math.round(limits.memoryBytes / (1024 * 1024))} MiB`;
  return [
    `${report.runtime}: uid ${user.uid}`,
    `CapEff ${capabilities.effective} CapBnd ${capabilities.bounding}`,
    `no_new_privs`,
    `seccomp ${report.seccomp}`,
    `read-only root`,
    `network ${report.network.interfaces.join(",")} without a default route`,
    `host unreachable`,
    `model key in the ${report.modelKey}`,
    `pids ${limits.pids ?? "none"}, memory ${memoryMb} (${limits.source})`,
    `measured in ${Math.round(report.measuredMs)} ms`,
  ].join(", ");
}
