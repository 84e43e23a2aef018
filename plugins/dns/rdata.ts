/**
 * Record data (RDATA) for the types Citadel serves: presentation form ⇄ wire form.
 *
 * Each type is one codec — `parse` from raw presentation tokens (see presentation.ts) to wire
 * octets, `print` from wire octets to canonical text — so adding a type is adding one entry.
 * Names inside record data are written uncompressed (RFC 3597 section 4 forbids compressing
 * them for new types, and stored data should not depend on a message). Any type, known or not,
 * also accepts the RFC 3597 generic form `\# length hex`; for a known type the octets must then
 * be valid for it. Unknown types print in that generic form.
 *
 * Some types are no zone data at all (OPT, the query and meta types), or not supported (DNAME),
 * and are refused whatever their form (`unstorableType`). Well-known types without a codec are kept in the generic form,
 * but their octets are checked against the type's layout (`LAYOUTS`): a secondary that knows
 * the type parses them, and refuses the whole transfer when they are malformed.
 */
import { formatIp, parseIpv4, parseIpv6 } from "../../src/net/ip.ts";
import { NameError, nameFromWire, nameToText, nameToWire, parseName, type Name } from "./names.ts";
import { decodeText, parseTtl, quoteText } from "./presentation.ts";
import { parseSvcParams, printSvcParams } from "./svcb.ts";

export const RRType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  NAPTR: 35,
  DS: 43,
  SSHFP: 44,
  TLSA: 52,
  SVCB: 64,
  HTTPS: 65,
  CAA: 257,
} as const;

const DNAME = 39;
const OPT = 41;

const TYPE_NAMES = new Map<number, string>(Object.entries(RRType).map(([k, v]) => [v, k]));

/**
 * Mnemonics of types that are never stored (`unstorableType`): read, so that the refusal says
 * why rather than that the type does not exist; never printed (they are `TYPEnnn` in counts).
 */
const UNSTORED_NAMES = new Map<number, string>([
  [DNAME, "DNAME"],
  [OPT, "OPT"],
  [249, "TKEY"],
  [250, "TSIG"],
  [251, "IXFR"],
  [252, "AXFR"],
  [253, "MAILB"],
  [254, "MAILA"],
  [255, "ANY"],
]);
const UNSTORED_TYPES = new Map([...UNSTORED_NAMES].map(([type, name]) => [name, type]));

/** Mnemonic, or RFC 3597 `TYPEnnn` for a type without one. */
export function typeToText(type: number): string {
  return TYPE_NAMES.get(type) ?? `TYPE${type}`;
}

/** `MX`, `mx` or `TYPE15` → 15; null when it is not a type. */
export function typeFromText(text: string): number | null {
  const upper = text.toUpperCase();
  if (upper in RRType) return RRType[upper as keyof typeof RRType];
  const unstored = UNSTORED_TYPES.get(upper);
  if (unstored !== undefined) return unstored;
  const m = /^TYPE(0|[1-9][0-9]{0,4})$/.exec(upper);
  return m && Number(m[1]) <= 0xffff ? Number(m[1]) : null;
}

/** Record data refused; the message starts with the type and names the field. */
export class RdataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RdataError";
  }
}

/** Presentation tokens (raw, as the zone-file lexer gives them) → wire RDATA. */
export function parseRdata(type: number, tokens: readonly string[], origin: Name): Uint8Array {
  const label = typeToText(type);
  const fields = new Fields(label, tokens, origin);
  const unstorable = unstorableType(type);
  if (unstorable !== null) fields.fail(unstorable);
  if (tokens[0] === "\\#") {
    const wire = parseGeneric(fields);
    checkGeneric(type, wire);
    return wire;
  }
  const codec = CODECS.get(type);
  if (!codec) throw new RdataError(`${label}: an unknown type needs the generic form "\\# length hex"`);
  const out = new Writer();
  codec.parse(fields, out);
  fields.end();
  return out.bytes();
}

/**
 * One record's data as the API and the CLI take it (a zone file is read by zone-file.ts): the
 * whole string is the data. `;` starts no comment and parentheses group nothing, as they do in
 * a zone file: `v=DMARC1; p=reject` lost its policy to a comment, `v=spf1 (a) mx` was split.
 * TXT without a double quote is one text, as other DNS providers read it (the shell has eaten
 * the quotes of a CLI argument anyway): cut into 255-octet character-strings when longer
 * (RFC 7208 section 3.3: a checker joins them without spaces). TXT with quotes is presentation
 * strings, and nothing but white space may stand between them.
 */
