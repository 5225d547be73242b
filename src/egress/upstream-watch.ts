/**
 * How long an upstream connection of the egress proxy (a CONNECT tunnel, or a forwarded http://
 * request) may live: it is cut once no byte has passed either way for `idleMs`, and once it is
 * `maxMs` old whatever passes. A held tunnel costs two descriptors; without these a workspace
 * could keep every one it ever opened.
 *
 * Activity is read off the sockets' byte counters at each look (every quarter of `idleMs`), not
 * off their "data" events: nothing is added to the path of each chunk, and a look never changes a
 * stream's flowing mode. So a connection is cut between `idleMs` and 1.25 × `idleMs` after its
 * last byte.
 */
import type { Duplex } from "node:stream";

/** Why an upstream connection was cut: idle, too old, or closed by closeUpstreams() (a turn narrowed the egress). */
export type CutReason = "idle" | "lifetime" | "egress_narrowed";

export interface UpstreamTimeouts {
  idleMs: number;
  maxMs: number;
}

export const DEFAULT_TUNNEL_IDLE_MS = 5 * 60_000;
export const DEFAULT_TUNNEL_MAX_MS = 60 * 60_000;

/** The least time between two looks, so a tiny idle timeout does not spin. */
const MIN_LOOK_MS = 10;

export interface UpstreamWatch {
  stop(): void;
}

/** Calls `onExpired` once when `sockets` have been quiet for `idleMs`, or at `maxMs`; stop() when they close. */
export function watchUpstream(
  sockets: readonly Duplex[],
  timeouts: UpstreamTimeouts,
  onExpired: (reason: CutReason) => void,
): UpstreamWatch {
  const lookMs = Math.max(MIN_LOOK_MS, Math.floor(timeouts.idleMs / 4));
  let seen = bytesOf(sockets);
  let quietSince = performance.now();
  let stopped = false;
  let idleTimer: NodeJS.Timeout | null = null;
  const expire = (reason: CutReason): void => {
    if (stopped) return;
    stop();
    onExpired(reason);
  };
  const look = (): void => {
    const now = performance.now();
    const bytes = bytesOf(sockets);
    if (bytes !== seen) {
      seen = bytes;
      quietSince = now;
    } else if (now - quietSince >= timeouts.idleMs) {
      expire("idle");
      return;
    }
    idleTimer = setTimeout(look, lookMs);
    idleTimer.unref();
  };
  idleTimer = setTimeout(look, lookMs);
  idleTimer.unref();
  const lifetimeTimer = setTimeout(() => expire("lifetime"), timeouts.maxMs);
  lifetimeTimer.unref();
  function stop(): void {
    stopped = true;
    if (idleTimer !== null) clearTimeout(idleTimer);
    clearTimeout(lifetimeTimer);
  }
  return { stop };
}

/** Bytes read and written so far by every socket (net.Socket and tls.TLSSocket count them; another Duplex counts 0). */
function bytesOf(sockets: readonly Duplex[]): number {
  let total = 0;
  for (const socket of sockets) {
    const counted = socket as Duplex & { bytesRead?: number; bytesWritten?: number };
    total += (counted.bytesRead ?? 0) + (counted.bytesWritten ?? 0);
  }
  return total;
}
