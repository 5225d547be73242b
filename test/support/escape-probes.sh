#!/bin/bash
# Our own escape and abuse suite (docs/security.md), run by codex inside a workspace container as the agent
# would: one line per probe, `HELD <name> <evidence>` or `BROKEN <name> <evidence>`. Two probes can
# only be judged from the host: `CHECK log_flood ...` (the test measures the container's log files)
# and, without a disk quota configured, `NOTE disk_bomb ...` (what was observed).
# Inputs (environment): ESC_RUNTIME (runc|runsc), ESC_OTHER_PATH, ESC_OTHER_MARK and
# ESC_OTHER_SOCKET (another workspace's dir, a word in its running process, its proxy socket on the
# host), ESC_HOSTS (the host's addresses and the bridge gateway), ESC_LISTEN_PORT (a listener the
# test started on the host's 0.0.0.0), ESC_KEY_HEX (the model key, hex: the key itself never appears
# in this process's arguments or environment), ESC_PIDS and ESC_MEM_MB (the limits asked for),
# ESC_DISK_QUOTA_MB (empty: none), ESC_OUT (where the lines are also written).
set -u
out=${ESC_OUT:-/dev/null}
part=${1:-all}
[ "$part" = all ] || [ "$part" = privileges ] && : > "$out"
say() { printf '%s\n' "$*" | tee -a "$out"; }
held() { local name=$1; shift; say "HELD $name $*"; }
broken() { local name=$1; shift; say "BROKEN $name $*"; }
verdict() { if [ "$1" = ok ]; then held "$2" "$3"; else broken "$2" "$3"; fi; }
# Builtins only where it is cheap to avoid a process: under gVisor (ptrace) every exec costs.
oneline() { local a s; mapfile -t a; s="${a[*]}"; s=${s//$'\t'/ }; while [[ $s == *"  "* ]]; do s=${s//  / }; done; s=${s:0:300}; printf '%s\n' "${s% }"; }
status() { local l; while IFS= read -r l; do case $l in "$1":*) l=${l#*:}; printf '%s\n' "${l//[$' \t']/}";; esac; done < /proc/self/status; }
cmdline() { local a; mapfile -d '' -t a < "$1/cmdline" 2>/dev/null; printf '%s\n' "${a[*]}"; }

probe_privileges() {
gvisor=no
case "$(cat /proc/version 2>/dev/null)" in *"4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016"*) gvisor=yes ;; esac
read -r _ _ _ _ _ _ _ _ rootfs _ < <(while read -r l; do case $l in *" / / "*) echo "$l" | sed 's/.* - /x x x x x x x x /'; break;; esac; done < /proc/self/mountinfo)
[ "${rootfs:-}" = 9p ] && gvisor=yes
if [ "$ESC_RUNTIME" = runsc ]; then
  if [ $gvisor = yes ]; then held runtime "gVisor detected inside (/proc/version, root on ${rootfs:-?}) as asked"; else broken runtime "asked runsc but this is not a gVisor sandbox"; fi
else
  if [ $gvisor = no ]; then held runtime "runc: the host kernel, root on ${rootfs:-?}"; else broken runtime "asked $ESC_RUNTIME but this is gVisor"; fi
fi

# --- identity and privileges
uid=$(id -u)
[ "$uid" != 0 ] && held uid_not_root "uid $uid gid $(id -g)" || broken uid_not_root "uid 0"
groups=$(status Groups); names=$(id -Gn 2>&1 | oneline)
if [ "$groups" = "$(id -g)" ] && ! echo " $names " | grep -qw docker; then held no_docker_group "groups [$groups] ($names)"; else broken no_docker_group "groups [$groups] ($names)"; fi
capeff=$(status CapEff); capbnd=$(status CapBnd); capprm=$(status CapPrm)
[[ $capeff =~ ^0+$ && $capprm =~ ^0+$ ]] && held cap_eff_zero "CapEff $capeff CapPrm $capprm" || broken cap_eff_zero "CapEff $capeff CapPrm $capprm"
[[ $capbnd =~ ^0+$ ]] && held cap_bnd_zero "CapBnd $capbnd" || broken cap_bnd_zero "CapBnd $capbnd"
nnp=$(status NoNewPrivs)
[ -z "$nnp" ] && nnp=$(setpriv --dump 2>/dev/null | sed -n 's/^no_new_privs: *//p')
[ "$nnp" = 1 ] && held no_new_privs "no_new_privs $nnp" || broken no_new_privs "no_new_privs '${nnp}'"
sc=$(status Seccomp)
if [ "$sc" = 2 ]; then held seccomp "Seccomp 2 (filter), $(status Seccomp_filters) filter(s)"
elif [ $gvisor = yes ]; then held seccomp "gvisor-sentry: Seccomp $sc inside gVisor, whose Sentry serves every system call itself"
else broken seccomp "Seccomp '$sc' and not gVisor"; fi

# A setuid binary run under no_new_privs keeps the caller's ids: su waits for a password on a pipe
# while its own status is read.
suid_bins=$(find /usr/bin /usr/sbin /usr/local /bin /sbin /opt -xdev -perm -4000 -type f 2>/dev/null | oneline)
exec 7< <(sleep 5)
su root -c true <&7 >/dev/null 2>&1 &
supid=$!
seen=""
for _ in $(seq 1 100); do
  seen=""
  while IFS=$' \t' read -r k r e _; do [ "$k" = Uid: ] && seen="$r/$e"; done < /proc/$supid/status 2>/dev/null
  [ -n "$seen" ] && [[ $(cmdline /proc/$supid) == su* ]] && break
  read -r -t 0.05 -u 7 _ || true
done
kill -9 $supid 2>/dev/null; exec 7<&-
case $seen in "$uid/$uid") held setuid_powerless "su (setuid root) ran with uid/euid $seen; setuid files: $suid_bins";; "") broken setuid_powerless "could not observe su run";; *) broken setuid_powerless "su ran with uid/euid $seen";; esac

}

