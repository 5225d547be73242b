/** The isolation report: what was measured of a workspace container, as workspace.ensure and workspace.list give it. */
import type { EgressDescription } from "../policy/egress-policy.js";

/**
 * A workspace container's isolation, measured from the running container (inspect plus a process
 * exec'd inside as the workspace user), not echoed from its spec (docs/security.md "Isolation report").
 */
export interface IsolationReport {
  containerId: string;
  /** The OCI runtime the engine ran it with ("runc", "runsc"). */
  runtime: string;
  user: { uid: number; gid: number; groups: number[] };
  /** As /proc/self/status shows them, hex (all zero: no capability at all). */
  capabilities: { effective: string; permitted: string; bounding: string; ambient: string };
  /** PR_GET_NO_NEW_PRIVS as the workspace user sees it (setpriv --dump), else /proc/self/status. */
  noNewPrivs: boolean;
  /** "filter": a seccomp BPF filter (runc); "gvisor-sentry": gVisor's own kernel is the filter (it reports Seccomp 0). */
  seccomp: "filter" | "strict" | "disabled" | "gvisor-sentry";
  readOnlyRoot: boolean;
  /** Mounts outside /proc, /dev and /sys, as the container sees them. */
  mounts: Array<{ path: string; readOnly: boolean }>;
  /** From the container's cgroup as seen inside ("cgroup"), else from the engine ("inspect"). */
  limits: { pids: number | null; memoryBytes: number | null; cpus: number | null; source: "cgroup" | "inspect" };
  /** Interfaces inside (only "lo" for network none) and whether a default route exists. */
  network: { interfaces: string[]; defaultRoute: boolean };
  /** The policy in force and how it is enforced: no network of its own, only the sidecar's proxies. */
  egress: { policy: EgressDescription; enforcedBy: "sidecar-proxy" };
  /** Where the model key is: in the sidecar's model proxy, never in the container. */
  modelKey: "proxy";
  /** A TCP connect from inside to the host's addresses: false when none got through or was refused by the host; evidence holds the errors. */
  hostReachable: boolean;
  hostProbe: string;
  measuredAt: string;
  /** How long the measurement took (inspect and exec in parallel). */
  measuredMs: number;
}
