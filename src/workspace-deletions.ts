/**
 * What a plugin holds for a workspace or an organization goes with it: iam deletes both, other
 * plugins keep data under their ids (the secrets service's values, keys and webhooks under a
 * workspace; DNS zones and mesh networks under an organization), and neither imports the
 * other. A plugin registers here from its start(); iam calls every handler in the transaction
 * that deletes the workspace or organization, so what it held is gone exactly when the owner
 * is (a handler that throws undoes the deletion). Like the subject registry, a meeting point
 * with no logic.
 */
import type { Database } from "bun:sqlite";
import type { Store } from "./store/store.ts";

export interface DeletionHandler {
  /** The plugin's name, in the deletion's audit event. */
  name: string;
  /** Deletes what the plugin holds for the workspace (or organization) and destroys its keys. A short summary, or null when it held nothing. */
  deleted(tx: Database, id: string, now: number): string | null;
  /** After the deletion committed: a plugin that serves from memory (DNS zones, mesh names) reloads. */
  committed?(id: string): void;
}

export type WorkspaceDeletionHandler = DeletionHandler;
export type OrganizationDeletionHandler = DeletionHandler;

export class Deletions {
  private readonly handlers = new Map<string, DeletionHandler>();

  /** Registers `handler` (replacing one of the same name); returns the function that removes it. */
  register(handler: DeletionHandler): () => void {
    this.handlers.set(handler.name, handler);
    return () => {
      if (this.handlers.get(handler.name) === handler) this.handlers.delete(handler.name);
    };
  }

  /** Runs every handler inside `tx`; what each did, as "name: summary". */
  run(tx: Database, id: string, now: number): string[] {
    const done: string[] = [];
    for (const handler of this.sorted()) {
      const summary = handler.deleted(tx, id, now);
      if (summary) done.push(`${handler.name}: ${summary}`);
    }
    return done;
  }

  /** Tells every handler the deletion of `id` committed. */
  committed(id: string): void {
    for (const handler of this.sorted()) handler.committed?.(id);
  }

  private sorted(): DeletionHandler[] {
    return [...this.handlers.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}

const registries = new WeakMap<Store, { workspace: Deletions; organization: Deletions }>();

function registriesOf(store: Store) {
  let found = registries.get(store);
  if (!found) registries.set(store, (found = { workspace: new Deletions(), organization: new Deletions() }));
  return found;
}

/** The workspace-deletion registry of the Citadel that owns `store`. */
export function workspaceDeletionsOf(store: Store): Deletions {
  return registriesOf(store).workspace;
}

/** The organization-deletion registry of the Citadel that owns `store` (what the organization holds beyond its workspaces). */
export function organizationDeletionsOf(store: Store): Deletions {
  return registriesOf(store).organization;
}
