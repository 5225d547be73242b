/** What doctor runs inside its scratch workspace container (through the engine's exec API, as the workspace user). */
import type { Docker } from "../docker/engine.js";
import { runExec } from "../docker/exec.js";
import { NET_PORTS } from "../egress/container-net.js";

/**
 * The container's processes that belong to no turn are its init, its log loop and network
 * forwarders (and their forked subshells, which show the main script), and a prewarmed launcher;
 * anything else is a turn's. Lists the rest as "pid cmdline".
 */
export async function turnProcesses(docker: Docker, containerId: string, user: string): Promise<string[]> {
  const listing = await runExec(docker, containerId, {
    user,
    cmd: ["/bin/sh", "-c", "for p in /proc/[0-9]*; do printf '%s %s\\n' \"${p#/proc/}\" \"$(tr '\\0\\n' '  ' < $p/cmdline 2>/dev/null)\"; done"],
  });
  return listing.stdout
    .split("\n")
    .filter(
      (line) =>
        line.trim() !== "" &&
        !/^1 /.test(line) &&
        !/^\d+ *$/.test(line) &&
        !/while :; do cat \/run\/alive\/log/.test(line) &&
        !/^\d+ cat \/run\/alive\/log/.test(line) &&
        !/for p in \/proc/.test(line) &&
        !/alive-launch -c/.test(line) &&
        !/^\d+ socat TCP-LISTEN:\d+,bind=127\.0\.0\.1,/.test(line) &&
        !/^\d+ sleep 1 $/.test(line),
    );
}

/** Where the metadata service of most clouds listens: the classic SSRF target. */
export const METADATA_ADDRESS = "169.254.169.254:80";

/**
 * A raw CONNECT to the cloud metadata address through the workspace's egress proxy (loopback
 * 3128 inside), with bash's /dev/tcp so no client's proxy handling is involved. Returns the
 * proxy's status line and headers.
 */
export async function probeMetadataConnect(docker: Docker, containerId: string, user: string): Promise<{ exitCode: number | null; response: string }> {
  const script = [
    `exec 3<>/dev/tcp/127.0.0.1/${NET_PORTS.proxy} || exit 7`,
    `printf 'CONNECT ${METADATA_ADDRESS} HTTP/1.1\\r\\nHost: ${METADATA_ADDRESS}\\r\\n\\r\\n' >&3`,
    `while IFS= read -r -t 5 line <&3; do printf '%s\\n' "\${line%$'\\r'}"; [ "\${line%$'\\r'}" = "" ] && break; done`,
  ].join("\n");
  const result = await runExec(docker, containerId, { user, cmd: ["/bin/bash", "-c", script], signal: AbortSignal.timeout(15_000) });
  return { exitCode: result.exitCode, response: result.stdout.trim() };
}
