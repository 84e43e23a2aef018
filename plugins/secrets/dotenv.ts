/**
 * Bulk import and export of secrets: .env text and flat JSON objects. No dependencies.
 *
 * The .env dialect read is the common ground of docker compose, dotenv (node) and python-dotenv:
 *   - blank lines and `#` comment lines; CRLF (or CR) line endings; a leading UTF-8 BOM is ignored;
 *   - `NAME=value` or `export NAME=value`, whitespace around `=` allowed; NAME matches SECRET_NAME;
 *   - unquoted values are trimmed, and a `#` after whitespace starts a comment (`a#b` is kept whole);
 *   - 'single quotes' are literal (no escapes at all) and may span lines;
 *   - "double quotes" know \n \r \t \" \\ \$ \` (any other backslash is kept as written) and may
 *     span lines; after a closing quote only whitespace and a `#` comment may follow.
 * There is no interpolation: `${X}` and `$X` are kept literally. A name set twice is an error,
 * not a silent override. Errors give line numbers and names, never a value: values are secrets.
 *
 * printDotenv writes what parseDotenv reads back exactly, each variable on one line: plain
 * values bare, others single-quoted when that holds them, else double-quoted with line ends and
 * `\ " $ `` ` `` escaped (quoteValue). A shell sourcing the file (`set -a; . ./file.env`) runs
 * nothing and reads every value exactly, but for a line end, which it keeps as \n or \r.
 */

export interface SecretEntry {
  name: string;
  value: string;
}

/**
 * Names are also valid environment variable names. With every value on its own line (printDotenv),
 * each line of an export is one variable for readers that take `NAME=value` lines as they are
 * (docker run --env-file, kubectl --from-env-file), though these keep a value's quotes.
 */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export function isSecretName(s: string): boolean {
  return SECRET_NAME.test(s);
}

const NAME_RULE = "letters, digits and _, not starting with a digit, at most 128";

/** .env text refused at a line (1-based). The constructor prefixes the message with "line N: ". */
export class DotenvError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
    this.name = "DotenvError";
  }
}

// ---------------------------------------------------------------------------------------------
// Reading .env

export function parseDotenv(text: string): SecretEntry[] {
  const lines = splitLines(text);
  const entries: SecretEntry[] = [];
  const firstSetOn = new Map<string, number>();
  let i = 0;
  while (i < lines.length) {
    const lineNo = i + 1;
    const line = lines[i]!.trimStart();
    if (line === "" || line.startsWith("#")) {
      i++;
      continue;
    }
    const { name, rest } = splitAssignment(line, lineNo);
    // Checked before the value is read, so that errors come in line order.
    const first = firstSetOn.get(name);
    if (first !== undefined) throw new DotenvError(`${name} is set twice (first on line ${first})`, lineNo);
    firstSetOn.set(name, lineNo);
    const { value, next } = readValue(lines, i, rest);
    entries.push({ name, value });
    i = next;
  }
  return entries;
}

/** Lines without their endings. CR alone counts as a line end too, as in node's dotenv and Python. */
function splitLines(text: string): string[] {
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text;
  return body.replace(/\r\n?/g, "\n").split("\n");
}

// Only a prefix when something other than `=` follows, so a variable named `export` still works.
const EXPORT_PREFIX = /^export[ \t]+(?=[^ \t=])/;

/** `[export] NAME = rest`, with the name checked. The line may be a stray value: it is never quoted back. */
function splitAssignment(line: string, lineNo: number): { name: string; rest: string } {
  const statement = line.replace(EXPORT_PREFIX, "");
  const eq = statement.indexOf("=");
  if (eq < 0) throw new DotenvError("expected NAME=value, but there is no '='", lineNo);
  const name = statement.slice(0, eq).trimEnd();
  if (!isSecretName(name)) throw new DotenvError(`invalid name (names are ${NAME_RULE})`, lineNo);
  return { name, rest: statement.slice(eq + 1) };
}

