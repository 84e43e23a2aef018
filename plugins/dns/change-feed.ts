/**
 * Writes that tell listeners once they are committed: the dns plugin's services (zones,
 * secondaries) write through one, and the listener reloads what it serves on each change.
 */
import type { Database } from "bun:sqlite";
import type { Store } from "../../src/store/store.ts";

export class ChangeFeed {
  private readonly listeners = new Set<() => void>();

  constructor(private readonly store: Store) {}

  /** Calls `listener` after every committed change; returns the function that stops it. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Runs `fn` in a store transaction, then tells the listeners. */
  async write<T>(fn: (tx: Database) => T): Promise<T> {
    const result = await this.store.write(fn);
    this.tell();
    return result;
  }

  /** Tells the listeners of a change another writer committed. */
  tell(): void {
    for (const listener of this.listeners) listener();
  }
}
