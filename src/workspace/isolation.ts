/**
 * The pure part of a workspace's isolation report: the script that measures it from inside, the
 * parser of what that script prints, and the comparison with what the spec asked for. The report
 * is measured, not echoed, so it cannot claim what the container does not have: the capability
 * sets, no_new_privs and seccomp mode come from the kernel as the workspace user sees them, mounts
 * from /proc/self/mountinfo, limits from the container's cgroup, and reachability from a connect
 * attempt.
 */
import type { IsolationReport } from "../service.js";
import { isGvisorRuntime } from "./runtimes.js";

/** The measured part of the report; the egress policy is added when it is shown (it can change per turn). */
export type MeasuredIsolation = Omit<IsolationReport, "egress">;

/** Where the measuring script tries to connect: dockerd's TCP port on each of the host's addresses. */
export const HOST_PROBE_PORT = 2375;

/**
 * Runs inside as the workspace user, in bash (the image's), with builtins only: under gVisor every
 * fork and exec is costly (ptrace), so files are read with `mapfile` and the connects are
 * redirections of the `:` builtin to bash's /dev/tcp, one after another in the shell itself. With
 * no route (network none) each fails at once; were there a route, a connect answers or the exec's
 * deadline (isolation-probe.ts) ends the measurement, which then fails the ensure. setpriv
 * (PR_GET_NO_NEW_PRIVS) runs only where /proc/self/status has no NoNewPrivs line (gVisor). Each
 * section starts with a `@@name` line.
 */
export function isolationScript(hostAddresses: readonly string[]): string {
  const addresses = hostAddresses.filter((a) => /^[0-9.]+$/.test(a)).join(" ");
  return [
    'show() { [ -r "$1" ] && mapfile -t m < "$1" && printf \'%s\\n\' "${m[@]}"; }',
    "echo @@status; show /proc/self/status",
    'echo @@setpriv; case "${m[*]}" in *NoNewPrivs:*) ;; *) setpriv --dump 2>/dev/null ;; esac',
    "echo @@mountinfo; show /proc/self/mountinfo",
    "echo @@cgroup",
    "for f in /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us; do [ -r $f ] && read -r v < $f 2>/dev/null && printf '%s %s\\n' $f \"$v\"; done",
    "echo @@route; show /proc/net/route",
    "echo @@net; show /proc/net/dev",
    "echo @@connect",
    `for a in ${addresses}; do e=$( { : 3<>/dev/tcp/$a/${HOST_PROBE_PORT}; } 2>&1 ) && e=connected; echo "$a \${e##*: }"; done`,
    "echo @@end",
  ].join("\n");
}

/** What the engine says of the container (docker inspect), as far as the report needs it. */
export interface InspectFacts {
  containerId: string;
  /** HostConfig.Runtime (the engine fills in its default); empty reads as runc. */
  runtime: string;
  readOnlyRootfs: boolean;
  pids: number | null;
  memoryBytes: number | null;
  cpus: number | null;
}

/** The script's output split into its sections. */
export function splitSections(output: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let current: string[] | null = null;
  for (const line of output.split("\n")) {
    const marker = /^@@(\w+)$/.exec(line.trim());
    if (marker) {
      current = [];
      sections.set(marker[1] as string, current);
    } else if (current && line.trim() !== "") {
      current.push(line);
    }
  }
  return sections;
}

function statusField(lines: readonly string[], name: string): string | undefined {
  const line = lines.find((l) => l.startsWith(`${name}:`));
  return line?.slice(name.length + 1).trim();
}

/** /proc/self/mountinfo lines to { path, readOnly }, leaving out the engine's /proc, /dev and /sys mounts. */
export function parseMounts(lines: readonly string[]): Array<{ path: string; readOnly: boolean }> {
  const mounts: Array<{ path: string; readOnly: boolean }> = [];
  for (const line of lines) {
    const fields = line.split(" ");
    const target = fields[4];
    const options = fields[5];
    if (target === undefined || options === undefined) continue;
    const path = target.replace(/\\040/g, " ");
    if (/^\/(proc|dev|sys)(\/|$)/.test(path)) continue;
    mounts.push({ path, readOnly: options.split(",").includes("ro") });
  }
  // A path mounted twice shows its last (topmost) mount.
  const byPath = new Map(mounts.map((m) => [m.path, m]));
  return [...byPath.values()].sort((a, b) => a.path.localeCompare(b.path));
}