export function parseRecordData(type: number, text: string, origin: Name): Uint8Array {
  const tokens = dataTokens(text, (message) => {
    throw new RdataError(`${typeToText(type)}: ${message}`);
  });
  if (type !== RRType.TXT || tokens[0] === "\\#") return parseRdata(type, tokens, origin);
  if (!hasQuote(text)) return parseRdata(type, oneText(text), origin);
  const unquoted = tokens.find((token) => !QUOTED.test(token));
  if (unquoted !== undefined) throw new RdataError(`TXT: ${JSON.stringify(unquoted)} is outside double quotes: quote every string, or write the text without any quotes`);
  return parseRdata(type, tokens, origin);
}

/** A whole quoted string: quotes at both ends, any other quote in it escaped. */
const QUOTED = /^"(?:[^"\\]|\\.)*"$/s;
const MAX_CHARACTER_STRING = 255;

/** Does the text hold a double quote that is not escaped? */
const hasQuote = (text: string) => /(^|[^\\])(\\\\)*"/.test(text);

/** Unquoted text (escapes decoded, white space around it dropped) as quoted tokens of at most 255 octets. */
function oneText(text: string): string[] {
  const octets = decodeText(text.trim(), (message) => {
    throw new RdataError(`TXT: ${message}`);
  });
  if (octets.length === 0) throw new RdataError('TXT: the text is empty (write "" for an empty string)');
  const strings: string[] = [];
  for (let at = 0; at < octets.length; at += MAX_CHARACTER_STRING) strings.push(quoteText(octets.subarray(at, at + MAX_CHARACTER_STRING)));
  return strings;
}

/**
 * Record data split at white space, quoted strings and escaped characters kept whole in their
 * raw form, as the codecs read them; no comments, no parentheses (see parseRecordData).
 */
function dataTokens(text: string, fail: (message: string) => never): string[] {
  const tokens: string[] = [];
  let token: string | null = null; // null: between tokens
  let inQuote = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\\") {
      if (i + 1 === text.length) fail("a backslash ends the data");
      token = (token ?? "") + c + text[++i];
    } else if (c === '"') {
      inQuote = !inQuote;
      token = (token ?? "") + c;
    } else if (!inQuote && /\s/.test(c)) {
      if (token !== null) tokens.push(token);
      token = null;
    } else {
      token = (token ?? "") + c;
    }
  }
  if (inQuote) fail("a quoted string is not closed");
  if (token !== null) tokens.push(token);
  return tokens;
}

/** Wire RDATA → canonical presentation (names absolute). Throws RdataError on malformed octets. */
export function rdataToText(type: number, wire: Uint8Array): string {
  const codec = CODECS.get(type);
  if (!codec) return genericText(wire);
  const reader = new Reader(typeToText(type), wire);
  const text = codec.print(reader);
  reader.end();
  return text;
}

/**
 * Stored record data as text: its presentation, or the generic form when its octets are not
 * valid for the type (an older Citadel stored some it should have refused). A zone holding one
 * stays readable and exportable; the octets are refused again only when written back.
 */
export function storedRdataToText(type: number, wire: Uint8Array): string {
  try {
    return rdataToText(type, wire);
  } catch (e) {
    if (e instanceof RdataError) return genericText(wire);
    throw e;
  }
}

/**
 * Types whose data is names and numbers only, so their presentation in lower case is their
 * identity: names compare without regard to case (RFC 4343), and RFC 2181 section 5 allows no
 * two equal records in an RRset. "10 MAIL.example.net." is "10 mail.example.net." — NSD and
 * Knot keep one. (Types with text or opaque data beside a name, NAPTR or SVCB, compare as octets.)
 */
const NAMES_AND_NUMBERS = new Set([2, 3, 4, 5, 6, 7, 8, 9, 12, 14, 15, 17, 18, 21, 26, 33, 36]);

/** What makes two records of `type` the same record: their octets, names compared without case. */
export function rdataIdentity(type: number, wire: Uint8Array): string {
  if (!NAMES_AND_NUMBERS.has(type)) return octets(wire);
  try {
    return rdataToText(type, wire).toLowerCase();
  } catch (e) {
    if (e instanceof RdataError) return octets(wire); // damaged octets (an older Citadel's): as they are
    throw e;
  }
}

