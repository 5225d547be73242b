/** The one check every environment value passes, wherever it comes from (RPC params, config, the session env). */
import { invalidParams } from "../errors.js";

export const MAX_ENV_VALUE_LENGTH = 8192;

/** Refuses a value with NUL or newline (it would split an env entry or a log line) or over the size bound. */
export function checkEnvValue(field: string, value: string, maxLength = MAX_ENV_VALUE_LENGTH): string {
  if (/[\0\r\n]/.test(value)) throw invalidParams(field, "must not contain NUL or newline characters");
  if (value.length > maxLength)
    throw invalidParams(field, `must be at most ${maxLength} characters (got ${value.length})`);
  return value;
}
