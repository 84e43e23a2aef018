/**
 * One opened MaxMind DB: metadata parsed and checked by the maxmind Reader, the search tree
 * walked and the records read here.
 *
 * Why walk the tree ourselves: GeoIntel asks up to four databases about the same address, and
 * Reader.get takes a string, so each would parse it again, and its cache is keyed by the data
 * record's offset, so even a cached answer costs a parse and a full walk. Here the address is
 * parsed once (src/net/ip.ts, strictly), each tree is walked on bytes, and the answer is cached
 * per data record (the offset the walk ends on): the embedded database has a few hundred
 * records, so after warm-up nothing is decoded at all. A record not seen yet is read field by
 * field (geo-decode.ts), only what GeoIntel keeps.
 */
import { Reader } from "maxmind";
import type { IpAddress } from "../net/ip.ts";
import { BoundedMap } from "../bounded-map.ts";
import { FieldReader } from "./geo-decode.ts";

/** What a database type must contain (case-insensitive) to be accepted in a slot. */
export const EXPECTED_TYPES = {
  city: /city|country|enterprise/i,
  asn: /asn|isp/i,
  anonymous: /anonymous/i,
} as const;

export interface Metadata {
  databaseType: string;
  /** YYYY-MM-DD of the database's build_epoch. */
  buildDate: string | null;
  ipVersion: 4 | 6;
  nodeCount: number;
}

/** Turns the record at `offset` into what GeoIntel keeps; reads fields with `fields`. */
export type Projection<Kept> = (fields: FieldReader, offset: number) => Kept | null;

/** Data records kept read per database and generation (the embedded database has about 250). */
const RECORD_CACHE = 100_000;
const NOT_FOUND = -1;
/** The metadata follows the last "\xAB\xCD\xEFMaxMind.com", within the file's last 128 KiB. */
const METADATA_MARKER = Buffer.from("abcdef4d61784d696e642e636f6d", "hex");
const METADATA_MAX = 128 * 1024;
const SEPARATOR = 16;

export class OpenedDatabase<Kept> {
  readonly metadata: Metadata;
  private readonly tree: Uint8Array;
  private readonly fields: FieldReader;
  private readonly nodeCount: number;
  private readonly recordSize: 24 | 28 | 32;
  private readonly nodeBytes: number;
  /** Pointer value → file offset: the tree's data pointers count from the node count. */
  private readonly dataBias: number;
  /** Where IPv4 addresses start in an IPv6 tree (::/96), or 0 in an IPv4 one. */
  private readonly ipv4Start: number;
  private readonly records = new BoundedMap<number, Kept | null>(2 * RECORD_CACHE);

  /** Throws when the bytes are not a MaxMind DB v2 this code can walk safely. */
  constructor(
    bytes: Buffer,
    private readonly project: Projection<Kept>,
  ) {
    // Clear words for the two usual mistakes, rather than whatever the decoder trips over.
    if (bytes[0] === 0x1f && bytes[1] === 0x8b) throw new Error("the file is gzip-compressed (a .tar.gz or .mmdb.gz download?): unpack the .mmdb");
    if (bytes.lastIndexOf(METADATA_MARKER) < Math.max(0, bytes.length - METADATA_MAX)) throw new Error("no MaxMind DB metadata (not an .mmdb file?)");
    const m = new Reader<never>(bytes).metadata;
    if (m.binaryFormatMajorVersion !== 2) throw new Error(`not a MaxMind DB v2 (format ${m.binaryFormatMajorVersion})`);
    if (m.ipVersion !== 4 && m.ipVersion !== 6) throw new Error(`bad ip_version ${m.ipVersion}`);
    if (![24, 28, 32].includes(m.recordSize)) throw new Error(`bad record_size ${m.recordSize}`);
    if (!Number.isInteger(m.nodeCount) || m.nodeCount < 1) throw new Error(`bad node_count ${m.nodeCount}`);
    // The tree and the separator must fit in the file, else a walk reads past it.
    if (m.searchTreeSize + SEPARATOR > bytes.length) throw new Error("search tree larger than the file (truncated?)");
    if (typeof m.databaseType !== "string" || m.databaseType === "") throw new Error("no database_type in metadata");
    const epoch = m.buildEpoch.getTime();
    this.metadata = {
      databaseType: m.databaseType,
      buildDate: Number.isFinite(epoch) ? new Date(epoch).toISOString().slice(0, 10) : null,
      ipVersion: m.ipVersion,
      nodeCount: m.nodeCount,
    };
    this.tree = bytes;
    this.fields = new FieldReader(bytes, m.searchTreeSize + SEPARATOR);
    this.nodeCount = m.nodeCount;
    this.recordSize = m.recordSize as 24 | 28 | 32;
    this.nodeBytes = m.nodeByteSize;
    this.dataBias = m.searchTreeSize - m.nodeCount;
    this.ipv4Start = m.ipVersion === 6 ? this.descend(0, 96) : 0;
  }

  /** The record for an address (already unmapped from ::ffff:0:0/96), or null. Never throws. */
  find(ip: IpAddress): Kept | null {
    const pointer = this.walk(ip);
    if (pointer === NOT_FOUND) return null;
    const known = this.records.get(pointer);
    if (known !== undefined) return known;
    let record: Kept | null;
    try {
      record = this.project(this.fields, pointer + this.dataBias);
    } catch {
      record = null; // a damaged data section: no answer for this record, lookups go on
    }
    this.records.set(pointer, record);
    return record;
  }

  /** The data pointer the address's walk ends on, or NOT_FOUND. */
  private walk(ip: IpAddress): number {
    const bytes = ip.bytes;
    let node: number;
    if (ip.family === 4) node = this.ipv4Start;
    else if (this.metadata.ipVersion === 6) node = 0;
    else return NOT_FOUND; // an IPv6 address in an IPv4-only database
    const bits = bytes.length * 8;
    const count = this.nodeCount;
    for (let depth = 0; depth < bits && node < count; depth++) {
      const bit = (bytes[depth >> 3]! >> (7 - (depth & 7))) & 1;
      node = this.child(node, bit);
    }
    return node > count ? node : NOT_FOUND; // == count: "no data"; < count: tree deeper than the address (malformed)
  }

  /** Follows the left (zero) branch `steps` times from `node`. */
  private descend(node: number, steps: number): number {
    for (let i = 0; i < steps && node < this.nodeCount; i++) node = this.child(node, 0);
    return node;
  }

  private child(node: number, bit: number): number {
    const t = this.tree;
    const o = node * this.nodeBytes;
    switch (this.recordSize) {
      case 24:
        return bit === 0 ? (t[o]! << 16) | (t[o + 1]! << 8) | t[o + 2]! : (t[o + 3]! << 16) | (t[o + 4]! << 8) | t[o + 5]!;
      case 28:
        return bit === 0
          ? ((t[o + 3]! & 0xf0) << 20) | (t[o]! << 16) | (t[o + 1]! << 8) | t[o + 2]!
          : ((t[o + 3]! & 0x0f) << 24) | (t[o + 4]! << 16) | (t[o + 5]! << 8) | t[o + 6]!;
      case 32: {
        const p = bit === 0 ? o : o + 4;
        return t[p]! * 0x1000000 + ((t[p + 1]! << 16) | (t[p + 2]! << 8) | t[p + 3]!);
      }
    }
  }
}
