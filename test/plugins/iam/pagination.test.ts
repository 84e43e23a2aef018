/**
 * The identity lists a page at a time (found missing: GET /v1/iam/users answered every user of
 * an appliance in one body): `limit` rows, the next after `cursor`, every row once and in the
 * list's order, rows made between two pages neither repeating nor hiding the ones there were.
 */
import { describe, expect, test } from "bun:test";
import * as sql from "../../../plugins/iam/store.ts";
import { encodeCursor } from "../../../src/http/cursor.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();
type Citadel = Awaited<ReturnType<typeof citadel>>;
type Item = { id?: string; user?: string; email?: string; name?: string };

/** A list, and how to make one more row of it (named `name` where a row has a name or an address). */
interface ListCase {
  path: string;
  token: string;
  add: (name: string) => Promise<void>;
  /** The rows the list holds before any is added (the caller's own organization, session, ...). */
  initial: number;
  /** The list's order, as the docs give it: what of a row it goes by, and those of `items` in that order (for a list in the order rows were made, of those `add` made). */
  order: Order;
}

const key = (item: Item) => item.id ?? item.user!;
interface Order {
  of: (item: Item) => string;
  expected: (items: Item[]) => string[];
}
/** By address, as the users table compares them (A-Z as a-z; these tests' addresses are ASCII). */
const byAddress: Order = { of: (i) => i.email!, expected: (items) => items.map((i) => i.email!).sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : 1)) };
/** By name, byte for byte (upper case first). */
const byName: Order = { of: (i) => i.name!, expected: (items) => items.map((i) => i.name!).sort((a, b) => (a < b ? -1 : 1)) };
/** As made: `made` holds the keys in the order they were made. */
/** Sessions, newest first (made a second apart: a login waits out the auth rate limit). */
const newestFirst: Order = { of: (i) => (i as { created_at: string }).created_at, expected: (items) => items.map((i) => (i as { created_at: string }).created_at).sort().reverse() };
const asMade = (made: string[], newestFirst: boolean): Order => ({ of: key, expected: () => (newestFirst ? made.toReversed() : made) });

async function get(c: Citadel, token: string, url: string) {
  const res = await c.send("GET", url, token);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${res.text}`);
  return res.body as { items: Item[]; next_cursor: string | null };
}

/** Every page of the list at `limit` rows; `between` runs after each page but the last. */
async function pagesOf(c: Citadel, list: ListCase, limit: number, between?: (pages: number) => Promise<void>): Promise<Item[][]> {
  const pages: Item[][] = [];
  let cursor: string | null = null;
  do {
    const page = await get(c, list.token, `${list.path}?limit=${limit}${cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`}`);
    pages.push(page.items);
    cursor = page.next_cursor;
    if (cursor !== null) await between?.(pages.length);
  } while (cursor !== null);
  return pages;
}

async function operatorOf(c: Citadel) {
  const token = await c.login(c.owner.email, c.owner.password);
  return { token, org: c.owner.organization };
}

