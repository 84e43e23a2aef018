/**
 * What the API answers that its docs must name: every domain error's status and code in
 * docs/api.md's status table, every route open while sealed in docs/keys.md, the routes of a
 * feature where its page lists them (found in review: 410, 412, /metrics and a dozen routes
 * were left out).
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SEALED_ROUTES } from "../../../src/http/edge.ts";
import { DOMAIN_STATUS } from "../../../src/http/problem.ts";
import { testCitadel } from "../../helpers/citadel.ts";

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

/**
 * The route paths a page names in `code`, parameters as `:`: whole (`/v1/dns/tsig-keys`), or a
 * tail after `...` (`.../zones/:zone/records`), alternatives spelt `.../:name/restore \| rollback`.
 */
function pathsNamed(markdown: string): string[] {
  const text = markdown.replace(/```[\s\S]*?```/g, "");
  const general = (path: string) => path.replace(/[.,;]+$/, "").replace(/(?::|\{|<)\w+[}>]?/g, ":");
  const paths: string[] = [];
  for (const [, span] of text.matchAll(/`([^`\n]+)`/g)) {
    const tokens = span!.match(/(?:\.\.\.|\/)[\w/:.{}<>-]*/g) ?? [];
    paths.push(...tokens.map(general));
    const alternatives = /(\S+\/)[\w-]+((?: \\\| [\w-]+)+)$/.exec(span!.trim());
    if (alternatives) for (const [, word] of alternatives[2]!.matchAll(/\\\| ([\w-]+)/g)) paths.push(general(alternatives[1]! + word));
  }
  return paths;
}

const isNamedIn = (paths: string[], route: string) => {
  const path = route.replace(/:\w+/g, ":");
  return paths.some((named) => named === path || (named.startsWith(".../") && path.endsWith(named.slice(3))));
};

test("each feature's page names its routes (found in review: TSIG keys, secondaries, records, keys rotate and rekey, E2EE keys, the device code)", async () => {
  const { app } = await testCitadel();
  const pages: Array<[string, (path: string) => boolean]> = [
    ["dns.md", (path) => path.startsWith("/v1/dns/")],
    ["keys.md", (path) => path.startsWith("/v1/sys/keys")],
    ["secrets.md", (path) => path.includes("/e2ee/") || path.endsWith("/keypair")],
    ["identity.md", (path) => path.startsWith("/oauth/device")],
  ];
  const unnamed = pages.flatMap(([name, covers]) => {
    const paths = pathsNamed(page(name));
    return app.routes.filter((route) => covers(route.path) && !isNamedIn(paths, route.path)).map((route) => `${name}: ${route.method} ${route.path}`);
  });
  expect(unnamed).toEqual([]);
});
