/**
 * One parser per kind of setting value. Each takes the name the operator used (the flag or the
 * variable) and the raw text, and throws a ConfigError naming both and what was expected.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { MAX_DURATION_MS, RESOURCE_RANGES, type ResourceLimits } from "./limits.js";

export interface IdRange {
  min: number;
  max: number;
}

/** A setting that failed validation: names the setting, the value received and what was expected. */
export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    readonly value: string,
    readonly expected: string,
  ) {
    super(`${setting}=${JSON.stringify(value)}: expected ${expected}`);
    this.name = "ConfigError";
  }
}

export function parseAbsolutePath(setting: string, raw: string): string {
  if (!path.isAbsolute(raw)) throw new ConfigError(setting, raw, "an absolute path");
  if (raw.includes("\0")) throw new ConfigError(setting, raw, "a path without NUL");
  return path.resolve(raw);
}

/** Colon-separated absolute directories, at least one. */
export function parsePathList(setting: string, raw: string): string[] {
  const paths = raw
    .split(":")
    .filter((p) => p !== "")
    .map((p) => parseAbsolutePath(setting, p));
  if (paths.length === 0) throw new ConfigError(setting, raw, "at least one absolute directory");
  return paths;
}

export function parseInteger(setting: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(setting, raw, `a whole number from ${min} to ${max}`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(setting, raw, `a whole number from ${min} to ${max}`);
  return value;
}

/** A decimal number from min to max (e.g. CPU seconds). */
export function parseNumber(setting: string, raw: string, min: number, max: number): number {
  const value = Number(raw.trim());
  if (!/^\d+(\.\d+)?$/.test(raw.trim()) || value < min || value > max)
    throw new ConfigError(setting, raw, `a number from ${min} to ${max}`);
  return value;
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** host:port for a TCP listener, e.g. 127.0.0.1:9464 or [::1]:9464; port 0 takes any free one. */
export function parseListenAddress(setting: string, raw: string): ListenAddress {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(raw.trim());
  const port = match ? Number(match[3]) : 0;
  if (!match || port > 65535) throw new ConfigError(setting, raw, "host:port, e.g. 127.0.0.1:9464 or [::1]:9464");
  return { host: (match[1] ?? match[2]) as string, port };
}

export function parseRange(setting: string, raw: string): IdRange {
  const match = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(raw);
  const limit = 2 ** 31 - 2;
  if (!match) throw new ConfigError(setting, raw, "MIN-MAX, e.g. 10000-65533");
  const min = Number(match[1]);
  const max = Number(match[2]);
  if (min > max || max > limit) throw new ConfigError(setting, raw, `MIN-MAX with MIN <= MAX <= ${limit}`);
  return { min, max };
}

export function parseBoolean(setting: string, raw: string): boolean {
  const value = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["0", "false", "no", "off", ""].includes(value)) return false;
  throw new ConfigError(setting, raw, "true or false");
}

/** "1500", "1500ms", "90s", "30m", "2h" → milliseconds. */
export function parseDuration(setting: string, raw: string): number {
  const match = /^\s*(\d+)\s*(ms|s|m|h)?\s*$/.exec(raw);
  if (!match) throw new ConfigError(setting, raw, "a duration such as 500ms, 90s, 30m or 2h (0 = off)");
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? "ms") as "ms" | "s" | "m" | "h"];
  const value = Number(match[1]) * factor;
  if (value > MAX_DURATION_MS) throw new ConfigError(setting, raw, "a duration of at most 7 days");
  return value;
}

/** "memoryMb=4096,cpus=2": the named limits replace those of `base`, within RESOURCE_RANGES. */
export function parseResources(setting: string, raw: string, base: Readonly<ResourceLimits>): ResourceLimits {
  const out = { ...base };
  for (const part of raw
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name = "", value = ""] = part.split("=", 2).map((s) => s.trim());
    if (!Object.hasOwn(RESOURCE_RANGES, name)) {
      throw new ConfigError(setting, raw, "a list of memoryMb=N, cpus=N, pids=N separated by commas");
    }
    const key = name as keyof ResourceLimits;
    const range = RESOURCE_RANGES[key];
    if (range.integer) {
      out[key] = parseInteger(`${setting} ${key}`, value, range.min, range.max);
      continue;
    }
    const number = Number(value);
    if (!/^\d+(\.\d+)?$/.test(value) || number < range.min || number > range.max) {
      throw new ConfigError(`${setting} ${key}`, value, `a number from ${range.min} to ${range.max}`);
    }
    out[key] = number;
  }
  return out;
}

