/**
 * A secret read remembers what it looked up — the guard's facts, the workspace's secrets row,
 * the environment, the secret, the stored version and its data key's row (src/store/read-memo.ts)
 * — past its own audit event, which every read writes, and past nothing else: each change
 * takes effect on the very next read, also one committed in the same batch as reads' events,
 * or written behind the services' backs.
 */
import { describe, expect, test } from "bun:test";
import { testCitadel } from "../../helpers/citadel.ts";
import { ReadMemo } from "../../../src/store/read-memo.ts";

async function setup(config?: Record<string, Record<string, unknown>>) {
  const c = await testCitadel({ config });
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
  const env = `/v1/secrets/workspaces/${ws}/environments/development`;
  const secret = `${env}/secrets/DATABASE_URL`;
  expect((await c.send("PUT", secret, owner, { json: { value: "first" } })).status).toBe(200);
  const editor = await c.addUser(owner, "editor@example.org", "editor");
  const pat = async () => (await c.send("POST", "/v1/iam/me/tokens", editor.token, { json: { name: "reader", scopes: ["secrets:read"] } })).body as { id: string; token: string };
  const reads = () => (c.kernel.store.db.query("SELECT count(*) AS n FROM audit_events WHERE action = 'secrets.secret.read'").get() as { n: number }).n;
  return { c, owner, org, ws, env, secret, editor, pat, reads };
}

