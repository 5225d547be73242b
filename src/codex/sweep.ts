/**
 * Killing a turn inside its container. Killing the `docker exec` client does not kill the process
 * in the container (moby#9098), and codex's own SIGTERM leaves backgrounded grandchildren alive.
 *
 * Codex runs with the turn marker (TURN_MARKER_ENV=<turn>, set in env.ts) in its environment, which
 * its commands inherit, and is also known as the `codex` process exec'd from outside the container
 * (parent pid 0; under gVisor as under runc), which covers a codex whose environ cannot be read. The sweep takes
 * the earliest of these (codex itself) and kills every process of the container started at or after
 * it (start time from /proc/<pid>/stat), marker or not: children that cleared their environment,
 * setsid'd daemons and background jobs included. The init and the log pump started before any turn
 * and survive. A workspace runs one turn at a time, so nothing else is caught. Processes are
 * stopped first, then killed, in rounds until none is left, so a forking loop cannot outrun it.
 */
import { TURN_MARKER_ENV } from "./env.js";

export const SWEEP_SCRIPT = `
marker="${TURN_MARKER_ENV}=$1"
self=$$
# "<ppid> <start time> <comm>" of a process, from /proc/<pid>/stat (readable for every process)
info() { read -r s < "/proc/$1/stat" 2>/dev/null || return 1; c=\${s#*(}; c=\${c%) *}; s=\${s##*) }; set -- $s; echo "$2 \${20} $c"; }
first=
for p in /proc/[0-9]*; do
  pid=\${p#/proc/}
  [ "$pid" = 1 ] || [ "$pid" = "$self" ] && continue
  i=$(info "$pid") || continue
  set -- $i
  # codex is also known as the codex exec'd from outside (parent pid 0), should its environ be unreadable.
  if { [ "$1" = 0 ] && [ "$3" = codex ]; } || grep -qzx "$marker" "$p/environ" 2>/dev/null; then
    if [ -z "$first" ] || [ "$2" -lt "$first" ]; then first=$2; fi
  fi
done
[ -n "$first" ] || { echo "swept 0"; exit 0; }
total=0
round=0
while [ $round -lt 50 ]; do
  round=$((round + 1))
  victims=
  for p in /proc/[0-9]*; do
    pid=\${p#/proc/}
    [ "$pid" = 1 ] || [ "$pid" = "$self" ] && continue
    i=$(info "$pid") || continue
    set -- $i
    [ "$2" -ge "$first" ] && victims="$victims $pid"
  done
  [ -n "$victims" ] || break
  kill -STOP $victims 2>/dev/null
  kill -KILL $victims 2>/dev/null
  set -- $victims
  total=$((total + $#))
done
echo "swept $total"
`;

export function sweepCommand(turnId: string): string[] {
  return ["/bin/sh", "-c", SWEEP_SCRIPT, "alive-sweep", turnId];
}
