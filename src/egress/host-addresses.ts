/**
 * The host's own addresses, which the egress proxy refuses (checkAddress, policy/addresses.ts).
 * Read from the interfaces and /proc, so they live here and not beside the pure rules.
 */
import { readFileSync } from "node:fs";
import os from "node:os";

/**
 * The host's own addresses, from os.networkInterfaces() unless given (tests pass their own), plus
 * the kernel's local addresses: os.networkInterfaces() leaves out interfaces that are not up and
 * running, such as a Docker bridge with no container attached, whose addresses still reach the
 * host's services. Read at most every few seconds: this runs for every egress request.
 */
export function hostAddressesFromInterfaces(interfaces?: NodeJS.Dict<os.NetworkInterfaceInfo[]>): string[] {
  const fromInterfaces = Object.values(interfaces ?? os.networkInterfaces()).flatMap((infos) =>
    (infos ?? []).map((info) => info.address),
  );
  if (interfaces !== undefined) return fromInterfaces;
  const now = Date.now();
  if (kernelLocal === null || now - kernelLocal.at > KERNEL_LOCAL_TTL_MS)
    kernelLocal = { at: now, addresses: readKernelLocalAddresses() };
  return [...new Set([...fromInterfaces, ...kernelLocal.addresses])];
}

const KERNEL_LOCAL_TTL_MS = 5_000;
let kernelLocal: { at: number; addresses: string[] } | null = null;

/** IPv4 addresses the kernel routes as LOCAL (/proc/net/fib_trie) and every IPv6 address (/proc/net/if_inet6). */
export function readKernelLocalAddresses(
  fibTrie = readOrEmpty("/proc/net/fib_trie"),
  ifInet6 = readOrEmpty("/proc/net/if_inet6"),
): string[] {
  const out = new Set<string>();
  const lines = fibTrie.split("\n");
  for (let i = 1; i < lines.length; i++) {
    const leaf = /^\s*\|-- (\d+\.\d+\.\d+\.\d+)$/.exec(lines[i - 1] ?? "");
    if (leaf?.[1] && /\/32 host LOCAL/.test(lines[i] ?? "")) out.add(leaf[1]);
  }
  for (const line of ifInet6.split("\n")) {
    const hex = /^([0-9a-f]{32})\s/.exec(line)?.[1];
    if (hex) out.add(hex.match(/.{4}/g)!.join(":"));
  }
  return [...out];
}

function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}
