/**
 * What a plugin holds for a workspace goes with it: iam deletes workspaces, other plugins keep
 * data under their ids (the secrets service's values, keys and webhooks), and neither imports the
 * other. A plugin registers here from its start(); iam calls every handler in the transaction
 * that deletes the workspace, so what it held is gone exactly when the workspace is (a handler
 * that throws undoes the deletion). Like the subject registry, a meeting point with no logic.
 */
import type { Database } from "bun:sqlite";
import type { Store } from "./store/store.ts";

export interface WorkspaceDeletionHandler {
  /** The plugin's name, in the deletion's audit event. */
  name: string;
  /** Deletes what the plugin holds for the workspace and destroys its keys. A short summary, or null when it held nothing. */
  deleted(tx: Database, workspaceId: string, now: number): string | null;
}

export class WorkspaceDeletions {
  private readonly handlers = new Map<string, WorkspaceDeletionHandler>();

  /** Registers `handler` (replacing one of the same name); returns the function that removes it. */
  register(handler: WorkspaceDeletionHandler): () => void {
    this.handlers.set(handler.name, handler);
    return () => {
      if (this.handlers.get(handler.name) === handler) this.handlers.delete(handler.name);
    };
  }

  /** Runs every handler inside `tx`; what each did, as "name: summary". */
  run(tx: Database, workspaceId: string, now: number): string[] {
    const done: string[] = [];
    for (const handler of [...this.handlers.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      const summary = handler.deleted(tx, workspaceId, now);
      if (summary) done.push(`${handler.name}: ${summary}`);
    }
    return done;
  }
}

const registries = new WeakMap<Store, WorkspaceDeletions>();

/** The registry of the Citadel that owns `store`. */
export function workspaceDeletionsOf(store: Store): WorkspaceDeletions {
  let registry = registries.get(store);
  if (!registry) registries.set(store, (registry = new WorkspaceDeletions()));
  return registry;
}
