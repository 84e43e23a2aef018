/**
 * What plugin commands share: printing (a table for people, JSON with --json), flag values
 * checked instead of coerced, and the organization a command acts in.
 */
import { parseToken, TOKEN_KINDS } from "../auth/tokens.ts";
import type { ApiClient, CommandContext } from "../plugin.ts";
import { ApiError } from "./api-client.ts";
import { UsageError } from "./command-line.ts";
import { boundedInput, MOST_BODY_BYTES } from "./input-files.ts";
import { allPages } from "./pages.ts";

/**
 * Text for the terminal's standard error: control characters (an escape sequence a server
 * put in an error message could rewrite the screen or the title) shown as \u escapes, and so
 * are the line and paragraph separators U+2028 and U+2029 (a terminal shows them as it likes,
 * a log viewer breaks the line there: text that reads one way here and another there). Line
 * breaks (\n) and tabs stay. Values a command prints on purpose (secrets get) are not passed here.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, unicodeEscape);
}

const unicodeEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;

/**
 * Text for standard output: on a terminal, control characters shown as escapes (as printable
 * does), so that what a server said — an audit reason, a name someone chose — cannot move the
 * cursor or retitle the window; piped or redirected, the data as it is.
 */
export function forStdout(text: string): string {
  return process.stdout.isTTY ? printable(text) : text;
}

/**
 * A value for a single line (a table cell, a prompt): line breaks and tabs shown as \n, \r and
 * \t, so that a name someone chose cannot end the row and forge the next one. Piped output too:
 * a script reading a table line by line must get one row per line. The other characters that end
 * a line somewhere (Unicode's: vertical tab, form feed, NEL, and the line and paragraph separators
 * U+2028 and U+2029, which many terminals, log viewers and line splitters break at) as \u escapes.
 */
export function oneLine(text: string): string {
  return text.replace(/[\n\r\t\u000b\u000c\u0085\u2028\u2029]/g, (c) => (c === "\n" ? "\\n" : c === "\r" ? "\\r" : c === "\t" ? "\\t" : unicodeEscape(c)));
}

/** Columns padded to their widest cell; the first row is the header. Each cell on one line (oneLine). */
export function table(rows: string[][]): string {
  const cells = rows.map((r) => r.map(oneLine));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

/** `data` as JSON with --json, else `text`. */
export const print = (ctx: CommandContext, data: unknown, text: string) => ctx.out(ctx.json ? JSON.stringify(data, null, 2) : text);

/**
 * The text of a file named on the command line, or of standard input for "-". One that cannot
 * be read is a usage error (exit 2, as a file that is not what the command takes), naming it as
 * `what` (the flag and file: `--set acl.json`) and saying why, not a runtime's ENOENT. So is one
 * larger than any server takes in a request: refused once past that, not read on (found in
 * review: `yes | citadel dns zone import example.com -` grew to gigabytes).
 */
export async function fileOrStdinText(path: string, what = path): Promise<string> {
  const named = what === "-" ? "standard input" : what;
  const bound = { bytes: MOST_BODY_BYTES, tooLarge: `${named}: larger than ${MOST_BODY_BYTES / MEBIBYTE} MiB, the most a Citadel server takes in one request (http.body_limit_bytes at its most): nothing was read further or sent` };
  const bytes = await boundedInput(path, what, bound);
  // Standard input without a byte order mark, a file as it is; not UTF-8 is refused, not stored
  // with U+FFFD for what it held (found in review: a Latin-1 zone file's é was replaced).
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: path !== "-" }).decode(bytes);
  } catch {
    throw new UsageError(`${named} is not UTF-8 text: save it as UTF-8`);
  }
}

const MEBIBYTE = 1024 * 1024;

/**
 * Refuses a command given fewer than `n` arguments, with its synopsis. A usage error: exit 2
 * and the command's usage text (main adds it).
 */
export function needArgs(ctx: CommandContext, n: number, synopsis: string): void {
  if (ctx.args.length < n) throw new UsageError(`missing argument; usage: ${synopsis}`);
}

/** The largest value integerOption takes unless told otherwise (a signed 32-bit integer, as the API's). */
export const INTEGER_OPTION_MAX = 2_147_483_647;

