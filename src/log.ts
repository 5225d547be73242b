/** JSON-lines logger with context fields. Secrets registered with it never reach a line. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  level: LogLevel;
  /** Values that must never appear in a log line (API keys, tokens): replaced by "[redacted]". */
  secrets?: readonly string[];
  write?: (line: string, level: LogLevel) => void;
  context?: LogFields;
}

const REDACTED = "[redacted]";
/** Shortest secret worth redacting: shorter strings would blank out ordinary words. */
const MIN_SECRET_LENGTH = 8;

export function createLogger(options: LoggerOptions): Logger {
  const threshold = LEVELS[options.level];
  const secrets = (options.secrets ?? []).filter((s) => s.length >= MIN_SECRET_LENGTH);
  const write = options.write ?? writeToStdio;
  const redact = (text: string): string => {
    let out = text;
    for (const secret of secrets) out = out.split(secret).join(REDACTED);
    return out;
  };
  const make = (context: LogFields): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
      if (LEVELS[level] < threshold) return;
      const record = { level, time: new Date().toISOString(), msg, ...context, ...fields };
      write(redact(JSON.stringify(record, replaceErrors)), level);
    };
    return {
      debug: (msg, fields) => emit("debug", msg, fields),
      info: (msg, fields) => emit("info", msg, fields),
      warn: (msg, fields) => emit("warn", msg, fields),
      error: (msg, fields) => emit("error", msg, fields),
      child: (fields) => make({ ...context, ...fields }),
    };
  };
  return make(options.context ?? {});
}

function replaceErrors(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return code === undefined
      ? { name: value.name, message: value.message }
      : { name: value.name, message: value.message, code };
  }
  return value;
}

function writeToStdio(line: string, level: LogLevel): void {
  (LEVELS[level] >= LEVELS.warn ? process.stderr : process.stdout).write(`${line}\n`);
}

export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
