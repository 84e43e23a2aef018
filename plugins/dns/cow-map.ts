/**
 * A map that versions cheaply: `derive()` gives a copy to change while this one stays as it is,
 * at the cost of what changed since the two last shared a flat map, not of the map's size. A
 * signed zone of 50,000 names is kept in a few such maps (its nodes, its signatures), and a
 * change to one name edits a derived version while answers keep reading the one served, which
 * never sees a half-applied change: `new Map(big)` for every change cost milliseconds per map.
 *
 * A version is a flat base, shared and never written once shared, and its own patch (the keys
 * set or deleted since). The patch is copied by derive(); when it grows past a share of the base
 * the derived version is flattened into a new base (one full copy every so many changes: the
 * cost spread over them). A lookup costs one more Map lookup while the patch is not empty.
 */
const GONE: unique symbol = Symbol("gone");

/** Past this share of the base, a derived version is flattened (and never below FLATTEN_MIN entries of patch). */
const FLATTEN_SHARE = 1 / 32;
const FLATTEN_MIN = 256;

export class CowMap<K, V> {
  private constructor(
    private readonly base: Map<K, V>,
    private readonly patch: Map<K, V | typeof GONE>,
    private count: number,
  ) {}

  /** A version whose base is `map`, which its caller no longer writes. */
  static of<K, V>(map: Map<K, V>): CowMap<K, V> {
    return new CowMap(map, new Map(), map.size);
  }

  /** A version to change; this one stays as it is. */
  derive(): CowMap<K, V> {
    if (this.patch.size > Math.max(FLATTEN_MIN, this.base.size * FLATTEN_SHARE)) return this.flattened();
    return new CowMap(this.base, new Map(this.patch), this.count);
  }

  /** This version as it is, compacted when its patch has grown past the share derive() allows: what a version edited whole (a zone signed whole) is kept as, so that its first change does not pay for it. */
  compacted(): CowMap<K, V> {
    return this.patch.size > Math.max(FLATTEN_MIN, this.base.size * FLATTEN_SHARE) ? this.flattened() : this;
  }

  private flattened(): CowMap<K, V> {
    const flat = new Map(this.base); // a native copy: several times faster than one made entry by entry
    for (const [key, own] of this.patch) {
      if (own === GONE) flat.delete(key);
      else flat.set(key, own);
    }
    return CowMap.of(flat);
  }

  get size(): number {
    return this.count;
  }

  get(key: K): V | undefined {
    if (this.patch.size > 0) {
      const own = this.patch.get(key);
      if (own !== undefined) return own === GONE ? undefined : own;
    }
    return this.base.get(key);
  }

  has(key: K): boolean {
    return this.get(key) !== undefined;
  }

  /** Sets `key` in this version only (never in one another version shares: call it on a derived one). */
  set(key: K, value: V): this {
    if (!this.has(key)) this.count++;
    this.patch.set(key, value);
    return this;
  }

  delete(key: K): boolean {
    if (!this.has(key)) return false;
    this.count--;
    if (this.base.has(key)) this.patch.set(key, GONE);
    else this.patch.delete(key);
    return true;
  }

  *entries(): Generator<[K, V]> {
    for (const [key, value] of this.base) {
      const own = this.patch.size > 0 ? this.patch.get(key) : undefined;
      if (own === undefined) yield [key, value];
      else if (own !== GONE) yield [key, own];
    }
    for (const [key, own] of this.patch) if (own !== GONE && !this.base.has(key)) yield [key, own];
  }

  *values(): Generator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  *keys(): Generator<K> {
    for (const [key] of this.entries()) yield key;
  }

  [Symbol.iterator](): Generator<[K, V]> {
    return this.entries();
  }
}