describe("what secret reads remember", () => {
  test("a revoked token, a protected environment, a workspace allowlist and a removed member take effect on the very next read", async () => {
    const { c, owner, org, ws, env, secret, editor, pat, reads } = await setup();
    let reader = await pat();
    const read = () => c.send("GET", secret, reader.token);
    expect((await read()).body.value).toBe("first");
    expect((await read()).body.value).toBe("first"); // the second from memory: only audit events were written since

    // Each change raced with a read, so that it may share the read's batch (one transaction).
    await Promise.all([read(), c.send("DELETE", `/v1/iam/me/tokens/${reader.id}`, editor.token)]);
    expect((await read()).status).toBe(401);

    reader = await pat();
    expect((await read()).status).toBe(200);
    await Promise.all([read(), c.send("PUT", env, owner, { json: { protection: "admins" } })]);
    expect((await read()).body.detail).toBe("The development environment is open to admins and owners only.");
    await c.send("PUT", env, owner, { json: { protection: "members" } });
    expect((await read()).status).toBe(200);

    const fromTheOffice = { "x-test-peer": "10.0.0.5" }; // the owner stays inside the list they set
    await Promise.all([read(), c.send("PATCH", `/v1/iam/workspaces/${ws}`, owner, { json: { ip_allowlist: ["10.0.0.0/8"] }, headers: fromTheOffice })]);
    expect((await read()).body.detail).toBe("The workspace does not allow requests from your address.");
    await c.send("PATCH", `/v1/iam/workspaces/${ws}`, owner, { json: { ip_allowlist: [] }, headers: fromTheOffice });
    expect((await read()).status).toBe(200);

    // Written behind the services' backs (another plugin, an operator's sqlite3 in this process's place): seen all the same.
    const db = c.kernel.store.db;
    db.query("UPDATE secrets_environments SET protection = 'named', allowed_users = '[]' WHERE workspace_id = ?").run(ws);
    expect((await read()).body.detail).toBe("The development environment is open to named members only.");
    db.query("UPDATE secrets_environments SET protection = 'members' WHERE workspace_id = ?").run(ws);
    expect((await read()).status).toBe(200);

    const before = reads();
    await Promise.all([read(), c.send("DELETE", `/v1/iam/orgs/${org}/members/${editor.id}`, owner)]);
    expect(reads()).toBe(before + 1); // the racing read was let in, and audited
    expect((await read()).body.detail).toBe("You are not a member of this organization.");
    expect(reads()).toBe(before + 1);
  });

  test("a second read with nothing changed but the first one's audit event looks nothing up", async () => {
    const { c, secret, pat } = await setup();
    const reader = await pat();
    const db = c.kernel.store.db;
    // Every statement the server's connection is asked for, in order (bun:sqlite's query cache is behind db.query).
    const statements: string[] = [];
    const query = db.query;
    db.query = function (this: typeof db, sql: string) {
      statements.push(sql);
      return query.call(this, sql);
    } as typeof db.query;
    try {
      const read = async () => {
        statements.length = 0;
        expect((await c.send("GET", secret, reader.token)).body.value).toBe("first");
        // What the read looked up, before it wrote its audit event (which reads the log's tail and the log's key).
        const firstOfTheEvent = statements.findIndex((sql) => sql.includes("audit_events"));
        expect(firstOfTheEvent).toBeGreaterThanOrEqual(0);
        return statements.slice(0, firstOfTheEvent);
      };
      const lookups = /\bFROM (workspaces|organizations|memberships|workspace_members|secrets_workspaces|secrets_environments|secrets|secret_versions|deks)\b/;
      const first = await read();
      expect(first.filter((sql) => lookups.test(sql)).length).toBeGreaterThanOrEqual(5); // the spy sees the lookups when they are made
      expect(await read()).toEqual([]);
      expect(await read()).toEqual([]);
      expect(statements.filter((sql) => /\bFROM (secrets|secret_versions|secrets_environments)\b/.test(sql))).toEqual([]);
    } finally {
      db.query = query;
    }
  });

  test("a new version, a new data key and a deleted secret take effect on the very next read; a destroyed data key serves nothing", async () => {
    const { c, owner, ws, secret, pat } = await setup();
    const reader = await pat();
    const read = () => c.send("GET", secret, reader.token);
    expect((await read()).body.value).toBe("first");

    await Promise.all([read(), c.send("PUT", secret, owner, { json: { value: "second" } })]);
    expect((await read()).body).toMatchObject({ value: "second", version: 2 });

    const db = c.kernel.store.db;
    const dekOf = () => (db.query("SELECT v.dek_version AS dek FROM secret_versions v JOIN secrets s ON s.id = v.secret_id WHERE s.name = 'DATABASE_URL' AND v.version = 2").get() as { dek: number }).dek;
    expect(dekOf()).toBe(1);
    expect((await c.send("POST", `/v1/secrets/workspaces/${ws}/rotate-key`, owner)).body.data_key_version).toBe(2);
    expect(dekOf()).toBe(2);
    expect((await read()).body.value).toBe("second");

    // Crypto-shredded behind the keyring's back: the key in memory must not open the value again.
    db.query("UPDATE deks SET wrapped = NULL, destroyed_at = 1 WHERE owner = ?").run(`workspace:${ws}`);
    const refused = await read();
    expect([refused.status, refused.body.code]).toEqual([500, "data_integrity"]);
    expect(JSON.stringify(refused.body)).not.toContain("second");

    await c.send("DELETE", secret, owner);
    expect((await read()).status).toBe(404);
  });

  test("the stored versions remembered hold at most 32 MiB of ciphertext, also of values stored under a larger max_value_bytes", async () => {
    // The memo of stored versions is the one asked for facts of kind "version".
    const memos = new Set<ReadMemo>();
    const get = ReadMemo.prototype.get;
    ReadMemo.prototype.get = function <T>(this: ReadMemo, kind: string, key: string, read: () => T): T {
      if (kind === "version") memos.add(this);
      return get.call(this, kind, key, read) as T;
    };
    try {
      const { c, owner, secret, editor } = await setup({ secrets: { max_value_bytes: 1024 } });
      const settings = c.config.secrets as { max_value_bytes: number };
      settings.max_value_bytes = 1_048_576; // values stored under an earlier, larger limit
      const versions = 48;
      for (let i = 0; i < versions; i++) expect((await c.send("PUT", secret, owner, { json: { value: `${i}`.padEnd(1_000_000, "x") } })).status).toBe(200);
      settings.max_value_bytes = 1024;
      for (let v = 2; v <= versions + 1; v++) expect((await c.send("GET", `${secret}?version=${v}`, editor.token)).body.value).toStartWith(`${v - 2}x`);
      expect(memos.size).toBe(1);
      const remembered = (memos.values().next().value as unknown as { answers: Map<string, Map<string, { ciphertext: Uint8Array } | null>> }).answers.get("version");
      const held = [...(remembered?.values() ?? [])].reduce((n, row) => n + (row?.ciphertext.byteLength ?? 0), 0);
      expect(held).toBeGreaterThan(0); // some are remembered
      expect(held).toBeLessThanOrEqual(32 * 1024 * 1024);
    } finally {
      ReadMemo.prototype.get = get;
    }
  });
});
