/**
 * DNS messages on the wire (RFC 1035 section 4, EDNS0 of RFC 6891) for the authoritative server.
 *
 * decodeQuery reads what a client sends, strictly: anything malformed, truncated or followed by
 * trailing octets is a FormatError (and nothing else is ever thrown), compression pointers are
 * followed only backwards with a bounded number of hops, and memory stays O(packet size).
 * encodeResponse writes a reply into one preallocated buffer, compressing owner names and the
 * names inside NS, CNAME, PTR, MX and SOA data (the only types RFC 3597 section 4 lets us
 * compress), and truncates by whole RRsets to fit the transport's size. decodeMessage reads any
 * message, every section, for tests and for NOTIFY/AXFR clients.
 */
import { MAX_LABEL_LENGTH, MAX_NAME_LENGTH, type Name } from "./names.ts";
import { RRType } from "./rdata.ts";

/** A malformed message. The server answers FORMERR when the header was readable, else drops it. */
export class FormatError extends Error {
  /**
   * @param edns the query held an OPT record (or the problem is in one): the FORMERR then
   * carries an OPT record too (RFC 6891 section 7), so the client does not take the server for one without EDNS.
   */
  constructor(
    message: string,
    readonly edns = false,
  ) {
    super(message);
    this.name = "FormatError";
  }
}

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
} as const;

export const Opcode = { QUERY: 0, NOTIFY: 4 } as const;

export interface Question {
  name: Name;
  type: number;
  class: number;
}

export interface Edns {
  /** The requestor's UDP payload size; values under 512 are read as 512 (RFC 6891 6.2.5). */
  udpPayloadSize: number;
  version: number;
  dnssecOk: boolean;
  /** The OPT RDATA as received: a sequence of (code, length, data) options, checked well formed. */
  options: Uint8Array;
}

export interface Query {
  id: number;
  opcode: number;
  /** The raw 16-bit flags word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE). */
  flags: number;
  rd: boolean;
  question: Question | null;
  edns: Edns | null;
  /** The qname exactly as received (for echoing the case) */
  rawQname: Uint8Array | null;
  /** Where the TSIG record (RFC 8945) starts, the message's last record; -1 when it is not signed. */
  tsigStart: number;
}

export interface ResourceRecord {
  name: Name;
  type: number;
  class: number;
  ttl: number;
  /** Uncompressed wire RDATA. */
  rdata: Uint8Array;
}

export interface Response {
  id: number;
  opcode: number;
  /** 0-4095; the high 8 bits go into the OPT record, so a value above 15 needs `edns`. */
  rcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: false;
  question: Question | null;
  /** bytes to write for the qname in the question section, echoing the query's case */
  qnameWire?: Uint8Array;
  /**
   * The additional section is required data (a referral's glue, RFC 9471): leaving some out sets
   * TC. Otherwise additional records are a courtesy, dropped for size without TC (RFC 2181 §9).
   */
  additionalRequired?: boolean;
  answer: ResourceRecord[];
  authority: ResourceRecord[];
  additional: ResourceRecord[];
  edns: { udpPayloadSize: number; dnssecOk: boolean } | null;
}

/** Every section of a message, as decodeMessage reads it. */
export interface Message {
  id: number;
  /** The raw 16-bit flags word. */
  flags: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  /** The header RCODE, extended by the OPT record's upper 8 bits when there is one. */
  rcode: number;
  questions: Question[];
  answer: ResourceRecord[];
  authority: ResourceRecord[];
  /** The additional section without the OPT record, which is in `edns`. */
  additional: ResourceRecord[];
  edns: Edns | null;
}

const HEADER_LENGTH = 12;
const TYPE_OPT = 41;
const TYPE_TSIG = 250;
const MIN_UDP_PAYLOAD = 512;
const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
/** A sane name has at most 127 labels, so more hops than that is a pointer chain or loop. */
const MAX_POINTER_HOPS = 128;

const fail = (message: string): never => {
  throw new FormatError(message);
};

const u16 = (p: Uint8Array, at: number) => (p[at]! << 8) | p[at + 1]!;
const u32 = (p: Uint8Array, at: number) => ((p[at]! << 24) | (p[at + 1]! << 16) | (p[at + 2]! << 8) | p[at + 3]!) >>> 0;

// ---------------------------------------------------------------------------------------------
// Reading

