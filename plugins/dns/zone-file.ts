/**
 * RFC 1035 master (zone) files: reading them into records and printing records back.
 *
 * Read: `$ORIGIN` (for the lines after it), `$TTL` (RFC 2308), `;` comments, parentheses that
 * join lines, quoted strings, an omitted owner (the line starts with a space or tab: the
 * previous owner), TTL and class in either order and each optional. Only class IN is served,
 * so CH, HS and others are refused rather than silently mixed in. `$INCLUDE` is refused: a
 * zone uploaded through the API must not read files on the appliance.
 *
 * A record's TTL is its own, else the last `$TTL`, else `options.defaultTtl`, else the line is
 * an error — RFC 1035's "previous record's TTL" rule is not followed, because it makes a
 * record's TTL depend on the order of unrelated lines.
 *
 * Any error stops the whole parse (no partial zone) with a ZoneFileError naming the line.
 */
import { NameError, nameToRelativeText, nameToText, parseName, type Name } from "./names.ts";
import { parseTtl, TokenError, tokenize, type LogicalLine } from "./presentation.ts";
import { parseRdata, RdataError, storedRdataToText, typeFromText, typeToText } from "./rdata.ts";

export interface ZoneRecord {
  name: Name;
  ttl: number;
  type: number;
  rdata: Uint8Array;
  /** 1-based line where the record starts in the source text. */
  line: number;
}

export interface ZoneFileOptions {
  origin: Name;
  /** TTL for records without one when the file has no `$TTL`. */
  defaultTtl?: number;
}

/** A zone file refused at a line (1-based). The message starts with "line N: ". */
export class ZoneFileError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
    this.name = "ZoneFileError";
  }
}

/** The mutable state a master file carries from line to line. */
interface ReadState {
  origin: Name;
  ttl: number | undefined;
  owner: Name | null;
}

/** Parses a whole zone file; throws ZoneFileError at the first bad line. */
export function parseZoneFile(text: string, options: ZoneFileOptions): ZoneRecord[] {
  let lines: LogicalLine[];
  try {
    lines = tokenize(text);
  } catch (e) {
    if (e instanceof TokenError) throw new ZoneFileError(e.message, e.line);
    throw e;
  }
  const state: ReadState = { origin: options.origin, ttl: options.defaultTtl, owner: null };
  const records: ZoneRecord[] = [];
  for (const line of lines) {
    try {
      const record = readLine(line, state);
      if (record) records.push(record);
    } catch (e) {
      // Names and record data know nothing of lines; the line is added here, once.
      if (e instanceof NameError || e instanceof RdataError) throw new ZoneFileError(e.message, line.line);
      throw e;
    }
  }
  return records;
}

function readLine(line: LogicalLine, state: ReadState): ZoneRecord | null {
  const first = line.tokens[0]!;
  if (!line.ownerOmitted && first.startsWith("$")) {
    readDirective(line, state);
    return null;
  }
  return readRecord(line, state);
}

function readDirective({ tokens, line }: LogicalLine, state: ReadState): void {
  const [directive, argument, ...extra] = tokens;
  const name = directive!.toUpperCase();
  if (name === "$INCLUDE") throw new ZoneFileError("$INCLUDE is not supported", line);
  if (name !== "$ORIGIN" && name !== "$TTL") throw new ZoneFileError(`unknown directive ${directive}`, line);
  if (argument === undefined) throw new ZoneFileError(`${name} needs a value`, line);
  if (extra.length > 0) throw new ZoneFileError(`unexpected "${extra[0]}" after ${name}`, line);
  if (name === "$ORIGIN") {
    state.origin = parseName(argument, state.origin);
  } else {
    state.ttl = ttlOrThrow(argument, line);
  }
}

function ttlOrThrow(text: string, line: number): number {
  const ttl = parseTtl(text);
  if (ttl === null) throw new ZoneFileError(`"${text}" is not a TTL (0–2147483647 seconds, or like 1h30m)`, line);
  return ttl;
}

// Classes by mnemonic or RFC 3597 CLASSnnn; only IN (1) is accepted.
const CLASS_TOKEN = /^(?:IN|CH|CS|HS|NONE|ANY|CLASS[0-9]+)$/i;
const isIn = (token: string) => /^(?:IN|CLASS0*1)$/i.test(token);

function readRecord({ tokens, line, ownerOmitted }: LogicalLine, state: ReadState): ZoneRecord {
  let at = 0;
  if (ownerOmitted) {
    if (state.owner === null) throw new ZoneFileError("the owner is omitted but no record comes before", line);
  } else {
    state.owner = parseName(tokens[at++]!, state.origin);
  }
  let ttl: number | undefined;
  let classSeen = false;
  // TTL and class come in either order, each at most once (RFC 1035 5.1).
  for (;;) {
    const token = tokens[at];
    if (token === undefined) break;
    if (ttl === undefined && /^[0-9]/.test(token)) {
      ttl = ttlOrThrow(token, line);
    } else if (!classSeen && CLASS_TOKEN.test(token)) {
      if (!isIn(token)) throw new ZoneFileError(`class ${token} is not supported (only IN)`, line);
      classSeen = true;
    } else break;
    at++;
  }
  const typeText = tokens[at++];
  if (typeText === undefined) throw new ZoneFileError("the record type is missing", line);
  const type = typeFromText(typeText);
  if (type === null) throw new ZoneFileError(`"${typeText}" is not a record type`, line);
  const effectiveTtl = ttl ?? state.ttl;
  if (effectiveTtl === undefined) throw new ZoneFileError("no TTL is given and there is no $TTL", line);
  const rdata = parseRdata(type, tokens.slice(at), state.origin);
  return { name: state.owner!, ttl: effectiveTtl, type, rdata, line };
}

/**
 * Records → zone-file text that parseZoneFile reads back to the same records: one `$ORIGIN`
 * line, then one record per line in the order given, owners relative to the origin when inside
 * it. TTL and class are always written so that no line depends on another. Data that is not
 * valid for its type (stored by an older Citadel) is written in the generic form, which the
 * parser then refuses naming the line: the export works, the mistake stays visible.
 */
export function printZoneFile(origin: Name, records: readonly ZoneRecord[]): string {
  const lines = [`$ORIGIN ${nameToText(origin)}`];
  for (const r of records) {
    lines.push(`${nameToRelativeText(r.name, origin)} ${r.ttl} IN ${typeToText(r.type)} ${storedRdataToText(r.type, r.rdata)}`);
  }
  return lines.join("\n") + "\n";
}
