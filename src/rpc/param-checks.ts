/** The primitive validators of RPC params: one per kind of value, each naming the field it refuses. */
import path from "node:path";
import { checkEnvValue } from "../shared/env-value.js";
import { invalidParams } from "../errors.js";

export type Fields = Record<string, unknown>;

export const MAX_PATH_LENGTH = 4096;

/**
 * Every value of a string union, in the order listed (the order error messages name them in). The
 * compiler refuses a missing or an unknown one, so a codex-sdk upgrade that adds a mode is a decision.
 */
export function everyValue<T extends string>(values: Record<T, true>): readonly T[] {
  return Object.keys(values) as T[];
}

export function isPlainObject(value: unknown): value is Fields {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function join(prefix: string, key: string): string {
  return prefix === "" ? key : `${prefix}.${key}`;
}

/** The params object itself. Methods without params accept absent params. */
export function expectParams(raw: unknown): Fields {
  if (raw === undefined || raw === null) return {};
  if (!isPlainObject(raw)) throw invalidParams("params", "must be an object (named params)", raw);
  return raw;
}

export function expectObject(value: unknown, field: string): Fields {
  if (!isPlainObject(value)) throw invalidParams(field, "must be an object", value);
  return value;
}

/** Present and not null. */
export function has(fields: Fields, key: string): boolean {
  return Object.hasOwn(fields, key) && fields[key] !== undefined && fields[key] !== null;
}

export function expectString(value: unknown, field: string): string {
  if (typeof value !== "string") throw invalidParams(field, "must be a string", value);
  return value;
}

export function requireField(fields: Fields, key: string, field: string): unknown {
  if (!has(fields, key)) throw invalidParams(field, "is required");
  return fields[key];
}

/** A single-line string (no NUL, CR or LF) of bounded length; non-empty unless allowEmpty. */
export function singleLine(value: unknown, field: string, maxLength: number, allowEmpty = false): string {
  const text = expectString(value, field);
  if (!allowEmpty && text.length === 0) throw invalidParams(field, "must not be empty");
  return checkEnvValue(field, text, maxLength);
}

export function integerIn(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw invalidParams(field, `must be an integer from ${min} to ${max}`, value);
  }
  return value;
}

export function numberIn(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    throw invalidParams(field, `must be a number from ${min} to ${max}`, value);
  }
  return value;
}

export function booleanValue(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") throw invalidParams(field, "must be true or false", value);
  return value;
}

export function oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw invalidParams(field, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`, value);
  }
  return value as T;
}

export function absolutePath(value: unknown, field: string): string {
  const text = expectString(value, field);
  if (text.includes("\0")) throw invalidParams(field, "must not contain NUL");
  if (text.length > MAX_PATH_LENGTH) throw invalidParams(field, `must be at most ${MAX_PATH_LENGTH} characters`);
  if (!path.isAbsolute(text)) throw invalidParams(field, "must be an absolute path", text);
  return text;
}

export function matching(value: unknown, field: string, pattern: RegExp, description: string): string {
  const text = expectString(value, field);
  if (!pattern.test(text)) throw invalidParams(field, description, text);
  return text;
}