/**
 * Walks the (possibly compressed) name at `offset`, checking it, and returns the offset after it
 * in the message plus its uncompressed wire length. When `labels` is given the labels are
 * collected into it. A pointer must point below the start of the run of labels it ends, and past
 * the header, so every hop goes strictly backwards: no loop can last, and hops are also capped.
 */
function scanName(p: Uint8Array, offset: number, labels: Uint8Array[] | null): { next: number; length: number } {
  let at = offset;
  let runStart = offset;
  let next = -1;
  let length = 1;
  let hops = 0;
  for (;;) {
    if (at >= p.length) fail("a name is truncated");
    const b = p[at]!;
    if (b === 0) {
      if (next < 0) next = at + 1;
      return { next, length };
    }
    if (b >= 0xc0) {
      if (at + 1 >= p.length) fail("a compression pointer is truncated");
      const target = ((b & 0x3f) << 8) | p[at + 1]!;
      if (target >= runStart || target < HEADER_LENGTH) fail("a compression pointer does not point backwards");
      if (++hops > MAX_POINTER_HOPS) fail("too many compression pointers in one name");
      if (next < 0) next = at + 2;
      at = runStart = target;
      continue;
    }
    if (b > MAX_LABEL_LENGTH) fail("an extended or invalid label type");
    if (at + 1 + b > p.length) fail("a label is truncated");
    length += 1 + b;
    if (length > MAX_NAME_LENGTH) fail("a name is longer than 255 octets");
    if (labels) labels.push(p.slice(at + 1, at + 1 + b));
    at += 1 + b;
  }
}

function readName(p: Uint8Array, offset: number): { name: Name; next: number } {
  const labels: Uint8Array[] = [];
  const { next } = scanName(p, offset, labels);
  return { name: labels, next };
}

function need(p: Uint8Array, at: number, count: number, what: string): void {
  if (at + count > p.length) fail(`${what} is truncated`);
}

/** Checks the OPT RDATA is a whole sequence of options. */
function checkOptions(p: Uint8Array, start: number, end: number): void {
  let at = start;
  while (at < end) {
    if (at + 4 > end) fail("an EDNS option header is truncated");
    at += 4 + u16(p, at + 2);
    if (at > end) fail("an EDNS option is truncated");
  }
}

/** Reads an OPT record's fixed part (at `fixed`, after its owner) and RDATA. */
function readEdns(p: Uint8Array, fixed: number, rdStart: number, rdEnd: number): Edns {
  checkOptions(p, rdStart, rdEnd);
  const payload = u16(p, fixed + 2);
  return {
    udpPayloadSize: payload < MIN_UDP_PAYLOAD ? MIN_UDP_PAYLOAD : payload,
    version: p[fixed + 5]!,
    dnssecOk: (p[fixed + 6]! & 0x80) !== 0,
    options: p.slice(rdStart, rdEnd),
  };
}

/**
 * A client's query. Throws FormatError, and only FormatError, when it is malformed: QDCOUNT other
 * than 1 for QUERY (more than 1 for any opcode), a bad name, a truncated section, two OPT
 * records or one not owned by the root, a malformed OPT option list, or trailing octets. Records
 * in the answer and authority sections are checked and skipped. The QR bit is left to the caller
 * (see `flags`).
 */
export function decodeQuery(packet: Uint8Array): Query {
  const p = packet;
  if (p.length < HEADER_LENGTH) fail("the header is truncated");
  const id = u16(p, 0);
  const flags = u16(p, 2);
  const opcode = (flags >> 11) & 0xf;
  const qdcount = u16(p, 4);
  const ancount = u16(p, 6);
  const nscount = u16(p, 8);
  const arcount = u16(p, 10);
  if (qdcount > 1) fail("more than one question");
  if (qdcount === 0 && opcode === Opcode.QUERY) fail("a query without a question");

  let at = HEADER_LENGTH;
  let question: Question | null = null;
  let rawQname: Uint8Array | null = null;
  if (qdcount === 1) {
    const labels: Uint8Array[] = [];
    const { next } = scanName(p, at, labels);
    need(p, next, 4, "the question");
    rawQname = p.slice(at, next); // the first name cannot be compressed: pointers go backwards past the header
    question = { name: labels, type: u16(p, next), class: u16(p, next + 2) };
    at = next + 4;
  }

  for (let i = ancount + nscount; i > 0; i--) at = skipRecord(p, at);

  let edns: Edns | null = null;
  let tsigStart = -1;
  let sawOpt = false;
  try {
    ({ edns, tsigStart } = readAdditional(p, at, arcount, () => (sawOpt = true)));
  } catch (e) {
    throw e instanceof FormatError && sawOpt ? new FormatError(e.message, true) : e;
  }
  return { id, opcode, flags, rd: (flags & FLAG_RD) !== 0, question, edns, rawQname, tsigStart };
}

