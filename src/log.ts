/**
 * Structured logging: one JSON object per line, so journald, Loki or `jq` read it as is.
 * The sink is injected so tests capture lines; the default is buffered standard output.
 */
import { writeLines } from "./line-output.ts";
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
  /** Writes out buffered lines now (before exiting). */
  flush(): void;
  /** Whether lines of this level are written (to skip building them when not). */
  enabled(level: LogLevel): boolean;
  /**
   * Writes a line whose fields the caller has already serialised as JSON members
   * (`"a":1,"b":"x"`): the hot path of the access log, one string and no object per line.
   */
  preformatted(level: LogLevel, msg: string, members: string): void;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Receives one complete line, newline included. */
  sink?: (line: string) => void;
  now?: () => number;
}

/**
 * Standard output, written once per turn of the event loop: under load one write(2) carries
 * many lines instead of one each. Lines pending at exit are written synchronously.
 */
function bufferedStdout(): { write: (line: string) => void; flush: () => void } {
  let pending = "";
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending === "") return;
    const out = pending;
    pending = "";
    writeAll(1, out);
  };
  process.on("exit", flush);
  return {
    write(line) {
      pending += line;
      if (pending.length > 65_536) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    flush,
  };
}

/**
 * How long a log line waits for a full standard output before it is dropped: the log must not
 * hold up requests behind a reader that stopped reading.
 */
const LOG_PATIENCE_MS = 10;

/** Standard output's lines, or none: a stdout that is gone or stuck drops the log, not the server. */
function writeAll(fd: number, text: string): void {
  try {
    writeLines(fd, text, LOG_PATIENCE_MS);
  } catch {
    // Nothing to do: there is nowhere else to say it.
  }
}

const RESERVED = new Set(["time", "level", "msg"]);

export function createLogger({ level = "info", sink, now = Date.now }: LoggerOptions = {}): Logger {
  let flush = () => {};
  if (!sink) {
    const stdout = bufferedStdout();
    sink = stdout.write;
    flush = stdout.flush;
  }
  const write = sink;
  const threshold = LOG_LEVELS.indexOf(level);
  // Under load many lines share a millisecond: format its timestamp once.
  let lastMs = NaN;
  let lastTime = "";
  const timestamp = () => {
    const ms = now();
    if (ms !== lastMs) {
      lastMs = ms;
      lastTime = new Date(ms).toISOString();
    }
    return lastTime;
  };
  const make = (bound: LogFields): Logger => {
    const boundMembers = Object.keys(bound).length > 0 ? JSON.stringify(bound).slice(1, -1) + "," : "";
    const emit = (lvl: LogLevel, msg: string, fields?: LogFields) => {
      if (LOG_LEVELS.indexOf(lvl) < threshold) return;
      const record: LogFields = { time: timestamp(), level: lvl, msg };
      for (const key in bound) if (!(key in record)) record[key] = bound[key];
      for (const key in fields) {
        if (key in record && RESERVED.has(key)) continue; // a field cannot pass itself off as the time, level or message
        const value = fields[key];
        record[key] = value instanceof Error ? errorFields(value) : value;
      }
      write(JSON.stringify(record) + "\n");
    };
    return {
      debug: (msg, fields) => emit("debug", msg, fields),
      info: (msg, fields) => emit("info", msg, fields),
      warn: (msg, fields) => emit("warn", msg, fields),
      error: (msg, fields) => emit("error", msg, fields),
      with: (fields) => make({ ...bound, ...fields }),
      flush,
      enabled: (lvl) => LOG_LEVELS.indexOf(lvl) >= threshold,
      preformatted(lvl, msg, members) {
        if (LOG_LEVELS.indexOf(lvl) < threshold) return;
        write(`{"time":"${timestamp()}","level":"${lvl}","msg":${JSON.stringify(msg)},${boundMembers}${members}}\n`);
      },
    };
  };
  return make({});
}

/** An Error's fields are not enumerable; spell them out so the operator's log has the detail. */
function errorFields(error: Error): LogFields {
  const cause = error.cause instanceof Error ? errorFields(error.cause) : error.cause;
  return { name: error.name, message: error.message, stack: error.stack, ...(cause === undefined ? {} : { cause }) };
}

/** A logger that drops everything (for tools and tests that do not care). */
export const silentLogger: Logger = createLogger({ sink: () => {} });
