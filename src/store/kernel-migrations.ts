/** The kernel's own tables. Plugins keep theirs in plugins/<name>/migrations. */
import type { Migration } from "./migrate.ts";

export const kernelMigrations: readonly Migration[] = [
  {
    id: "0001_instance",
    // One row: this installation's identity, made by the first start.
    up: `CREATE TABLE instance (
      singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
      id         TEXT NOT NULL,
      created_at INTEGER NOT NULL
    ) STRICT;`,
  },
];