probe_kernel() {
socks=$(for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock /var/run/containerd/containerd.sock /run/docker/containerd/containerd.sock /run/runc /run/dockershim.sock; do [ -e "$s" ] && echo "$s"; done; find "$HOME" "${TMPDIR:-/tmp}" "$PWD" /run /var/run /tmp /var/tmp /dev/shm -xdev -type s 2>/dev/null | grep -v '^/run/alive/net/' )
[ -z "$socks" ] && held no_engine_socket "no docker/containerd socket; sockets outside /run/alive/net: none" || broken no_engine_socket "found: $(echo "$socks" | oneline)"

init=$(cmdline /proc/1 | oneline); init=${init:0:48}
foreign=$(for p in /proc/[0-9]*; do c=$(cmdline "$p"); case $c in *dockerd*|*containerd*|*systemd*|*sshd*|*"dist/src/index.js"*|*node\ *sidecar*) echo "${p#/proc/}:$c";; esac; done | oneline)
procs=(/proc/[0-9]*); nproc=${#procs[@]}
case $init in *docker-init*|*tini*) [ -z "$foreign" ] && held pid_namespace "pid 1 is '$init'; $nproc processes, none of the host's" || broken pid_namespace "host processes visible: $foreign";;
  *) broken pid_namespace "pid 1 is '$init'";; esac

m1=$(mount -t tmpfs none /mnt 2>&1 | oneline); mrc=$?
u1=$(unshare -m true 2>&1 | oneline)
u2=$(unshare -Urm true 2>&1 | oneline)
u3=$(unshare -Ur mount -t tmpfs none /mnt 2>&1 | oneline)
u4=$(unshare -U true 2>&1 && echo created); u4=$(echo "$u4" | oneline)
if ! mountpoint -q /mnt && unshare -m true 2>/dev/null; then broken mount_unshare "unshare -m succeeded"
elif unshare -Urm true 2>/dev/null || unshare -Ur mount -t tmpfs none /mnt 2>/dev/null; then broken mount_unshare "a mount namespace or a mount in a user namespace worked"
elif [ "$u4" = created ] && [ $gvisor = no ]; then broken mount_unshare "a user namespace was created under runc"
else held mount_unshare "mount: $m1 | unshare -m: $u1 | unshare -Urm: $u2 | unshare -Ur mount: $u3 | unshare -U: ${u4:-refused}$([ $gvisor = yes ] && [ "$u4" = created ] && echo ' (a user namespace inside the Sentry, with no mount or capability outside it)')"; fi