/** Refuses generic octets that are not valid for a type Citadel or a secondary knows the layout of. */
function checkGeneric(type: number, wire: Uint8Array): void {
  if (CODECS.has(type)) {
    rdataToText(type, wire);
    return;
  }
  const layout = LAYOUTS.get(type);
  if (!layout) return; // unknown here and, as far as we know, to the secondaries: opaque
  const reader = new Reader(`${typeToText(type)} (${layout.name})`, wire);
  layout.check(reader);
  reader.end();
}

/**
 * Why records of `type` are not stored in a zone here, or null when they can be. Type 0, OPT and
 * the query and meta types 128–255 (RFC 6895 section 3.1) only exist in messages: served from a
 * zone they make resolvers call the reply malformed, and a secondary refuse the transfer. DNAME
 * is zone data, but its meaning is the server's CNAME synthesis below it (RFC 6672), which
 * Citadel does not do: kept as opaque data it would answer NXDOMAIN where its secondaries
 * synthesize, and they refuse a zone with data below a DNAME.
 */
export function unstorableType(type: number): string | null {
  if (type === 0) return "type 0 is reserved (RFC 6895), not zone data";
  if (type === OPT) return "OPT is the EDNS pseudo-record (RFC 6891), not zone data";
  if (type === DNAME) return "DNAME is not supported: Citadel does not synthesize the CNAMEs it stands for (RFC 6672)";
  if (type >= 128 && type <= 255) return `${UNSTORED_NAMES.get(type) ?? "this"} is a query or meta type (128–255, RFC 6895), not zone data`;
  return null;
}

function genericText(wire: Uint8Array): string {
  return wire.length === 0 ? "\\# 0" : `\\# ${wire.length} ${hex(wire)}`;
}

function parseGeneric(fields: Fields): Uint8Array {
  fields.next("\\#");
  const length = fields.number("the generic length", 0xffff);
  const data = fields.hexRest("the generic data", true);
  if (data.length !== length) fields.fail(`the generic data has ${data.length} octets, not ${length}`);
  return data;
}

// ---------------------------------------------------------------------------------------------
// Reading presentation fields

/** The tokens of one record's data, consumed field by field; errors name the type and field. */
class Fields {
  private at = 0;
  constructor(
    readonly type: string,
    private readonly tokens: readonly string[],
    readonly origin: Name,
  ) {}

  fail(message: string): never {
    throw new RdataError(`${this.type}: ${message}`);
  }

  /** The next raw token; `what` names the missing field. */
  next(what: string): string {
    const token = this.tokens[this.at++];
    if (token === undefined) this.fail(`${what} is missing`);
    return token!;
  }

  hasMore(): boolean {
    return this.at < this.tokens.length;
  }

  end(): void {
    if (this.hasMore()) this.fail(`unexpected "${this.tokens[this.at]}" after the data`);
  }

  /** An unsigned decimal in 0..max; the message states the range, e.g. "the preference must be 0–65535". */
  number(what: string, max: number): number {
    const token = this.next(what);
    if (!/^[0-9]+$/.test(token) || Number(token) > max) this.fail(`${what} must be 0–${max}`);
    return Number(token);
  }

  /** A time in seconds, plain or with units (1h, 2d). */
  time(what: string): number {
    const seconds = parseTtl(this.next(what), 0xffffffff);
    if (seconds === null) this.fail(`${what} must be seconds (0–4294967295) or like 1h30m`);
    return seconds!;
  }

  name(what: string): Name {
    const token = this.next(what);
    try {
      return parseName(token, this.origin);
    } catch (e) {
      if (e instanceof NameError) this.fail(`${what}: ${e.message}`);
      throw e;
    }
  }

  /** A character-string: at most 255 octets (RFC 1035 3.3). */
  characterString(what: string): Uint8Array {
    const octets = this.text(what);
    if (octets.length > 255) this.fail(`${what} is longer than 255 octets`);
    return octets;
  }

  /** Token text with quotes removed and escapes decoded, any length. */
  text(what: string): Uint8Array {
    return decodeText(this.next(what), (message) => this.fail(`${what}: ${message}`));
  }

