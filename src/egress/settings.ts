/** The egress settings' parsers (ALIVE_CODEX_EGRESS, ALIVE_CODEX_INTERNAL_DESTINATIONS, ALIVE_CODEX_EGRESS_PORTS): errors name the setting, like every setting's. */
import { SidecarError } from "../errors.js";
import { ConfigError } from "../shared/setting-parsers.js";
import { parseInternalDestinations, type InternalDestination } from "./internal.js";
import { parseEgressPolicy, type EgressPolicy } from "./policy.js";

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
    throw new ConfigError(name, raw, `"public", "model" or {"allow":[...],"deny":[...]}: ${error.data?.field ?? name} ${error.data?.reason ?? error.message}`);
  }
}

export function parseInternalSetting(name: string, raw: string): InternalDestination[] {
  return parseInternalDestinations(raw.split(",").map((entry) => entry.trim()).filter((entry) => entry !== ""), name);
}

/** A comma-separated list of TCP ports (1-65535), at least one; duplicates dropped. */
export function parsePortsSetting(name: string, raw: string): number[] {
  const entries = raw.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "");
  const expected = "a comma-separated list of ports from 1 to 65535, e.g. 443,80";
  if (entries.length === 0) throw new ConfigError(name, raw, expected);
  const ports = entries.map((entry) => {
    const port = /^\d{1,5}$/.test(entry) ? Number(entry) : NaN;
    if (!(port >= 1 && port <= 65_535)) throw new ConfigError(name, raw, `${expected} (${JSON.stringify(entry)} is not one)`);
    return port;
  });
  return [...new Set(ports)];
}