/** The additional section of a query, up to the end of the packet: its OPT and where its TSIG starts. */
function readAdditional(p: Uint8Array, start: number, arcount: number, onOpt: () => void): { edns: Edns | null; tsigStart: number } {
  let at = start;
  let edns: Edns | null = null;
  let tsigStart = -1;
  for (let i = 0; i < arcount; i++) {
    const owner = scanName(p, at, null);
    const fixed = owner.next;
    need(p, fixed, 10, "a record");
    const rdStart = fixed + 10;
    const rdEnd = rdStart + u16(p, fixed + 8);
    if (rdEnd > p.length) fail("record data is truncated");
    const type = u16(p, fixed);
    if (type === TYPE_TSIG) {
      if (i !== arcount - 1) fail("a TSIG record that is not the last record");
      tsigStart = at;
    } else if (type === TYPE_OPT) {
      onOpt();
      if (edns) fail("more than one OPT record");
      if (owner.length !== 1) fail("an OPT record not owned by the root");
      edns = readEdns(p, fixed, rdStart, rdEnd);
    }
    at = rdEnd;
  }
  if (at !== p.length) fail("octets after the last record");
  return { edns, tsigStart };
}

function skipRecord(p: Uint8Array, at: number): number {
  const { next } = scanName(p, at, null);
  need(p, next, 10, "a record");
  const end = next + 10 + u16(p, next + 8);
  if (end > p.length) fail("record data is truncated");
  return end;
}

/** Types whose RDATA names may be compressed (RFC 1035) and are re-expanded on reading. */
const COMPRESSIBLE = new Set<number>([RRType.NS, RRType.CNAME, RRType.PTR, RRType.MX, RRType.SOA]);

/**
 * Any message, every section. RDATA of NS, CNAME, PTR, MX and SOA is returned with its names
 * uncompressed; other RDATA is returned as received. Throws FormatError when malformed.
 */
export function decodeMessage(packet: Uint8Array): Message {
  const p = packet;
  if (p.length < HEADER_LENGTH) fail("the header is truncated");
  const flags = u16(p, 2);
  let at = HEADER_LENGTH;
  const questions: Question[] = [];
  for (let i = u16(p, 4); i > 0; i--) {
    const { name, next } = readName(p, at);
    need(p, next, 4, "a question");
    questions.push({ name, type: u16(p, next), class: u16(p, next + 2) });
    at = next + 4;
  }
  const sections: ResourceRecord[][] = [[], [], []];
  let edns: Edns | null = null;
  let extendedRcode = 0;
  for (let s = 0; s < 3; s++) {
    for (let i = u16(p, 6 + 2 * s); i > 0; i--) {
      const { name, next } = readName(p, at);
      need(p, next, 10, "a record");
      const type = u16(p, next);
      const rdStart = next + 10;
      const rdEnd = rdStart + u16(p, next + 8);
      if (rdEnd > p.length) fail("record data is truncated");
      at = rdEnd;
      if (s === 2 && type === TYPE_OPT) {
        if (edns) fail("more than one OPT record");
        if (name.length !== 0) fail("an OPT record not owned by the root");
        edns = readEdns(p, next, rdStart, rdEnd);
        extendedRcode = p[next + 4]!;
        continue;
      }
      const rdata = COMPRESSIBLE.has(type) ? expandRdata(p, type, rdStart, rdEnd) : p.slice(rdStart, rdEnd);
      sections[s]!.push({ name, type, class: u16(p, next + 2), ttl: u32(p, next + 4), rdata });
    }
  }
  if (at !== p.length) fail("octets after the last record");
  return {
    id: u16(p, 0),
    flags,
    qr: (flags & FLAG_QR) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & FLAG_AA) !== 0,
    tc: (flags & FLAG_TC) !== 0,
    rd: (flags & FLAG_RD) !== 0,
    ra: (flags & 0x80) !== 0,
    rcode: (extendedRcode << 4) | (flags & 0xf),
    questions,
    answer: sections[0]!,
    authority: sections[1]!,
    additional: sections[2]!,
    edns,
  };
}

