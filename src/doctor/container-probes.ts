/** What doctor runs inside its scratch workspace container (through the engine's exec API, as the workspace user). */
import { isOwnProcess, listContainerProcesses } from "../codex/container-processes.js";
import type { EnginePort } from "../docker/engine-port.js";
import { runCommand } from "../docker/exec-output.js";
import { NET_PORTS } from "../egress/container-net.js";

/**
 * The container's processes that belong to no turn are its own (init, main script, log pump,
 * forwarders) and a prewarmed launcher (codex/container-processes.ts tells them); the rest, zombies
 * aside, are a turn's or what one left. Lists those as "pid cmdline".
 */
export async function turnProcesses(
  engine: Pick<EnginePort, "exec">,
  containerId: string,
  user: string,
): Promise<string[]> {
  const processes = await listContainerProcesses(engine, containerId, { user });
  return processes.filter((p) => !isOwnProcess(p) && p.args !== "").map((p) => `${p.pid} ${p.args}`);
}

/** Where the metadata service of most clouds listens: the classic SSRF target. */
export const METADATA_ADDRESS = "169.254.169.254:80";

/**
 * A raw CONNECT to the cloud metadata address through the workspace's egress proxy (loopback
 * 3128 inside), with bash's /dev/tcp so no client's proxy handling is involved. Returns the
 * proxy's status line and headers.
 */
export async function probeMetadataConnect(
  engine: Pick<EnginePort, "exec">,
  containerId: string,
  user: string,
): Promise<{ exitCode: number | null; response: string }> {
  const script = [
    `exec 3<>/dev/tcp/127.0.0.1/${NET_PORTS.proxy} || exit 7`,
    `printf 'CONNECT ${METADATA_ADDRESS} HTTP/1.1\\r\\nHost: ${METADATA_ADDRESS}\\r\\n\\r\\n' >&3`,
    `while IFS= read -r -t 5 line <&3; do printf '%s\\n' "\${line%$'\\r'}"; [ "\${line%$'\\r'}" = "" ] && break; done`,
  ].join("\n");
  const result = await runCommand(engine, containerId, {
    user,
    cmd: ["/bin/bash", "-c", script],
    signal: AbortSignal.timeout(15_000),
  });
  return { exitCode: result.exitCode, response: result.stdout.trim() };
}