/** The value starting in `rest` (the text after `=` on line index `at`), and the index of the line after it. */
function readValue(lines: readonly string[], at: number, rest: string): { value: string; next: number } {
  const start = rest.trimStart();
  const quote = start[0];
  if (quote === '"' || quote === "'") return readQuoted(lines, at, start.slice(1), quote);
  return { value: unquoted(rest), next: at + 1 };
}

// A `#` right after the `=` or inside a word (`a#b`, a URL fragment) is part of the value, as in
// compose and python-dotenv. The `s` flag lets the comment hold any character, U+2028 included.
const INLINE_COMMENT = /[ \t]#.*$/s;

function unquoted(rest: string): string {
  return rest.replace(INLINE_COMMENT, "").trim();
}

// What may follow a closing quote on its line.
const AFTER_QUOTE = /^[ \t]*(?:#.*)?$/s;

/**
 * A quoted value: `text` is what follows the opening quote on line index `at`. Line ends before
 * the closing quote belong to the value, as "\n".
 */
function readQuoted(lines: readonly string[], at: number, text: string, quote: '"' | "'"): { value: string; next: number } {
  const kind = quote === '"' ? "double" : "single";
  const parts: string[] = [];
  let i = at;
  for (;;) {
    const close = closingQuote(text, quote);
    if (close >= 0) {
      parts.push(text.slice(0, close));
      if (!AFTER_QUOTE.test(text.slice(close + 1))) throw new DotenvError(`unexpected text after the closing ${kind} quote`, i + 1);
      const raw = parts.join("\n");
      return { value: quote === '"' ? unescapeDouble(raw) : raw, next: i + 1 };
    }
    parts.push(text);
    i++;
    // Reported where the quote opened: that is where the mistake usually is.
    if (i >= lines.length) throw new DotenvError(`unterminated ${kind}-quoted value`, at + 1);
    text = lines[i]!;
  }
}

/** Where the closing quote is in `text`, or -1. In double quotes a backslash hides the next character. */
function closingQuote(text: string, quote: '"' | "'"): number {
  if (quote === "'") return text.indexOf("'");
  for (let k = 0; k < text.length; k++) {
    if (text[k] === "\\") k++;
    else if (text[k] === '"') return k;
  }
  return -1;
}

const UNESCAPED: Record<string, string> = { n: "\n", r: "\r", t: "\t", '"': '"', "\\": "\\", $: "$", "`": "`" };

// Pairs are taken left to right like closingQuote does, so `\\"` is a backslash then the end.
function unescapeDouble(raw: string): string {
  return raw.replace(/\\([nrt"\\$`])/g, (_, c: string) => UNESCAPED[c]!);
}

// ---------------------------------------------------------------------------------------------
// Writing .env

// Values made only of these need no quotes in any reader (no spaces, quotes, `#`, `$`, `=`).
const SIMPLE_VALUE = /^[A-Za-z0-9_.\/:@+,-]*$/;

// C0 and C1 control characters and DEL: line ends among them, and the rest unseen in a file.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

// In double quotes: what a shell also reads there is escaped as a shell would (`$` and `` ` ``
// would run a command: found in review, sourcing an export ran a value's `...`), and line ends
// are written \n and \r, never as they are: a reader taking a line per variable (docker,
// kubectl, node's dotenv before 15) read each further line of a value as a variable of its own
// (found in review: a value could plant LD_PRELOAD). A shell keeps \n and \r as two characters.
const ESCAPED: Record<string, string> = { "\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", $: "\\$", "`": "\\`" };

/** One `NAME=value` line per entry, in the given order. parseDotenv reads every value back exactly. */
export function printDotenv(entries: readonly SecretEntry[]): string {
  checkEntries(entries);
  return entries.map((e) => `${e.name}=${quoteValue(e.value)}\n`).join("");
}

/**
 * A value as the most readers read it back: bare when simple; else in single quotes, which bash
 * and node's dotenv read as written; else in double quotes, on one line, with escapes.
 */
function quoteValue(value: string): string {
  if (SIMPLE_VALUE.test(value)) return value;
  if (singleQuotable(value)) return `'${value}'`;
  return `"${value.replace(/[\\"\n\r$`]/g, (c) => ESCAPED[c]!)}"`;
}

/**
 * Whether single quotes hold the value: it has no `'` (single quotes know no escapes) and no
 * control character (a line end must be escaped; the others would hide in a one-line value).
 * Nor two backslashes in a row: python-dotenv reads them as one in single quotes, while in
 * double quotes, written \\\\, python-dotenv and a shell read them back as they were.
 */
function singleQuotable(value: string): boolean {
  return !value.includes("'") && !CONTROL.test(value) && !value.includes("\\\\");
}

/**
 * Names must be valid and distinct, else the output would not read back. A bad name is not
 * quoted in the error: it may be a value put in the wrong field.
 */
function checkEntries(entries: readonly SecretEntry[]): void {
  const seen = new Set<string>();
  entries.forEach((e, i) => {
    if (!isSecretName(e.name)) throw new Error(`entry ${i + 1}: invalid secret name (names are ${NAME_RULE})`);
    if (seen.has(e.name)) throw new Error(`entry ${i + 1}: ${e.name} appears twice`);
    seen.add(e.name);
  });
}

// ---------------------------------------------------------------------------------------------
// JSON: a flat object of names to string values

const JSON_SHAPE = '{"NAME": "value", ...}';

/**
 * Entries in the object's order (names cannot look like integers, which objects would reorder).
 * A key repeated in the text is refused, as .env refuses a name set twice: JSON.parse would keep
 * its last value, silently. A bad name is told by its place, not quoted: it may be a value
 * pasted into the wrong field.
 */
export function parseJsonSecrets(text: string): SecretEntry[] {
  const json = text.startsWith("\uFEFF") ? text.slice(1) : text;
  const data = parseJson(json);
  if (typeof data !== "object" || data === null || Array.isArray(data)) throw new Error(`expected a JSON object like ${JSON_SHAPE}, got ${jsonKind(data)}`);
  const entries = Object.entries(data).map(([name, value], i) => {
    if (!isSecretName(name)) throw new Error(`entry ${i + 1}: invalid secret name (names are ${NAME_RULE})`);
    if (typeof value !== "string") throw new Error(`${name}: the value must be a string, not ${jsonKind(value)}`);
    return { name, value };
  });
  // Every key, repeated or not, passed the name check above: quoting it names no value.
  const repeated = firstRepeated(topLevelKeys(json));
  if (repeated !== null) throw new Error(`${repeated} appears twice`);
  return entries;
}

/**
 * The keys of the outermost object of a valid JSON text, in order, repeats included (JSON.parse
 * keeps one). Strings are skipped whole, so no brace or quote inside a value misleads the count.
 */
function topLevelKeys(json: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      const end = endOfString(json, i);
      if (depth === 1 && json[afterSpace(json, end)] === ":") keys.push(JSON.parse(json.slice(i, end)) as string);
      i = end - 1;
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
  }
  return keys;
}

