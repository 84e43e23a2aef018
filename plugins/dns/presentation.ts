/**
 * The lexical layer shared by names, record data and zone files (RFC 1035 section 5.1).
 *
 * Tokens are kept in their raw presentation form — quotes and backslash escapes as written — so
 * that each field parser decides what they mean: a `.` splits labels in a name but not in a
 * character-string, and a quoted token keeps its spaces. Decoding happens in one place
 * (scanEscapes) so names and character-strings agree on what `\DDD` and `\X` mean.
 */

/** One octet of decoded presentation text; `escaped` when it came from a backslash escape. */
export interface ScannedOctet {
  octet: number;
  escaped: boolean;
}

const encoder = new TextEncoder();

/**
 * Decodes `\DDD` (decimal octet) and `\X` (X literally); other characters become their UTF-8
 * octets. Callers look at `escaped` to tell a separator from a literal. `fail` throws the
 * caller's own error type, so messages name the right layer.
 */
export function scanEscapes(text: string, fail: (message: string) => never): ScannedOctet[] {
  const out: ScannedOctet[] = [];
  const chars = Array.from(text); // by code point, so a non-ASCII character is never split
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c !== "\\") {
      for (const octet of encoder.encode(c)) out.push({ octet, escaped: false });
      continue;
    }
    const next = chars[i + 1];
    if (next === undefined) fail(`a backslash ends "${text}"`);
    if (/^[0-9]$/.test(next)) {
      const digits = chars.slice(i + 1, i + 4).join("");
      if (!/^[0-9]{3}$/.test(digits)) fail(`\\DDD needs exactly three digits in "${text}"`);
      const value = Number(digits);
      if (value > 255) fail(`\\${digits} is not an octet (0–255)`);
      out.push({ octet: value, escaped: true });
      i += 3;
    } else {
      for (const octet of encoder.encode(next)) out.push({ octet, escaped: true });
      i += 1;
    }
  }
  return out;
}

/** Raw token text → the octets of a character-string: unescaped quotes only delimit and are dropped. */
export function decodeText(token: string, fail: (message: string) => never): Uint8Array {
  const octets = scanEscapes(token, fail).filter((o) => o.escaped || o.octet !== 0x22);
  return Uint8Array.from(octets, (o) => o.octet);
}

/** Octets → presentation text safe inside quotes: `"` and `\` escaped, non-printables as \DDD. */
export function escapeText(octets: Uint8Array): string {
  let s = "";
  for (const b of octets) {
    if (b === 0x22 || b === 0x5c) s += "\\" + String.fromCharCode(b);
    else if (b >= 0x20 && b <= 0x7e) s += String.fromCharCode(b);
    else s += "\\" + String(b).padStart(3, "0");
  }
  return s;
}

/** A character-string as a quoted token; always quoted so that spaces and empty strings survive. */
export function quoteText(octets: Uint8Array): string {
  return `"${escapeText(octets)}"`;
}

// ---------------------------------------------------------------------------------------------
// TTLs

const TTL_UNITS: Record<string, number> = { w: 604800, d: 86400, h: 3600, m: 60, s: 1 };
/** RFC 2181 section 8: a TTL is an unsigned number below 2^31. */
export const MAX_TTL = 0x7fffffff;

/**
 * `3600` or BIND-style units (`1w2d3h4m5s`, any case, each unit once, in that order). Returns
 * null rather than throwing: a zone file uses this to tell whether a token is a TTL at all.
 */
export function parseTtl(text: string, max = MAX_TTL): number | null {
  let seconds: number;
  if (/^[0-9]+$/.test(text)) {
    seconds = Number(text);
  } else {
    const m = /^(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$/i.exec(text);
    if (!m || text === "") return null;
    const amounts = m.slice(1).map((part) => Number(part ?? 0));
    const sizes = Object.values(TTL_UNITS);
    seconds = amounts.reduce((sum, n, i) => sum + n * sizes[i]!, 0);
  }
  return Number.isSafeInteger(seconds) && seconds <= max ? seconds : null;
}

// ---------------------------------------------------------------------------------------------
// Tokens

/** One logical line of a master file: a record or a directive, parentheses already joined. */
export interface LogicalLine {
  /** 1-based physical line where it starts. */
  line: number;
  /** It began with a space or tab: the owner is omitted (RFC 1035 "blank" owner). */
  ownerOmitted: boolean;
  /** Raw tokens: quotes and escapes as written. */
  tokens: string[];
}

/** Lexical error at a physical line (1-based). */
export class TokenError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
    this.name = "TokenError";
  }
}

/**
 * Splits master-file text into logical lines: `;` comments dropped (not inside quotes), a newline
 * inside parentheses is only whitespace, quoted strings and escaped characters stay in one token.
 */
export function tokenize(text: string): LogicalLine[] {
  const lines: LogicalLine[] = [];
  let lineNo = 1;
  let current: LogicalLine = { line: 1, ownerOmitted: false, tokens: [] };
  let token: string | null = null; // null: between tokens
  let inQuote = false;
  let depth = 0;
  let openedOn = 0;
  let atLineStart = true;

  const endToken = () => {
    if (token !== null) current.tokens.push(token);
    token = null;
  };
  const endLine = () => {
    endToken();
    lines.push(current);
    current = { line: lineNo, ownerOmitted: false, tokens: [] };
    atLineStart = true;
  };

  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (atLineStart && depth === 0) current.ownerOmitted = c === " " || c === "\t";
    atLineStart = false;
    if (c === "\\") {
      const next = text[i + 1];
      if (next === undefined) throw new TokenError("a backslash ends the file", lineNo);
      if (next === "\n") lineNo++;
      token = (token ?? "") + c + next;
      i++;
    } else if (inQuote) {
      if (c === "\n") lineNo++;
      token += c;
      if (c === '"') inQuote = false;
    } else if (c === '"') {
      inQuote = true;
      token = (token ?? "") + c;
    } else if (c === ";") {
      while (i + 1 < text.length && text[i + 1] !== "\n") i++;
    } else if (c === "(") {
      endToken();
      if (depth === 0) openedOn = lineNo;
      depth++;
    } else if (c === ")") {
      endToken();
      if (depth === 0) throw new TokenError('")" without "("', lineNo);
      depth--;
    } else if (c === "\n") {
      lineNo++;
      if (depth === 0) endLine();
      else endToken();
    } else if (c === " " || c === "\t" || c === "\r") {
      endToken();
    } else {
      token = (token ?? "") + c;
    }
  }
  if (inQuote) throw new TokenError("a quoted string is not closed", lineNo);
  if (depth > 0) throw new TokenError('"(" is not closed', openedOn);
  endLine();
  return lines.filter((l) => l.tokens.length > 0);
}

/** Tokens of a single presentation string (one record's data), for callers outside zone files. */
export function splitTokens(text: string): string[] {
  return tokenize(text).flatMap((l) => l.tokens);
}
