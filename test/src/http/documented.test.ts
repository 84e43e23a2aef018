/**
 * What the API answers that its docs must name: every domain error's status and code in
 * docs/api.md's status table, every route open while sealed in docs/keys.md (found in review:
 * 410, 412 and /metrics were left out).
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SEALED_ROUTES } from "../../../src/http/edge.ts";
import { DOMAIN_STATUS } from "../../../src/http/problem.ts";

const docs = join(import.meta.dir, "../../../docs");
const page = (name: string) => readFileSync(join(docs, name), "utf8");

test("docs/api.md's status table has a row for every domain error: its status, with its code", () => {
  const rows = page("api.md")
    .split("\n")
    .flatMap((line) => {
      const row = /^\| (\d{3}) \| ([^|]*) \|/.exec(line);
      return row ? [{ status: Number(row[1]), codes: [...row[2]!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!) }] : [];
    });
  const missing = Object.entries(DOMAIN_STATUS).filter(([code, status]) => !rows.some((row) => row.status === status && row.codes.includes(code)));
  expect(missing).toEqual([]);
});

test("docs/keys.md names every route that answers while sealed (the docs page's own assets are /docs)", () => {
  const section = page("keys.md").split("## Sealed and unsealed")[1]!.split("\n\n")[1]!;
  const unnamed = [...SEALED_ROUTES].filter((route) => !route.startsWith("/docs/") && !section.includes(`\`${route}\``));
  expect(unnamed).toEqual([]);
});