/**
 * A whole-number flag, or undefined when absent; anything else is refused (not read as 0 or
 * NaN) as a usage error that names the range, the maximum included.
 */
export function integerOption(ctx: CommandContext, name: string, min: number, max = INTEGER_OPTION_MAX): number | undefined {
  const raw = ctx.options[name];
  return raw === undefined ? undefined : wholeNumber(raw, `--${name}`, min, max);
}

/** `raw` as a whole number from `min` to `max`, or a usage error naming `what`. */
export function wholeNumber(raw: unknown, what: string, min: number, max = INTEGER_OPTION_MAX): number {
  // Digits only, compared as a number: a string of digits too long for exact arithmetic is
  // caught by the length check before Number() could round it into the range.
  const value = typeof raw === "string" && /^\d{1,15}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value >= min && value <= max)) throw new UsageError(`${what}: a whole number from ${min} to ${max}, not ${JSON.stringify(raw)}`);
  return value;
}

/** --org, else the caller's only organization. */
export async function organizationOf(ctx: CommandContext, api: ApiClient): Promise<string> {
  if (typeof ctx.options.org === "string" && ctx.options.org !== "") return ctx.options.org;
  refuseApiKeyWithoutOrg(ctx);
  const organizations = await callersOrganizations(api);
  if (organizations.length === 1) return organizations[0]!.id;
  // A usage error (exit 2): the command needs a flag the caller left out.
  if (organizations.length === 0) throw new UsageError("you belong to no organization: name one with --org ORG_ID");
  const choices = organizations.map((o) => `${o.id} (${o.name})`).join(", ");
  throw new UsageError(`you belong to ${organizations.length} organizations; name the organization: --org ORG_ID, one of ${choices}`);
}

type Organization = { id: string; name: string };

/**
 * The caller's organizations (as far as the token reaches), from GET /v1/iam/orgs, which
 * iam:read allows (a `read` token). One request: asking GET /v1/iam/me (iam:self) after a
 * refusal had every run refused once, and refusals count against the address (found in
 * review: a CI job was rate limited after a dozen runs). A token that may not ask is told to
 * name the organization, not to be made wider.
 */
async function callersOrganizations(api: ApiClient): Promise<Organization[]> {
  const listed = await unlessOutOfScope(() => allPages<Organization>(api, "/v1/iam/orgs"));
  if (!(listed instanceof ApiError)) return listed;
  throw new UsageError(`this token may not list your organizations (${listed.message}): name the organization with --org ORG_ID`);
}

/** What `request` answers, or its refusal when the token's scopes do not allow it; any other failure is thrown. */
async function unlessOutOfScope<T>(request: () => Promise<T>): Promise<T | ApiError> {
  try {
    return await request();
  } catch (error) {
    if (error instanceof ApiError && error.code === "insufficient_scope") return error;
    throw error;
  }
}

/**
 * A service API key (citadel_dns_..., citadel_mesh_...) cannot ask which organization it acts
 * in (it works for its service alone, and the question is the identity service's): without
 * --org, a usage error before any request.
 */
export function refuseApiKeyWithoutOrg(ctx: CommandContext): void {
  if (typeof ctx.options.org === "string" && ctx.options.org !== "") return;
  const kind = ctx.env.CITADEL_TOKEN ? parseToken(ctx.env.CITADEL_TOKEN)?.kind : undefined;
  if (kind !== undefined && !(Object.values(TOKEN_KINDS) as string[]).includes(kind)) throw new UsageError("an API key must be given --org ORG_ID");
}

/** One of the allowed words, or undefined when absent: checked here, so the message names the flag, not the request's field. */
export function choiceOption<T extends string>(ctx: CommandContext, name: string, allowed: readonly T[]): T | undefined {
  const raw = ctx.options[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== "string" || !(allowed as readonly string[]).includes(raw)) throw new UsageError(`--${name}: one of ${allowed.join(", ")}`);
  return raw as T;
}

/** A string flag's value, or undefined when absent. */
export function stringOption(ctx: CommandContext, name: string): string | undefined {
  const value = ctx.options[name];
  return typeof value === "string" ? value : undefined;
}
