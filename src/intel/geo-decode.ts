/**
 * Reads single fields of MaxMind DB data records (https://maxmind.github.io/MaxMind-DB/,
 * "Data Section"), skipping over the rest without decoding it.
 *
 * Why not the maxmind Reader's decoder: it turns the whole record into objects, and a City
 * record carries names in eight languages for city, subdivisions, country, registered country
 * and continent, plus location and postal code, where GeoIntel keeps three short strings.
 * Decoding all of it on every record-cache miss cost more than everything else in a lookup.
 *
 * Malformed data throws (a RangeError at worst); OpenedDatabase turns that into "no answer".
 */

const POINTER = 1;
const UTF8 = 2;
const DOUBLE = 3;
const UINT16 = 5;
const UINT32 = 6;
const MAP = 7;
const INT32 = 8;
const UINT64 = 9;
const ARRAY = 11;
const BOOLEAN = 14;

/** Pointers may lead to pointers in some writers' output; more hops than this is a loop. */
const MAX_POINTER_HOPS = 8;

/** A path of map keys, encoded once: `fieldPath("city", "names", "en")`. */
export type FieldPath = readonly Uint8Array[];
export const fieldPath = (...keys: string[]): FieldPath => keys.map((k) => new TextEncoder().encode(k));

export class FieldReader {
  // The last header read: its type, its size (for a pointer: its target) and where its payload starts.
  private type = 0;
  private size = 0;
  private at = 0;

  /** `dataStart`: the file offset of the data section, which pointers are relative to. */
  constructor(
    private readonly db: Buffer,
    private readonly dataStart: number,
  ) {}

  /** The string at `path` in the record at `offset`, or null (absent, or not a string). */
  string(offset: number, path: FieldPath): string | null {
    const o = this.find(offset, path);
    if (o < 0) return null;
    this.follow(o);
    return this.type === UTF8 ? this.db.toString("utf8", this.at, this.at + this.size) : null;
  }

  /** The unsigned or signed integer at `path`, or null. */
  integer(offset: number, path: FieldPath): number | null {
    const o = this.find(offset, path);
    if (o < 0) return null;
    this.follow(o);
    if (this.type !== UINT16 && this.type !== UINT32 && this.type !== UINT64 && this.type !== INT32) return null;
    if (this.size > 6) return null; // beyond 2^48: not an ASN or anything GeoIntel keeps
    let value = 0;
    for (let i = 0; i < this.size; i++) value = value * 256 + this.db[this.at + i]!;
    if (this.type === INT32 && this.size === 4 && value >= 0x80000000) value -= 0x100000000;
    return value;
  }

  /** The boolean at `path`, or null. */
  boolean(offset: number, path: FieldPath): boolean | null {
    const o = this.find(offset, path);
    if (o < 0) return null;
    this.follow(o);
    return this.type === BOOLEAN ? this.size !== 0 : null;
  }

  /** The offset of the value at `path`, or -1. */
  private find(offset: number, path: FieldPath): number {
    let o = offset;
    for (const key of path) {
      this.follow(o);
      if (this.type !== MAP) return -1;
      let p = this.at;
      let found = -1;
      for (let pairs = this.size; pairs > 0; pairs--) {
        const matches = this.keyIs(p, key);
        const value = this.pastValue(p);
        if (matches) {
          found = value;
          break;
        }
        p = this.pastValue(value);
      }
      if (found < 0) return -1;
      o = found;
    }
    return o;
  }

  private keyIs(offset: number, key: Uint8Array): boolean {
    this.follow(offset);
    if (this.type !== UTF8 || this.size !== key.length) return false;
    for (let i = 0; i < key.length; i++) if (this.db[this.at + i] !== key[i]) return false;
    return true;
  }

  /** Reads the header at `offset`, through pointers. */
  private follow(offset: number): void {
    this.header(offset);
    for (let hops = 0; this.type === POINTER; hops++) {
      if (hops === MAX_POINTER_HOPS) throw new RangeError("pointer loop in the data section");
      this.header(this.dataStart + this.size);
    }
  }

  /** The offset just past the value at `offset` (a pointer is not followed: only its own octets are passed). */
  private pastValue(offset: number): number {
    this.header(offset);
    const { type, size, at } = this;
    switch (type) {
      case POINTER:
      case BOOLEAN: // the value is in the size bits
        return at;
      case MAP: {
        let p = at;
        for (let i = 0; i < size * 2; i++) p = this.pastValue(p);
        return p;
      }
      case ARRAY: {
        let p = at;
        for (let i = 0; i < size; i++) p = this.pastValue(p);
        return p;
      }
      case DOUBLE:
        return at + 8;
      default:
        return at + size;
    }
  }

  /** Decodes a control byte (and what follows it) into type, size and payload offset. */
  private header(offset: number): void {
    const db = this.db;
    if (!(offset >= this.dataStart && offset < db.length)) throw new RangeError(`data offset ${offset} outside the data section`);
    let o = offset;
    const control = db[o++]!;
    let type = control >> 5;
    if (type === POINTER) {
      // 001SSVVV: SS more bytes follow; VVV are the top bits (except for SS = 3).
      const ss = (control >> 3) & 3;
      const v = control & 7;
      let target: number;
      if (ss === 0) target = (v << 8) | db[o]!;
      else if (ss === 1) target = ((v << 16) | (db[o]! << 8) | db[o + 1]!) + 2048;
      else if (ss === 2) target = ((v << 24) | (db[o]! << 16) | (db[o + 1]! << 8) | db[o + 2]!) + 526336;
      else target = db[o]! * 0x1000000 + ((db[o + 1]! << 16) | (db[o + 2]! << 8) | db[o + 3]!);
      this.type = POINTER;
      this.size = target;
      this.at = o + ss + 1;
      return;
    }
    if (type === 0) type = 7 + db[o++]!; // extended type in the next byte
    let size = control & 31;
    if (size === 29) size = 29 + db[o++]!;
    else if (size === 30) {
      size = 285 + ((db[o]! << 8) | db[o + 1]!);
      o += 2;
    } else if (size === 31) {
      size = 65821 + ((db[o]! << 16) | (db[o + 1]! << 8) | db[o + 2]!);
      o += 3;
    }
    this.type = type;
    this.size = size;
    this.at = o;
  }
}
