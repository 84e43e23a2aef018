/**
 * Domain blocklists for the filtering resolver: the two formats people publish them in, and the
 * set that answers "is this name, or a domain above it, listed?".
 *
 * Formats (`parseBlocklist`):
 * - hosts: `0.0.0.0 ads.example.com`, `127.0.0.1 a.example b.example` — an address, then names.
 *   The address is ignored (the resolver answers blocked names its own way), and the names a
 *   hosts file gives the machine itself (`localhost`, `broadcasthost`, `ip6-*`, ...) are skipped
 *   so that a downloaded hosts file never blocks them.
 * - domains: one domain per line, `*.example.com` for the subdomains only, and the DNS subset of
 *   the AdGuard/Adblock Plus syntax: `||example.com^` blocks, `@@||example.com^` is an exception.
 * Comments are `#` (at the start of a line or after a blank) and, in domain lists, `!`. Lines
 * that are understood as neither (cosmetic rules, regular expressions, modifiers) are skipped
 * and reported with their line number: a list from the internet always has some, and one odd
 * line must not cost the whole list — the caller decides whether errors are fatal.
 *
 * Matching (`DomainSet`): listing `ads.example.com` blocks it and every name below it. Entries
 * are kept lower-cased in a hash set and a name is matched by looking up each of its suffixes,
 * so a lookup costs one probe per label whatever the size of the list. Memory does grow with it:
 * measured on a hosts file of a million lines (Bun 1.4.5), some 150 bytes an entry, 150 to 200 MB
 * in all — the entries are slices of the file's text, and keep that text in memory too.
 */
import { domainToASCII } from "node:url";
import { parseIp } from "../../src/net/ip.ts";
import type { Name } from "./names.ts";

export type BlocklistFormat = "hosts" | "domains" | "auto";

/** One line that was not understood (and skipped). */
export class BlocklistError extends Error {
  constructor(
    readonly line: number,
    readonly text: string,
    readonly reason: string,
  ) {
    super(`line ${line}: ${reason}: ${JSON.stringify(text.length > 80 ? text.slice(0, 77) + "..." : text)}`);
    this.name = "BlocklistError";
  }
}

export interface ParsedBlocklist {
  /** Normalized entries to block: lower-case, no trailing dot, `*.` prefix for subdomains only. */
  blocked: string[];
  /** Exceptions (`@@||example.com^`), normalized the same way. */
  allowed: string[];
  /** The first MAX_REPORTED_ERRORS lines skipped, in order. */
  errors: BlocklistError[];
  /** How many lines were skipped in all. */
  skipped: number;
}

/** Errors kept in a parse result: a cosmetic filter list can have tens of thousands of them. */
export const MAX_REPORTED_ERRORS = 100;

/** Names a hosts file gives the machine itself, not blocks. */
const HOSTS_OWN_NAMES = new Set([
  "localhost",
  "localhost.localdomain",
  "local",
  "broadcasthost",
  "ip6-localhost",
  "ip6-loopback",
  "ip6-localnet",
  "ip6-mcastprefix",
  "ip6-allnodes",
  "ip6-allrouters",
  "ip6-allhosts",
  "0.0.0.0",
]);

/** Labels of letters, digits, `_` and `-` (what lists hold: `_dmarc`, `-ad-` do occur), 1 to 63 long. */
const DOMAIN = /^(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}$/;
const MAX_DOMAIN_LENGTH = 253;

/**
 * The entry for `text` (lower-cased, ASCII-encoded when it is an internationalized name, no
 * trailing dot; `*.` kept in front for subdomains only), or the reason it is not a domain.
 */
export function normalizeDomain(text: string): { domain: string } | { error: string } {
  let t = text.toLowerCase();
  let prefix = "";
  if (t.startsWith("*.")) {
    prefix = "*.";
    t = t.slice(2);
  }
  if (t.endsWith(".")) t = t.slice(0, -1);
  if (t === "") return { error: "an empty domain" };
  if (/[^\x00-\x7f]/.test(t)) {
    const ascii = domainToASCII(t);
    if (ascii === "") return { error: "an invalid internationalized domain" };
    t = ascii;
  }
  if (t.length > MAX_DOMAIN_LENGTH) return { error: "a domain longer than 253 characters" };
  if (DOMAIN.test(t)) return { domain: prefix + t };
  return { error: t.split(".").includes("") ? "an empty label" : "not a domain name" };
}

