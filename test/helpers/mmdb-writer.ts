/**
 * Writes MaxMind DB v2 files (https://maxmind.github.io/MaxMind-DB/) from a list of networks,
 * so the geo tests run on databases whose every answer they know, with no download.
 *
 * Layout: the binary search tree (one node per prefix bit, two records per node), 16 zero
 * bytes, the data section (each distinct record once), then "\xAB\xCD\xEFMaxMind.com" and the
 * metadata map. In an IPv6 tree IPv4 networks live at ::a.b.c.d/(96 + prefix), as MaxMind
 * stores them (readers start IPv4 walks 96 zero bits down). No ::ffff:0:0/96 aliases: readers
 * do not need them.
 */
import { parseCidr } from "../../src/net/ip.ts";

/** A value with an explicit MaxMind type; plain numbers become uint32, int32 or double. */
export class Typed {
  constructor(
    readonly type: "uint16" | "uint32" | "int32" | "uint64" | "double",
    readonly value: number | bigint,
  ) {}
}
export const uint16 = (n: number) => new Typed("uint16", n);
export const uint64 = (n: number | bigint) => new Typed("uint64", BigInt(n));
export const double = (n: number) => new Typed("double", n);

export type MmdbValue = string | number | boolean | bigint | Typed | MmdbValue[] | { [key: string]: MmdbValue };

export interface MmdbNetwork {
  /** CIDR (host bits zero), IPv4 or IPv6. A more specific network wins inside a wider one. */
  network: string;
  data: { [key: string]: MmdbValue };
}

export interface MmdbOptions {
  databaseType: string;
  networks: MmdbNetwork[];
  /** Default 6 (IPv4 inside it at ::/96). */
  ipVersion?: 4 | 6;
  /** Default 28. */
  recordSize?: 24 | 28 | 32;
  /** Repeated strings, maps and arrays as pointers, as MaxMind writes them. Default true. */
  pointers?: boolean;
  /** Seconds since the epoch. Default 2026-01-02T00:00:00Z. */
  buildEpoch?: number;
  description?: { [language: string]: string };
  languages?: string[];
}

export const METADATA_MARKER = Buffer.from("abcdef4d61784d696e642e636f6d", "hex");

export function writeMmdb(options: MmdbOptions): Buffer {
  const ipVersion = options.ipVersion ?? 6;
  const recordSize = options.recordSize ?? 28;
  const { root, records } = buildTree(options.networks, ipVersion);
  const { section, offsets } = dataSection(records, options.pointers ?? true);
  const tree = serialiseTree(root, offsets, recordSize);
  const metadata = encode({
    node_count: tree.nodeCount,
    record_size: uint16(recordSize),
    ip_version: uint16(ipVersion),
    database_type: options.databaseType,
    languages: options.languages ?? ["en"],
    binary_format_major_version: uint16(2),
    binary_format_minor_version: uint16(0),
    build_epoch: uint64(options.buildEpoch ?? Date.UTC(2026, 0, 2) / 1000),
    description: options.description ?? { en: `${options.databaseType} test database` },
  });
  return Buffer.concat([tree.bytes, new Uint8Array(16), section, METADATA_MARKER, metadata]);
}

// The tree -----------------------------------------------------------------------------------

class TreeNode {
  children: [Child, Child] = [null, null];
}
/** A record: null (no data), another node, or the index of a data record. */
type Child = TreeNode | number | null;

function buildTree(networks: MmdbNetwork[], ipVersion: 4 | 6): { root: TreeNode; records: MmdbNetwork["data"][] } {
  const records: MmdbNetwork["data"][] = [];
  const placed = networks.map((n, index) => ({ ...toTreeBits(n.network, ipVersion), data: n.data, index }));
  // Wider networks first, so that a more specific one, inserted later, carves into them.
  placed.sort((a, b) => a.prefix - b.prefix || a.index - b.index);
  const root = new TreeNode();
  for (const { bytes, prefix, data } of placed) {
    const record = records.push(data) - 1;
    if (prefix === 0) {
      root.children = [record, record];
      continue;
    }
    let node = root;
    for (let depth = 0; depth < prefix; depth++) {
      const bit = (bytes[depth >> 3]! >> (7 - (depth & 7))) & 1;
      if (depth === prefix - 1) {
        node.children[bit] = record;
        break;
      }
      let child = node.children[bit]!;
      if (!(child instanceof TreeNode)) {
        // Empty, or inside a wider network: that network's data continues on both sides.
        const split = new TreeNode();
        split.children = [child, child];
        node.children[bit] = split;
        child = split;
      }
      node = child;
    }
  }
  return { root, records };
}

