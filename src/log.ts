/**
 * Structured logging: one JSON object per line, so journald, Loki or `jq` read it as is.
 * The sink is injected so tests capture lines and main.ts decides where they go.
 */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (for example `{ plugin: "dns" }`). */
  with(fields: LogFields): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Receives one complete line, newline included. */
  sink?: (line: string) => void;
  now?: () => number;
}

const writeStdout = (line: string) => {
  process.stdout.write(line);
};

export function createLogger({ level = "info", sink = writeStdout, now = Date.now }: LoggerOptions = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const make = (bound: LogFields): Logger => {
    const emit = (lvl: LogLevel, msg: string, fields?: LogFields) => {
      if (LOG_LEVELS.indexOf(lvl) < threshold) return;
      const record = { time: new Date(now()).toISOString(), level: lvl, msg, ...bound, ...fields };
      sink(JSON.stringify(record, errorsAsObjects) + "\n");
    };
    return {
      debug: (msg, fields) => emit("debug", msg, fields),
      info: (msg, fields) => emit("info", msg, fields),
      warn: (msg, fields) => emit("warn", msg, fields),
      error: (msg, fields) => emit("error", msg, fields),
      with: (fields) => make({ ...bound, ...fields }),
    };
  };
  return make({});
}

/** Errors are not enumerable; spell them out so the operator's log has the detail. */
function errorsAsObjects(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    return { name: value.name, message: value.message, stack: value.stack, cause: value.cause };
  }
  if (typeof value === "bigint") return value.toString();
  return value;
}

/** A logger that drops everything (for tools and tests that do not care). */
export const silentLogger: Logger = createLogger({ sink: () => {} });
