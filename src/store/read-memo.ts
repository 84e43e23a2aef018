/**
 * Remembers the answers of database reads for as long as the database has not changed, and
 * forgets all of them the moment it may have: the guard's facts (who a token's owner is,
 * their role, the organization's rules) are read on every request and change rarely.
 *
 * "Changed" is the store's change stamp, which moves with every row this process's
 * connection changes, whoever in the process makes the change and however (a write batch, a
 * direct write, a trigger): nothing has to remember to invalidate, so a revocation or a role
 * change is seen by the very next request. Reading the stamp takes no lock, where the
 * cheapest read of a table takes SQLite's WAL read lock (about 3 µs in a loop, several
 * times that per request on a busy socket; docs/BENCHMARKS.md).
 *
 * The audit log's events are left out of the stamp (Store.leaveOutOfChangeStamp): an audited
 * read appends one, and a stamp they moved made every request after a batch of such reads
 * read every fact again. So nothing read from `audit_events` may be remembered here.
 *
 * Another process writing the same database file (nothing of Citadel's does while it
 * serves; an operator's sqlite3 could) does not move the stamp, so nothing is remembered
 * longer than `maxAgeMs`. While a transaction that has changed rows is open, the stamp is
 * null and reads go to the database without being remembered: they may yet be rolled back.
 *
 * Answers are kept by kind of fact, then by key: a key often holds a caller's text (an id from
 * a URL), which must never be able to name a fact of another kind.
 *
 * A memo of large answers (stored ciphertexts) is given a byte budget: `bytesOf` weighs each
 * answer, and the memo never holds more than `maxBytes` of them. An answer heavier than
 * `maxBytesEach` is not remembered at all (read each time), so that one large row cannot
 * make the memo start over on every read of a smaller one. Keys are bounded too: a key longer
 * than MAX_KEY_LENGTH (a caller's text, a secret's name from a URL) is read each time, never
 * remembered, so that `maxEntries` bounds the memory the keys take (found in review).
 */
import type { Store } from "./store.ts";

/** The longest key remembered, in UTF-16 units: no name or id Citadel stores is longer. */
export const MAX_KEY_LENGTH = 1024;

export interface ReadMemoOptions {
  /** The longest anything is remembered, for writers outside this process. */
  maxAgeMs?: number;
  /** Beyond this many answers the memo starts over (keys come from tokens and routes). */
  maxEntries?: number;
  /** The most the remembered answers may weigh together, as `bytesOf` weighs them. */
  maxBytes?: number;
  /** An answer heavier than this is never remembered (by default: `maxBytes`). */
  maxBytesEach?: number;
  /** An answer's weight in bytes (by default 0: only `maxEntries` bounds the memo). */
  bytesOf?: (answer: unknown) => number;
  now?: () => number;
}

export class ReadMemo {
  /** By kind of fact, then by key (see above). */
  private readonly answers = new Map<string, Map<string, unknown>>();
  private size = 0;
  private weight = 0;
  private stamp: number | null = null;
  private since = 0;
  private readonly maxAgeMs: number;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly maxBytesEach: number;
  private readonly bytesOf: (answer: unknown) => number;
  private readonly now: () => number;

  constructor(
    private readonly store: Pick<Store, "changeStamp">,
    { maxAgeMs = 1000, maxEntries = 10_000, maxBytes = Infinity, maxBytesEach = maxBytes, bytesOf = () => 0, now = () => performance.now() }: ReadMemoOptions = {},
  ) {
    this.maxAgeMs = maxAgeMs;
    this.maxEntries = maxEntries;
    this.maxBytes = maxBytes;
    this.maxBytesEach = Math.min(maxBytesEach, maxBytes);
    this.bytesOf = bytesOf;
    this.now = now;
  }

  /** What the remembered answers weigh together, as `bytesOf` weighs them. */
  get bytes(): number {
    return this.weight;
  }

  /**
   * `read()`'s answer for `key` among the facts of `kind` (a constant of the caller's code):
   * remembered while the database is unchanged, else read now.
   */
  get<T>(kind: string, key: string, read: () => T): T {
    const stamp = this.store.changeStamp();
    if (stamp === null || key.length > MAX_KEY_LENGTH) return read();
    const now = this.now();
    if (stamp !== this.stamp || now - this.since >= this.maxAgeMs) {
      this.forget();
      this.stamp = stamp;
      this.since = now;
    }
    const known = this.answers.get(kind);
    if (known?.has(key)) return known.get(key) as T;
    const answer = read();
    const bytes = this.bytesOf(answer);
    if (bytes > this.maxBytesEach) return answer;
    if (this.size >= this.maxEntries || this.weight + bytes > this.maxBytes) this.forget();
    let ofKind = this.answers.get(kind);
    if (!ofKind) this.answers.set(kind, (ofKind = new Map()));
    ofKind.set(key, answer);
    this.size++;
    this.weight += bytes;
    return answer;
  }

  private forget(): void {
    this.answers.clear();
    this.size = 0;
    this.weight = 0;
  }
}
