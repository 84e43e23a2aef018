/**
 * SvcParams of SVCB and HTTPS records (RFC 9460): `key=value` tokens ⇄ the wire list.
 *
 * On the wire the params are sorted by key, each key at most once; a parser must treat any other
 * order as malformed (section 2.2), so parsing sorts and printing refuses disorder. The
 * `mandatory` list must name only keys that are present and never itself (section 8). Values
 * are character-strings first (quotes, `\DDD`); the list-valued `alpn` then splits on commas
 * with `\,` and `\\` as a second level of escaping (Appendix A.1).
 */
import { formatIp, parseIpv4, parseIpv6 } from "../../src/net/ip.ts";
import { decodeText, quoteText } from "./presentation.ts";

type Fail = (message: string) => never;

const KEY_NAMES = ["mandatory", "alpn", "no-default-alpn", "port", "ipv4hint", "ech", "ipv6hint"];
const MANDATORY = 0;
const ALPN = 1;
const NO_DEFAULT_ALPN = 2;
const PORT = 3;
const IPV4HINT = 4;
const ECH = 5;
const IPV6HINT = 6;
/** Key 65535 is reserved as "invalid" (section 14.3.2). */
const INVALID_KEY = 65535;

function keyToText(key: number): string {
  return KEY_NAMES[key] ?? `key${key}`;
}

function keyFromText(text: string, fail: Fail): number {
  const known = KEY_NAMES.indexOf(text);
  if (known >= 0) return known;
  const m = /^key(0|[1-9][0-9]{0,4})$/.exec(text);
  if (!m || Number(m[1]) >= INVALID_KEY) fail(`"${text}" is not a parameter key`);
  return Number(m![1]);
}