/** Each list, freshly made, with `add` for more rows. The clock stands still: rows made in the same millisecond are ordered all the same. */
const LISTS: Record<string, (c: Citadel) => Promise<ListCase>> = {
  async "GET /v1/iam/users"(c) {
    const { token } = await operatorOf(c);
    const add = async (name: string) => void (await c.send("POST", "/v1/iam/users", token, { json: { email: `${name}@example.org` } }));
    return { path: "/v1/iam/users", token, add, initial: 1, order: byAddress };
  },
  async "GET /v1/iam/orgs/{org}/members"(c) {
    const { token, org } = await operatorOf(c);
    const add = async (name: string) => {
      await c.send("POST", "/v1/iam/users", token, { json: { email: `${name}@example.org` } });
      await c.send("POST", `/v1/iam/orgs/${org}/members`, token, { json: { email: `${name}@example.org`, role: "viewer" } });
    };
    return { path: `/v1/iam/orgs/${org}/members`, token, add, initial: 1, order: byAddress };
  },
  async "GET /v1/iam/orgs/{org}/api-keys"(c) {
    const { token, org } = await operatorOf(c);
    const made: string[] = [];
    const add = async (name: string) => void made.push((await c.send("POST", `/v1/iam/orgs/${org}/api-keys`, token, { json: { service: "secrets", name, scopes: ["secrets:read"] } })).body.id);
    return { path: `/v1/iam/orgs/${org}/api-keys`, token, add, initial: 0, order: asMade(made, true) };
  },
  async "GET /v1/iam/me/tokens"(c) {
    const { token } = await operatorOf(c);
    const made: string[] = [];
    const add = async (name: string) => void made.push((await c.send("POST", "/v1/iam/me/tokens", token, { json: { name, scopes: ["read"] } })).body.id);
    return { path: "/v1/iam/me/tokens", token, add, initial: 0, order: asMade(made, true) };
  },
  async "GET /v1/iam/me/sessions"(c) {
    const { token } = await operatorOf(c);
    const add = async () => {
      c.clock.advance(1000); // logins are held to the auth rate limit (1 a second)
      await c.login(c.owner.email, c.owner.password);
    };
    // Setup's login, which changed the one-time password, and this one.
    return { path: "/v1/iam/me/sessions", token, add, initial: 2, order: newestFirst };
  },
  async "GET /v1/iam/orgs/{org}/workspaces"(c) {
    const { token, org } = await operatorOf(c);
    const add = async (name: string) => void (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, token, { json: { name } }));
    return { path: `/v1/iam/orgs/${org}/workspaces`, token, add, initial: 0, order: byName };
  },
  async "GET /v1/iam/orgs/{org}/invitations"(c) {
    const { token, org } = await operatorOf(c);
    const made: string[] = [];
    const add = async (name: string) => {
      c.clock.advance(1000); // invitations are held to the auth rate limit (1 a second)
      made.push((await c.send("POST", `/v1/iam/orgs/${org}/invitations`, token, { json: { email: `${name}@example.org`, role: "viewer" } })).body.id);
    };
    return { path: `/v1/iam/orgs/${org}/invitations`, token, add, initial: 0, order: asMade(made, false) };
  },
  async "GET /v1/iam/orgs"(c) {
    const { token } = await operatorOf(c);
    const add = async (name: string) => void (await c.send("POST", "/v1/iam/orgs", token, { json: { name } }));
    return { path: "/v1/iam/orgs", token, add, initial: 1, order: byName };
  },
  async "GET /v1/iam/me/invitations"(c) {
    const { token: operator } = await operatorOf(c);
    const invitee = await c.addUser(operator, "invitee@example.org");
    const made: string[] = [];
    const add = async (name: string) => {
      const org = (await c.send("POST", "/v1/iam/orgs", operator, { json: { name } })).body.id;
      c.clock.advance(1000); // invitations are held to the auth rate limit (1 a second)
      made.push(await c.send("POST", `/v1/iam/orgs/${org}/invitations`, operator, { json: { email: "invitee@example.org", role: "viewer" } }).then((r) => r.body.id));
    };
    return { path: "/v1/iam/me/invitations", token: invitee.token, add, initial: 0, order: asMade(made, false) };
  },
};

// Names that sort apart in either case (the addresses compare case aside), made out of order.
const NAMES = ["Mike", "delta", "Kilo", "alpha", "Hotel", "bravo", "juliet"];

