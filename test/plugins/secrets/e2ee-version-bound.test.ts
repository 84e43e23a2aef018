/**
 * End-to-end-encrypted values name the version they are stored as (c2.v.): the server checks
 * each write against the version it makes (409 version_conflict when another write took it, or a
 * purge took it back),
 * cannot roll back by copying a ciphertext, and still takes and serves values of the format
 * before (c1.v.), which name none.
 */
import { describe, expect, test } from "bun:test";
import { decryptValue, e2eeValueVersion, encryptValue, newWorkspaceKey, wrapWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { encryptedForThree, encryptUnboundValue } from "../../helpers/e2ee.ts";

async function encryptedWorkspace() {
  const c = await testCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "vault" } })).body.id as string;
  const { base, v1: key } = await encryptedForThree(c, owner, ws);
  const path = (name: string, rest = "") => `${base}/environments/development/secrets/${name}${rest}`;
  const seal = (name: string, value: string, version: number) => encryptValue(key, value, { workspace: ws, environment: "development", name, version, keyVersion: 1 });
  const open = (name: string, value: string, version: number) => decryptValue(key, value, { workspace: ws, environment: "development", name, version, keyVersion: 1 });
  const history = async (name: string) => (await c.send("GET", path(name, "/versions"), owner)).body.versions.map((v: { version: number; origin: string }) => `${v.version} ${v.origin}`);
  return { c, owner, ws, key, base, path, seal, open, history };
}