function toTreeBits(network: string, ipVersion: 4 | 6): { bytes: Uint8Array; prefix: number } {
  const cidr = parseCidr(network);
  if (!cidr) throw new Error(`not a CIDR: ${network}`);
  if (cidr.family === 6 && ipVersion === 4) throw new Error(`IPv6 network ${network} in an IPv4 database`);
  if (cidr.family === 4 && ipVersion === 6) {
    const bytes = new Uint8Array(16);
    bytes.set(cidr.bytes, 12);
    return { bytes, prefix: cidr.prefix + 96 };
  }
  return { bytes: cidr.bytes, prefix: cidr.prefix };
}

function serialiseTree(root: TreeNode, dataOffsets: number[], recordSize: 24 | 28 | 32): { bytes: Uint8Array; nodeCount: number } {
  // Breadth first: the root is node 0, as readers expect.
  const nodes: TreeNode[] = [root];
  const number = new Map<TreeNode, number>([[root, 0]]);
  for (let i = 0; i < nodes.length; i++) {
    for (const child of nodes[i]!.children) {
      if (child instanceof TreeNode && !number.has(child)) {
        number.set(child, nodes.length);
        nodes.push(child);
      }
    }
  }
  const nodeCount = nodes.length;
  const value = (child: Child): number => {
    if (child === null) return nodeCount; // "no data"
    if (child instanceof TreeNode) return number.get(child)!;
    return nodeCount + 16 + dataOffsets[child]!; // past the separator, into the data section
  };
  const nodeBytes = recordSize / 4;
  const out = new Uint8Array(nodeCount * nodeBytes);
  nodes.forEach((node, i) => writeNode(out, i * nodeBytes, value(node.children[0]), value(node.children[1]), recordSize));
  return { bytes: out, nodeCount };
}

function writeNode(out: Uint8Array, o: number, left: number, right: number, recordSize: 24 | 28 | 32): void {
  if (right >= 2 ** recordSize || left >= 2 ** recordSize) throw new Error(`record value too large for ${recordSize}-bit records`);
  const put24 = (at: number, v: number) => {
    out[at] = (v >> 16) & 0xff;
    out[at + 1] = (v >> 8) & 0xff;
    out[at + 2] = v & 0xff;
  };
  if (recordSize === 24) {
    put24(o, left);
    put24(o + 3, right);
  } else if (recordSize === 28) {
    // The middle byte holds the top four bits of each record: left's high nibble first.
    put24(o, left & 0xffffff);
    out[o + 3] = (((left >>> 24) & 0x0f) << 4) | ((right >>> 24) & 0x0f);
    put24(o + 4, right & 0xffffff);
  } else {
    new DataView(out.buffer, out.byteOffset).setUint32(o, left);
    new DataView(out.buffer, out.byteOffset).setUint32(o + 4, right);
  }
}

// The data section ---------------------------------------------------------------------------

/**
 * Each distinct record once. With `pointers`, as MaxMind's own writer does, a string, map or
 * array written before (anywhere, even inside another record) becomes a pointer to it.
 */
function dataSection(records: MmdbNetwork["data"][], pointers: boolean): { section: Buffer; offsets: number[] } {
  const parts: Buffer[] = [];
  const written = new Map<string, number>();
  let size = 0;
  const offsets = records.map((record) => {
    const key = identity(record);
    const known = written.get(key);
    if (known !== undefined) return known;
    const bytes = encode(record, pointers ? { written, at: size } : undefined);
    written.set(key, size);
    parts.push(bytes);
    size += bytes.length;
    return size - bytes.length;
  });
  return { section: Buffer.concat(parts), offsets };
}

/** Equal values, with their types, give equal strings. */
function identity(value: MmdbValue): string {
  return JSON.stringify(value, (_, v: unknown) => (typeof v === "bigint" ? `${v}n` : v instanceof Typed ? { [`$${v.type}`]: String(v.value) } : v));
}

/** Where the value being encoded will sit in the data section, and what is already there. */
interface Placement {
  written: Map<string, number>;
  at: number;
}

const TYPE = { utf8: 2, double: 3, uint16: 5, uint32: 6, map: 7, int32: 8, uint64: 9, array: 11, boolean: 14 } as const;