try_write() { ( printf '%s' "$2" > "$1" ) 2>&1 | oneline; }
e=$(try_write /proc/sysrq-trigger h); [ -n "$e" ] && held sysrq "$e" || broken sysrq "wrote /proc/sysrq-trigger"
e=$(try_write /proc/sys/kernel/core_pattern '|/tmp/x'); c=$(cat /proc/sys/kernel/core_pattern 2>/dev/null)
[ -n "$e" ] && [ "$c" != '|/tmp/x' ] && held core_pattern "$e; core_pattern stays '$c'" || broken core_pattern "core_pattern is '$c'"
n=$(head -c 64 /proc/kcore 2>/dev/null | wc -c); e=$(head -c 1 /proc/kcore 2>&1 >/dev/null | oneline)
[ "$n" = 0 ] && held kcore "read 0 bytes: ${e:-empty}" || broken kcore "read $n bytes of /proc/kcore"
sysw=""; sysok=ok
for f in /sys/kernel/mm/ksm/run /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max /sys/class/net/lo/mtu /sys/kernel/uevent_helper; do
  e=$(try_write "$f" 999999999); [ -z "$e" ] && { sysok=bad; sysw="$sysw $f:WRITTEN"; } || sysw="$sysw ${f##*/sys/}:${e##*: }"
done
verdict $sysok sysfs_write "$sysw"
h0=$(hostname); e=$(hostname escaped 2>&1 | oneline); h1=$(hostname)
[ "$h0" = "$h1" ] && held hostname "$e; still '$h1'" || broken hostname "hostname changed to '$h1'"
e=$(date -s '2001-01-01 00:00:00' 2>&1 >/dev/null | oneline); y=$(date +%Y)
[ "$y" != 2001 ] && held clock "${e:-date -s silent}; year still $y" || broken clock "the clock moved to $y"
f=${TMPDIR:-/tmp}/esc-chown.$$; : > "$f"; e=$(chown 0:0 "$f" 2>&1 | oneline)
[ -O "$f" ] && held chown_root "$e; the file is still this uid's" || broken chown_root "the file is no longer this uid's after chown 0:0"; rm -f "$f"
dev=$(awk '$5 == "'"$PWD"'" {print $3; exit}' /proc/self/mountinfo); major=${dev%%:*}; minor=${dev##*:}
mk=""; mkok=ok
for d in "$PWD" "${TMPDIR:-/tmp}" /var/tmp /dev/shm; do
  node=$d/esc-dev.$$
  e=$(mknod "$node" b "${major:-8}" "${minor:-0}" 2>&1 | oneline)
  if [ -e "$node" ] || [ -b "$node" ]; then
    r=$(head -c 512 "$node" 2>&1 | wc -c); o=$(head -c 1 "$node" 2>&1 >/dev/null | oneline)
    [ "$r" -gt 0 ] && [ -z "$o" ] && { mkok=bad; mk="$mk $d:READ-$r-bytes"; } || mk="$mk $d:made-but-unopenable(${o##*: })"
    rm -f "$node"
  else mk="$mk $d:${e##*: }"; fi
done
verdict $mkok mknod "block $major:$minor:$mk"
rw=""; rwok=ok
for f in /esc /etc/esc /usr/bin/esc /opt/codex/esc /run/alive/esc /run/alive/net/esc; do
  e=$( ( : > "$f" ) 2>&1 | oneline); [ -z "$e" ] && { rwok=bad; rw="$rw $f:WRITTEN"; rm -f "$f"; } || rw="$rw $f:${e##*: }"
done
verdict $rwok rootfs_write "$rw"
n=$(head -c 16 /proc/1/mem 2>/dev/null | wc -c); e=$(head -c 16 /proc/1/mem 2>&1 >/dev/null | oneline)
w=$( ( printf x > /proc/1/mem ) 2>&1 | oneline)
[ "$n" = 0 ] && [ -n "$w" ] && held proc1_mem "read: ${e##*: }; write: ${w##*: }" || broken proc1_mem "read $n bytes, write '${w}'"
e=$(perl -e 'use Socket; for my $t ([PF_INET, SOCK_RAW, 1, "raw icmp"], [17, SOCK_RAW, 768, "packet"], [PF_INET6, SOCK_RAW, 58, "raw icmpv6"]) { if (socket(my $s, $t->[0], $t->[1], $t->[2])) { print "OPENED $t->[3]; " } else { print "$t->[3]: $!; " } }' 2>&1)
case $e in *OPENED*) broken raw_socket "$e";; *) held raw_socket "$e";; esac
fds=""; fdok=ok
for fd in /proc/$$/fd/*; do
  n=${fd##*/}; t=$(readlink "$fd" 2>/dev/null)
  case $n in 0|1|2|255) continue;; esac
  case $t in pipe:*|/dev/null|"$out") fds="$fds $n:$t";; socket:*|anon_inode:*) fds="$fds $n:$t(?)"; fdok=bad;;
    *) if [ -d "$fd" ] || [ ! -e "$t" ]; then fdok=bad; fds="$fds $n:$t(LEAK)"; else fds="$fds $n:$t"; fi;; esac