/** A comment starts at `#` at the start of the line or after a blank (`a.com##.ad` is a cosmetic rule, not a comment). */
function stripComment(line: string): string {
  const hash = line.search(/(^|\s)#/);
  return (hash < 0 ? line : line.slice(0, hash)).trim();
}

const isAddress = (token: string) => {
  const percent = token.indexOf("%"); // fe80::1%lo0
  return parseIp(percent < 0 ? token : token.slice(0, percent)) !== null;
};

/** `||example.com^` (and `@@||example.com^` as an exception); null when the line is another kind of rule. */
function adblockRule(line: string): { domain: string; exception: boolean } | { error: string } | null {
  const exception = line.startsWith("@@");
  const body = exception ? line.slice(2) : line;
  if (!body.startsWith("||")) return exception ? { error: "only @@||domain^ exceptions are supported" } : null;
  const caret = body.indexOf("^");
  if (caret < 0) return { error: "a rule without ^ matches more than a domain" };
  const rest = body.slice(caret + 1);
  if (rest !== "" && rest !== "|") {
    return { error: rest.startsWith("$") ? "rule modifiers are not supported" : "a rule that is not a whole domain" };
  }
  const normalized = normalizeDomain(body.slice(2, caret));
  return "error" in normalized ? normalized : { domain: normalized.domain, exception };
}

/**
 * Reads a blocklist. `auto` (the default) takes each line for what it looks like, so a list
 * mixing hosts lines and domains reads as expected; `hosts` and `domains` refuse the other kind.
 */
export function parseBlocklist(text: string, format: BlocklistFormat = "auto"): ParsedBlocklist {
  const result: ParsedBlocklist = { blocked: [], allowed: [], errors: [], skipped: 0 };
  const skip = (line: number, raw: string, reason: string) => {
    result.skipped++;
    if (result.errors.length < MAX_REPORTED_ERRORS) result.errors.push(new BlocklistError(line, raw.trim(), reason));
  };
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let raw = lines[i]!;
    if (i === 0 && raw.charCodeAt(0) === 0xfeff) raw = raw.slice(1);
    const line = stripComment(raw);
    if (line === "") continue;
    const number = i + 1;

    if (format !== "hosts" && (line.startsWith("!") || /^\[.*\]$/.test(line))) continue; // `!` comment, `[Adblock Plus 2.0]` header
    if (format !== "hosts" && (line.startsWith("||") || line.startsWith("@@"))) {
      const rule = adblockRule(line);
      if (rule === null || "error" in rule) skip(number, raw, rule === null ? "not a domain rule" : rule.error);
      else (rule.exception ? result.allowed : result.blocked).push(rule.domain);
      continue;
    }

    const tokens = line.split(/\s+/);
    if (isAddress(tokens[0]!)) {
      if (format === "domains") {
        skip(number, raw, "a hosts line in a domain list");
        continue;
      }
      if (tokens.length === 1) {
        skip(number, raw, "an address without names");
        continue;
      }
      for (const token of tokens.slice(1)) {
        const normalized = normalizeDomain(token);
        if ("error" in normalized) skip(number, raw, normalized.error);
        else if (!HOSTS_OWN_NAMES.has(normalized.domain)) result.blocked.push(normalized.domain);
      }
      continue;
    }

    if (format === "hosts") {
      skip(number, raw, "a hosts line starts with an address");
      continue;
    }
    if (tokens.length > 1) {
      skip(number, raw, "more than one word on a line");
      continue;
    }
    const normalized = normalizeDomain(line);
    if ("error" in normalized) skip(number, raw, normalized.error);
    else result.blocked.push(normalized.domain);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Matching

/**
 * Characters a name's octets become for matching: letters lowered; octets no entry can contain
 * (a dot inside a label among them) become a character that is never in an entry, so a label
 * `a.b` cannot pass itself off as two labels.
 */
const MATCH_CHARS: string[] = Array.from({ length: 256 }, (_, b) => {
  if (b >= 0x41 && b <= 0x5a) return String.fromCharCode(b + 0x20);
  const c = String.fromCharCode(b);
  return /[a-z0-9_-]/.test(c) ? c : "\u0000";
});

/** Domains and the names below them; `*.domain` entries for the names below only. */
export class DomainSet {
  /** `example.com`: the domain and everything below it. */
  private readonly subtrees = new Set<string>();
  /** `*.example.com`, stored as `example.com`: only what is below it. */
  private readonly below = new Set<string>();

  static from(domains: Iterable<string>): DomainSet {
    const set = new DomainSet();
    for (const domain of domains) set.add(domain);
    return set;
  }

  /** Adds a domain (any case, trailing dot optional, `*.` for subdomains only); throws when it is not one. */
  add(domain: string): void {
    const normalized = normalizeDomain(domain);
    if ("error" in normalized) throw new Error(`${JSON.stringify(domain)}: ${normalized.error}`);
    const entry = normalized.domain;
    if (entry.startsWith("*.")) this.below.add(entry.slice(2));
    else this.subtrees.add(entry);
  }

  get size(): number {
    return this.subtrees.size + this.below.size;
  }

  /**
   * The entry that covers `name` (`ads.example.com` or `*.example.com`), or null. Builds the
   * lower-cased text once, then probes each suffix from the whole name up to the last label.
   */
  match(name: Name): string | null {
    if (name.length === 0 || this.size === 0) return null;
    let text = "";
    const starts: number[] = [];
    for (const label of name) {
      if (text !== "") text += ".";
      starts.push(text.length);
      for (let j = 0; j < label.length; j++) text += MATCH_CHARS[label[j]!]!;
    }
    return this.matchSuffixes(text, starts);
  }

  /** Like `match`, for a name in text (`Ads.Example.com.`); the labels are split at every dot. */
  matchText(domain: string): string | null {
    let text = domain.toLowerCase();
    if (text.endsWith(".")) text = text.slice(0, -1);
    if (text === "" || this.size === 0) return null;
    const starts = [0];
    for (let i = text.indexOf("."); i >= 0; i = text.indexOf(".", i + 1)) starts.push(i + 1);
    return this.matchSuffixes(text, starts);
  }

  private matchSuffixes(text: string, starts: number[]): string | null {
    for (let i = 0; i < starts.length; i++) {
      const suffix = i === 0 ? text : text.slice(starts[i]);
      if (this.subtrees.has(suffix)) return suffix;
      if (i > 0 && this.below.has(suffix)) return "*." + suffix;
    }
    return null;
  }
}