/** RDATA of a compressible type with its (possibly compressed) names written out in full. */
function expandRdata(p: Uint8Array, type: number, start: number, end: number): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = start;
  const name = () => {
    const labels: Uint8Array[] = [];
    const { next } = scanName(p, at, labels);
    if (next > end) fail("a name runs past its record data");
    parts.push(wireOf(labels));
    at = next;
  };
  const fixed = (count: number) => {
    if (at + count > end) fail("record data is truncated");
    parts.push(p.subarray(at, at + count));
    at += count;
  };
  if (type === RRType.MX) fixed(2);
  name();
  if (type === RRType.SOA) {
    name();
    fixed(20);
  }
  if (at !== end) fail("octets after the record data");
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let o = 0;
  for (const part of parts) {
    out.set(part, o);
    o += part.length;
  }
  return out;
}

function wireOf(labels: readonly Uint8Array[]): Uint8Array {
  let length = 1;
  for (const label of labels) length += 1 + label.length;
  const out = new Uint8Array(length);
  let o = 0;
  for (const label of labels) {
    out[o++] = label.length;
    out.set(label, o);
    o += label.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Room for a 65535-octet message plus the largest record that may be written past the limit. */
const BUFFER = new Uint8Array(65535 + 65535 + 512);
const OPT_LENGTH = 11;
const MAX_POINTER_TARGET = 0x3fff;

const lower = (b: number) => (b >= 0x41 && b <= 0x5a ? b + 0x20 : b);

/**
 * Writes into BUFFER with name compression; one per response. Suffixes already written are found
 * through a hash of their lower-cased labels, then compared octet by octet against the buffer, so
 * no strings are built; on the rare hash collision the name is simply written without a pointer.
 */
class Writer {
  at = 0;
  /** Hash of a lower-cased suffix → offset of its first occurrence. */
  private readonly names = new Map<number, number>();
  private readonly hashes: number[] = [];

  u16(n: number): void {
    BUFFER[this.at++] = n >>> 8;
    BUFFER[this.at++] = n;
  }

  u32(n: number): void {
    BUFFER[this.at++] = n >>> 24;
    BUFFER[this.at++] = n >>> 16;
    BUFFER[this.at++] = n >>> 8;
    BUFFER[this.at++] = n;
  }

  bytes(b: Uint8Array): void {
    BUFFER.set(b, this.at);
    this.at += b.length;
  }

  /** Writes `labels`, pointing to an earlier equal suffix (case-insensitively) when there is one. */
  name(labels: readonly Uint8Array[], compress: boolean): void {
    const n = labels.length;
    const hashes = this.hashes;
    let h = 0x811c9dc5;
    for (let i = n - 1; i >= 0; i--) {
      const label = labels[i]!;
      h = Math.imul(h ^ label.length, 0x01000193);
      for (let j = 0; j < label.length; j++) h = Math.imul(h ^ lower(label[j]!), 0x01000193);
      hashes[i] = h;
    }
    for (let i = 0; i < n; i++) {
      const target = this.names.get(hashes[i]!);
      if (target === undefined) {
        if (this.at <= MAX_POINTER_TARGET) this.names.set(hashes[i]!, this.at);
      } else if (compress && this.matches(labels, i, target)) {
        this.u16(0xc000 | target);
        return;
      }
      const label = labels[i]!;
      BUFFER[this.at++] = label.length;
      this.bytes(label);
    }
    BUFFER[this.at++] = 0;
  }

  /** Whether labels[from..] equals, case-insensitively, the name already written at `at`. */
  private matches(labels: readonly Uint8Array[], from: number, at: number): boolean {
    for (let i = from; i < labels.length; i++) {
      let length = BUFFER[at]!;
      while (length >= 0xc0) {
        at = ((length & 0x3f) << 8) | BUFFER[at + 1]!;
        length = BUFFER[at]!;
      }
      const label = labels[i]!;
      if (length !== label.length) return false;
      for (let j = 0; j < length; j++) if (lower(BUFFER[at + 1 + j]!) !== lower(label[j]!)) return false;
      at += 1 + length;
    }
    let end = BUFFER[at]!;
    while (end >= 0xc0) {
      at = ((end & 0x3f) << 8) | BUFFER[at + 1]!;
      end = BUFFER[at]!;
    }
    return end === 0;
  }
}

/** Labels of an uncompressed wire name inside `wire`, as views; null when malformed. */
function labelsAt(wire: Uint8Array, offset: number): { labels: Uint8Array[]; next: number } | null {
  const labels: Uint8Array[] = [];
  let at = offset;
  for (;;) {
    const b = wire[at];
    if (b === undefined || b > MAX_LABEL_LENGTH || at + 1 + b > wire.length) return null;
    if (b === 0) return { labels, next: at + 1 };
    labels.push(wire.subarray(at + 1, at + 1 + b));
    at += 1 + b;
  }
}

/** Writes RDATA, compressing the names of NS, CNAME, PTR, MX and SOA; others are copied. */
function writeRdata(w: Writer, type: number, rdata: Uint8Array): void {
  if (COMPRESSIBLE.has(type)) {
    const start = type === RRType.MX ? 2 : 0;
    const first = rdata.length >= start ? labelsAt(rdata, start) : null;
    const second = first && type === RRType.SOA ? labelsAt(rdata, first.next) : null;
    const end = type === RRType.SOA ? (second ? second.next + 20 : -1) : first ? first.next : -1;
    if (end === rdata.length) {
      if (start) w.bytes(rdata.subarray(0, start));
      w.name(first!.labels, true);
      if (second) {
        w.name(second.labels, true);
        w.bytes(rdata.subarray(second.next));
      }
      return;
    }
    // Malformed data of a compressible type is written as given, uncompressed.
  }
  w.bytes(rdata);
}

function writeRecord(w: Writer, rr: ResourceRecord): void {
  if (rr.rdata.length > 0xffff) throw new RangeError("record data longer than 65535 octets");
  w.name(rr.name, true);
  w.u16(rr.type);
  w.u16(rr.class);
  w.u32(rr.ttl);
  const lengthAt = w.at;
  w.at += 2;
  writeRdata(w, rr.type, rr.rdata);
  const length = w.at - lengthAt - 2;
  BUFFER[lengthAt] = length >>> 8;
  BUFFER[lengthAt + 1] = length;
}

const sameRRset = (a: ResourceRecord, b: ResourceRecord) =>
  a.type === b.type && a.class === b.class && a.name.length === b.name.length && namesEqual(a.name, b.name);

function namesEqual(a: Name, b: Name): boolean {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.length !== y.length) return false;
    for (let j = 0; j < x.length; j++) {
      let c = x[j]!;
      let d = y[j]!;
      if (c >= 0x41 && c <= 0x5a) c += 0x20;
      if (d >= 0x41 && d <= 0x5a) d += 0x20;
      if (c !== d) return false;
    }
  }
  return true;
}