/** The index just past the string that opens at `start`; an escaped character (\" included) is skipped with its backslash. */
function endOfString(json: string, start: number): number {
  let i = start + 1;
  while (json[i] !== '"') i += json[i] === "\\" ? 2 : 1;
  return i + 1;
}

/** The index of the first character at or after `from` that is not JSON whitespace. */
function afterSpace(json: string, from: number): number {
  let i = from;
  while (json[i] === " " || json[i] === "\t" || json[i] === "\n" || json[i] === "\r") i++;
  return i;
}

function firstRepeated(names: readonly string[]): string | null {
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) return name;
    seen.add(name);
  }
  return null;
}

// The engine's message is not passed on: it can quote the text around the error, a secret maybe.
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`not valid JSON: expected an object like ${JSON_SHAPE}`);
  }
}

function jsonKind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

/**
 * Pretty JSON (2 spaces, trailing newline), in the given order. Written member by member rather
 * than through an object: a `__proto__` key on a plain object would set its prototype and vanish.
 */
export function printJsonSecrets(entries: readonly SecretEntry[]): string {
  checkEntries(entries);
  if (entries.length === 0) return "{}\n";
  const members = entries.map((e) => `  ${JSON.stringify(e.name)}: ${JSON.stringify(e.value)}`);
  return `{\n${members.join(",\n")}\n}\n`;
}