describe("every identity list, a page at a time", () => {
  for (const [route, make] of Object.entries(LISTS)) {
    test(`${route}: pages of --limit rows hold every row once, in the order of the whole list, the last page's next_cursor null`, async () => {
      const c = await citadel();
      const list = await make(c);
      for (const name of NAMES) await list.add(name);
      const whole = await get(c, list.token, `${list.path}?limit=1000`);
      expect([whole.items.length, whole.next_cursor]).toEqual([list.initial + NAMES.length, null]);
      const expected = list.order.expected(whole.items);
      expect(whole.items.map(list.order.of).filter((value) => expected.includes(value))).toEqual(expected);
      const pages = await pagesOf(c, list, 3);
      expect(pages.map((p) => p.length)).toEqual(pageSizes(whole.items.length, 3));
      expect(pages.flat()).toEqual(whole.items);
      // 100 to a page without `limit`: one page here.
      expect((await get(c, list.token, list.path)).items).toEqual(whole.items);
    });

    test(`${route}: rows made between two pages leave every row there was listed once, in order`, async () => {
      const c = await citadel();
      const list = await make(c);
      for (const name of NAMES) await list.add(name);
      const before = (await get(c, list.token, `${list.path}?limit=1000`)).items.map(key);
      // After each of the first two pages, one row that sorts first and one that sorts last (for
      // lists by name or address; a list in the order rows were made has both at one end).
      const addBoth = async (n: number) => {
        if (n > 2) return; // else a list whose new rows come last, two at a time, would never end
        await list.add(`a${n}-new`);
        await list.add(`z${n}-new`);
      };
      const listed = (await pagesOf(c, list, 2, addBoth)).flat().map(key);
      const after = (await get(c, list.token, `${list.path}?limit=1000`)).items.map(key);
      expect(new Set(listed).size).toBe(listed.length); // none twice
      expect(before.filter((id) => !listed.includes(id))).toEqual([]); // none of those there were missed
      expect(listed).toEqual(after.filter((id) => listed.includes(id))); // in the list's order
    });

    test(`${route}: a cursor the API did not make, or made for another list, and a limit out of 1-1000, are refused naming them`, async () => {
      const c = await citadel();
      const list = await make(c);
      const foreign = [
        "bm90IG1pbmU",
        encodeCursor("not-this-list", { value: "a", row: 1 }),
        encodeCursor("users", { value: 1, row: 1 }), // a sort value of the wrong kind, for one list or the other
        encodeCursor("sessions", { value: "a", row: 1 }),
        `${encodeCursor("users", { value: "a", row: 1 })}!!`, // trailing bytes base64url decoding would skip
        Buffer.from(JSON.stringify(["users", "a", 1])).toString("base64url"), // readable, as cursors were before they were encrypted
      ];
      for (const cursor of foreign) {
        const bad = await c.send("GET", `${list.path}?cursor=${encodeURIComponent(cursor)}`, list.token);
        expect([bad.status, bad.body.errors?.[0]]).toEqual([422, { field: "query.cursor", message: "the cursor is not one this API returned (or Citadel restarted since): start again from the first page" }]);
      }
      for (const limit of ["0", "1001", "ten"]) {
        const bad = await c.send("GET", `${list.path}?limit=${limit}`, list.token);
        expect([bad.status, bad.body.errors?.[0]?.field]).toEqual([422, "query.limit"]);
      }
      expect((await c.send("GET", `${list.path}?offset=2`, list.token)).status).toBe(422);
    });
  }
});

describe("GET /v1/iam/me/sessions passes over sessions that no longer let anyone in, and still fills its pages", () => {
  test("expired ones among the live are skipped: pages of the live ones, full but the last", async () => {
    const c = await citadel();
    const list = await LISTS["GET /v1/iam/me/sessions"]!(c);
    for (let i = 0; i < 7; i++) await list.add("");
    const live = (await get(c, list.token, `${list.path}?limit=1000`)).items.map(key);
    // Every other one of the newest ends: a page of 2 must read past them to fill itself.
    const ended = live.slice(0, 6).filter((_, i) => i % 2 === 1);
    for (const id of ended) c.kernel.store.db.query("UPDATE credentials SET expires_at = ? WHERE id = ?").run(c.clock.now() - 1, id);
    const pages = await pagesOf(c, list, 2);
    expect(pages.map((p) => p.length)).toEqual(pageSizes(live.length - ended.length, 2));
    expect(pages.flat().map(key)).toEqual(live.filter((id) => !ended.includes(id)));
  });
});

/** The sizes of the pages of `rows` rows at `limit` a page. */
function pageSizes(rows: number, limit: number): number[] {
  return Array.from({ length: Math.ceil(rows / limit) }, (_, i) => Math.min(limit, rows - i * limit));
}