/**
 * The response on the wire, at most `maxSize` octets when that is possible (the header, question
 * and OPT record always stay): UDP passes min(client payload, our limit) and at least 512, TCP
 * 65535. When the records do not all fit, whole RRsets (consecutive records with the same owner,
 * type and class) are dropped from the end — additional, then authority, then answer — and TC is
 * set, unless only optional additional records were dropped (see `additionalRequired`). The OPT record, when `edns` is given, is always written last and never dropped. An rcode
 * above 15 puts its upper 8 bits in the OPT record, so it throws RangeError without `edns`.
 */
export function encodeResponse(response: Response, maxSize: number): Uint8Array {
  const { rcode, edns } = response;
  if (rcode < 0 || rcode > 0xfff || (rcode > 0xf && !edns)) {
    throw new RangeError(`rcode ${rcode} cannot be sent${edns ? "" : " without EDNS"}`);
  }
  const limit = Math.min(maxSize, 65535) - (edns ? OPT_LENGTH : 0);
  const w = new Writer();
  w.at = HEADER_LENGTH;
  const q = response.question;
  if (q) {
    if (response.qnameWire) {
      const parsed = labelsAt(response.qnameWire, 0);
      if (parsed && parsed.next === response.qnameWire.length) w.name(parsed.labels, false);
      else w.name(q.name, false);
    } else {
      w.name(q.name, false);
    }
    w.u16(q.type);
    w.u16(q.class);
  }

  // Write RRset by RRset; `kept` marks the end of the last RRset that fits.
  const sections = [response.answer, response.authority, response.additional];
  const counts = [0, 0, 0];
  const keptCounts = [0, 0, 0];
  let kept = w.at;
  let truncated = false;
  outer: for (let s = 0; s < 3; s++) {
    const records = sections[s]!;
    for (let i = 0; i < records.length; ) {
      let j = i + 1;
      while (j < records.length && sameRRset(records[j]!, records[i]!)) j++;
      for (let k = i; k < j; k++) {
        const rr = records[k]!;
        // Stop before the buffer could overflow; everything from here on would be dropped anyway.
        if (w.at > limit || w.at + 275 + rr.rdata.length > BUFFER.length) {
          truncated = s < 2 || response.additionalRequired === true;
          break outer;
        }
        writeRecord(w, rr);
        counts[s]!++;
      }
      if (w.at > limit || counts[s]! > 0xffff) {
        truncated = s < 2 || response.additionalRequired === true;
        break outer;
      }
      kept = w.at;
      keptCounts[0] = counts[0]!;
      keptCounts[1] = counts[1]!;
      keptCounts[2] = counts[2]!;
      i = j;
    }
  }
  w.at = kept;

  if (edns) {
    BUFFER[w.at++] = 0;
    w.u16(TYPE_OPT);
    w.u16(Math.max(edns.udpPayloadSize, MIN_UDP_PAYLOAD));
    w.u32(((rcode >>> 4) << 24) | (edns.dnssecOk ? 0x8000 : 0));
    w.u16(0);
  }

  let flags = FLAG_QR | ((response.opcode & 0xf) << 11) | (rcode & 0xf);
  if (response.aa) flags |= FLAG_AA;
  if (response.tc || truncated) flags |= FLAG_TC;
  if (response.rd) flags |= FLAG_RD;
  BUFFER[0] = response.id >>> 8;
  BUFFER[1] = response.id;
  BUFFER[2] = flags >>> 8;
  BUFFER[3] = flags;
  BUFFER[4] = 0;
  BUFFER[5] = q ? 1 : 0;
  BUFFER[6] = keptCounts[0]! >>> 8;
  BUFFER[7] = keptCounts[0]!;
  BUFFER[8] = keptCounts[1]! >>> 8;
  BUFFER[9] = keptCounts[1]!;
  const ar = keptCounts[2]! + (edns ? 1 : 0);
  BUFFER[10] = ar >>> 8;
  BUFFER[11] = ar;
  return BUFFER.slice(0, w.at);
}

