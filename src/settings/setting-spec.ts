/**
 * The shape of one row of the settings table (config.ts SETTINGS), and the small parsers the
 * rows of several areas share.
 */
import type { SidecarConfig } from "../config.js";
import { parseInteger, parseName, parseSingleLine } from "../shared/setting-parsers.js";

export type Env = Record<string, string | undefined>;

export interface SettingSpec<K extends keyof SidecarConfig = keyof SidecarConfig> {
  /** The key in SidecarConfig this setting fills. */
  key: K;
  env: string;
  flag: string;
  description: string;
  /** `name` is what the operator used: the flag or the variable. */
  parse(name: string, raw: string): SidecarConfig[K];
  /** When neither flag nor variable is given: text run through `parse`, a value, or one computed from the environment. */
  default: string | ((env: Env) => SidecarConfig[K]) | (null extends SidecarConfig[K] ? null : never);
  /** The default as shown to operators: the default text itself, or words for a computed or absent one. */
  defaultText: string;
  secret?: boolean;
  /** The flag may stand alone, meaning true. */
  boolean?: boolean;
  /** The client commands read it too. */
  client?: boolean;
}

export type AnySetting = { [K in keyof SidecarConfig]: SettingSpec<K> }[keyof SidecarConfig];

/** A table entry; a default given as text is its own default text. */
export function setting<K extends keyof SidecarConfig>(
  spec: Omit<SettingSpec<K>, "defaultText"> & { defaultText?: string },
): SettingSpec<K> {
  const defaultText = spec.defaultText ?? (typeof spec.default === "string" ? spec.default : "(none)");
  return { ...spec, defaultText };
}

export const names = (maxLength: number) => (name: string, raw: string) => parseName(name, raw, maxLength);
export const integers = (min: number, max: number) => (name: string, raw: string) => parseInteger(name, raw, min, max);
export const secretLine = (name: string, raw: string): string => parseSingleLine(name, raw, 4096, true);
