/** The host tools a workspace disk is made, mounted and released with (e2fsprogs, util-linux), and the loop devices they attach. */
import { execa } from "execa";

export const TOOL_TIMEOUT_MS = 30_000;
/** The tools an image needs: e2fsprogs and util-linux. */
export const TOOLS = ["mkfs.ext4", "e2fsck", "resize2fs", "mount", "umount", "losetup"] as const;

/** Runs a tool; its failure names the command and what it said. */
export async function runTool(file: string, args: string[]): Promise<void> {
  const result = await execa(file, args, { reject: false, timeout: TOOL_TIMEOUT_MS });
  if (result.exitCode !== 0)
    throw new Error(
      `${file} ${args.join(" ")} failed (exit ${result.exitCode ?? result.signal}): ${(result.stderr || result.stdout).trim().slice(0, 500)}`,
    );
}

/**
 * Detaches the loop devices backed by `image` until none is left or `withinMs` passes; returns
 * those still attached then. The kernel clears an autoclear device asynchronously after its last
 * close, so one pass of losetup -d can race it ("busy") and see it again a moment later.
 */
export async function releaseLoopDevices(image: string, withinMs: number): Promise<string[]> {
  const deadline = Date.now() + withinMs;
  for (let pause = 10; ; pause = Math.min(pause * 2, 200)) {
    const devices = await loopDevicesOf(image);
    if (devices.length === 0 || Date.now() >= deadline) return devices;
    for (const device of devices) await execa("losetup", ["-d", device], { reject: false, timeout: TOOL_TIMEOUT_MS });
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/** The loop devices backed by `image` (losetup -j). */
export async function loopDevicesOf(image: string): Promise<string[]> {
  const attached = await execa("losetup", ["-j", image], { reject: false, timeout: TOOL_TIMEOUT_MS });
  return attached.stdout
    .split("\n")
    .map((line) => /^(\/dev\/loop\d+):/.exec(line)?.[1])
    .filter((device): device is string => device !== undefined);
}
