/**
 * Domain names (RFC 1034/1035): parsing and printing the presentation form, the uncompressed
 * wire form, and comparisons.
 *
 * A name is an array of labels, each the raw octets of that label, always absolute: the root is
 * `[]`, and the terminating empty label of the wire form is implicit. Octets are kept as given —
 * DNS is case-insensitive only for ASCII letters (RFC 4343), so case is folded only when
 * comparing (nameEquals) or when asked (lowerName), never while parsing — except that a label
 * written in Unicode is read as its A-label (`xn--`), the only form resolvers ask for.
 */
import { domainToASCII } from "node:url";
import { scanEscapes, type ScannedOctet } from "./presentation.ts";

export type Name = readonly Uint8Array[];

export const MAX_LABEL_LENGTH = 63;
/** Wire length including every length octet and the root label. */
export const MAX_NAME_LENGTH = 255;

/** A name that cannot be parsed or built; the message says why, without a line number. */
export class NameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NameError";
  }
}

const fail = (message: string): never => {
  throw new NameError(message);
};

// Characters the zone-file lexer gives meaning to; a name only contains them escaped.
const UNESCAPED_REFUSED = new Set([0x20, 0x09, 0x0a, 0x0d, 0x22, 0x28, 0x29, 0x3b]);

/**
 * Presentation text → name. `@` alone is the origin; text without a trailing unescaped dot is
 * relative to `origin` (refused when there is none). `.` alone is the root.
 */
export function parseName(text: string, origin: Name | null): Name {
  if (text === "") fail("a name cannot be empty");
  if (text === "@") {
    if (origin === null) fail('"@" needs an origin');
    return origin!;
  }
  if (text === ".") return [];
  const octets = scanEscapes(text, fail);
  const labels = splitLabels(octets, text);
  const absolute = octets.length > 0 && !octets.at(-1)!.escaped && octets.at(-1)!.octet === 0x2e;
  if (!absolute && origin === null) fail(`"${text}" is relative and there is no origin`);
  const name = absolute ? labels : [...labels, ...origin!];
  checkLength(name, text);
  return name;
}

/** Splits scanned octets at unescaped dots; a trailing dot only marks the name absolute. */
function splitLabels(octets: ScannedOctet[], text: string): Uint8Array[] {
  const labels: Uint8Array[] = [];
  let label: ScannedOctet[] = [];
  for (let i = 0; i < octets.length; i++) {
    const { octet, escaped } = octets[i]!;
    if (!escaped && UNESCAPED_REFUSED.has(octet)) {
      fail(`"${text}" has an unescaped ${JSON.stringify(String.fromCharCode(octet))}`);
    }
    if (escaped || octet !== 0x2e) {
      label.push(octets[i]!);
      continue;
    }
    if (label.length === 0) fail(`"${text}" has an empty label`);
    labels.push(labelOctets(label, text));
    label = [];
  }
  if (label.length > 0) labels.push(labelOctets(label, text));
  return labels;
}

/**
 * A label's octets. Written in Unicode (`bücher`), it is its A-label (`xn--bcher-kva`, UTS #46
 * as browsers map it): resolvers only ever ask for that form, so the raw UTF-8 octets would be
 * a name nobody reaches. Octets written as escapes (`\195\188`) stay as written (RFC 1035).
 */
function labelOctets(label: ScannedOctet[], text: string): Uint8Array {
  const octets = Uint8Array.from(label, (o) => o.octet);
  if (!label.some((o) => !o.escaped && o.octet >= 0x80)) return octets;
  const unicode = new TextDecoder().decode(octets);
  const hint = "write it in its xn-- form, the one resolvers ask for";
  if (label.some((o) => o.escaped)) fail(`"${text}" mixes escapes and Unicode in the label "${unicode}": ${hint}`);
  // Only letters, digits and hyphens beside the Unicode (RFC 5891): the conversion reads its
  // input as a URL host, which would stop at a "/" or "#" and drop the rest.
  const ascii = /^[A-Za-z0-9-]*$/.test(unicode.replace(/[^\x00-\x7f]/gu, "")) ? domainToASCII(unicode) : "";
  if (!/^[a-z0-9-]+$/.test(ascii)) fail(`"${unicode}" in "${text}" is not an internationalized label (IDNA): ${hint}`);
  return new TextEncoder().encode(ascii);
}

function checkLength(name: Name, text: string): void {
  for (const label of name) {
    if (label.length > MAX_LABEL_LENGTH) fail(`a label of "${text}" is longer than 63 octets`);
  }
  if (wireLength(name) > MAX_NAME_LENGTH) fail(`"${text}" is longer than 255 octets in wire form`);
}

/** Octets the name takes on the wire, uncompressed. */
export function wireLength(name: Name): number {
  return name.reduce((sum, label) => sum + 1 + label.length, 1);
}