describe("an organization's members are read the cheaper way: its memberships sorted, or the users walked in address order", () => {
  /** `users` users (every `deletedEvery`-th deleted), every `memberEvery`-th a member of org_m, in mixed case and made out of order. */
  function seeded(c: Citadel, users: number, memberEvery: number, deletedEvery = 0) {
    const db = c.kernel.store.db;
    db.query("INSERT INTO organizations (id, name, created_at) VALUES ('org_m', 'members', 1)").run();
    for (let i = 0; i < users; i++) {
      const n = (i * 7) % users; // made out of address order
      const email = `${n % 2 ? "User" : "user"}${String(n).padStart(3, "0")}@example.org`;
      sql.insertUser(db, { id: `usr_${n}`, email, name: null, password_hash: "x", operator: 0, must_change_password: 0, created_at: 1 });
      if (deletedEvery && n % deletedEvery === 0) sql.softDeleteUser(db, `usr_${n}`, 2);
      if (n % memberEvery === 0) sql.upsertMembership(db, "org_m", `usr_${n}`, "viewer", 1);
    }
  }

  /** Every member, a page of `limit` at a time, read through the store as the route does. */
  function everyMember(c: Citadel, limit: number): string[] {
    const listed: string[] = [];
    let after = null;
    for (;;) {
      const rows = sql.membersPage(c.kernel.store.db, "org_m", after, limit + 1);
      listed.push(...rows.slice(0, limit).map((m) => m.email));
      if (rows.length <= limit) return listed;
      after = { value: rows[limit - 1]!.email, row: rows[limit - 1]!.row };
    }
  }

  test("both ways list the same members, in address order, case aside, the deleted left out", async () => {
    const c = await citadel();
    seeded(c, 60, 1, 5); // every user a member: small pages walk the users
    const db = c.kernel.store.db;
    expect([sql.walkUsersForMembers(db, "org_m", 2), sql.walkUsersForMembers(db, "org_m", 1001)]).toEqual([true, false]);
    const expected = Array.from({ length: 60 }, (_, n) => n)
      .filter((n) => n % 5 !== 0)
      .map((n) => `${n % 2 ? "User" : "user"}${String(n).padStart(3, "0")}@example.org`);
    expect(everyMember(c, 1)).toEqual(expected);
    expect(everyMember(c, 1000)).toEqual(expected);
  });

  test("a small organization among many users is sorted, not walked for", async () => {
    const c = await citadel();
    seeded(c, 400, 50);
    expect(sql.walkUsersForMembers(c.kernel.store.db, "org_m", 2)).toBe(false);
    expect(everyMember(c, 1)).toEqual(Array.from({ length: 8 }, (_, i) => `user${String(i * 50).padStart(3, "0")}@example.org`));
  });
});

test("a cursor holds nothing readable: the sort value (a user's email address, for users and members) is encrypted, as cursors travel in URLs proxies log (found in review)", () => {
  const cursor = encodeCursor("users", { value: "alice@example.test", row: 7 });
  const bytes = Buffer.from(cursor, "base64url");
  expect(bytes.includes(Buffer.from("alice"))).toBe(false);
  expect(cursor).not.toBe(encodeCursor("users", { value: "alice@example.test", row: 7 })); // a fresh nonce each time
});

test("a cursor is for one organization's list: the next page of another's members is 422, not a page of theirs after the first one's place (found in review)", async () => {
  const c = await citadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
  const other = (await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "other", owner: me } })).body.id as string;
  for (const email of ["a@example.test", "b@example.test"]) {
    const user = await c.send("POST", "/v1/iam/users", owner, { json: { email, password: "a long enough passphrase 2026" } });
    await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/members`, owner, { json: { email: user.body.user?.email ?? email, role: "viewer" } });
  }
  const first = await c.send("GET", `/v1/iam/orgs/${c.owner.organization}/members?limit=1`, owner);
  expect(first.body.next_cursor).not.toBeNull();
  const crossed = await c.send("GET", `/v1/iam/orgs/${other}/members?cursor=${encodeURIComponent(first.body.next_cursor)}`, owner);
  expect([crossed.status, crossed.body.errors?.[0]?.field]).toEqual([422, "query.cursor"]);
  expect((await c.send("GET", `/v1/iam/orgs/${c.owner.organization}/members?cursor=${encodeURIComponent(first.body.next_cursor)}`, owner)).status).toBe(200);
});
