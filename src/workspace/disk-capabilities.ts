/** Whether this host can make workspace disks: what doctor and start-up (ALIVE_CODEX_DISK=auto) decide by. */
import { promises as fs } from "node:fs";
import { execa } from "execa";
import type { DiskCapabilities } from "../shared/disk-settings.js";
import { TOOLS, TOOL_TIMEOUT_MS } from "./disk-tools.js";

/**
 * What this host offers for workspace disks, without side effects: the uid, CAP_SYS_ADMIN in the
 * effective set (/proc/self/status), the tools on PATH (one sh), whether /dev/loop-control opens
 * read-write (absent on a host without the loop module; refused in a container without the device)
 * and the AppArmor label (Docker's default profile denies mount whatever the capabilities);
 * `stateDirPropagation` comes from checkSelfMounts (the engine's view of the sidecar's own container).
 */
export async function probeDiskCapabilities(stateDirPropagation: string | null = null): Promise<DiskCapabilities> {
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  const status = await fs.readFile("/proc/self/status", "utf8").catch(() => "");
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const capSysAdmin = capEff !== undefined && (BigInt(`0x${capEff}`) & (1n << 21n)) !== 0n;
  // One shell for all of them: the tools are looked up on the PATH mount(8) and the rest will be run with.
  const lookup = await execa(
    "sh",
    ["-c", 'for tool; do command -v "$tool" >/dev/null 2>&1 || echo "$tool"; done', "sh", ...TOOLS],
    { reject: false, timeout: TOOL_TIMEOUT_MS },
  );
  const missingTools = lookup.exitCode === 0 ? lookup.stdout.split("\n").filter((tool) => tool !== "") : [...TOOLS];
  let loopControl: DiskCapabilities["loopControl"] = "ok";
  try {
    await (await fs.open("/dev/loop-control", "r+")).close();
  } catch (error) {
    loopControl = (error as NodeJS.ErrnoException).code === "ENOENT" ? "missing" : "denied";
  }
  return { root, capSysAdmin, missingTools, loopControl, stateDirPropagation, appArmor: await readAppArmorLabel() };
}

/** This process's AppArmor label: the stacked LSM interface first (Linux 5.8+), then the classic one; null when neither says. */
async function readAppArmorLabel(): Promise<string | null> {
  for (const file of ["/proc/self/attr/apparmor/current", "/proc/self/attr/current"]) {
    const label = (await fs.readFile(file, "utf8").catch(() => "")).replace(/\0/g, "").trim();
    if (label !== "") return label;
  }
  return null;
}
