/**
 * A workspace's egress policy and the decision on a host *name*, made before any DNS lookup.
 * Address checks (addresses.ts) come after and apply in every mode; this only says which names a
 * workspace may ask for.
 */
import { isIP } from "node:net";
import { domainToASCII } from "node:url";
import { invalidParams } from "../errors.js";

/** "public": any public destination; "model": nothing through the egress proxy; a list: only those domains. */
export type EgressPolicy = "public" | "model" | { allow: string[]; deny: string[] };

export type HostRefusal = "model_only" | "denied" | "not_allowed";
export type HostDecision = { allowed: true } | { allowed: false; reason: HostRefusal };

export const EGRESS_LIMITS = { patterns: 256, nameLength: 253, labelLength: 63 } as const;

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/;
const LIST_KEYS = new Set(["allow", "deny"]);

/**
 * A host name as the proxy compares it: IDNA ASCII, lowercase, without a trailing dot; an IP
 * address in its one WHATWG spelling (so 0x7f.1 becomes 127.0.0.1). Undefined when it is neither.
 */
export function normalizeHost(host: string): string | undefined {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (isIP(bare) === 6) return bare.toLowerCase();
  const ascii = domainToASCII(bare.endsWith(".") ? bare.slice(0, -1) : bare);
  if (ascii === "" || ascii.length > EGRESS_LIMITS.nameLength) return undefined;
  if (isIP(ascii) === 4) return ascii;
  const labels = ascii.split(".");
  return labels.every((label) => label.length <= EGRESS_LIMITS.labelLength && LABEL.test(label)) ? ascii : undefined;
}

/** Validates the `egress` param. Each refusal names the field, the offending entry and why. */
export function parseEgressPolicy(value: unknown, field: string): EgressPolicy {
  if (value === "public" || value === "model") return value;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalidParams(field, 'expected "public", "model" or { "allow": [...], "deny": [...] }', value);
  }
  const fields = value as Record<string, unknown>;
  // Unknown keys are refused here, unlike elsewhere in the params: a misspelt "deny" would
  // otherwise let through what the caller meant to keep out.
  const unknown = Object.keys(fields).filter((key) => !LIST_KEYS.has(key));
  if (unknown.length > 0)
    throw invalidParams(field, `unknown key ${JSON.stringify(unknown[0])}: expected only "allow" and "deny"`);
  if (fields.allow === undefined) {
    throw invalidParams(`${field}.allow`, 'is required with a domain list (use "public" for any public destination)');
  }
  return {
    allow: parsePatterns(fields.allow, `${field}.allow`),
    deny: fields.deny === undefined ? [] : parsePatterns(fields.deny, `${field}.deny`),
  };
}

function parsePatterns(value: unknown, field: string): string[] {
  if (!Array.isArray(value)) throw invalidParams(field, "expected an array of domain patterns", value);
  if (value.length > EGRESS_LIMITS.patterns)
    throw invalidParams(field, `at most ${EGRESS_LIMITS.patterns} patterns (got ${value.length})`);
  const patterns = value.map((entry: unknown, i) => parsePattern(entry, `${field}[${i}]`));
  return [...new Set(patterns)];
}

function parsePattern(value: unknown, field: string): string {
  if (typeof value !== "string") throw invalidParams(field, "expected a domain pattern string", value);
  const wildcard = value.startsWith("*.");
  const name = wildcard ? value.slice(2) : value;
  if (/[:/?#@\s]/.test(name) || name.startsWith("[")) {
    throw invalidParams(
      field,
      "expected a bare domain such as example.com or *.example.com (no scheme, port, path or user)",
      value,
    );
  }
  if (name.includes("*"))
    throw invalidParams(field, 'a wildcard is allowed only as a leading "*." (*.example.com)', value);
  const normalized = name === "" ? undefined : normalizeHost(name);
  if (normalized === undefined) throw invalidParams(field, "is not a valid domain name", value);
  if (isIP(normalized) !== 0) throw invalidParams(field, "expected a domain name, not an IP address", value);
  return wildcard ? `*.${normalized}` : normalized;
}

function matches(pattern: string, host: string): boolean {
  return pattern.startsWith("*.") ? host.endsWith(pattern.slice(1)) : host === pattern;
}

/**
 * May a workspace under `policy` ask for `host`? Deny wins over allow; "*.example.com" matches any
 * subdomain but not example.com itself; an IP literal matches no pattern. "public" allows every
 * name: the address checks that follow still refuse non-public destinations.
 */
export function decideHost(policy: EgressPolicy, host: string): HostDecision {
  if (policy === "public") return { allowed: true };
  if (policy === "model") return { allowed: false, reason: "model_only" };
  const name = normalizeHost(host);
  if (name === undefined || isIP(name) !== 0) return { allowed: false, reason: "not_allowed" };
  if (policy.deny.some((pattern) => matches(pattern, name))) return { allowed: false, reason: "denied" };
  if (policy.allow.some((pattern) => matches(pattern, name))) return { allowed: true };
  return { allowed: false, reason: "not_allowed" };
}

export type EgressDescription =
  { mode: "public" } | { mode: "model" } | { mode: "list"; allow: string[]; deny: string[] };

/** The policy in force, as workspace.list shows it. */
export function describeEgress(policy: EgressPolicy): EgressDescription {
  if (policy === "public" || policy === "model") return { mode: policy };
  return { mode: "list", allow: [...policy.allow], deny: [...policy.deny] };
}
