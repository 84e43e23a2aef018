/**
 * Reputation lists: parsing the formats block lists are published in, the list as the shield
 * holds it, and fetching one from the URL an operator configured.
 *
 * Parsing never throws on content: a bad line is reported with its number and the rest is
 * kept, and the caller decides whether a list with errors is accepted. Problems are kept in
 * detail up to a cap (a 64 MiB file of garbage must not become millions of report objects)
 * and counted beyond it.
 */
import type { CidrSet } from "./cidr-set.ts";
import { unmapCidr } from "./manual-index.ts";
import { formatCidr, parseCidr, parseIp, type Cidr } from "../net/ip.ts";

export type ListFormat = "plain" | "firehol" | "spamhaus";
/** What was parsed: Spamhaus publishes the same lists as text and as JSON lines. */
export type ParsedFormat = ListFormat | "spamhaus-json";

export interface ListProblem {
  /** 1-based. */
  line: number;
  /** The line as found (cut to 200 characters). */
  text: string;
  problem: string;
}

export interface ParsedList {
  cidrs: Cidr[];
  /** Lines that yielded nothing, at most MAX_REPORTED; `errorCount` counts them all. */
  errors: ListProblem[];
  errorCount: number;
  /** Lines that were used after a correction (host bits cleared), at most MAX_REPORTED. */
  warnings: ListProblem[];
  warningCount: number;
  format: ParsedFormat;
  /**
   * Why the file is known to be cut short, or null: Spamhaus's JSON lines end with a metadata
   * line giving the record count, so one without it, or with another count, lost records.
   */
  incomplete: string | null;
}

export type ListSource = { kind: "inline" } | { kind: "url"; url: string; refreshMinutes: number };

export interface ReputationList {
  name: string;
  /** Score points (0–100) an address on this list adds. */
  weight: number;
  source: ListSource;
  set: CidrSet;
  entries: number;
  updatedAt: number;
  errors: number;
}

export const MAX_REPORTED = 1000;
const MAX_TEXT = 200;
const DETECT_LINES = 200;

/**
 * Parses a list. Plain, FireHOL netset and Spamhaus DROP text share one line grammar — an
 * address or CIDR, optionally followed by a `#` or `;` comment — so for them the format is
 * only a label; it matters for Spamhaus's JSON lines, which "spamhaus" and "auto" recognise
 * by their first line.
 */
export function parseList(text: string, format: ListFormat | "auto" = "auto"): ParsedList {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  const detected = format === "auto" ? detectFormat(lines) : format === "spamhaus" && isJsonLines(lines) ? "spamhaus-json" : format;
  const report = new Report(detected);
  if (detected === "spamhaus-json") report.incomplete = parseJsonLines(lines, report);
  else parseTextLines(lines, report);
  return report.result();
}