interface Param {
  key: number;
  value: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Presentation → wire

/** Raw `key[=value]` tokens → wire SvcParams, sorted by key and checked. */
export function parseSvcParams(tokens: readonly string[], fail: Fail): Uint8Array {
  const params = tokens.map((token) => parseParam(token, fail)).sort((a, b) => a.key - b.key);
  checkParams(params, fail);
  const out: number[] = [];
  for (const { key, value } of params) out.push(key >> 8, key & 0xff, value.length >> 8, value.length & 0xff, ...value);
  return Uint8Array.from(out);
}

function parseParam(token: string, fail: Fail): Param {
  const eq = token.indexOf("=");
  const keyText = eq < 0 ? token : token.slice(0, eq);
  const key = keyFromText(keyText, fail);
  const value = eq < 0 ? null : decodeText(token.slice(eq + 1), (m) => fail(`${keyText}: ${m}`));
  const keyFail: Fail = (m) => fail(`${keyText} ${m}`);
  // The generic keyNNNN form carries raw octets even for a known key (it is the escape hatch),
  // but a known key's octets must still be what the key means: printing them would fail, and so
  // would every client and secondary that reads them (`key3=abc` is no port).
  if (keyText.startsWith("key")) {
    const param = { key, value: value ?? new Uint8Array() };
    printParam(param, keyFail);
    return param;
  }
  return { key, value: parseKnownValue(key, value, keyFail) };
}

function parseKnownValue(key: number, value: Uint8Array | null, fail: Fail): Uint8Array {
  if (key === NO_DEFAULT_ALPN) {
    if (value !== null && value.length > 0) fail("takes no value");
    return new Uint8Array();
  }
  if (value === null || value.length === 0) fail("needs a value");
  const text = new TextDecoder().decode(value!);
  switch (key) {
    case MANDATORY:
      return u16List(text.split(",").map((k) => keyFromText(k, fail)).sort((a, b) => a - b));
    case ALPN:
      return alpnToWire(value!, fail);
    case PORT:
      if (!/^[0-9]+$/.test(text) || Number(text) > 0xffff) fail("must be 0–65535");
      return u16List([Number(text)]);
    case IPV4HINT:
    case IPV6HINT:
      return addressList(text, key === IPV4HINT ? 4 : 6, fail);
    case ECH:
      return base64ToBytes(text, fail);
  }
  throw new Error(`unreachable: key ${key}`);
}

function u16List(values: number[]): Uint8Array {
  return Uint8Array.from(values.flatMap((v) => [v >> 8, v & 0xff]));
}

function addressList(text: string, family: 4 | 6, fail: Fail): Uint8Array {
  const bytes = text.split(",").flatMap((part) => {
    const ip = family === 4 ? parseIpv4(part) : parseIpv6(part);
    if (!ip) fail(`has "${part}", not an IPv${family} address`);
    return Array.from(ip!.bytes);
  });
  return Uint8Array.from(bytes);
}

function base64ToBytes(text: string, fail: Fail): Uint8Array {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) fail("must be base64");
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** Splits the decoded alpn value on unescaped commas; `\,` and `\\` are literal (Appendix A.1). */
function alpnToWire(value: Uint8Array, fail: Fail): Uint8Array {
  const ids: number[][] = [[]];
  for (let i = 0; i < value.length; i++) {
    let b = value[i]!;
    if (b === 0x2c) {
      ids.push([]);
      continue;
    }
    if (b === 0x5c) {
      if (i + 1 >= value.length) fail("ends with a backslash");
      b = value[++i]!;
    }
    ids.at(-1)!.push(b);
  }
  for (const id of ids) if (id.length === 0 || id.length > 255) fail("ids must be 1–255 octets");
  return Uint8Array.from(ids.flatMap((id) => [id.length, ...id]));
}

/** Rules shared by parsing and printing, so that whatever prints also parses back. */
function checkParams(params: readonly Param[], fail: Fail): void {
  for (let i = 1; i < params.length; i++) {
    if (params[i]!.key <= params[i - 1]!.key) fail(`${keyToText(params[i]!.key)} is given twice or out of order`);
  }
  if (params.some((p) => p.key === INVALID_KEY)) fail("key65535 is reserved");
  const mandatory = params.find((p) => p.key === MANDATORY);
  if (!mandatory) return;
  const listed = readU16List(mandatory.value, (m) => fail(`mandatory ${m}`));
  for (let i = 0; i < listed.length; i++) {
    const key = listed[i]!;
    if (key === MANDATORY) fail("mandatory cannot list itself");
    if (i > 0 && key <= listed[i - 1]!) fail(`mandatory lists ${keyToText(key)} twice`);
    if (!params.some((p) => p.key === key)) fail(`mandatory lists ${keyToText(key)}, which is not given`);
  }
}

function readU16List(value: Uint8Array, fail: Fail): number[] {
  if (value.length === 0 || value.length % 2 !== 0) fail("must be a non-empty list of keys");
  const out: number[] = [];
  for (let i = 0; i < value.length; i += 2) out.push((value[i]! << 8) | value[i + 1]!);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Wire → presentation

/** Wire SvcParams → `key=value` tokens joined by spaces; malformed octets are refused. */
export function printSvcParams(wire: Uint8Array, fail: Fail): string {
  const params: Param[] = [];
  for (let at = 0; at < wire.length; ) {
    if (at + 4 > wire.length) fail("a parameter is truncated");
    const key = (wire[at]! << 8) | wire[at + 1]!;
    const length = (wire[at + 2]! << 8) | wire[at + 3]!;
    if (at + 4 + length > wire.length) fail(`${keyToText(key)} is truncated`);
    params.push({ key, value: wire.slice(at + 4, at + 4 + length) });
    at += 4 + length;
  }
  checkParams(params, fail);
  return params.map((p) => printParam(p, (m) => fail(`${keyToText(p.key)} ${m}`))).join(" ");
}

function printParam({ key, value }: Param, fail: Fail): string {
  const name = keyToText(key);
  switch (key) {
    case MANDATORY:
      return `${name}=${readU16List(value, fail).map(keyToText).join(",")}`;
    case ALPN:
      return `${name}=${quoteText(alpnToPresentation(value, fail))}`;
    case NO_DEFAULT_ALPN:
      if (value.length > 0) fail("takes no value");
      return name;
    case PORT:
      if (value.length !== 2) fail("must be two octets");
      return `${name}=${(value[0]! << 8) | value[1]!}`;
    case IPV4HINT:
    case IPV6HINT:
      return `${name}=${printAddresses(value, key === IPV4HINT ? 4 : 6, fail)}`;
    case ECH:
      if (value.length === 0) fail("needs a value");
      return `${name}=${btoa(String.fromCharCode(...value))}`;
  }
  return value.length === 0 ? name : `${name}=${quoteText(value)}`;
}

/** alpn ids → the comma list with `,` and `\` escaped, before character-string escaping. */
function alpnToPresentation(value: Uint8Array, fail: Fail): Uint8Array {
  const out: number[] = [];
  for (let at = 0; at < value.length; ) {
    const length = value[at]!;
    if (length === 0 || at + 1 + length > value.length) fail("has a malformed id");
    if (out.length > 0) out.push(0x2c);
    for (const b of value.subarray(at + 1, at + 1 + length)) {
      if (b === 0x2c || b === 0x5c) out.push(0x5c);
      out.push(b);
    }
    at += 1 + length;
  }
  if (out.length === 0) fail("needs a value");
  return Uint8Array.from(out);
}

function printAddresses(value: Uint8Array, family: 4 | 6, fail: Fail): string {
  const size = family === 4 ? 4 : 16;
  if (value.length === 0 || value.length % size !== 0) fail(`must be a list of ${size}-octet addresses`);
  const parts: string[] = [];
  for (let at = 0; at < value.length; at += size) parts.push(formatIp({ family, bytes: value.slice(at, at + size) }));
  return parts.join(",");
}
