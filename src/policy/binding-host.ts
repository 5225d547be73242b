/** The host of a secret binding (service-types/secrets.ts), as the egress proxy compares it with a CONNECT's. */
import net from "node:net";
import { invalidParams } from "../errors.js";
import { decideHost, normalizeHost, type EgressPolicy } from "./egress-policy.js";
import { isInternal, isPortAllowed, type InternalDestination } from "./internal-destinations.js";

/** `host` or `host:port` → the host (lower-cased, IPv6 without brackets) and port. */
export function parseBindingHost(raw: string): { host: string; port: number } | null {
  let host = raw;
  let port = 443;
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?$/.exec(raw);
  if (v6) {
    host = v6[1]!;
    if (v6[2] !== undefined) port = Number(v6[2]);
    if (net.isIPv6(host) === false) return null;
  } else {
    const colon = raw.lastIndexOf(":");
    if (colon >= 0) {
      if (!/^\d{1,5}$/.test(raw.slice(colon + 1))) return null;
      port = Number(raw.slice(colon + 1));
      host = raw.slice(0, colon);
    }
  }
  if (port < 1 || port > 65_535) return null;
  if (net.isIP(host) !== 0) return { host: host.toLowerCase(), port };
  const name = normalizeHost(host);
  return name === undefined ? null : { host: name, port };
}

/**
 * -32602 naming `<field>[i].host` unless the workspace could reach each bound host anyway: a binding
 * never widens the egress policy. An IP literal is allowed only for an internal destination.
 */
export function checkBindingHosts(
  bindings: ReadonlyArray<{ host: string }>,
  rules: { policy: EgressPolicy; internal: readonly InternalDestination[]; ports: readonly number[] },
  field = "secrets",
): void {
  bindings.forEach((binding, i) => {
    const where = `${field}[${i}].host`;
    const target = parseBindingHost(binding.host);
    if (target === null) throw invalidParams(where, "must be a host name or IP literal", binding.host);
    if (isInternal(rules.internal, target.host, target.port)) return;
    if (net.isIP(target.host) !== 0)
      throw invalidParams(
        where,
        "is an IP literal that is not an internal destination (ALIVE_CODEX_INTERNAL_DESTINATIONS)",
        binding.host,
      );
    const decision = decideHost(rules.policy, target.host);
    if (!decision.allowed)
      throw invalidParams(
        where,
        `is refused by the workspace's egress policy (${decision.reason}): a binding never widens it`,
        binding.host,
      );
    if (!isPortAllowed(rules.ports, rules.internal, target.host, target.port))
      throw invalidParams(
        where,
        `port ${target.port} is not one the egress proxy connects to (ALIVE_CODEX_EGRESS_PORTS)`,
        binding.host,
      );
  });
}