export function formatResources(resources: Readonly<ResourceLimits>): string {
  return `memoryMb=${resources.memoryMb},cpus=${resources.cpus},pids=${resources.pids}`;
}

export function parseUrl(setting: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(setting, raw, "an http:// or https:// URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new ConfigError(setting, raw, "an http:// or https:// URL");
  return raw.replace(/\/+$/, "");
}

export function parseSingleLine(setting: string, raw: string, maxLength: number, secret = false): string {
  if (/[\0\r\n]/.test(raw) || raw.length > maxLength) {
    throw new ConfigError(setting, secret ? "[redacted]" : raw, `a single line of at most ${maxLength} characters`);
  }
  return raw;
}

/** An image, network, runtime, group or model name. */
export function parseName(setting: string, raw: string, maxLength: number): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$/.test(raw) || raw.length > maxLength) {
    throw new ConfigError(setting, raw, "a name of letters, digits and _.:/@-");
  }
  return raw;
}

export function parseOneOf<T extends string>(setting: string, raw: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(raw))
    throw new ConfigError(setting, raw, `${allowed.slice(0, -1).join(", ")} or ${allowed.at(-1)}`);
  return raw as T;
}

export function readKeyFile(setting: string, file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new ConfigError(
      setting,
      file,
      `a readable file holding the key (${(error as NodeJS.ErrnoException).code ?? "unreadable"})`,
    );
  }
  const key = text.replace(/\r?\n$/, "");
  if (key === "") throw new ConfigError(setting, file, "a file holding the key, not an empty one");
  return parseSingleLine(setting, key, 4096, true);
}

export function parseDockerHost(setting: string, raw: string): string {
  if (/^unix:\/\/\//.test(raw) || /^tcp:\/\/[^/]+:\d+\/?$/.test(raw)) return raw;
  if (path.isAbsolute(raw)) return `unix://${raw}`;
  throw new ConfigError(setting, raw, "unix:///path/to/docker.sock or tcp://host:port");
}

const LABEL_KEY_PATTERN = /^[a-z0-9][a-z0-9._/-]*$/;
/** The sidecar's own label namespace (src/docker/labels.ts): an operator may not forge those labels. */
const OWN_LABEL_PREFIX = "dev.alive.codex.";
/** The one label of that namespace left to its embedder: tests and benches mark their run with it. */
const OPEN_OWN_LABELS: ReadonlySet<string> = new Set([`${OWN_LABEL_PREFIX}run-id`]);

/** "team=core,env=ci" → Docker labels. Values are single lines; keys are Docker label keys outside our namespace. */
export function parseLabels(setting: string, raw: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const part of raw.split(",").filter((p) => p.trim() !== "")) {
    const eq = part.indexOf("=");
    const key = (eq === -1 ? part : part.slice(0, eq)).trim();
    if (eq === -1)
      throw new ConfigError(setting, raw, `key=value pairs separated by commas (${JSON.stringify(key)} has no =)`);
    if (!LABEL_KEY_PATTERN.test(key) || key.length > 255) {
      throw new ConfigError(
        setting,
        raw,
        `label keys matching ${LABEL_KEY_PATTERN.source} of at most 255 characters (got ${JSON.stringify(key)})`,
      );
    }
    if (key.startsWith(OWN_LABEL_PREFIX) && !OPEN_OWN_LABELS.has(key)) {
      throw new ConfigError(
        setting,
        raw,
        `no label under ${OWN_LABEL_PREFIX} but ${[...OPEN_OWN_LABELS].join(", ")} (the sidecar sets the others)`,
      );
    }
    if (Object.hasOwn(labels, key))
      throw new ConfigError(setting, raw, `each label key once (${JSON.stringify(key)} repeats)`);
    labels[key] = parseSingleLine(`${setting} ${key}`, part.slice(eq + 1).trim(), 4096);
  }
  return labels;
}
