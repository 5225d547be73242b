/** The egress settings' parsers (ALIVE_CODEX_EGRESS, ALIVE_CODEX_INTERNAL_DESTINATIONS, ALIVE_CODEX_HOST_ADDRESSES, ALIVE_CODEX_DNS_SERVERS, ALIVE_CODEX_EGRESS_PORTS): errors name the setting, like every setting's. */
import { isIP } from "node:net";
import { SidecarError } from "../errors.js";
import { ConfigError } from "../shared/setting-parsers.js";
import { AddressSet, parseAddressEntry } from "./addresses.js";
import { parseInternalDestinations, type InternalDestination } from "./internal-destinations.js";
import { parseEgressPolicy, type EgressPolicy } from "./egress-policy.js";

/** "public", "model", or a JSON object { "allow": [...], "deny": [...] }. */
export function parseEgressSetting(name: string, raw: string): EgressPolicy {
  const text = raw.trim();
  let value: unknown = text;
  if (text.startsWith("{")) {
    try {
      value = JSON.parse(text);
    } catch {
      throw new ConfigError(name, raw, 'JSON such as {"allow":["example.com","*.example.org"],"deny":[]}');
    }
  }
  try {
    return parseEgressPolicy(value, name);
  } catch (error) {
    if (!(error instanceof SidecarError)) throw error;
    throw new ConfigError(
      name,
      raw,
      `"public", "model" or {"allow":[...],"deny":[...]}: ${error.data?.field ?? name} ${error.data?.reason ?? error.message}`,
    );
  }
}

export function parseInternalSetting(name: string, raw: string): InternalDestination[] {
  return parseInternalDestinations(
    raw
      .split(",")
      .map((entry) => entry.trim())
      .filter((entry) => entry !== ""),
    name,
  );
}

/** Comma-separated addresses and CIDR networks; the error names the entry that is wrong and why. */
export function parseHostAddressesSetting(name: string, raw: string): AddressSet {
  const entries = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  return new AddressSet(
    entries.map((entry) => {
      const parsed = parseAddressEntry(entry);
      if (typeof parsed === "string")
        throw new ConfigError(
          name,
          raw,
          `comma-separated IP addresses and CIDR networks, e.g. 203.0.113.7,198.51.100.0/24,2001:db8::/48; ${JSON.stringify(entry)} is not one: expected ${parsed}`,
        );
      return parsed;
    }),
  );
}

/** Comma-separated DNS servers, each an IP address with an optional port: 10.0.0.2, 10.0.0.2:5353, [fd00::53]:53. */
export function parseDnsServersSetting(name: string, raw: string): string[] {
  const entries = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  if (entries.length === 0)
    throw new ConfigError(name, raw, "at least one DNS server address, e.g. 10.0.0.2 or 127.0.0.1:5353");
  return entries.map((entry) => {
    const match = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(entry);
    const v6 = isIP(entry) === 6 ? entry : match?.[1];
    const address = v6 ?? match?.[2] ?? "";
    const port = isIP(entry) === 6 ? undefined : match?.[3];
    const family = isIP(address);
    if (
      family === 0 ||
      (v6 !== undefined && family !== 6) ||
      (port !== undefined && (Number(port) < 1 || Number(port) > 65_535))
    ) {
      throw new ConfigError(
        name,
        raw,
        `comma-separated DNS server addresses, each an IP address with an optional port (10.0.0.2, 127.0.0.1:5353, [fd00::53]:53); ${JSON.stringify(entry)} is not one`,
      );
    }
    if (port === undefined) return address;
    return family === 6 ? `[${address}]:${port}` : `${address}:${port}`;
  });
}

/** A comma-separated list of TCP ports (1-65535), at least one; duplicates dropped. */
export function parsePortsSetting(name: string, raw: string): number[] {
  const entries = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  const expected = "a comma-separated list of ports from 1 to 65535, e.g. 443,80";
  if (entries.length === 0) throw new ConfigError(name, raw, expected);
  const ports = entries.map((entry) => {
    const port = /^\d{1,5}$/.test(entry) ? Number(entry) : NaN;
    if (!(port >= 1 && port <= 65_535))
      throw new ConfigError(name, raw, `${expected} (${JSON.stringify(entry)} is not one)`);
    return port;
  });
  return [...new Set(ports)];
}