/** One value in the MaxMind data-type encoding; with `placement`, repeats become pointers. */
export function encode(value: MmdbValue, placement?: Placement): Buffer {
  if (!placement || !(typeof value === "string" ? value.length >= 4 : typeof value === "object" && !(value instanceof Typed))) return encodeHere(value, placement);
  const key = identity(value);
  const known = placement.written.get(key);
  if (known !== undefined) return pointer(known);
  const bytes = encodeHere(value, placement);
  placement.written.set(key, placement.at);
  return bytes;
}

/** Encodes `value` itself (its children may still be pointers). */
function encodeHere(value: MmdbValue, placement?: Placement): Buffer {
  if (typeof value === "string") {
    const bytes = Buffer.from(value, "utf8");
    return Buffer.concat([control(TYPE.utf8, bytes.length), bytes]);
  }
  if (typeof value === "boolean") return control(TYPE.boolean, value ? 1 : 0); // the size is the value
  if (typeof value === "bigint") return encode(uint64(value));
  if (typeof value === "number") {
    if (Number.isInteger(value) && value >= 0 && value <= 0xffffffff) return encode(new Typed("uint32", value));
    if (Number.isInteger(value) && value >= -0x80000000 && value < 0) return encode(new Typed("int32", value));
    return encode(double(value));
  }
  if (value instanceof Typed) return encodeTyped(value);
  const items = Array.isArray(value) ? value : Object.entries(value).flat();
  const head = control(Array.isArray(value) ? TYPE.array : TYPE.map, Array.isArray(value) ? value.length : items.length / 2);
  // Each child is encoded where it will sit, so that later repeats can point at it.
  const parts = [head];
  let at = (placement?.at ?? 0) + head.length;
  for (const item of items) {
    const bytes = encode(item, placement && { written: placement.written, at });
    parts.push(bytes);
    at += bytes.length;
  }
  return Buffer.concat(parts);
}

/** A pointer to a data-section offset, in the smallest of its four sizes. */
function pointer(offset: number): Buffer {
  if (offset < 2048) return Buffer.from([0x20 | (offset >> 8), offset & 0xff]);
  if (offset < 2048 + 2 ** 19) {
    const v = offset - 2048;
    return Buffer.from([0x28 | (v >> 16), (v >> 8) & 0xff, v & 0xff]);
  }
  if (offset < 526336 + 2 ** 27) {
    const v = offset - 526336;
    return Buffer.from([0x30 | (v >> 24), (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff]);
  }
  const bytes = Buffer.alloc(5);
  bytes[0] = 0x38;
  bytes.writeUInt32BE(offset, 1);
  return bytes;
}

function encodeTyped({ type, value }: Typed): Buffer {
  if (type === "double") {
    const bytes = Buffer.alloc(8);
    bytes.writeDoubleBE(Number(value));
    return Buffer.concat([control(TYPE.double, 8), bytes]);
  }
  if (type === "int32") {
    const bytes = Buffer.alloc(4);
    bytes.writeInt32BE(Number(value));
    return Buffer.concat([control(TYPE.int32, 4), bytes]);
  }
  // Unsigned integers: big-endian, without leading zero bytes (zero is no bytes at all).
  let n = BigInt(value);
  const max = { uint16: 2, uint32: 4, uint64: 8 }[type];
  if (n < 0n || n >= 1n << BigInt(8 * max)) throw new Error(`${value} does not fit a ${type}`);
  const bytes: number[] = [];
  for (; n > 0n; n >>= 8n) bytes.unshift(Number(n & 0xffn));
  return Buffer.concat([control(TYPE[type], bytes.length), Buffer.from(bytes)]);
}

/** The control byte(s): type in the top three bits (0 then type − 7 for extended types), then the size. */
function control(type: number, size: number): Buffer {
  const typeBits = type <= 7 ? type << 5 : 0;
  const extended = type <= 7 ? [] : [type - 7];
  if (size < 29) return Buffer.from([typeBits | size, ...extended]);
  if (size < 29 + 256) return Buffer.from([typeBits | 29, ...extended, size - 29]);
  if (size < 285 + 65536) return Buffer.from([typeBits | 30, ...extended, (size - 285) >> 8, (size - 285) & 0xff]);
  const rest = size - 65821;
  return Buffer.from([typeBits | 31, ...extended, (rest >> 16) & 0xff, (rest >> 8) & 0xff, rest & 0xff]);
}
