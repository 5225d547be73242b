/**
 * Killing processes inside a workspace container. Killing the `docker exec` client does not kill
 * the process in the container (moby#9098), and codex's own SIGTERM leaves backgrounded
 * grandchildren alive.
 *
 * A turn's processes (SWEEP_SCRIPT): codex runs with the turn marker (TURN_MARKER_ENV=<turn>, set in
 * env.ts) in its environment, which its commands inherit, and is also known as the `codex` process
 * exec'd from outside the container (parent pid 0; under gVisor as under runc), which covers a codex
 * whose environ cannot be read. The sweep takes the earliest of these (codex itself) and kills every
 * process of the container started at or after it (start time from /proc/<pid>/stat), marker or not:
 * children that cleared their environment, setsid'd daemons and background jobs included. The init
 * and the log pump started before any turn and survive. A workspace runs one turn at a time, so
 * nothing else is caught.
 *
 * What earlier turns left (LEFTOVER_SWEEP_SCRIPT), before a turn that narrows the workspace's egress:
 * a turn that completes keeps its background processes, and the earliest turn process may be long
 * gone, so start times cannot tell them. Instead everything is a leftover except what is the
 * container's own or the sidecar's: the init, the main process (the init's first child) and what it
 * started (the forwarders, the connections they forked, the log pump), and a process exec'd from
 * outside that is not a turn's codex (the waiting launcher, this sweep, a probe) with its children.
 *
 * Both stop processes first, then kill them, in rounds until none is left, so a forking loop cannot
 * outrun them; both print "swept <n>".
 */
import { TURN_MARKER_ENV } from "./env.js";

/**
 * `pstat PID` sets ppid, start (in clock ticks since boot) and comm of process PID from
 * $proc/PID/stat, without a fork; it fails when the process is gone. The whole file is read: a comm
 * may hold a newline (prctl PR_SET_NAME), and reading one line would let a tenant's process shift
 * the fields after it and hide from a sweep. The fields are taken after the last ") ", which the
 * kernel writes after the comm.
 */
const PSTAT_FUNCTION = `
pstat() {
  s= l=
  while IFS= read -r l || [ -n "$l" ]; do s="$s$l "; l=; done 2>/dev/null < "$proc/$1/stat"
  [ -n "$s" ] || return 1
  comm=\${s#*(}; comm=\${comm%) *}
  s=\${s##*) }
  set -- $s
  state=$1 ppid=$2 start=\${20}
  [ -n "$start" ]
}
# marked PID: a turn's process by its environment ($marker, a grep pattern, is one of its entries).
marked() { grep -qzx "$marker" "$proc/$1/environ" 2>/dev/null; }`;

/**
 * Stops, then kills $victims; in list mode ($mode = list) prints them and kills nothing, so the
 * selection can be tested against a made-up /proc.
 */
const KILL_VICTIMS = `
  [ -n "$victims" ] || break
  if [ "$mode" = list ]; then echo "victims$victims"; exit 0; fi
  kill -STOP $victims 2>/dev/null
  kill -KILL $victims 2>/dev/null
  set -- $victims
  total=$((total + $#))`;

/** Args: the turn marker's value as a grep pattern; then the proc root (default /proc) and "list" to kill nothing (tests). */
export const SWEEP_SCRIPT = `
marker="${TURN_MARKER_ENV}=$1"
proc=\${2:-/proc}
mode=$3
self=$$
${PSTAT_FUNCTION}
first=
for p in "$proc"/[0-9]*; do
  pid=\${p##*/}
  [ "$pid" = 1 ] || [ "$pid" = "$self" ] && continue
  pstat "$pid" || continue
  # codex is also known as the codex exec'd from outside (parent pid 0), should its environ be unreadable.
  if { [ "$ppid" = 0 ] && [ "$comm" = codex ]; } || marked "$pid"; then
    if [ -z "$first" ] || [ "$start" -lt "$first" ]; then first=$start; fi
  fi
done
[ -n "$first" ] || { echo "swept 0"; exit 0; }
total=0
round=0
while [ $round -lt 50 ]; do
  round=$((round + 1))
  victims=
  for p in "$proc"/[0-9]*; do
    pid=\${p##*/}
    [ "$pid" = 1 ] || [ "$pid" = "$self" ] && continue
    pstat "$pid" || continue
    [ "$start" -ge "$first" ] && victims="$victims $pid"
  done
${KILL_VICTIMS}
done
echo "swept $total"
`;

/** Args: the proc root (default /proc) and "list" to kill nothing (tests). Every turn's marker counts: no turn runs while it does. */
export const LEFTOVER_SWEEP_SCRIPT = `
marker="${TURN_MARKER_ENV}=.*"
proc=\${1:-/proc}
mode=$2
self=$$
${PSTAT_FUNCTION}
# The main process is the init's first child: every other child of the init is an orphan it adopted later.
main= mainstart=
for p in "$proc"/[0-9]*; do
  pid=\${p##*/}
  pstat "$pid" && [ "$ppid" = 1 ] || continue
  if [ -z "$main" ] || [ "$start" -lt "$mainstart" ]; then main=$pid mainstart=$start; fi
done
# Without it, the forwarders could not be told from the rest: kill nothing.
[ -n "$main" ] || { echo "swept 0 (no main process)"; exit 0; }
# ours PID: the process descends from the main process, or from a process exec'd from outside (parent
# pid 0) that is not a turn's codex, before it meets the init (then it is an orphan) or a turn's codex.
ours() {
  q=$1 hops=0
  while [ $hops -lt 64 ]; do
    hops=$((hops + 1))
    { [ "$q" = "$self" ] || [ "$q" = "$main" ]; } && return 0
    [ "$q" = 1 ] && return 1
    pstat "$q" || return 1
    if [ "$ppid" = 0 ]; then
      [ "$comm" = codex ] && return 1
      marked "$q" && return 1
      return 0
    fi
    q=$ppid
  done
  return 1
}
total=0
round=0
while [ $round -lt 50 ]; do
  round=$((round + 1))
  victims=
  for p in "$proc"/[0-9]*; do
    pid=\${p##*/}
    [ "$pid" = 1 ] || [ "$pid" = "$self" ] && continue
    # A zombie holds nothing; the init reaps it once its parent is gone.
    pstat "$pid" && [ "$state" != Z ] || continue
    ours "$pid" || victims="$victims $pid"
  done
${KILL_VICTIMS}
done
echo "swept $total"
`;

/** Kills every process of the turn in the container. */
export function sweepCommand(turnId: string): string[] {
  return ["/bin/sh", "-c", SWEEP_SCRIPT, "alive-sweep", turnId, "/proc", "kill"];
}

/** Kills every process earlier turns left in the container; run before a turn that narrows its egress starts. */
export function leftoverSweepCommand(): string[] {
  return ["/bin/sh", "-c", LEFTOVER_SWEEP_SCRIPT, "alive-sweep-leftovers", "/proc", "kill"];
}

/** The count a sweep script printed ("swept <n>"); 0 when it printed none. */
export function sweptCount(stdout: string): number {
  return Number(/swept (\d+)/.exec(stdout)?.[1] ?? 0);
}
