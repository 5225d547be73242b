/** The egress settings' parsers (ALIVE_CODEX_EGRESS, ALIVE_CODEX_INTERNAL_DESTINATIONS): errors name the setting, like every setting's. */
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