// Special in master files (RFC 1035 5.1) or in names, so always printed escaped.
const ESCAPED = new Set(Array.from('.\\"();@$', (c) => c.charCodeAt(0)));

/** Canonical absolute presentation: trailing dot, specials as `\X`, other non-printables as `\DDD`. */
export function nameToText(name: Name): string {
  if (name.length === 0) return ".";
  return name.map(labelToText).join(".") + ".";
}

/**
 * The name relative to `origin` when it lies inside it (`@` for the origin itself), else absolute.
 * Used to print zone files the way people write them.
 */
export function nameToRelativeText(name: Name, origin: Name): string {
  if (!isSubdomain(name, origin)) return nameToText(name);
  if (name.length === origin.length) return "@";
  return name.slice(0, name.length - origin.length).map(labelToText).join(".");
}

function labelToText(label: Uint8Array): string {
  let s = "";
  for (const b of label) {
    if (ESCAPED.has(b)) s += "\\" + String.fromCharCode(b);
    else if (b > 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else s += "\\" + String(b).padStart(3, "0");
  }
  return s;
}

/** Uncompressed wire form: length-prefixed labels and the root's zero octet. */
export function nameToWire(name: Name): Uint8Array {
  const out = new Uint8Array(wireLength(name));
  let at = 0;
  for (const label of name) {
    out[at++] = label.length;
    out.set(label, at);
    at += label.length;
  }
  out[at] = 0;
  return out;
}

/**
 * Reads an uncompressed name at `offset`. Record data stored by Citadel never uses compression
 * pointers, so one is refused rather than followed.
 */
export function nameFromWire(wire: Uint8Array, offset: number): { name: Name; next: number } {
  const labels: Uint8Array[] = [];
  let at = offset;
  for (;;) {
    const length = wire[at];
    if (length === undefined) fail("a name in wire form is truncated");
    if (length === 0) break;
    if (length! > MAX_LABEL_LENGTH) fail("a compressed or invalid label in wire form");
    if (at + 1 + length! > wire.length) fail("a name in wire form is truncated");
    labels.push(wire.slice(at + 1, at + 1 + length!));
    at += 1 + length!;
  }
  if (wireLength(labels) > MAX_NAME_LENGTH) fail("a name in wire form is longer than 255 octets");
  return { name: labels, next: at + 1 };
}

const lowerOctet = (b: number) => (b >= 0x41 && b <= 0x5a ? b + 0x20 : b);

/** One single-character string per octet, ASCII letters lowered: the alphabet of name keys. */
const KEY_CHARS: string[] = Array.from({ length: 256 }, (_, b) => String.fromCharCode(lowerOctet(b)));

/**
 * One label's part of a name key: its length, then its octets lowered, one character each —
 * unambiguous whatever the label holds, and cheap (no text rendering, no escapes).
 */
export function labelKey(label: Uint8Array): string {
  let key = KEY_CHARS[label.length]!;
  for (let i = 0; i < label.length; i++) key += KEY_CHARS[label[i]!]!;
  return key;
}

/** Octet to octet, ASCII letters lowered; and where nameKey lays a name out (a name is at most 255 octets). */
const LOWERED = Uint8Array.from({ length: 256 }, (_, b) => lowerOctet(b));
const keyScratch = Buffer.alloc(MAX_NAME_LENGTH);

/**
 * The key of a name in maps and sets: its labels' keys (labelKey), first to last; the root is
 * "". Equal for names DNS holds equal (RFC 4343), made as one flat string from the lowered wire
 * octets — some twenty times faster than `nameToText(lowerName(name))`, which a signed zone of
 * 10,000 names paid some 100,000 times at each build. Not for display.
 */
export function nameKey(name: Name): string {
  let at = 0;
  for (const label of name) {
    if (at + 1 + label.length > keyScratch.length) return name.map(labelKey).join(""); // longer than a name may be: never from the wire
    keyScratch[at++] = label.length;
    for (let i = 0; i < label.length; i++) keyScratch[at++] = LOWERED[label[i]!]!;
  }
  return keyScratch.toString("latin1", 0, at);
}

/** The name with ASCII letters lowered (RFC 4343); other octets untouched. */
export function lowerName(name: Name): Name {
  return name.map((label) => label.map(lowerOctet));
}

function labelEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (lowerOctet(a[i]!) !== lowerOctet(b[i]!)) return false;
  return true;
}

/** Equality as DNS sees it: ASCII case-insensitive, octet-exact otherwise. */
export function nameEquals(a: Name, b: Name): boolean {
  return a.length === b.length && a.every((label, i) => labelEquals(label, b[i]!));
}

/** True when `name` is `zone` or lies below it (case-insensitive). */
export function isSubdomain(name: Name, zone: Name): boolean {
  const skip = name.length - zone.length;
  return skip >= 0 && zone.every((label, i) => labelEquals(name[skip + i]!, label));
}