/**
 * A minimal FORMERR reply: the query's id, opcode and RD bit, no question. Null when there is
 * no whole header to answer, or when the packet is itself a response (never answer those).
 * With `optPayloadSize`, an OPT record (version 0, no options) is its one additional record:
 * for a query that held one (FormatError.edns).
 */
export function encodeFormErr(packet: Uint8Array, optPayloadSize?: number): Uint8Array | null {
  if (packet.length < HEADER_LENGTH) return null;
  const flags = u16(packet, 2);
  if (flags & FLAG_QR) return null;
  const out = new Uint8Array(HEADER_LENGTH + (optPayloadSize === undefined ? 0 : OPT_LENGTH));
  out[0] = packet[0]!;
  out[1] = packet[1]!;
  const reply = FLAG_QR | (flags & (0x7800 | FLAG_RD)) | Rcode.FORMERR;
  out[2] = reply >>> 8;
  out[3] = reply;
  if (optPayloadSize !== undefined) {
    out[11] = 1; // ARCOUNT
    // root owner (one zero octet), TYPE 41, CLASS = payload size, TTL 0 (no extended rcode, version 0), RDLENGTH 0
    out[HEADER_LENGTH + 2] = TYPE_OPT;
    out[HEADER_LENGTH + 3] = optPayloadSize >>> 8;
    out[HEADER_LENGTH + 4] = optPayloadSize & 0xff;
  }
  return out;
}

/**
 * A bare SERVFAIL header with the query's id, opcode and RD bit (RA too for a resolver): the last
 * resort when even encoding a reply failed.
 */
export function encodeBareServfail(packet: Uint8Array, recursionAvailable = false): Uint8Array {
  const out = new Uint8Array(HEADER_LENGTH);
  out[0] = packet[0]!;
  out[1] = packet[1]!;
  const flags = FLAG_QR | (u16(packet, 2) & 0x7900) | (recursionAvailable ? 0x80 : 0) | Rcode.SERVFAIL;
  out[2] = flags >>> 8;
  out[3] = flags;
  return out;
}