function numberOrNull(text: string | undefined): number | null {
  if (text === undefined || text === "" || text === "max" || text === "-1") return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : null;
}

/** Limits from the cgroup files the script printed (v2 or v1); an unlimited v1 memory reads as a huge number. */
export function parseCgroupLimits(
  lines: readonly string[],
): { pids: number | null; memoryBytes: number | null; cpus: number | null } | null {
  const files = new Map<string, string>();
  for (const line of lines) {
    const space = line.indexOf(" ");
    if (space > 0) files.set(line.slice(0, space), line.slice(space + 1).trim());
  }
  if (files.size === 0) return null;
  const pids = numberOrNull(files.get("/sys/fs/cgroup/pids.max") ?? files.get("/sys/fs/cgroup/pids/pids.max"));
  let memoryBytes = numberOrNull(
    files.get("/sys/fs/cgroup/memory.max") ?? files.get("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
  );
  if (memoryBytes !== null && memoryBytes >= 2 ** 62) memoryBytes = null;
  let cpus: number | null = null;
  const v2 = files.get("/sys/fs/cgroup/cpu.max");
  if (v2 !== undefined) {
    const [quota, period] = v2.split(/\s+/);
    const q = numberOrNull(quota);
    const p = numberOrNull(period);
    cpus = q !== null && p ? q / p : null;
  } else {
    const q = numberOrNull(files.get("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"));
    const p = numberOrNull(files.get("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
    cpus = q !== null && p ? q / p : null;
  }
  return { pids, memoryBytes, cpus };
}

/** Interface names from /proc/net/dev (two header lines, then "name: counters"). */
export function parseInterfaces(lines: readonly string[]): string[] {
  return lines
    .map((line) => /^\s*([^\s:]+):/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined)
    .sort();
}

/** True when /proc/net/route holds a default route (destination 00000000) on any interface. */
export function hasDefaultRoute(lines: readonly string[]): boolean {
  return lines.slice(1).some((line) => line.trim().split(/\s+/)[1] === "00000000");
}

/** Builds the measured report from inspect and the script's output; throws naming the section that is missing. */
export function parseIsolation(
  facts: InspectFacts,
  output: string,
  measuredMs: number,
  measuredAt: Date,
): MeasuredIsolation {
  const sections = splitSections(output);
  const section = (name: string): string[] => {
    const lines = sections.get(name);
    if (!lines) throw new Error(`the isolation probe printed no @@${name} section`);
    return lines;
  };
  const status = section("status");
  if (!sections.has("end")) throw new Error("the isolation probe did not finish (no @@end)");
  const runtime = facts.runtime === "" ? "runc" : facts.runtime;
  const ids = (field: string): number[] => (statusField(status, field) ?? "").split(/\s+/).filter(Boolean).map(Number);
  const [uid = -1] = ids("Uid");
  const [gid = -1] = ids("Gid");
  const groups = ids("Groups");
  const setprivLine = (sections.get("setpriv") ?? []).find((l) => l.startsWith("no_new_privs:"));
  const nnpStatus = statusField(status, "NoNewPrivs");
  const noNewPrivs = setprivLine !== undefined ? /no_new_privs:\s*1/.test(setprivLine) : nnpStatus === "1";
  const seccompField = statusField(status, "Seccomp");
  let seccomp: MeasuredIsolation["seccomp"];
  // gVisor reports Seccomp 0: its Sentry implements every system call itself and is the filter.
  if (isGvisorRuntime(runtime) && (seccompField === undefined || seccompField === "0")) seccomp = "gvisor-sentry";
  else seccomp = seccompField === "2" ? "filter" : seccompField === "1" ? "strict" : "disabled";
  const mounts = parseMounts(section("mountinfo"));
  const root = mounts.find((m) => m.path === "/");
  const cgroup = parseCgroupLimits(sections.get("cgroup") ?? []);
  const limits: MeasuredIsolation["limits"] = cgroup
    ? { ...cgroup, source: "cgroup" }
    : { pids: facts.pids, memoryBytes: facts.memoryBytes, cpus: facts.cpus, source: "inspect" };
  const connects = section("connect");
  // "connected", or "refused": a host answered. Anything else (unreachable, no route) got nowhere.
  const reached = connects.filter((line) => /\b(connected|refused)\b/i.test(line));
  return {
    containerId: facts.containerId,
    runtime,
    user: { uid, gid, groups },
    capabilities: {
      effective: statusField(status, "CapEff") ?? "",
      permitted: statusField(status, "CapPrm") ?? "",
      bounding: statusField(status, "CapBnd") ?? "",
      // gVisor has no ambient set (no CapAmb line): none can be raised.
      ambient: statusField(status, "CapAmb") ?? "unsupported",
    },
    noNewPrivs,
    seccomp,
    readOnlyRoot: root?.readOnly ?? facts.readOnlyRootfs,
    mounts,
    limits,
    network: {
      interfaces: parseInterfaces(sections.get("net") ?? []),
      defaultRoute: hasDefaultRoute(sections.get("route") ?? []),
    },
    modelKey: "proxy",
    hostReachable: reached.length > 0,
    hostProbe: connects.length === 0 ? "no host address to try" : connects.map((l) => l.trim()).join("; "),
    measuredAt: measuredAt.toISOString(),
    measuredMs: Math.round(measuredMs * 10) / 10,
  };
}

/** What the spec asked for, in the report's terms. */
export interface IsolationExpectation {
  /** null: the spec named none, so the engine's default is what was asked. */
  runtime: string | null;
  uid: number;
  gid: number;
  mounts: Array<{ path: string; readOnly: boolean }>;
  pids: number;
  memoryBytes: number;
  cpus: number;
}

const ZERO_CAPS = /^0+$/;

/** Every way the measured report differs from what was asked; empty when it matches. */
export function isolationDifferences(report: MeasuredIsolation, expected: IsolationExpectation): string[] {
  const d: string[] = [];
  if (expected.runtime !== null && report.runtime !== expected.runtime)
    d.push(`runtime is ${report.runtime} (asked ${expected.runtime})`);
  if (report.user.uid !== expected.uid) d.push(`uid is ${report.user.uid} (asked ${expected.uid})`);
  if (report.user.gid !== expected.gid) d.push(`gid is ${report.user.gid} (asked ${expected.gid})`);
  const extraGroups = report.user.groups.filter((g) => g !== expected.gid);
  if (extraGroups.length > 0) d.push(`supplementary groups ${extraGroups.join(",")} (asked only ${expected.gid})`);
  for (const [name, value] of Object.entries(report.capabilities)) {
    // gVisor has no ambient set at all: nothing can be raised there.
    const none =
      ZERO_CAPS.test(value) || (name === "ambient" && value === "unsupported" && isGvisorRuntime(report.runtime));
    if (!none) d.push(`capabilities ${name} is ${JSON.stringify(value)} (asked none)`);
  }
  if (!report.noNewPrivs) d.push("no_new_privs is off");
  const wantSeccomp = isGvisorRuntime(report.runtime) ? "gvisor-sentry" : "filter";
  if (report.seccomp !== wantSeccomp) d.push(`seccomp is ${report.seccomp} (asked ${wantSeccomp})`);
  if (!report.readOnlyRoot) d.push("the root filesystem is writable");
  const seen = new Map(report.mounts.map((m) => [m.path, m]));
  for (const mount of expected.mounts) {
    const found = seen.get(mount.path);
    if (!found) d.push(`mount ${mount.path} is missing`);
    else if (found.readOnly !== mount.readOnly)
      d.push(
        `mount ${mount.path} is ${found.readOnly ? "read-only" : "writable"} (asked ${mount.readOnly ? "read-only" : "writable"})`,
      );
  }
  const asked = new Set(expected.mounts.map((m) => m.path));
  for (const mount of report.mounts) {
    if (mount.path !== "/" && !mount.readOnly && !asked.has(mount.path))
      d.push(`mount ${mount.path} is writable and was not asked for`);
  }
  if (report.limits.pids !== expected.pids)
    d.push(`pids limit is ${report.limits.pids ?? "none"} (asked ${expected.pids})`);
  if (report.limits.memoryBytes !== expected.memoryBytes)
    d.push(`memory limit is ${report.limits.memoryBytes ?? "none"} bytes (asked ${expected.memoryBytes})`);
  if (report.limits.cpus === null || Math.abs(report.limits.cpus - expected.cpus) > 0.001)
    d.push(`cpu limit is ${report.limits.cpus ?? "none"} (asked ${expected.cpus})`);
  const foreign = report.network.interfaces.filter((i) => i !== "lo");
  if (foreign.length > 0) d.push(`network interfaces ${foreign.join(",")} (asked only lo)`);
  if (report.network.defaultRoute) d.push("a default route exists (asked none)");
  if (report.hostReachable) d.push(`the host is reachable: ${report.hostProbe}`);
  return d;
}