function detectFormat(lines: string[]): ParsedFormat {
  if (isJsonLines(lines)) return "spamhaus-json";
  // Headers and the first entries are enough to tell; a million-line list need not be scanned.
  let firehol = false;
  for (const line of lines.slice(0, DETECT_LINES)) {
    // Spamhaus: "; Spamhaus DROP List …" headers, "1.10.16.0/20 ; SBL256894" entries.
    if (/^\s*;.*spamhaus/i.test(line) || /;\s*SBL\d+\s*$/.test(line)) return "spamhaus";
    // FireHOL: "# Maintainer      : FireHOL", "# Entries         : 4580 subnets, …".
    if (/^#\s*(Maintainer|Entries|Source File Date)\s*:|firehol/i.test(line)) firehol = true;
  }
  return firehol ? "firehol" : "plain";
}

function isJsonLines(lines: string[]): boolean {
  const first = lines.find((line) => line.trim() !== "");
  return first !== undefined && first.trimStart().startsWith("{");
}

function parseTextLines(lines: string[], report: Report): void {
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const comment = line.search(/[#;]/);
    const content = (comment < 0 ? line : line.slice(0, comment)).trim();
    if (content === "") continue;
    if (/\s/.test(content)) report.error(i + 1, line, "expected one address or CIDR per line");
    else report.entry(i + 1, line, content);
  }
}

/**
 * Spamhaus JSON lines: `{"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}` per entry
 * and a closing `{"type":"metadata",…,"records":N}`. The record count is checked because a
 * download cut short loses entries silently otherwise; returns why the file is incomplete, or null.
 */
function parseJsonLines(lines: string[], report: Report): string | null {
  let records = 0;
  let metadata: { line: number; records: unknown } | null = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith(";")) continue;
    let value: unknown;
    let valid = true;
    try {
      value = JSON.parse(trimmed);
    } catch {
      valid = false;
    }
    const record = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
    if (record?.type === "metadata") {
      metadata = { line: i + 1, records: record.records };
      continue;
    }
    records++; // a broken line was meant to be a record too
    if (!record) report.error(i + 1, line, valid ? "not a JSON object" : "not valid JSON");
    else if (typeof record.cidr === "string") report.entry(i + 1, line, record.cidr.trim());
    else report.error(i + 1, line, 'no "cidr" string');
  }
  if (!metadata || typeof metadata.records !== "number") return 'no metadata line with the record count (the last line, {"type":"metadata",…,"records":N}): the file looks cut short';
  if (metadata.records === records) return null;
  const problem = `metadata announces ${metadata.records} records, the file has ${records}`;
  report.error(metadata.line, lines[metadata.line - 1]!, problem);
  return problem;
}

/**
 * The shortest prefix whose host bits are cleared with a warning. Below it a line with host
 * bits set is refused: "192.0.2.1/0" is a typo or a hostile line, not "every address", and
 * clearing its bits would make it cover the whole internet (or an eighth of it).
 */
const MIN_CORRECTED_PREFIX = { 4: 8, 6: 16 } as const;

/** Collects entries and problems; parses one entry, correcting host bits with a warning. */
class Report {
  private readonly cidrs: Cidr[] = [];
  private readonly errors: ListProblem[] = [];
  private readonly warnings: ListProblem[] = [];
  private errorCount = 0;
  private warningCount = 0;
  incomplete: string | null = null;

  constructor(private readonly format: ParsedFormat) {}

  /** An entry; an IPv4-mapped prefix (::ffff:a.b.c.d/n, n ≥ 96) is taken as the IPv4 one (unmapCidr). */
  entry(line: number, text: string, token: string): void {
    const parsed = parseCidr(token);
    const exact = parsed && unmapCidr(parsed);
    if (exact) {
      // A reputation is about some addresses: a list that names every one would score every
      // client, the operator's own included. (Short prefixes are kept: FireHOL's level 1 lists
      // 224.0.0.0/3, multicast and reserved space, on purpose.)
      if (exact.prefix === 0) return this.error(line, text, `covers every address, which no reputation list means: ${cut(token)}`);
      this.cidrs.push(exact);
      return;
    }
    // Not a CIDR as it stands: say why, or correct host bits.
    const slash = token.indexOf("/");
    const ip = parseIp(slash < 0 ? token : token.slice(0, slash));
    if (!ip || slash < 0) return this.error(line, text, `not an IP address or CIDR: ${cut(token)}`);
    const max = ip.family === 4 ? 32 : 128;
    const prefixText = token.slice(slash + 1);
    const prefix = Number(prefixText);
    // Refused as everywhere a CIDR is read (parseCidr), and said so: "/08" is in range.
    if (/^0\d+$/.test(prefixText)) return this.error(line, text, `a prefix length is written without leading zeros: ${cut(token)}`);
    if (!/^(0|[1-9]\d{0,2})$/.test(prefixText) || prefix > max) return this.error(line, text, `prefix must be 0 to ${max}: ${cut(token)}`);
    // parseCidr refuses host bits (usually a typo in a config file); lists are published by
    // others and "10.0.0.1/8" there plainly means 10.0.0.0/8. A shorter prefix with host bits
    // is not corrected: the correction would widen one address to a large part of the internet.
    const network = unmapCidr(networkOf(ip.family, ip.bytes, prefix));
    if (network.prefix < MIN_CORRECTED_PREFIX[network.family]) return this.error(line, text, `host bits set on a prefix shorter than /${MIN_CORRECTED_PREFIX[network.family]} (it would widen to ${formatCidr(network)}): ${cut(token)}`);
    this.cidrs.push(network);
    this.warningCount++;
    if (this.warnings.length < MAX_REPORTED) this.warnings.push({ line, text: cut(text), problem: `host bits set; used ${formatCidr(network)}` });
  }