describe("an end-to-end-encrypted value names the version it is stored as", () => {
  test("round trip: each value is written for the version it makes and reads back as that version only", async () => {
    const { c, owner, path, seal, open } = await encryptedWorkspace();
    expect((await c.send("PUT", path("API_KEY"), owner, { json: { value: seal("API_KEY", "first", 1) } })).body.version).toBe(1);
    expect((await c.send("PUT", path("API_KEY"), owner, { json: { value: seal("API_KEY", "second", 2) } })).body.version).toBe(2);
    const current = (await c.send("GET", path("API_KEY"), owner)).body;
    expect([current.version, current.value_version, e2eeValueVersion(current.value), open("API_KEY", current.value, 2)]).toEqual([2, 2, 2, "second"]);
    const older = (await c.send("GET", path("API_KEY", "?version=1"), owner)).body;
    expect(open("API_KEY", older.value, 1)).toBe("first");
    // Served as the current version, the older value is refused by whoever reads it.
    expect(() => open("API_KEY", older.value, 2)).toThrow("served development/API_KEY as version 2, but its value was written as version 1");
  });

  test("a value made for a version another write took first is refused, 409 version_conflict, and nothing is written", async () => {
    const { c, owner, ws, key, path, seal, history } = await encryptedWorkspace();
    await c.send("PUT", path("API_KEY"), owner, { json: { value: seal("API_KEY", "first", 1) } });
    // Two clients read version 1 and each encrypt for version 2: the second to arrive is refused.
    const [a, b] = [seal("API_KEY", "from a", 2), seal("API_KEY", "from b", 2)];
    expect((await c.send("PUT", path("API_KEY"), owner, { json: { value: a } })).status).toBe(200);
    const late = await c.send("PUT", path("API_KEY"), owner, { json: { value: b } });
    expect([late.status, late.body.code, late.body.detail]).toEqual([409, "version_conflict", "API_KEY would be stored as version 3, but its value was encrypted as version 2 (another write came in between): read it again and retry."]);
    // Ahead of the secret, or of a new one's first version: a purge (and a new secret of the name) makes that, 409 too (found in review: 422).
    const ahead = await c.send("PUT", path("API_KEY"), owner, { json: { value: seal("API_KEY", "ahead", 9) } });
    expect([ahead.status, ahead.body.code, ahead.body.detail]).toEqual([409, "version_conflict", "API_KEY would be stored as version 3, but its value was encrypted as version 9 (it was purged meanwhile, and perhaps made again): read it again and retry."]);
    expect((await c.send("PUT", path("NEW"), owner, { json: { value: seal("NEW", "new", 2) } })).body.code).toBe("version_conflict");
    // Ahead of the current key: no race makes that (found in review: 409 "another write came in between").
    const keyAhead = encryptValue(key, "v", { workspace: ws, environment: "development", name: "API_KEY", version: 3, keyVersion: 2 });
    const refusedKey = await c.send("PUT", path("API_KEY"), owner, { json: { value: keyAhead } });
    expect([refusedKey.status, refusedKey.body.errors?.[0]]).toEqual([422, { field: "value", message: "API_KEY: the value was encrypted with version 2 of the workspace key, but the key is at version 1: encrypt it with the current key" }]);
    // A header naming version 0 is no well-formed value (no client makes one).
    const zero = "c2.v." + Buffer.concat([Buffer.alloc(4), Buffer.from(seal("API_KEY", "zero", 3).slice(5), "base64url").subarray(4)]).toString("base64url");
    const refusedZero = await c.send("PUT", path("API_KEY"), owner, { json: { value: zero } });
    expect([refusedZero.status, refusedZero.body.code]).toEqual([422, "invalid"]);
    expect(await history("API_KEY")).toEqual(["2 set", "1 set"]);
    expect((await c.send("GET", path("NEW"), owner)).status).toBe(404);
  });

  test("a value made for the version after the current one, written after a purge (and a new secret of the name), is a version conflict the CLI retries, not 422 (found in review)", async () => {
    const { c, owner, path, seal, open, history } = await encryptedWorkspace();
    for (const version of [1, 2, 3]) expect((await c.send("PUT", path("API_KEY"), owner, { json: { value: seal("API_KEY", `v${version}`, version) } })).status).toBe(200);
    const late = seal("API_KEY", "v4", 4); // read at version 3, then the secret goes
    expect((await c.send("DELETE", path("API_KEY"), owner)).status).toBe(200);
    const ask = await c.send("POST", path("API_KEY", "/purge"), owner);
    expect((await c.send("POST", path("API_KEY", "/purge"), owner, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
    const afterPurge = await c.send("PUT", path("API_KEY"), owner, { json: { value: late } });
    expect([afterPurge.status, afterPurge.body.code, afterPurge.body.detail]).toEqual([409, "version_conflict", "API_KEY would be stored as version 1, but its value was encrypted as version 4 (it was purged meanwhile, and perhaps made again): read it again and retry."]);
    // Made again meanwhile (at version 1): the same.
    expect((await c.send("PUT", path("API_KEY"), owner, { json: { value: seal("API_KEY", "again", 1) } })).status).toBe(200);
    expect((await c.send("PUT", path("API_KEY"), owner, { json: { value: late } })).body.code).toBe("version_conflict");
    // Read again, the retry names the version it makes.
    expect((await c.send("PUT", path("API_KEY"), owner, { json: { value: seal("API_KEY", "v4, again", 2) } })).body.version).toBe(2);
    expect(await history("API_KEY")).toEqual(["2 set", "1 set"]);
    expect(open("API_KEY", (await c.send("GET", path("API_KEY"), owner)).body.value, 2)).toBe("v4, again");
  });

  test("an import is checked entry by entry, all or nothing", async () => {
    const { c, owner, base, path, seal, history } = await encryptedWorkspace();
    await c.send("PUT", path("A"), owner, { json: { value: seal("A", "a1", 1) } });
    const stale = { entries: [{ name: "B", value: seal("B", "b1", 1) }, { name: "A", value: seal("A", "a2", 1) }] };
    const refused = await c.send("POST", `${base}/environments/development/import`, owner, { json: stale });
    expect([refused.status, refused.body.code]).toEqual([409, "version_conflict"]);
    expect((await c.send("GET", path("B"), owner)).status).toBe(404);
    const fresh = { entries: [{ name: "B", value: seal("B", "b1", 1) }, { name: "A", value: seal("A", "a2", 2) }] };
    expect((await c.send("POST", `${base}/environments/development/import`, owner, { json: fresh })).body).toMatchObject({ created: 1, updated: 1 });
    expect(await history("A")).toEqual(["2 import", "1 set"]);
  });

  test("concurrent imports: a name another import wrote since the plan is a version conflict, which the CLI retries (found in review: a plain conflict failed 1 of 4)", async () => {
    const { c, owner, base, seal, history } = await encryptedWorkspace();
    const send = (n: number) => c.send("POST", `${base}/environments/development/import`, owner, { json: { entries: [{ name: "A", value: seal("A", `a${n}`, 1) }] } });
    const answers = await Promise.all([send(1), send(2), send(3), send(4)]);
    expect(answers.map((a) => [a.status, a.body.code ?? null]).sort()).toEqual([[200, null], [409, "version_conflict"], [409, "version_conflict"], [409, "version_conflict"]]);
    expect(await history("A")).toEqual(["1 import"]);
  });

  test("a key rotation's values name the version it stores them as", async () => {
    const { c, owner, ws, base, path, seal } = await encryptedWorkspace();
    await c.send("PUT", path("A"), owner, { json: { value: seal("A", "a1", 1) } });
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    // Re-encrypted as version 1 again (a ciphertext copied, or a client from before): refused, the key stays.
    const copied = { from_version: 1, values: [{ environment: "development", name: "A", version: 1, value: seal("A", "a1", 1) }], wrapped: [{ user: me, wrapped: (await c.send("GET", `${base}/e2ee/my-key`, owner)).body.wrapped }] };
    expect((await c.send("POST", `${base}/e2ee/rotate`, owner, { json: copied })).body.code).toBe("version_conflict");
    expect((await c.send("GET", `${base}/settings`, owner)).body).toMatchObject({ workspace: ws, e2ee: true });
    expect((await c.send("GET", `${base}/e2ee/my-key`, owner)).body.key_version).toBe(1);
  });

  test("a value names the workspace key version it is encrypted with: one sealed with a key a rotation replaced is refused, 409 key_conflict, and nothing is written (found in review)", async () => {
    const c = await testCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "vault" } })).body.id as string;
    const { base, me, bob, carol, v1, wrappedFor } = await encryptedForThree(c, owner, ws);
    const path = (name: string) => `${base}/environments/development/secrets/${name}`;
    const sealWith = (key: Uint8Array, keyVersion: number, name: string, value: string, version: number) => encryptValue(key, value, { workspace: ws, environment: "development", name, version, keyVersion });
    await c.send("PUT", path("A"), owner, { json: { value: sealWith(v1, 1, "A", "a1", 1) } });
    const v2 = newWorkspaceKey();
    const rotation = { from_version: 1, values: [{ environment: "development", name: "A", version: 1, value: sealWith(v2, 2, "A", "a1", 2) }], wrapped: wrappedFor(v2, me, bob.id, carol.id) };
    expect((await c.send("POST", `${base}/e2ee/rotate`, owner, { json: rotation })).status).toBe(200);
    // A write made before the rotation, for the right version, with the key it replaced.
    const stale = await c.send("PUT", path("A"), owner, { json: { value: sealWith(v1, 1, "A", "late", 3) } });
    expect([stale.status, stale.body.code, stale.body.detail]).toEqual([409, "key_conflict", "A's value was encrypted with version 1 of the workspace key, but the workspace is at version 2 (the key was replaced meanwhile): fetch the key again and retry."]);
    const staleImport = await c.send("POST", `${base}/environments/development/import`, owner, { json: { entries: [{ name: "B", value: sealWith(v1, 1, "B", "b", 1) }] } });
    expect([staleImport.status, staleImport.body.code]).toEqual([409, "key_conflict"]);
    expect((await c.send("GET", path("B"), owner)).status).toBe(404);
    const current = (await c.send("GET", path("A"), owner)).body;
    expect([current.version, current.key_version]).toEqual([2, 2]);
    // Made with the current key, it is stored under that key's number, which it names.
    expect((await c.send("PUT", path("A"), owner, { json: { value: sealWith(v2, 2, "A", "a3", 3) } })).body.version).toBe(3);
    const read = (await c.send("GET", path("A"), owner)).body;
    expect([read.key_version, decryptValue(v2, read.value, { workspace: ws, environment: "development", name: "A", version: 3, keyVersion: read.key_version })]).toEqual([2, "a3"]);
  });

  test("a rollback is the client's: the server refuses to copy a ciphertext, and takes the old value re-encrypted as the new version", async () => {
    const { c, owner, path, seal, open, history } = await encryptedWorkspace();
    await c.send("PUT", path("A"), owner, { json: { value: seal("A", "good", 1) } });
    await c.send("PUT", path("A"), owner, { json: { value: seal("A", "bad", 2) } });
    const copied = await c.send("POST", path("A", "/rollback"), owner, { json: { version: 1 } });
    // What an older CLI gets (it sends no value): not the very command it ran, but what that command needs (found in review).
    expect([copied.status, copied.body.code, copied.body.detail]).toEqual([409, "conflict", expect.stringContaining("citadel secrets rollback A 1 decrypts version 1 on your machine and sends it re-encrypted as the new version — from a citadel CLI as recent as this server (an older one cannot read values that name their version; upgrade it), with a token that may read secrets (secrets:read) as well as write them.")]);
    // The old ciphertext sent as it is names version 1, not the 3 the rollback makes.
    const old = (await c.send("GET", path("A", "?version=1"), owner)).body.value as string;
    expect((await c.send("POST", path("A", "/rollback"), owner, { json: { version: 1, value: old } })).body.code).toBe("version_conflict");
    const rolled = await c.send("POST", path("A", "/rollback"), owner, { json: { version: 1, value: seal("A", open("A", old, 1), 3) } });
    expect([rolled.status, rolled.body.version]).toEqual([200, 3]);
    expect(open("A", (await c.send("GET", path("A"), owner)).body.value, 3)).toBe("good");
    expect(await history("A")).toEqual(["3 rollback", "2 set", "1 set"]);
    expect((await c.send("POST", path("A", "/rollback"), owner, { json: { version: 1, value: "hunter2" } })).status).toBe(422); // ciphertext only, as for any write
  });

  test("a plain workspace's rollback takes no value: the server copies the old one", async () => {
    const c = await testCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "plain" } })).body.id as string;
    const path = `/v1/secrets/workspaces/${ws}/environments/development/secrets/A`;
    await c.send("PUT", path, owner, { json: { value: "one" } });
    await c.send("PUT", path, owner, { json: { value: "two" } });
    const refused = await c.send("POST", `${path}/rollback`, owner, { json: { version: 1, value: "three" } });
    expect([refused.status, refused.body.errors?.[0]?.field]).toEqual([422, "value"]);
    expect((await c.send("POST", `${path}/rollback`, owner, { json: { version: 1 } })).body.version).toBe(3);
    expect((await c.send("GET", path, owner)).body.value).toBe("one");
  });

  test("once the current key was made by a citadel that binds values (its copies carry the mark), a value of the format before is refused, 422 (found in review)", async () => {
    const c = await testCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const ws = (await c.send("POST", `/v1/iam/orgs/${c.owner.organization}/workspaces`, owner, { json: { name: "vault" } })).body.id as string;
    const { base, me, pairs, v1 } = await encryptedForThree(c, owner, ws);
    const path = (name: string) => `${base}/environments/development/secrets/${name}`;
    const unbound = (key: Uint8Array, name: string) => encryptUnboundValue(key, "old", { workspace: ws, environment: "development", name });
    expect((await c.send("PUT", path("A"), owner, { json: { value: unbound(v1, "A") } })).status).toBe(200); // a key from before: taken
    const v2 = newWorkspaceKey();
    const marked = { user: me, wrapped: wrapWorkspaceKey(v2, pairs.get(me)!.publicKey, { workspace: ws, user: me }, { valuesBound: true }) };
    // A rotation to a marked key re-encrypting with a value of the format before is refused, nothing changed.
    const laundered = await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { from_version: 1, values: [{ environment: "development", name: "A", version: 1, value: unbound(v2, "A") }], wrapped: [marked] } });
    expect([laundered.status, laundered.body.code]).toEqual([422, "invalid"]);
    const bound = encryptValue(v2, "old", { workspace: ws, environment: "development", name: "A", version: 2, keyVersion: 2 });
    expect((await c.send("POST", `${base}/e2ee/rotate`, owner, { json: { from_version: 1, values: [{ environment: "development", name: "A", version: 1, value: bound }], wrapped: [marked] } })).status).toBe(200);
    const refused = await c.send("PUT", path("B"), owner, { json: { value: unbound(v2, "B") } });
    expect([refused.status, refused.body.errors?.[0]?.message]).toEqual([422, "B: this workspace's key binds every value to its version (format c2.v.), and this value is of the format before (c1.v.): upgrade citadel, which writes the bound format"]);
    expect((await c.send("GET", path("B"), owner)).status).toBe(404);
  });

  test("values of the format before (no version) are still taken and served as they are", async () => {
    const { c, owner, ws, key, path, seal, open } = await encryptedWorkspace();
    const unbound = encryptUnboundValue(key, "from an older client", { workspace: ws, environment: "development", name: "A" });
    expect((await c.send("PUT", path("A"), owner, { json: { value: unbound } })).body.version).toBe(1);
    const read = (await c.send("GET", path("A"), owner)).body;
    expect([read.value, open("A", read.value, 1)]).toEqual([unbound, "from an older client"]);
    expect((await c.send("PUT", path("A"), owner, { json: { value: seal("A", "bound now", 2) } })).body.version).toBe(2);
  });
});
