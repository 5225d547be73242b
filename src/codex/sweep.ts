/**
 * Killing a turn inside its container. Killing the `docker exec` client does not kill the process
 * in the container (moby#9098), and codex's own SIGTERM leaves backgrounded grandchildren alive.
 *
 * Codex runs with ALIVE_TURN_ID=<turn> in its environment. The sweep finds the earliest process
 * carrying that marker (codex itself) and kills every process of the container started at or after
 * it (start time from /proc/<pid>/stat), marker or not: children that cleared their environment,
 * setsid'd daemons and background jobs included. The init and the log pump started before any turn
 * and survive. A workspace runs one turn at a time, so nothing else is caught. Processes are
 * stopped first, then killed, in rounds until none is left, so a forking loop cannot outrun it.
 */
export const TURN_MARKER_ENV = "ALIVE_TURN_ID";

export const SWEEP_SCRIPT = `
marker="${TURN_MARKER_ENV}=$1"
self=$$
start_of() { read -r s < "/proc/$1/stat" 2>/dev/null || return 1; s=\${s##*) }; set -- $s; echo "\${20}"; }
first=
for p in /proc/[0-9]*; do
  pid=\${p#/proc/}
  [ "$pid" = 1 ] || [ "$pid" = "$self" ] && continue
  grep -qzx "$marker" "$p/environ" 2>/dev/null || continue
  st=$(start_of "$pid") || continue
  if [ -z "$first" ] || [ "$st" -lt "$first" ]; then first=$st; fi
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
    st=$(start_of "$pid") || continue
    [ "$st" -ge "$first" ] || continue
    victims="$victims $pid"
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