  error(line: number, text: string, problem: string): void {
    this.errorCount++;
    if (this.errors.length < MAX_REPORTED) this.errors.push({ line, text: cut(text), problem });
  }

  result(): ParsedList {
    const { cidrs, errors, errorCount, warnings, warningCount, format, incomplete } = this;
    return { cidrs, errors, errorCount, warnings, warningCount, format, incomplete };
  }
}

/** What a list held before a refresh: its entries and bad lines, and whether its text ended its last line. */
export interface ListSize {
  entries: number;
  errors: number;
  endsWithNewline: boolean;
}

/** Bad lines above this share of the lines meant as entries make a refresh suspect. */
const MAX_BAD_SHARE = 0.1;

/**
 * Why a scheduled refresh must not replace the list, or null. A download cut short, an error
 * page served as 200, a publisher's bad day: each would quietly unlist addresses, so a refresh
 * is refused when its last line has no newline where the list's text used to end its lines,
 * when it has fewer than half the entries the list had, or when more than a tenth of its lines
 * are bad (and a larger share than before: a list imported with them is not refused for them
 * ever after). The caller takes a refused download after all when the next one is the same
 * (the publisher meant it); an operator who means it at once imports the text explicitly.
 */
export function refreshProblem(previous: ListSize, text: string, parsed: ParsedList): string | null {
  if (previous.endsWithNewline && text !== "" && !text.endsWith("\n")) return "the last line has no newline: the download looks cut short";
  const entries = parsed.cidrs.length;
  if (entries * 2 < previous.entries) return `${entries} entries, fewer than half of the ${previous.entries} the list had`;
  const share = badShare(parsed.errorCount, entries);
  if (share > MAX_BAD_SHARE && share > badShare(previous.errors, previous.entries)) return `${parsed.errorCount} bad lines of ${parsed.errorCount + entries}`;
  return null;
}

const badShare = (errors: number, entries: number) => (errors === 0 ? 0 : errors / (errors + entries));

function networkOf(family: 4 | 6, bytes: Uint8Array, prefix: number): Cidr {
  const masked = bytes.map((b, i) => b & ((0xff << (8 - Math.max(0, Math.min(8, prefix - 8 * i)))) & 0xff));
  return { family, bytes: masked, prefix };
}

function cut(text: string): string {
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text;
}

// ---- fetching ----

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface FetchListOptions {
  /** For the whole exchange, redirects and body included. Default 60 s. */
  timeoutMs?: number;
  /** Bytes of body (after decompression) beyond which the download is abandoned. Default 64 MiB. */
  maxBytes?: number;
  fetch?: FetchLike;
  /**
   * Plain http to 127.0.0.1 and [::1] for the URL given — for tests, which serve lists from
   * loopback without a certificate. Never in production: there a loopback address is a local
   * service a list URL must not reach. A redirect is never followed to http, this or not.
   */
  allowLoopbackHttp?: boolean;
}

export type ListFetchProblem = "url" | "status" | "too_large" | "timeout" | "network";

export class ListFetchError extends Error {
  constructor(
    message: string,
    readonly problem: ListFetchProblem,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ListFetchError";
  }
}

export const DEFAULT_MAX_LIST_BYTES = 64 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_REDIRECTS = 5;

/**
 * Downloads a list the operator configured. Only https: a list decides who is refused, so
 * its integrity matters as much as its source. Redirects are followed by hand, and only within
 * the origin the operator named: one elsewhere (a loopback or internal service among them) is
 * a place they did not choose, as the webhook sender refuses redirects for.
 */
