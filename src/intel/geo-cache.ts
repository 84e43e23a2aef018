/**
 * A bounded cache that keeps what is used: entries go into the young generation; when it is
 * full it becomes the old one and the previous old one is dropped; a hit in the old generation
 * moves the entry back to the young one. Nearly LRU, at the cost of one Map lookup per hit
 * (a true LRU would reorder on every hit).
 */
export class TwoGenerationCache<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();

  /** `capacity` per generation; 0 turns the cache off. */
  constructor(private readonly capacity: number) {}

  get(key: K): V | undefined {
    const hit = this.young.get(key);
    if (hit !== undefined || this.old.size === 0) return hit;
    const aged = this.old.get(key);
    if (aged !== undefined) this.set(key, aged);
    return aged;
  }

  set(key: K, value: V): void {
    if (this.capacity === 0) return;
    if (this.young.size >= this.capacity) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(key, value);
  }

  clear(): void {
    this.young = new Map();
    this.old = new Map();
  }
}
