/**
 * A map of bounded size that keeps what is used, for tables keyed by what clients send (an
 * address, a prefix): at most `maxSize` entries, and a flood of new keys costs O(1) per key.
 *
 * Two generations: new entries go into the young one; when it holds half of `maxSize` it
 * becomes the old one and the previous old one is dropped whole. A hit in the old generation
 * moves the entry back to the young one, so what was used since the last turn survives the
 * next. Nearly LRU, without reordering on every hit.
 *
 * Why not a Map in insertion order, deleting `keys().next()` when full: deleted entries stay in
 * the table (JSC rehashes only now and then), and the first-key lookup walks past every one of
 * them — under a flood of new keys each insert got slower than the last.
 */
export class BoundedMap<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();
  private readonly generation: number;

  /** At most `maxSize` entries (below 2: none). */
  constructor(maxSize: number) {
    this.generation = Math.floor(maxSize / 2);
  }

  get(key: K): V | undefined {
    const hit = this.young.get(key);
    if (hit !== undefined || this.old.size === 0) return hit;
    const aged = this.old.get(key);
    if (aged !== undefined) {
      this.old.delete(key); // (the old map is never iterated: its holes cost nothing)
      this.set(key, aged);
    }
    return aged;
  }

  set(key: K, value: V): void {
    if (this.generation === 0) return;
    if (this.old.size !== 0) this.old.delete(key); // held once: the young copy is the live one
    if (this.young.size >= this.generation && !this.young.has(key)) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(key, value);
  }

  delete(key: K): void {
    this.young.delete(key);
    this.old.delete(key);
  }

  /** Entries held. */
  get size(): number {
    return this.young.size + this.old.size;
  }

  clear(): void {
    this.young = new Map();
    this.old = new Map();
  }
}
