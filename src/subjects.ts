/**
 * Data subjects (GDPR articles 15, 17 and 20): where each plugin says what it holds about a
 * user or an organization and how that is erased, without the subject plugin importing any
 * plugin. Like the record providers, this is a meeting point and holds no logic of its own.
 *
 * A contributor registers per store (one Citadel, one registry), from its plugin's start().
 */
import type { Database } from "bun:sqlite";
import type { Store } from "./store/store.ts";

export type SubjectKind = "user" | "organization";

export interface Subject {
  kind: SubjectKind;
  id: string;
}

export interface SubjectContributor {
  /** The plugin's name: the key of its part of an export. */
  name: string;
  /** What the plugin holds about the subject, as JSON; null when nothing. Secret values only when asked. */
  export(subject: Subject, options: { secretValues: boolean }): unknown;
  /** The first step of erasure (reversible until the grace period ends): the subject stops working. */
  softDelete?(tx: Database, subject: Subject, now: number): void;
  /** The last step: deletes or anonymizes what the plugin holds and destroys its keys. A short summary, or null. */
  erase?(tx: Database, subject: Subject, now: number): string | null;
  /** After a soft delete or an erasure committed: a plugin that serves from memory (DNS) reloads. */
  committed?(subject: Subject): void;
}

export class SubjectRegistry {
  private readonly contributors = new Map<string, SubjectContributor>();

  register(contributor: SubjectContributor): () => void {
    this.contributors.set(contributor.name, contributor);
    return () => {
      if (this.contributors.get(contributor.name) === contributor) this.contributors.delete(contributor.name);
    };
  }

  list(): SubjectContributor[] {
    return [...this.contributors.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}

const registries = new WeakMap<Store, SubjectRegistry>();

/** The registry of the Citadel that owns `store`. */
export function subjectsOf(store: Store): SubjectRegistry {
  let registry = registries.get(store);
  if (!registry) registries.set(store, (registry = new SubjectRegistry()));
  return registry;
}