done
verdict $fdok leaked_fds "inherited by this shell (pid $$):${fds:- none beyond 0-2}"
e=$( ( printf x >> /proc/self/exe ) 2>&1 | oneline); e2=$( ( printf x >> "$(readlink /proc/$$/exe)" ) 2>&1 | oneline)
[ -n "$e" ] && [ -n "$e2" ] && held proc_self_exe "/proc/self/exe: ${e##*: }; $(readlink /proc/$$/exe): ${e2##*: }" || broken proc_self_exe "wrote an executable: '$e' '$e2'"

}

probe_network() {
own=$(ls /run/alive/net 2>/dev/null | oneline)
ow=$(ls -d "$ESC_OTHER_PATH" 2>&1 | oneline); oc=$(cat "$ESC_OTHER_PATH/secret.txt" 2>&1 | oneline)
op=$(for p in /proc/[0-9]*; do c=$(cmdline "$p"); case $c in *ESC_*) ;; *"$ESC_OTHER_MARK"*) echo "${p#/proc/}:$c";; esac; done | oneline)
os=$(perl -e 'use Socket; socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die; connect($s, pack_sockaddr_un($ARGV[0])) ? print "CONNECTED" : print "$!"' "$ESC_OTHER_SOCKET" 2>&1)
if [ -e "$ESC_OTHER_PATH/secret.txt" ] || [ -n "$op" ] || [ "$os" = CONNECTED ]; then broken other_workspace "files: $ow $oc; processes: $op; socket: $os"
else held other_workspace "its dir: ${ow##*: }; its process '$ESC_OTHER_MARK': not visible; its socket $ESC_OTHER_SOCKET: $os"; fi
tcp() { local r; r=$( { timeout 3 bash -c ': 3<>/dev/tcp/$0/$1' "$1" "$2"; } 2>&1 ) && echo connected || { [ -z "$r" ] && r="timed out"; echo "${r##*: }"; }; }
dt=""; dtok=ok
for a in $ESC_HOSTS; do for p in 2375 2376; do r=$(tcp "$a" "$p"); case $r in connected|*refused*) dtok=bad;; esac; dt="$dt $a:$p=$r;"; done; done
verdict $dtok dockerd_tcp "$dt"
hs=""; hsok=ok
for a in $ESC_HOSTS 127.0.0.1; do r=$(tcp "$a" "$ESC_LISTEN_PORT"); [ "$r" = connected ] && hsok=bad; hs="$hs $a:$ESC_LISTEN_PORT=$r;"; done
verdict $hsok host_services "$hs"
routes=$(awk 'NR > 1 {print $1":"$2}' /proc/net/route | oneline); ifs=$(awk -F: 'NR > 2 {gsub(/ /, "", $1); print $1}' /proc/net/dev | oneline)
if awk 'NR > 1 && $2 == "00000000" {f=1} END {exit !f}' /proc/net/route; then broken default_route "routes: $routes; interfaces: $ifs"
elif [ "$(echo $ifs)" != lo ]; then broken default_route "interfaces beyond lo: $ifs"
else held default_route "no route at all (${routes:-empty table}); interfaces: $ifs; own sockets: $own"; fi

# --- the model key: in no environ, no command line, no readable file
key=$(printf '%s' "$ESC_KEY_HEX" | sed 's/../\\x&/g'); key=$(printf '%b' "$key")
envs=0; unread=0; hits=""
for p in /proc/[0-9]*; do
  for f in environ cmdline; do
    if { : < "$p/$f"; } 2>/dev/null; then
      envs=$((envs + 1)); mapfile -d '' -t a < "$p/$f" 2>/dev/null; [[ "${a[*]}" == *"$key"* ]] && hits="$hits $p/$f"
    else unread=$((unread + 1)); fi
  done
done
dirs="$HOME ${TMPDIR:-/tmp} $PWD /run /etc /var/tmp /dev/shm /tmp"
fh=$(grep -rlsaF -f <(printf '%s\n' "$key") $dirs 2>/dev/null | oneline)
nf=$(find $dirs -xdev -type f -readable 2>/dev/null | wc -l)
[ -z "$hits$fh" ] && held model_key "absent from $envs environ/cmdline files ($unread unreadable) and $nf readable files under $dirs" || broken model_key "found in:$hits $fh"
unset key

}