  /** All remaining tokens as one hex string; spaces between them are allowed (RFC 4034, 6698). */
  hexRest(what: string, allowEmpty = false): Uint8Array {
    const digits = this.tokens.slice(this.at).join("");
    this.at = this.tokens.length;
    if (digits === "" && !allowEmpty) this.fail(`${what} is missing`);
    if (!/^(?:[0-9a-fA-F]{2})*$/.test(digits)) this.fail(`${what} must be hex digits in pairs`);
    return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16));
  }
}

// ---------------------------------------------------------------------------------------------
// Writing and reading wire octets

class Writer {
  private readonly parts: number[] = [];
  u8(n: number): void {
    this.parts.push(n & 0xff);
  }
  u16(n: number): void {
    this.parts.push((n >> 8) & 0xff, n & 0xff);
  }
  u32(n: number): void {
    this.u16(Math.floor(n / 0x10000));
    this.u16(n & 0xffff);
  }
  raw(octets: Uint8Array): void {
    for (const b of octets) this.parts.push(b);
  }
  name(name: Name): void {
    this.raw(nameToWire(name));
  }
  characterString(octets: Uint8Array): void {
    this.u8(octets.length);
    this.raw(octets);
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

class Reader {
  private at = 0;
  constructor(
    readonly type: string,
    private readonly wire: Uint8Array,
  ) {}

  fail(message: string): never {
    throw new RdataError(`${this.type}: ${message}`);
  }
  private take(n: number): Uint8Array {
    if (this.at + n > this.wire.length) this.fail("the record data is truncated");
    const out = this.wire.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u8(): number {
    return this.take(1)[0]!;
  }
  u16(): number {
    const b = this.take(2);
    return (b[0]! << 8) | b[1]!;
  }
  u32(): number {
    return this.u16() * 0x10000 + this.u16();
  }
  bytes(n: number): Uint8Array {
    return this.take(n);
  }
  rest(): Uint8Array {
    return this.take(this.wire.length - this.at);
  }
  remaining(): number {
    return this.wire.length - this.at;
  }
  name(): Name {
    try {
      const { name, next } = nameFromWire(this.wire, this.at);
      this.at = next;
      return name;
    } catch (e) {
      if (e instanceof NameError) this.fail(e.message);
      throw e;
    }
  }
  characterString(): Uint8Array {
    return this.take(this.u8());
  }
  end(): void {
    if (this.at !== this.wire.length) this.fail("extra octets after the record data");
  }
}

/** The octets as a string of one character each: an identity compared, never shown (half hex's length, made faster). */
const octets = (wire: Uint8Array) => "#" + Buffer.from(wire.buffer, wire.byteOffset, wire.length).toString("latin1");
const hex = (octets: Uint8Array) => Buffer.from(octets.buffer, octets.byteOffset, octets.length).toString("hex").toUpperCase();

// ---------------------------------------------------------------------------------------------
// Codecs

interface Codec {
  parse(fields: Fields, out: Writer): void;
  print(reader: Reader): string;
}

const singleName: Codec = {
  parse: (f, out) => out.name(f.name("the name")),
  print: (r) => nameToText(r.name()),
};

function address(family: 4 | 6): Codec {
  const kind = family === 4 ? "IPv4" : "IPv6";
  return {
    parse(f, out) {
      const token = f.next("the address");
      const ip = family === 4 ? parseIpv4(token) : parseIpv6(token);
      if (!ip) f.fail(`not an ${kind} address: "${token}"`);
      out.raw(ip!.bytes);
    },
    print: (r) => formatIp({ family, bytes: r.bytes(family === 4 ? 4 : 16) }),
  };
}

const mx: Codec = {
  parse(f, out) {
    out.u16(f.number("the preference", 0xffff));
    out.name(f.name("the exchange"));
  },
  print: (r) => `${r.u16()} ${nameToText(r.name())}`,
};

const txt: Codec = {
  parse(f, out) {
    // Each token is its own character-string: a long TXT given as several strings stays several.
    do out.characterString(f.characterString("a string")); while (f.hasMore());
  },
  print(r) {
    const strings: string[] = [];
    do strings.push(quoteText(r.characterString())); while (r.remaining() > 0);
    return strings.join(" ");
  },
};

const SOA_TIMES = ["the refresh", "the retry", "the expire", "the minimum"];
const soa: Codec = {
  parse(f, out) {
    out.name(f.name("the primary server (mname)"));
    out.name(f.name("the mailbox (rname)"));
    out.u32(f.number("the serial", 0xffffffff));
    for (const what of SOA_TIMES) out.u32(f.time(what));
  },
  print(r) {
    const names = [nameToText(r.name()), nameToText(r.name())];
    const numbers = [r.u32(), r.u32(), r.u32(), r.u32(), r.u32()];
    return [...names, ...numbers].join(" ");
  },
};

const srv: Codec = {
  parse(f, out) {
    out.u16(f.number("the priority", 0xffff));
    out.u16(f.number("the weight", 0xffff));
    out.u16(f.number("the port", 0xffff));
    out.name(f.name("the target"));
  },
  print: (r) => `${r.u16()} ${r.u16()} ${r.u16()} ${nameToText(r.name())}`,
};

const naptr: Codec = {
  parse(f, out) {
    out.u16(f.number("the order", 0xffff));
    out.u16(f.number("the preference", 0xffff));
    for (const what of ["the flags", "the services", "the regexp"]) out.characterString(f.characterString(what));
    out.name(f.name("the replacement"));
  },
  print(r) {
    const numbers = `${r.u16()} ${r.u16()}`;
    const strings = [r.characterString(), r.characterString(), r.characterString()].map(quoteText);
    return `${numbers} ${strings.join(" ")} ${nameToText(r.name())}`;
  },
};

/** DS, SSHFP, TLSA: small numbers then a digest in hex. */
function numbersThenHex(sizes: readonly [string, 8 | 16][], what: string): Codec {
  return {
    parse(f, out) {
      for (const [field, bits] of sizes) {
        const n = f.number(field, bits === 8 ? 0xff : 0xffff);
        if (bits === 8) out.u8(n);
        else out.u16(n);
      }
      out.raw(f.hexRest(what));
    },
    print(r) {
      const numbers = sizes.map(([, bits]) => (bits === 8 ? r.u8() : r.u16()));
      if (r.remaining() === 0) r.fail(`${what} is missing`);
      return `${numbers.join(" ")} ${hex(r.rest())}`;
    },
  };
}

const caa: Codec = {
  parse(f, out) {
    out.u8(f.number("the flags", 0xff));
    const tag = f.next("the tag");
    if (!/^[A-Za-z0-9]{1,255}$/.test(tag)) f.fail("the tag must be letters and digits");
    out.characterString(new TextEncoder().encode(tag));
    out.raw(f.text("the value")); // RFC 8659: the value is the rest of the rdata, no length octet
  },
  print(r) {
    const flags = r.u8();
    const tag = new TextDecoder().decode(r.characterString());
    if (!/^[A-Za-z0-9]+$/.test(tag)) r.fail("the tag must be letters and digits");
    return `${flags} ${tag} ${quoteText(r.rest())}`;
  },
};

const svcb: Codec = {
  parse(f, out) {
    out.u16(f.number("the priority", 0xffff));
    out.name(f.name("the target"));
    const params: string[] = [];
    while (f.hasMore()) params.push(f.next("a parameter"));
    out.raw(parseSvcParams(params, (message) => f.fail(message)));
  },
  print(r) {
    const head = `${r.u16()} ${nameToText(r.name())}`;
    const params = printSvcParams(r.rest(), (message) => r.fail(message));
    return params === "" ? head : `${head} ${params}`;
  },
};

const CODECS = new Map<number, Codec>([
  [RRType.A, address(4)],
  [RRType.NS, singleName],
  [RRType.CNAME, singleName],
  [RRType.SOA, soa],
  [RRType.PTR, singleName],
  [RRType.MX, mx],
  [RRType.TXT, txt],
  [RRType.AAAA, address(6)],
  [RRType.SRV, srv],
  [RRType.NAPTR, naptr],
  [RRType.DS, numbersThenHex([["the key tag", 16], ["the algorithm", 8], ["the digest type", 8]], "the digest")],
  [RRType.SSHFP, numbersThenHex([["the algorithm", 8], ["the fingerprint type", 8]], "the fingerprint")],
  [
    RRType.TLSA,
    numbersThenHex([["the usage", 8], ["the selector", 8], ["the matching type", 8]], "the certificate data"),
  ],
  [RRType.SVCB, svcb],
  [RRType.HTTPS, svcb],
  [RRType.CAA, caa],
]);

// ---------------------------------------------------------------------------------------------
// Layouts of well-known types kept in the generic form

/** Reads one field (or several) of a layout; the reader refuses what does not fit. */
type Check = (r: Reader) => void;

const fixed = (n: number): Check => (r) => void r.bytes(n);
const domain: Check = (r) => void r.name();
const characterString: Check = (r) => void r.characterString();
const rest: Check = (r) => void r.rest();
const sequence = (...checks: Check[]): Check => (r) => checks.forEach((check) => check(r));
const optional = (check: Check): Check => (r) => {
  if (r.remaining() > 0) check(r);
};
/** One or more character-strings to the end (TXT-like). */
const characterStrings: Check = (r) => {
  do r.characterString(); while (r.remaining() > 0);
};

/** RFC 3123: items of family (2), prefix (1), N and length (1), then that many address octets. */
const aplItems: Check = (r) => {
  while (r.remaining() > 0) {
    r.bytes(3);
    r.bytes(r.u8() & 0x7f);
  }
};

/** RFC 4025: precedence, gateway type, algorithm, the gateway as its type says, the key. */
const ipseckey: Check = (r) => {
  r.u8();
  const gatewayType = r.u8();
  r.u8();
  if (gatewayType === 1) r.bytes(4);
  else if (gatewayType === 2) r.bytes(16);
  else if (gatewayType === 3) r.name();
  else if (gatewayType !== 0) r.fail(`the gateway type ${gatewayType} is not 0–3`);
  r.rest();
};

/**
 * Types Citadel keeps in the generic form whose layout Knot or NSD check when they load or
 * transfer a zone (fixed sizes, names, character-strings). Types not listed are kept as given.
 */
const LAYOUTS = new Map<number, { name: string; check: Check }>([
  [3, { name: "MD", check: domain }],
  [4, { name: "MF", check: domain }],
  [7, { name: "MB", check: domain }],
  [8, { name: "MG", check: domain }],
  [9, { name: "MR", check: domain }],
  [11, { name: "WKS", check: sequence(fixed(5), rest) }],
  [13, { name: "HINFO", check: sequence(characterString, characterString) }],
  [14, { name: "MINFO", check: sequence(domain, domain) }],
  [17, { name: "RP", check: sequence(domain, domain) }],
  [18, { name: "AFSDB", check: sequence(fixed(2), domain) }],
  [19, { name: "X25", check: characterString }],
  [20, { name: "ISDN", check: sequence(characterString, optional(characterString)) }],
  [21, { name: "RT", check: sequence(fixed(2), domain) }],
  [23, { name: "NSAP-PTR", check: domain }],
  [24, { name: "SIG", check: sequence(fixed(18), domain, rest) }],
  [25, { name: "KEY", check: sequence(fixed(4), rest) }],
  [26, { name: "PX", check: sequence(fixed(2), domain, domain) }],
  [27, { name: "GPOS", check: sequence(characterString, characterString, characterString) }],
  [29, { name: "LOC", check: fixed(16) }],
  [30, { name: "NXT", check: sequence(domain, rest) }],
  [36, { name: "KX", check: sequence(fixed(2), domain) }],
  [37, { name: "CERT", check: sequence(fixed(5), rest) }],
  [42, { name: "APL", check: aplItems }],
  [45, { name: "IPSECKEY", check: ipseckey }],
  [46, { name: "RRSIG", check: sequence(fixed(18), domain, rest) }],
  [47, { name: "NSEC", check: sequence(domain, rest) }],
  [48, { name: "DNSKEY", check: sequence(fixed(4), rest) }],
  [50, { name: "NSEC3", check: sequence(fixed(4), characterString, characterString, rest) }],
  [51, { name: "NSEC3PARAM", check: sequence(fixed(4), characterString) }],
  [53, { name: "SMIMEA", check: sequence(fixed(3), rest) }],
  [59, { name: "CDS", check: sequence(fixed(4), rest) }],
  [60, { name: "CDNSKEY", check: sequence(fixed(4), rest) }],
  [62, { name: "CSYNC", check: sequence(fixed(6), rest) }],
  [63, { name: "ZONEMD", check: sequence(fixed(6), rest) }],
  [99, { name: "SPF", check: characterStrings }],
  [104, { name: "NID", check: fixed(10) }],
  [105, { name: "L32", check: fixed(6) }],
  [106, { name: "L64", check: fixed(10) }],
  [107, { name: "LP", check: sequence(fixed(2), domain) }],
  [108, { name: "EUI48", check: fixed(6) }],
  [109, { name: "EUI64", check: fixed(8) }],
  [256, { name: "URI", check: sequence(fixed(4), rest) }],
]);