export async function fetchList(url: string, options: FetchListOptions = {}): Promise<string> {
  const { timeoutMs = DEFAULT_TIMEOUT_MS, maxBytes = DEFAULT_MAX_LIST_BYTES, fetch: fetchFn = globalThis.fetch, allowLoopbackHttp = false } = options;
  let target = allowedUrl(url, allowLoopbackHttp);
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  try {
    for (let hop = 0; ; hop++) {
      const response = await fetchFn(target.href, { signal: controller.signal, redirect: "manual" });
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location !== null) {
        await response.body?.cancel();
        if (hop === MAX_REDIRECTS) throw new ListFetchError(`${shown(target)}: more than ${MAX_REDIRECTS} redirects`, "status");
        target = redirectTarget(target, location);
        continue;
      }
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new ListFetchError(`${shown(target)}: HTTP ${response.status}`, "status");
      }
      return await readCapped(response, maxBytes, target);
    }
  } catch (error) {
    if (error instanceof ListFetchError) throw error;
    if (timedOut) throw new ListFetchError(`${shown(target)}: no complete answer within ${timeoutMs} ms`, "timeout", { cause: error });
    throw new ListFetchError(`${shown(target)}: ${error instanceof Error ? error.message : String(error)}`, "network", { cause: error });
  } finally {
    clearTimeout(timer);
    controller.abort(); // whatever is still open (a body left unread after an error) is closed
  }
}

function allowedUrl(text: string, allowLoopbackHttp: boolean): URL {
  const url = URL.parse(text);
  if (!url) throw new ListFetchError("not a URL", "url");
  if (!acceptedListUrl(url, { allowLoopbackHttp })) throw new ListFetchError(`${shown(url)}: only https:// list URLs are allowed`, "url");
  return url;
}

/** Whether a list may be fetched from `url` as given (not as a redirect's target): https, or loopback http where tests allow it. Null (no URL): no. */
export function acceptedListUrl(url: URL | null, { allowLoopbackHttp = false }: Pick<FetchListOptions, "allowLoopbackHttp"> = {}): boolean {
  if (!url) return false;
  if (url.protocol === "https:") return true;
  return allowLoopbackHttp && url.protocol === "http:" && (url.hostname === "127.0.0.1" || url.hostname === "[::1]");
}

/** Where a redirect from `from` leads, when it may be followed: https, at the same origin (scheme, host and port). */
function redirectTarget(from: URL, location: string): URL {
  const to = URL.parse(location, from.href);
  if (!to) throw new ListFetchError(`${shown(from)}: redirects to something that is not a URL`, "url");
  if (to.protocol !== "https:") throw new ListFetchError(`${shown(from)}: redirects to ${shown(to)}, not https://: refused`, "url");
  if (to.origin !== from.origin) throw new ListFetchError(`${shown(from)}: redirects to another origin, ${shown(to)}: refused (give the list's URL there, if it is the publisher's)`, "url");
  return to;
}

async function readCapped(response: Response, maxBytes: number, url: URL): Promise<string> {
  const tooLarge = () => new ListFetchError(`${shown(url)}: larger than ${maxBytes} bytes`, "too_large");
  // Content-Length is only a hint (and counts compressed bytes): the count below decides.
  if (Number(response.headers.get("content-length") ?? 0) > maxBytes) {
    await response.body?.cancel();
    throw tooLarge();
  }
  if (!response.body) return "";
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return new TextDecoder().decode(body);
}

/** A URL as errors show it: without credentials or query, which may carry an API key. */
function shown(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/**
 * A list URL as the audit log, the server log, errors and the API show it: without the
 * credentials or query (`?api_key=…`, `user:pass@`) a publisher may require. Text that is no
 * URL is not shown at all: it cannot be told what part of it is secret.
 */
export function redactedUrl(text: string): string {
  try {
    return shown(new URL(text));
  } catch {
    return "(not a URL)";
  }
}