# Each bomb leaves a START line in the results file first: should one take the whole sandbox down, the file says which.
start() { printf 'START %s\n' "$1" >> "$out"; }
probe_bombs() { probe_fork_bomb; probe_memory_bomb; probe_disk_bombs; }
probe_fork_bomb() {
if [[ " ${ESC_SKIP:-} " == *" fork_bomb "* ]]; then say "NOTE fork_bomb skipped by the test (ESC_SKIP)"; return; fi
start fork_bomb
r=$(perl -e '
  my ($n, @kids, $err) = (0);
  while ($n < 20000) { my $p = fork(); if (!defined $p) { $err = "$!"; last } if ($p == 0) { sleep 30; exit 0 } push @kids, $p; $n++ }
  kill 9, @kids; waitpid($_, 0) for @kids;
  print $err ? "fork failed after $n children: $err" : "made $n children without a failure";' 2>&1)
pm=$(cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null | head -1)
n=$(echo "$r" | sed -n 's/^fork failed after \([0-9]*\) children.*/\1/p')
[ -n "$n" ] && [ "$n" -le "$ESC_PIDS" ] && held fork_bomb "$r (pids limit $ESC_PIDS, cgroup pids.max ${pm:-not visible}); this shell still runs" || broken fork_bomb "$r (pids limit $ESC_PIDS)"
}
probe_memory_bomb() {
if [[ " ${ESC_SKIP:-} " == *" memory_bomb "* ]]; then say "NOTE memory_bomb skipped by the test (ESC_SKIP)"; return; fi
start memory_bomb
r=$(perl -e 'my @a; my $mb = 0; while ($mb < 8192) { push @a, "x" x (16 << 20); $mb += 16; print STDERR "$mb\n" if $mb % 256 == 0 } print "allocated ${mb} MiB\n"' 2>/tmp/esc-mem.$$; echo "exit $?")
last=$(tail -1 /tmp/esc-mem.$$ 2>/dev/null); rm -f /tmp/esc-mem.$$
case $r in *"exit 137"*|*"exit 9"*|*"Out of memory"*) held memory_bomb "the allocating process died ($(echo $r | oneline)) after about ${last:-0} MiB of a ${ESC_MEM_MB} MiB limit; this shell still runs";;
  *) broken memory_bomb "$(echo $r | oneline) (limit ${ESC_MEM_MB} MiB)";; esac
}
probe_disk_bombs() {
start disk_bomb
# tmpfs: bounded by its size; the host-backed dirs: by a quota when one is configured.
e=$(dd if=/dev/zero of=/var/tmp/esc-fill bs=1M count=256 2>&1 | tail -1 | oneline); s=$(du -m /var/tmp/esc-fill 2>/dev/null | cut -f1); rm -f /var/tmp/esc-fill
[ "${s:-0}" -lt 256 ] && held tmpfs_bomb "/var/tmp stopped at ${s} MiB: $e" || broken tmpfs_bomb "/var/tmp took ${s} MiB"
want=$(( ${ESC_DISK_QUOTA_MB:-0} > 0 ? ESC_DISK_QUOTA_MB + 64 : 64 ))
e=$(dd if=/dev/zero of="${TMPDIR:-/tmp}/esc-fill" bs=1M count=$want 2>&1 | tail -1 | oneline); s=$(du -m "${TMPDIR:-/tmp}/esc-fill" 2>/dev/null | cut -f1); rm -f "${TMPDIR:-/tmp}/esc-fill"
if [ -n "${ESC_DISK_QUOTA_MB:-}" ]; then
  [ "${s:-0}" -le "$ESC_DISK_QUOTA_MB" ] && held disk_bomb "TMPDIR stopped at ${s} MiB of a ${ESC_DISK_QUOTA_MB} MiB quota: $e" || broken disk_bomb "TMPDIR took ${s} MiB past a ${ESC_DISK_QUOTA_MB} MiB quota"
else say "NOTE disk_bomb no quota configured: TMPDIR took ${s} MiB of ${want} asked ($e), removed"; fi
start log_flood
w=$(perl -e 'open(my $f, ">>", "/proc/1/fd/1") or do { print "cannot open /proc/1/fd/1: $!"; exit }; my $l = ("f" x 1023) . "\n"; my $n = 0; for (1 .. 40 * 1024) { print $f $l or last; $n++ } close $f; printf "wrote %d MiB to the container log (pid 1 stdout)", $n / 1024' 2>&1)
case $w in "cannot open"*) held log_flood "$w";; *) say "CHECK log_flood $w";; esac
}

gvisor=no
case "$(cat /proc/version 2>/dev/null)" in *"4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016"*) gvisor=yes ;; esac
case $part in
  all) probe_privileges; probe_kernel; probe_network; probe_bombs ;;
  privileges|kernel|network|bombs|fork_bomb|memory_bomb) "probe_$part" ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
say "DONE escape-probes $part"
