/**
 * The mesh API in-process: networks, pre-auth keys, enrollment, signed config documents with
 * ETags, address reuse, ACL versions, key rotation with overlap, disable/remove, preshared keys,
 * DNS names through the record provider, and the audit trail.
 */
import { describe, expect, test } from "bun:test";
import { CONFIG_FORMAT, type ConfigDocument } from "../../../plugins/mesh/configs.ts";
import { meshOf } from "../../../plugins/mesh/index.ts";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import { verifySignature } from "../../../plugins/mesh/signing.ts";
import { parseName } from "../../../plugins/dns/names.ts";
import { rdataToText } from "../../../plugins/dns/rdata.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { buildQuery, DnsClient, freeUdpTcpPort } from "../../helpers/reference-dns.ts";

type App = Awaited<ReturnType<typeof testCitadel>>;

async function setup(network: Record<string, unknown> = { name: "office" }) {
  const c = await testCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const networks = `/v1/mesh/orgs/${org}/networks`;
  const created = await c.send("POST", networks, owner, { json: network });
  expect(created.status).toBe(200);
  const net = `${networks}/${created.body.name}`;
  return { c, owner, org, networks, net, network: created.body };
}

async function preauthKey(c: App, owner: string, net: string, body: Record<string, unknown> = {}) {
  const res = await c.send("POST", `${net}/keys`, owner, { json: body });
  expect(res.status).toBe(200);
  return res.body.key as string;
}

interface Joined {
  id: string;
  name: string;
  token: string;
  publicKey: string;
  privateKey: string;
  ipv4: string;
  signingKey: string;
}

async function enroll(c: App, key: string, name: string, extra: Record<string, unknown> = {}): Promise<Joined> {
  const pair = await generateKeyPair();
  const res = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name, public_key: pair.publicKey, ...extra } });
  if (res.status !== 200) throw new Error(`enroll ${name}: ${res.status} ${res.text}`);
  expect(verifySignature(res.body.signing_key, res.body.document, res.body.signature)).toBe(true);
  return { id: res.body.node.id, name, token: res.body.token, publicKey: pair.publicKey, privateKey: pair.privateKey, ipv4: res.body.node.ipv4, signingKey: res.body.signing_key };
}

async function fetchDocument(c: App, node: Joined, etag?: string) {
  const res = await c.send("GET", "/v1/mesh/node/config", node.token, etag ? { headers: { "if-none-match": etag } } : {});
  return { status: res.status, etag: res.headers.get("etag"), signature: res.headers.get("x-citadel-signature"), text: res.text, doc: res.status === 200 ? (JSON.parse(res.text) as ConfigDocument) : null };
}

const peerNames = (doc: ConfigDocument | null) => doc!.config.peers.map((p) => p.name);
const meshEvents = (c: App) =>
  c.kernel.store.db.query("SELECT action, outcome, reason FROM audit_events WHERE action LIKE 'mesh.%' ORDER BY seq").all() as Array<{ action: string; outcome: string; reason: string | null }>;

/** Every text and blob in the database, as one string, to look for secrets in. */
function databaseText(c: App): string {
  const db = c.kernel.store.db;
  const tables = db.query("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>;
  let out = "";
  for (const { name } of tables) for (const row of db.query(`SELECT * FROM "${name}"`).all() as Array<Record<string, unknown>>) for (const v of Object.values(row)) out += ` ${v instanceof Uint8Array ? Buffer.from(v).toString("latin1") : String(v)}`;
  return out;
}

describe("mesh networks", () => {
  test("defaults: a free /16 of 100.64.0.0/10, a ULA /48, version 1; names unique; bad prefixes refused", async () => {
    const { c, owner, networks, network } = await setup();
    expect(network).toMatchObject({ name: "office", ipv4: "100.64.0.0/16", listen_port: 51820, mtu: 1420, keepalive: 25, topology: "mesh", interface_name: "wgc-office", preshared_keys: false, domain: "office.mesh.internal", version: 1, acl_version: 0, nodes: 0 });
    expect(network.ipv6).toMatch(/^fd[0-9a-f]{2}(:[0-9a-f]{1,4}){2}::\/48$/);
    const second = await c.send("POST", networks, owner, { json: { name: "lab" } });
    expect(second.body.ipv4).toBe("100.65.0.0/16");
    expect((await c.send("POST", networks, owner, { json: { name: "office" } })).status).toBe(409);
    expect((await c.send("POST", networks, owner, { json: { name: "dmz", ipv4: "8.8.8.0/24" } })).status).toBe(422);
    expect((await c.send("POST", networks, owner, { json: { name: "dmz", ipv4: "100.64.128.0/24" } })).status).toBe(409); // overlaps office
    expect((await c.send("POST", networks, owner, { json: { name: "Bad_Name" } })).status).toBe(422);
    for (const name of ["-a", ".", ".."]) {
      const refused = await c.send("POST", networks, owner, { json: { name: "dmz", interface_name: name } });
      expect([refused.status, refused.body.errors?.[0]?.field]).toEqual([422, "interface_name"]); // the agent could not use it
    }
    // A name stored under the older rule blocks no other change, and the nftables render says what to do (found in review).
    c.kernel.store.db.query("UPDATE mesh_networks SET interface_name = '-a' WHERE id = ?").run(network.id);
    expect((await c.send("PATCH", `${networks}/${network.id}`, owner, { json: { mtu: 1400 } })).status).toBe(200);
    expect((await c.send("PATCH", `${networks}/${network.id}`, owner, { json: { interface_name: "wgc-office" } })).status).toBe(200);
    expect((await c.send("GET", networks, owner)).body.items.map((n: { name: string }) => n.name)).toEqual(["lab", "office"]);
  });

  test("networks of other organizations: a default pool keeps clear of them while one can, an explicit prefix over them is allowed (found in review)", async () => {
    // Refusing overlaps across organizations let one admin's few large networks (100.64.0.0/10,
    // 10.0.0.0/8, ...) shut every other organization out; the DNS horizon knows a network's
    // clients by its nodes' addresses instead.
    const { c, owner, networks, network } = await setup();
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    const networksOf = async (name: string) => `/v1/mesh/orgs/${(await c.send("POST", "/v1/iam/orgs", owner, { json: { name, owner: me } })).body.id}/networks`;
    const [other, third] = [await networksOf("other"), await networksOf("third")];
    const ops = await c.send("POST", other, owner, { json: { name: "ops" } });
    expect([ops.status, ops.body.ipv4]).toEqual([200, "100.65.0.0/16"]); // clear of office
    const wide = await c.send("POST", third, owner, { json: { name: "wide", ipv4: "100.64.0.0/10", ipv6: network.ipv6 } });
    expect([wide.status, wide.body.ipv4, wide.body.ipv6]).toEqual([200, "100.64.0.0/10", network.ipv6]); // over office and ops
    // No /16 clear of every organization's networks: the first clear of the organization's own.
    const lab = await c.send("POST", networks, owner, { json: { name: "lab" } });
    expect([lab.status, lab.body.ipv4]).toEqual([200, "100.65.0.0/16"]);
    const none = await c.send("POST", third, owner, { json: { name: "more" } });
    expect([none.status, none.body.detail]).toEqual([409, "Every /16 of 100.64.0.0/10 is taken: give ipv4."]);
    // Within an organization overlaps are still refused, naming the network.
    const own = await c.send("POST", third, owner, { json: { name: "more", ipv4: "100.100.0.0/16" } });
    expect([own.status, own.body.detail]).toEqual([409, "ipv4: 100.100.0.0/16 overlaps the network wide (100.64.0.0/10)."]);
  });

  test("a change to nothing publishes no new version and records no event (found in review)", async () => {
    const { c, owner, net, network } = await setup({ name: "office", preshared_keys: false });
    const key = await preauthKey(c, owner, net);
    await enroll(c, key, "a");
    const version = () => c.send("GET", net, owner).then((r) => r.body.version as number);
    const before = await version();
    const events = meshEvents(c).length;
    for (const json of [{}, { mtu: network.mtu }, { topology: "mesh", keepalive: 25 }, { preshared_keys: false }]) {
      const same = await c.send("PATCH", net, owner, { json });
      expect([same.status, same.body.version]).toEqual([200, before]);
    }
    for (const json of [{ disabled: false }, { hub: false, tags: [] }]) {
      expect((await c.send("PATCH", `${net}/nodes/a`, owner, { json })).status).toBe(200);
    }
    expect(await version()).toBe(before);
    expect(meshEvents(c).length).toBe(events);
    // A real change still makes one.
    expect((await c.send("PATCH", net, owner, { json: { mtu: 1400 } })).body.version).toBe(before + 1);
    expect((await c.send("PATCH", `${net}/nodes/a`, owner, { json: { disabled: true } })).body.state).toBe("disabled");
    expect(await version()).toBe(before + 2);
  });

  test("networks created at once without ipv4 each get a free pool of their own, none a spurious 409 (found in review)", async () => {
    const { c, owner, networks } = await setup();
    const created = await Promise.all(["lab", "dmz", "ops"].map((name) => c.send("POST", networks, owner, { json: { name } })));
    expect(created.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(created.map((r) => r.body.ipv4).sort()).toEqual(["100.65.0.0/16", "100.66.0.0/16", "100.67.0.0/16"]);
  });

  test("the interface name changes only while the network has no nodes: enrolled agents keep theirs (found in review: 200, a new version, nothing followed)", async () => {
    const { c, owner, net } = await setup();
    expect((await c.send("PATCH", net, owner, { json: { interface_name: "wg-office" } })).body.interface_name).toBe("wg-office");
    await enroll(c, await preauthKey(c, owner, net), "a");
    const before = (await c.send("GET", net, owner)).body.version;
    const events = meshEvents(c).length;
    const refused = await c.send("PATCH", net, owner, { json: { interface_name: "wg-renamed", mtu: 1400 } });
    expect([refused.status, refused.body.detail]).toEqual([409, expect.stringContaining("1 enrolled node(s)")]);
    expect((await c.send("GET", net, owner)).body).toMatchObject({ interface_name: "wg-office", mtu: 1420, version: before });
    expect(meshEvents(c).length).toBe(events);
    expect((await c.send("PATCH", net, owner, { json: { interface_name: "wg-office", mtu: 1400 } })).status).toBe(200); // the same name is no change
  });

  test("least privilege: a viewer reads but cannot create networks or keys; without a token, 401", async () => {
    const { c, owner, networks, net } = await setup();
    const operator = await c.login(c.owner.email, c.owner.password);
    const viewer = await c.addUser(operator, "viewer@example.org", "viewer");
    expect((await c.send("GET", networks, viewer.token)).status).toBe(200);
    expect((await c.send("POST", networks, viewer.token, { json: { name: "x" } })).status).toBe(403);
    expect((await c.send("POST", `${net}/keys`, viewer.token, { json: {} })).status).toBe(403);
    const editor = await c.addUser(operator, "editor@example.org", "editor");
    expect((await c.send("PUT", `${net}/acl`, editor.token, { json: { policy: { rules: [] } } })).status).toBe(403);
    expect((await c.send("GET", networks)).status).toBe(401);
    expect(owner).toBeTruthy();
  });
});

describe("enrollment", () => {
  test("a single-use key enrolls one node; reuse, revoked, expired and unknown keys are refused and audited; no secret is stored", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { tags: ["web", "db"] });
    expect(key).toMatch(/^citadel_meshkey_/);
    const listed = await c.send("GET", `${net}/keys`, owner);
    expect(listed.text).not.toContain(key);
    expect(listed.body.items[0]).toMatchObject({ reusable: false, tags: ["db", "web"], used: 0, state: "usable" });

    const web = await enroll(c, key, "web1", { tags: ["web"], endpoint: "198.51.100.1:51820" });
    expect(web.ipv4).toBe("100.64.0.1");
    const second = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name: "web2", public_key: (await generateKeyPair()).publicKey } });
    expect(second.status).toBe(401);
    expect(second.body.detail).toContain("used already");
    expect((await c.send("GET", `${net}/keys`, owner)).body.items[0].state).toBe("used");

    const reusable = await preauthKey(c, owner, net, { reusable: true, expires_minutes: 5 });
    const revoked = await preauthKey(c, owner, net, { description: "to revoke" });
    const id = (await c.send("GET", `${net}/keys`, owner)).body.items.find((k: { description: string | null }) => k.description === "to revoke").id;
    expect((await c.send("DELETE", `${net}/keys/${id}`, owner)).status).toBe(200);
    expect((await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key: revoked, name: "x", public_key: (await generateKeyPair()).publicKey } })).status).toBe(401);
    expect((await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key: "citadel_meshkey_nonsense", name: "x", public_key: (await generateKeyPair()).publicKey } })).status).toBe(401);
    c.clock.advance(10_000); // enrollment is under the login endpoints' rate limit (10 at once, 1/s)
    // A tag the key does not grant, a bad public key, a duplicate name, a key in use.
    expect((await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key: reusable, name: "a", public_key: (await generateKeyPair()).publicKey, tags: ["admin"] } })).status).toBe(403);
    expect((await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key: reusable, name: "a", public_key: "not-a-key" } })).status).toBe(422);
    expect((await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key: reusable, name: "web1", public_key: (await generateKeyPair()).publicKey } })).status).toBe(409);
    expect((await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key: reusable, name: "b", public_key: web.publicKey } })).status).toBe(409);
    expect((await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key: reusable, name: "c", public_key: (await generateKeyPair()).publicKey, endpoint: "nohost" } })).status).toBe(422);
    c.clock.advance(6 * 60_000);
    const expired = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key: reusable, name: "late", public_key: (await generateKeyPair()).publicKey } });
    expect(expired.status).toBe(401);
    expect(expired.body.detail).toContain("expired");

    const enrolls = meshEvents(c).filter((e) => e.action === "mesh.node.enroll");
    expect(enrolls.filter((e) => e.outcome === "success")).toHaveLength(1);
    const refusals = enrolls.filter((e) => e.outcome === "failure").map((e) => e.reason!);
    expect(refusals.filter((r) => r.endsWith("pre-auth key"))).toEqual(["used single-use pre-auth key", "revoked pre-auth key", "unknown pre-auth key", "expired pre-auth key"]);
    // Refusals after the key check are audited too, with what was wrong (a fixed text: audit-personal.test.ts).
    expect(refusals.filter((r) => !r.endsWith("pre-auth key"))).toEqual(["tag the key does not grant", "invalid public key", "name taken", "public key in use", "invalid endpoint"]);
    const stored = databaseText(c);
    for (const secret of [key, reusable, revoked, web.token]) expect(stored).not.toContain(secret);
  });

  test("addresses: handed out in turn, a removed node's only once the round comes back to it; a removed node leaves every peer's config", async () => {
    const { c, owner, net } = await setup({ name: "office", ipv4: "10.9.0.0/29" }); // hosts 1–6
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    const b = await enroll(c, key, "b");
    const d = await enroll(c, key, "d");
    expect([a.ipv4, b.ipv4, d.ipv4]).toEqual(["10.9.0.1", "10.9.0.2", "10.9.0.3"]);
    expect(peerNames((await fetchDocument(c, a)).doc)).toEqual(["b", "d"]);
    expect((await c.send("DELETE", `${net}/nodes/b`, owner)).status).toBe(200);
    expect(peerNames((await fetchDocument(c, a)).doc)).toEqual(["d"]);
    expect((await fetchDocument(c, b)).status).toBe(401); // its token went with it
    // Not b's address: peers not yet renewed and resolvers caching b's name would reach e.
    const e = await enroll(c, key, "e");
    expect(e.ipv4).toBe("10.9.0.4");
    const view = (await c.send("GET", `${net}/nodes/e`, owner)).body;
    expect(view.ipv6.endsWith("::4")).toBe(true);
    expect(view.fqdn).toBe("e.office.mesh.internal");
    expect((await enroll(c, key, "f")).ipv4).toBe("10.9.0.5");
    expect((await enroll(c, key, "g")).ipv4).toBe("10.9.0.6");
    expect((await enroll(c, key, "h")).ipv4).toBe("10.9.0.2"); // round again: b's address is free
  });
});

describe("config documents", () => {
  test("signed by the control plane, for the node; 304 with its ETag until something changes; bad tokens 401", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a", { endpoint: "198.51.100.1:51820" });
    const first = await fetchDocument(c, a);
    expect(first.status).toBe(200);
    expect(verifySignature(a.signingKey, first.text, first.signature!)).toBe(true);
    expect(verifySignature(a.signingKey, first.text.replace('"a"', '"b"'), first.signature!)).toBe(false);
    expect(first.doc).toMatchObject({ format: CONFIG_FORMAT, node: a.id, rotation: null, poll_seconds: 30 });
    expect(first.doc!.config.addresses[0]).toBe("100.64.0.1/16");
    expect(first.doc!.config.peers).toEqual([]);
    const unchanged = await c.send("GET", "/v1/mesh/node/config", a.token, { headers: { "if-none-match": first.etag! } });
    expect([unchanged.status, unchanged.text, unchanged.headers.get("etag"), unchanged.headers.get("x-citadel-signature")]).toEqual([304, "", first.etag, null]);
    expect([unchanged.headers.get("x-content-type-options"), unchanged.headers.get("x-request-id")]).toEqual(["nosniff", expect.any(String)]);
    expect(unchanged.headers.get("cache-control")).toBe("no-cache"); // what its 200 says (RFC 9110 15.4.5; found in review)
    const whole = await c.send("GET", "/v1/mesh/node/config", a.token);
    expect([whole.headers.get("cache-control"), whole.headers.get("content-type"), whole.headers.get("x-citadel-version"), whole.headers.get("content-security-policy")]).toEqual([
      "no-cache",
      "application/json",
      String(first.doc!.version),
      expect.stringContaining("default-src 'none'"),
    ]);

    const b = await enroll(c, key, "b", { endpoint: "198.51.100.2:51820" });
    const second = await fetchDocument(c, a, first.etag!);
    expect(second.status).toBe(200);
    expect(second.etag).not.toBe(first.etag);
    expect(second.doc!.version).toBeGreaterThan(first.doc!.version);
    expect(second.doc!.config.peers).toEqual([{ name: "b", publicKey: b.publicKey, nextPublicKey: null, presharedKey: null, allowedIps: ["100.64.0.2/32", expect.stringMatching(/::2\/128$/)], endpoint: "198.51.100.2:51820", keepalive: 25 }]);
    // The same body again: the same ETag (deterministic rendering).
    expect((await fetchDocument(c, a)).etag).toBe(second.etag);

    const bad = await c.send("GET", "/v1/mesh/node/config", a.token.slice(0, -2) + (a.token.endsWith("xx") ? "yy" : "xx")); // surely another token
    expect(bad.status).toBe(401);
    expect((await c.send("GET", "/v1/mesh/node/config", owner)).status).toBe(401); // a user's session is not a node token

    // The operator's rendering: no private key anywhere, wg-quick by default.
    const conf = await c.send("GET", `${net}/nodes/a/config`, owner);
    expect(conf.text).toContain("[Interface]");
    expect(conf.text).toContain(`PublicKey = ${b.publicKey}`);
    expect(conf.text).not.toMatch(/^PrivateKey/m);
    expect((await c.send("GET", `${net}/nodes/a/config?format=nftables`, owner)).text).toContain("table inet");
    // An interface name stored under an older rule: a clear 409, not a 500 (found in review).
    c.kernel.store.db.query("UPDATE mesh_networks SET interface_name = '..'").run();
    expect((await c.send("PATCH", net, owner, { json: { mtu: 1400 } })).status).toBe(200); // it blocks no other change
    const legacy = await c.send("GET", `${net}/nodes/a/config?format=nftables`, owner);
    expect([legacy.status, legacy.body.detail]).toEqual([409, expect.stringContaining("set another with PATCH interface_name")]);
  });

  test("an expiry that is not an RFC 3339 date-time with its offset is refused, 422 naming expires_at, and changes nothing (found in review: \"12/31\" expired the node at once)", async () => {
    const { c, owner, net } = await setup();
    await enroll(c, await preauthKey(c, owner, net), "a");
    for (const expires_at of ["12/31", "1", "March 7", "-000001-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-12-31T00:00:00"]) {
      const refused = await c.send("PATCH", `${net}/nodes/a`, owner, { json: { expires_at } });
      expect([expires_at, refused.status, refused.body.errors?.[0]?.field]).toEqual([expires_at, 422, "expires_at"]);
    }
    expect((await c.send("GET", `${net}/nodes/a`, owner)).body).toMatchObject({ state: "active", expires_at: null });
    const set = await c.send("PATCH", `${net}/nodes/a`, owner, { json: { expires_at: "2099-12-31T01:00:00+01:00" } });
    expect([set.status, set.body.expires_at]).toEqual([200, "2099-12-31T00:00:00.000Z"]);
  });

  test("disabled and expired nodes leave their peers' configs and get 403; enabling brings them back", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    const b = await enroll(c, key, "b");
    expect((await c.send("PATCH", `${net}/nodes/b`, owner, { json: { disabled: true } })).body.state).toBe("disabled");
    expect(peerNames((await fetchDocument(c, a)).doc)).toEqual([]);
    expect((await fetchDocument(c, b)).status).toBe(403);
    await c.send("PATCH", `${net}/nodes/b`, owner, { json: { disabled: false, expires_at: new Date(c.clock.now() + 60_000).toISOString() } });
    const listed = (await fetchDocument(c, a)).doc!;
    expect(peerNames(listed)).toEqual(["b"]);
    c.clock.advance(61_000);
    expect((await fetchDocument(c, b)).status).toBe(403); // at once for the node itself
    // For its peers, expiry is time, not a write: asking for a config acts on it, and b leaves
    // with a new version — never under the version that listed it (found in review).
    let after = (await fetchDocument(c, a)).doc!;
    for (const deadline = Date.now() + 5000; peerNames(after).length > 0 && Date.now() < deadline; await Bun.sleep(5)) after = (await fetchDocument(c, a)).doc!;
    expect(peerNames(after)).toEqual([]);
    expect(after.version).toBeGreaterThan(listed.version);
  });

  test("preshared keys: the same key at both ends of a pair, derived from a keyring-encrypted seed; never shown to operators or stored", async () => {
    const { c, owner, net } = await setup({ name: "vault", preshared_keys: true });
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    const b = await enroll(c, key, "b");
    const d = await enroll(c, key, "d");
    const pa = (await fetchDocument(c, a)).doc!.config.peers;
    const pb = (await fetchDocument(c, b)).doc!.config.peers;
    const ab = pa.find((p) => p.name === "b")!.presharedKey!;
    expect(ab).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(pb.find((p) => p.name === "a")!.presharedKey).toBe(ab);
    expect(pa.find((p) => p.name === "d")!.presharedKey).not.toBe(ab);
    expect((await c.send("GET", `${net}/nodes/a/config`, owner)).text).not.toContain(ab);
    expect(databaseText(c)).not.toContain(ab);
    // A new seed: every pair's key changes — also when another edit of the network lands at the same moment.
    const [rotated, mtu] = await Promise.all([c.send("PATCH", net, owner, { json: { rotate_preshared_keys: true } }), c.send("PATCH", net, owner, { json: { mtu: 1380 } })]);
    expect([rotated.status, mtu.status]).toEqual([200, 200]);
    const after = (await fetchDocument(c, a)).doc!.config;
    expect(after.peers.find((p) => p.name === "b")!.presharedKey).not.toBe(ab);
    expect(after.mtu).toBe(1380);
    expect(d.id).toBeTruthy();
  });
});

describe("preshared keys' rotation", () => {
  test("asked of a network without preshared keys, or with their removal: a 409, no new version, no event (found in review: 200 and nothing done)", async () => {
    const { c, owner, net, network } = await setup({ name: "plain", preshared_keys: false });
    const events = meshEvents(c).length;
    for (const json of [{ rotate_preshared_keys: true }, { rotate_preshared_keys: true, preshared_keys: false }]) {
      const refused = await c.send("PATCH", net, owner, { json });
      expect([refused.status, refused.body.detail]).toEqual([409, "rotate_preshared_keys: the network plain has no preshared keys (preshared_keys: true gives it some)."]);
    }
    expect((await c.send("GET", net, owner)).body.version).toBe(network.version);
    expect(meshEvents(c).length).toBe(events);
    // Turned on in the same request, the network has a seed: 200.
    const turnedOn = await c.send("PATCH", net, owner, { json: { rotate_preshared_keys: true, preshared_keys: true } });
    expect([turnedOn.status, turnedOn.body.preshared_keys]).toEqual([200, true]);
  });
});

describe("a node's own listen port", () => {
  test("set at enrollment, changed and cleared by an operator: ListenPort is its own, else its endpoint's, else the network's; each change a new version, audited", async () => {
    const { c, owner, net } = await setup({ name: "office", listen_port: 51900 });
    const key = await preauthKey(c, owner, net, { reusable: true });
    // Behind a port forward: public 443 to the node's 51820.
    const a = await enroll(c, key, "a", { endpoint: "203.0.113.7:443", listen_port: 51820 });
    const b = await enroll(c, key, "b"); // behind NAT
    const shown = async (name: string) => (await c.send("GET", `${net}/nodes/${name}`, owner)).body.listen_port;
    const listenPort = async (node: Joined) => (await fetchDocument(c, node)).doc!.config.listenPort;
    const wgQuickOf = async (name: string) => (await c.send("GET", `${net}/nodes/${name}/config`, owner)).text;
    const version = async () => (await c.send("GET", net, owner)).body.version as number;

    expect([await shown("a"), await listenPort(a), await wgQuickOf("a")]).toEqual([51820, 51820, expect.stringContaining("\nListenPort = 51820\n")]);
    expect((await fetchDocument(c, b)).doc!.config.peers[0]!.endpoint).toBe("203.0.113.7:443"); // peers still send to the public port
    expect([await shown("b"), await listenPort(b)]).toEqual([null, 51900]);

    const before = await version();
    const changed = await c.send("PATCH", `${net}/nodes/a`, owner, { json: { listen_port: 51821 } });
    expect([changed.status, changed.body.listen_port]).toEqual([200, 51821]);
    expect([await listenPort(a), await wgQuickOf("a")]).toEqual([51821, expect.stringContaining("\nListenPort = 51821\n")]);
    expect(await version()).toBeGreaterThan(before);
    // A host that is a node of another network too, behind NAT: a port of its own for this one.
    expect((await c.send("PATCH", `${net}/nodes/b`, owner, { json: { listen_port: 51822 } })).body.listen_port).toBe(51822);
    expect(await listenPort(b)).toBe(51822);

    // Cleared: the endpoint's port again, else the network's.
    const cleared = await c.send("PATCH", `${net}/nodes/a`, owner, { json: { listen_port: null } });
    expect([cleared.status, cleared.body.listen_port]).toEqual([200, null]);
    expect([await listenPort(a), await wgQuickOf("a")]).toEqual([443, expect.stringContaining("\nListenPort = 443\n")]);
    expect((await c.send("PATCH", `${net}/nodes/b`, owner, { json: { listen_port: null } })).body.listen_port).toBe(null);
    expect(await listenPort(b)).toBe(51900);
    expect(meshEvents(c).filter((e) => e.action === "mesh.node.update")).toEqual(Array(4).fill({ action: "mesh.node.update", outcome: "success", reason: "listen_port" }));
    expect(meshEvents(c).filter((e) => e.action === "mesh.node.enroll" && e.reason!.endsWith(", listen port 51820"))).toHaveLength(1);
  });

  test("out of range: 422 naming listen_port, at enrollment and in a change; nothing changes", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    await enroll(c, key, "a", { listen_port: 51820 });
    const version = async () => (await c.send("GET", net, owner)).body.version as number;
    const before = await version();
    for (const port of [0, 70000]) {
      c.clock.advance(10_000); // enrollment is under the login endpoints' rate limit
      const enrolling = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name: `p${port}`, public_key: (await generateKeyPair()).publicKey, listen_port: port } });
      expect([enrolling.status, enrolling.body.errors?.[0]?.field, enrolling.body.detail]).toEqual([422, "listen_port", "listen_port: an integer from 1 to 65535"]);
      const changing = await c.send("PATCH", `${net}/nodes/a`, owner, { json: { listen_port: port } });
      expect([changing.status, changing.body.errors?.[0]?.field, changing.body.detail]).toEqual([422, "listen_port", "listen_port: an integer from 1 to 65535"]);
    }
    expect((await c.send("GET", `${net}/nodes`, owner)).body.items.map((n: { name: string; listen_port: number | null }) => [n.name, n.listen_port])).toEqual([["a", 51820]]);
    expect(await version()).toBe(before);
    expect(meshEvents(c).filter((e) => e.outcome === "failure")).toEqual(Array(2).fill({ action: "mesh.node.enroll", outcome: "failure", reason: "invalid listen port" }));
  });
});

describe("an organization erased", () => {
  test("its networks' names and configs are dropped at once, not at the next mesh change", async () => {
    const { c } = await setup();
    const { meshOf } = await import("../../../plugins/mesh/index.ts");
    const { meshSubjects } = await import("../../../plugins/mesh/subject.ts");
    const { mesh } = meshOf(c.kernel as never);
    const heard: string[] = [];
    mesh.onChange((id) => heard.push(id));
    const id = (c.kernel.store.db.query("SELECT id FROM mesh_networks").get() as { id: string }).id;
    await c.kernel.store.write((tx) => meshSubjects(mesh).erase!(tx, { kind: "organization", id: c.owner.organization }, c.clock.now()));
    for (const until = Date.now() + 10_000; heard.length === 0 && Date.now() < until; ) await Bun.sleep(5);
    expect(heard).toEqual([id]);
  });
});

describe("ACL", () => {
  test("rules decide peers and firewalls; versions, history, validation, optimistic concurrency; audited", async () => {
    const { c, owner, net } = await setup();
    const webKey = await preauthKey(c, owner, net, { reusable: true, tags: ["web"] });
    const dbKey = await preauthKey(c, owner, net, { reusable: true, tags: ["db"] });
    const web = await enroll(c, webKey, "web1");
    const db = await enroll(c, dbKey, "db1");
    const other = await enroll(c, dbKey, "db2");
    expect(peerNames((await fetchDocument(c, web)).doc)).toEqual(["db1", "db2"]);

    const policy = { rules: [{ src: ["tag:web"], dst: ["node:db1"], ports: ["tcp/5432"] }] };
    const set = await c.send("PUT", `${net}/acl`, owner, { json: { policy, expected_version: 0 } });
    expect(set.status).toBe(200);
    expect(set.body.version).toBe(1);
    expect(peerNames((await fetchDocument(c, web)).doc)).toEqual(["db1"]);
    expect(peerNames((await fetchDocument(c, other)).doc)).toEqual([]); // deny by default
    const dbDoc = (await fetchDocument(c, db)).doc!;
    expect(peerNames(dbDoc)).toEqual(["web1"]); // replies need the tunnel
    expect(dbDoc.config.firewall!.input).toEqual([{ sources: ["100.64.0.1", expect.stringMatching(/::1$/)], destinations: null, ports: [{ protocol: "tcp", from: 5432, to: 5432 }] }]);

    expect((await c.send("PUT", `${net}/acl`, owner, { json: { policy, expected_version: 0 } })).status).toBe(412);
    const bad = await c.send("PUT", `${net}/acl`, owner, { json: { policy: { rules: [{ src: ["tag:web"], dst: ["*"], ports: ["70000"] }] } } });
    expect(bad.status).toBe(422);
    expect(bad.body.detail).toContain("rules[0].ports[0]");
    const unknown = await c.send("PUT", `${net}/acl`, owner, { json: { policy: { rules: [{ src: ["node:ghost"], dst: ["*"], ports: ["*"] }] } } });
    expect(unknown.status).toBe(422);
    expect(unknown.body.detail).toContain("ghost");
    expect((await c.send("PUT", `${net}/acl`, owner, { json: { policy: { rules: [] } } })).body.version).toBe(2);
    const history = await c.send("GET", `${net}/acl/versions`, owner);
    expect(history.body.items.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    expect(meshEvents(c).filter((e) => e.action === "mesh.acl.update").map((e) => e.reason)).toEqual(["version 1, 1 rule(s)", "version 2, 0 rule(s) (deny all)"]);
  });

  test("a policy without rules lets nobody reach anybody; removing the policy lets everyone again (found in review: an empty policy allowed all)", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const [a, b] = [await enroll(c, key, "a"), await enroll(c, key, "b")];
    const acl = () => c.send("GET", `${net}/acl`, owner).then((r) => r.body);
    // Never set: no policy, every node reaches every node.
    expect(await acl()).toMatchObject({ version: 0, policy: null });
    expect((await fetchDocument(c, a)).doc!.config.firewall).toBeNull();

    // Locked down: the last rule removed, nobody reaches anybody.
    expect((await c.send("PUT", `${net}/acl`, owner, { json: { policy: { rules: [{ src: ["*"], dst: ["*"], ports: ["*"] }] } } })).body.version).toBe(1);
    expect((await c.send("PUT", `${net}/acl`, owner, { json: { policy: { rules: [] } } })).body.version).toBe(2);
    for (const node of [a, b]) {
      const locked = (await fetchDocument(c, node)).doc!;
      expect([peerNames(locked), locked.config.firewall]).toEqual([[], { input: [], forward: null }]);
    }

    // Removed: everyone again, a new version, audited; kept in the history as none.
    const removed = await c.send("DELETE", `${net}/acl`, owner);
    expect([removed.status, removed.body.version, removed.body.policy]).toEqual([200, 3, null]);
    expect(await acl()).toMatchObject({ version: 3, policy: null });
    expect(peerNames((await fetchDocument(c, a)).doc)).toEqual(["b"]);
    expect((await fetchDocument(c, b)).doc!.config.firewall).toBeNull();
    expect((await c.send("GET", `${net}/acl/versions`, owner)).body.items.map((v: { version: number; policy: unknown }) => [v.version, v.policy]).slice(0, 2)).toEqual([
      [3, null],
      [2, { rules: [] }],
    ]);
    // Nothing left to remove: no new version, no event; a stale expected_version is refused.
    expect((await c.send("DELETE", `${net}/acl`, owner)).body.version).toBe(3);
    expect((await c.send("DELETE", `${net}/acl?expected_version=2`, owner)).status).toBe(412);
    expect(meshEvents(c).filter((e) => e.action === "mesh.acl.delete").map((e) => e.reason)).toEqual(["version 3, no policy: every node reaches every node"]);
  });
});

describe("key rotation", () => {
  test("overlap: peers get the next key beside the old one; the node switches when they applied it; its report completes the rotation", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    const b = await enroll(c, key, "b");
    const d = await enroll(c, key, "d");
    for (const n of [a, b, d]) {
      const doc = (await fetchDocument(c, n)).doc!;
      await c.send("POST", "/v1/mesh/node/applied", n.token, { json: { version: doc.version, public_key: n.publicKey } });
    }
    const next = await generateKeyPair();
    c.clock.advance(1000); // versions follow the clock too
    const started = await c.send("POST", "/v1/mesh/node/rotate", a.token, { json: { public_key: next.publicKey } });
    expect(started.status).toBe(200);
    const fromB = (await fetchDocument(c, b)).doc!;
    expect(started.body.version).toBe(fromB.version); // the version that announces the next key (found in review)
    expect(fromB.config.peers.find((p) => p.name === "a")).toMatchObject({ publicKey: a.publicKey, nextPublicKey: next.publicKey });
    expect((await fetchDocument(c, a)).doc!.rotation).toEqual({ next_public_key: next.publicKey, switch: false });

    await c.send("POST", "/v1/mesh/node/applied", b.token, { json: { version: fromB.version, public_key: b.publicKey } });
    expect((await fetchDocument(c, a)).doc!.rotation!.switch).toBe(false); // d has not applied it yet
    await c.send("POST", "/v1/mesh/node/applied", d.token, { json: { version: (await fetchDocument(c, d)).doc!.version, public_key: d.publicKey } });
    const ready = (await fetchDocument(c, a)).doc!;
    expect(ready.rotation!.switch).toBe(true);

    const done = await c.send("POST", "/v1/mesh/node/applied", a.token, { json: { version: ready.version, public_key: next.publicKey } });
    expect(done.body.rotation).toBe("completed");
    expect((await fetchDocument(c, b)).doc!.config.peers.find((p) => p.name === "a")).toMatchObject({ publicKey: next.publicKey, nextPublicKey: null });
    expect((await fetchDocument(c, a)).doc!.rotation).toBeNull();
    expect(meshEvents(c).filter((e) => e.action === "mesh.node.rotate").map((e) => e.reason!.split(":")[0])).toEqual(["started", "completed"]);
    // A rotation to a key another node holds is refused.
    expect((await c.send("POST", "/v1/mesh/node/rotate", b.token, { json: { public_key: d.publicKey } })).status).toBe(409);
  });

  test("an offline peer does not block a rotation forever: after rotation_wait_minutes the node may switch", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    await enroll(c, key, "offline");
    await c.send("POST", "/v1/mesh/node/rotate", a.token, { json: { public_key: (await generateKeyPair()).publicKey } });
    expect((await fetchDocument(c, a)).doc!.rotation!.switch).toBe(false);
    c.clock.advance(10 * 60_000);
    expect((await fetchDocument(c, a)).doc!.rotation!.switch).toBe(true);
  });
});

describe("key rotations that never complete (found in review: they never ended, and kept every peer polling every second)", () => {
  async function rotating() {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    const b = await enroll(c, key, "b");
    const next = await generateKeyPair();
    expect((await c.send("POST", "/v1/mesh/node/rotate", a.token, { json: { public_key: next.publicKey } })).status).toBe(200);
    const aAsPeerOfB = async () => (await fetchDocument(c, b)).doc!.config.peers.find((p) => p.name === "a");
    expect((await aAsPeerOfB())!.nextPublicKey).toBe(next.publicKey);
    return { c, owner, net, a, b, aAsPeerOfB, rotateEvents: () => meshEvents(c).filter((e) => e.action === "mesh.node.rotate").map((e) => e.reason!.split(":")[0]) };
  }

  test("given up a day after its switch could come (rotation_wait_minutes): peers drop the next key, with a new version, audited once", async () => {
    const { c, aAsPeerOfB, rotateEvents } = await rotating();
    const { mesh } = meshOf(c.kernel as never);
    c.clock.advance(10 * 60_000 + 24 * 60 * 60_000 - 1000);
    expect(await mesh.expireRotations()).toBe(0);
    c.clock.advance(1000);
    expect(await mesh.expireRotations()).toBe(1);
    expect(await mesh.expireRotations()).toBe(0);
    expect((await aAsPeerOfB())!.nextPublicKey).toBeNull();
    expect(rotateEvents()).toEqual(["started", "given up"]);
  });

  test("an operator cancels one (cancel_rotation, audited); a disable calls it off too, so the node enabled again is not half-rotated", async () => {
    const { c, owner, net, a, aAsPeerOfB } = await rotating();
    const version = async () => (await c.send("GET", net, owner)).body.version as number;
    const cancelled = await c.send("PATCH", `${net}/nodes/a`, owner, { json: { cancel_rotation: true } });
    expect([cancelled.status, cancelled.body.next_public_key]).toEqual([200, null]);
    expect((await aAsPeerOfB())!.nextPublicKey).toBeNull();
    const before = await version();
    expect((await c.send("PATCH", `${net}/nodes/a`, owner, { json: { cancel_rotation: true } })).status).toBe(200); // none to cancel: no change
    expect(await version()).toBe(before);

    expect((await c.send("POST", "/v1/mesh/node/rotate", a.token, { json: { public_key: (await generateKeyPair()).publicKey } })).status).toBe(200);
    await c.send("PATCH", `${net}/nodes/a`, owner, { json: { disabled: true } });
    await c.send("PATCH", `${net}/nodes/a`, owner, { json: { disabled: false } });
    expect((await aAsPeerOfB())!.nextPublicKey).toBeNull();
    expect(meshEvents(c).filter((e) => e.action === "mesh.node.update").map((e) => e.reason)).toEqual(["key rotation cancelled", "disabled false → true, key rotation cancelled", "disabled true → false"]);
  });
});

describe("a key switch the control plane no longer expects (found in review: accepted, the node ran a key no peer listed, for ever)", () => {
  async function switched() {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    const b = await enroll(c, key, "b");
    const next = await generateKeyPair();
    await c.send("POST", "/v1/mesh/node/rotate", a.token, { json: { public_key: next.publicKey } });
    c.clock.advance(10 * 60_000);
    const ready = (await fetchDocument(c, a)).doc!;
    expect(ready.rotation!.switch).toBe(true); // a's agent switches now
    return { c, owner, net, a, b, next, ready };
  }
  const peerAOf = async (c: Awaited<ReturnType<typeof switched>>["c"], b: Awaited<ReturnType<typeof switched>>["b"]) => (await fetchDocument(c, b)).doc!.config.peers.find((p) => p.name === "a");

  test("after a cancel, the report of the next key answers 409 key_mismatch and changes nothing; the node's own key is still taken", async () => {
    const { c, net, owner, a, b, next, ready } = await switched();
    expect((await c.send("PATCH", `${net}/nodes/a`, owner, { json: { cancel_rotation: true } })).status).toBe(200);
    const report = await c.send("POST", "/v1/mesh/node/applied", a.token, { json: { version: ready.version, public_key: next.publicKey } });
    expect([report.status, report.body.code]).toEqual([409, "key_mismatch"]);
    expect(await peerAOf(c, b)).toMatchObject({ publicKey: a.publicKey, nextPublicKey: null });
    const back = await c.send("POST", "/v1/mesh/node/applied", a.token, { json: { version: ready.version, public_key: a.publicKey } });
    expect([back.status, back.body.rotation]).toEqual([200, null]);
  });

  test("given up, the same; a report of the key the rotation completed to is still taken once more", async () => {
    const { c, a, next, ready } = await switched();
    const { mesh } = meshOf(c.kernel as never);
    c.clock.advance(24 * 60 * 60_000);
    expect(await mesh.expireRotations()).toBe(1);
    expect((await c.send("POST", "/v1/mesh/node/applied", a.token, { json: { version: ready.version, public_key: next.publicKey } })).status).toBe(409);

    const other = await generateKeyPair();
    await c.send("POST", "/v1/mesh/node/rotate", a.token, { json: { public_key: other.publicKey } });
    expect((await c.send("POST", "/v1/mesh/node/applied", a.token, { json: { version: ready.version, public_key: other.publicKey } })).body.rotation).toBe("completed");
    expect((await c.send("POST", "/v1/mesh/node/applied", a.token, { json: { version: ready.version, public_key: other.publicKey } })).body.rotation).toBeNull(); // a lost answer, reported again
  });
});

describe("DNS names", () => {
  test("<node>.<network>.<domain> A and AAAA through the record provider, following enrollments and removals", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    await enroll(c, key, "db1");
    const provider = c.kernel.records.list().find((p) => p.name === "mesh")!;
    expect(provider.domain).toBe("mesh.internal.");
    const records = provider.records();
    expect(records.map((r) => `${r.name} ${r.type}`)).toEqual(["db1.office.mesh.internal. A", "db1.office.mesh.internal. AAAA"]);
    expect(records[0]!.data).toBe("100.64.0.1");
    let changes = 0;
    c.kernel.records.onChange(() => changes++);
    await c.send("DELETE", `${net}/nodes/db1`, owner);
    expect(changes).toBe(1);
    expect(provider.records()).toEqual([]);
  });

  test("a network's clients are its active nodes' addresses, as served, not its prefix: following enrollments, removals, expiry and another organization's overlap (found in review)", async () => {
    const { c, owner, net, network } = await setup();
    const provider = c.kernel.records.list().find((p) => p.name === "mesh")!;
    const told = (client: string, name = "office.mesh.internal.") => provider.mayAsk!(client, name);
    const key = await preauthKey(c, owner, net, { reusable: true });
    expect(told("100.64.0.1")).toBe(false);
    const db1 = await enroll(c, key, "db1");
    const [v4, v6] = ["100.64.0.1", `${network.ipv6.replace(/::\/48$/, "")}::1`];
    expect([told(v4), told(v6), told(v4, "db1.office.mesh.internal.")]).toEqual([true, true, true]);
    // Inside the prefix, no node's: a host behind a subnet router, or an address anyone can number a network over.
    expect([told("100.64.0.2"), told("100.64.200.9"), told(v6.replace(/1$/, "2"))]).toEqual([false, false, false]);
    // Another organization's network over office's prefix: its node at another address is its own network's client only.
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    const theirs = `/v1/mesh/orgs/${(await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "other", owner: me } })).body.id}/networks`;
    c.clock.advance(1); // made after the other: the test clock stands still, and a tie goes by the (random) ids
    expect((await c.send("POST", theirs, owner, { json: { name: "ops", ipv4: "100.64.0.0/16" } })).status).toBe(200);
    const opsKey = await preauthKey(c, owner, `${theirs}/ops`, { reusable: true });
    const app1 = await enroll(c, opsKey, "app1");
    expect(app1.ipv4).toBe("100.64.0.2"); // past db1's address, another organization's
    expect([told(v4), told("100.64.0.2"), told("100.64.0.2", "ops.mesh.internal.")]).toEqual([true, false, true]);
    // Both organizations' nodes at one address (a sharing from before enrollment passed over them): told the older network's (office's) names only.
    c.kernel.store.db.query("UPDATE mesh_nodes SET host = 1 WHERE id = ?").run(app1.id);
    // The change that reads the addresses again is app1's expiry set (it expires below).
    await c.send("PATCH", `${theirs}/ops/nodes/app1`, owner, { json: { expires_at: new Date(c.clock.now() + 60_000).toISOString() } });
    expect([told(v4), told(v4, "ops.mesh.internal."), told(v6)]).toEqual([true, false, true]);
    expect((await c.send("DELETE", `${net}/nodes/${db1.name}`, owner)).status).toBe(200);
    expect([told(v4), told(v4, "ops.mesh.internal."), told(v6)]).toEqual([false, true, false]);
    // An expired node is a client no longer once its expiry is noted (a change, as its names go).
    c.clock.advance(61_000);
    expect(await meshOf(c.kernel as never).mesh.expireNodes()).toBe(1);
    expect(told(v4, "ops.mesh.internal.")).toBe(false);
  });

  test("a change reads the nodes once, for the records and their clients alike (found in review: twice, for every change)", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    await enroll(c, key, "db1");
    await enroll(c, key, "db2");
    const { mesh } = meshOf(c.kernel as never);
    const provider = c.kernel.records.list().find((p) => p.name === "mesh")!;
    const addressesOf = mesh.addressesOf;
    let read = 0;
    mesh.addressesOf = (network, host) => (read++, addressesOf.call(mesh, network, host));
    try {
      expect((await c.send("PATCH", net, owner, { json: { mtu: 1380 } })).status).toBe(200); // a change that moves no address
      provider.records(); // as the DNS server reloads them, more than once (its fingerprint, then the zone)
      provider.records();
      expect(read).toBe(2); // each node once
    } finally {
      mesh.addressesOf = addressesOf;
    }
    expect(provider.records().map((r) => r.data)).toEqual(["100.64.0.1", expect.any(String), "100.64.0.2", expect.any(String)]);
    expect([provider.mayAsk!("100.64.0.2", "db1.office.mesh.internal."), provider.mayAsk!("100.64.0.3", "office.mesh.internal.")]).toEqual([true, false]);
  });

  test("the default pool's fallback over another organization's network: the newer network's enrollment passes over the older's nodes' addresses, not the other way, and the older keeps a shared address's names (found in review)", async () => {
    const c = await testCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    const theirs = `/v1/mesh/orgs/${(await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "other", owner: me } })).body.id}/networks`;
    expect((await c.send("POST", theirs, owner, { json: { name: "wide", ipv4: "100.64.0.0/10" } })).status).toBe(200);
    const wideKey = await preauthKey(c, owner, `${theirs}/wide`, { reusable: true });
    expect((await enroll(c, wideKey, "w1")).ipv4).toBe("100.64.0.1");
    // No /16 of 100.64.0.0/10 is clear of wide: office falls back to the first clear of its own organization's.
    const networks = `/v1/mesh/orgs/${c.owner.organization}/networks`;
    c.clock.advance(1); // made after the other: the test clock stands still, and a tie goes by the (random) ids
    const office = await c.send("POST", networks, owner, { json: { name: "office" } });
    expect(office.body.ipv4).toBe("100.64.0.0/16");
    const officeKey = await preauthKey(c, owner, `${networks}/office`, { reusable: true });
    expect((await enroll(c, officeKey, "o1")).ipv4).toBe("100.64.0.2");
    const provider = c.kernel.records.list().find((p) => p.name === "mesh")!;
    const told = (client: string, name: string) => provider.mayAsk!(client, name);
    expect([told("100.64.0.1", "w1.wide.mesh.internal."), told("100.64.0.2", "o1.office.mesh.internal.")]).toEqual([true, true]);
    expect([told("100.64.0.1", "office.mesh.internal."), told("100.64.0.2", "wide.mesh.internal.")]).toEqual([false, false]);
    // wide, the older, is not kept from office's addresses (else a newcomer could fill its pool): o1's is then wide's client.
    expect((await enroll(c, wideKey, "w2")).ipv4).toBe("100.64.0.2");
    expect([told("100.64.0.2", "w2.wide.mesh.internal."), told("100.64.0.2", "o1.office.mesh.internal.")]).toEqual([true, false]);
  });

  test("an admin who gives another organization's prefixes cannot take its nodes' addresses: its nodes get others, every node is told its names, and a pool the others fill is full (found in review)", async () => {
    const { c, owner, networks, net, network } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const prefix6 = network.ipv6.replace(/::\/48$/, "");
    await enroll(c, key, "db1");
    await enroll(c, key, "db2");
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    const theirs = `/v1/mesh/orgs/${(await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "other", owner: me } })).body.id}/networks`;
    c.clock.advance(1); // made after the other: the test clock stands still, and a tie goes by the (random) ids
    expect((await c.send("POST", theirs, owner, { json: { name: "copy", ipv4: network.ipv4, ipv6: network.ipv6 } })).status).toBe(200);
    const copyKey = await preauthKey(c, owner, `${theirs}/copy`, { reusable: true });
    expect([(await enroll(c, copyKey, "x1")).ipv4, (await enroll(c, copyKey, "x2")).ipv4]).toEqual(["100.64.0.3", "100.64.0.4"]);
    const provider = c.kernel.records.list().find((p) => p.name === "mesh")!;
    const told = (client: string, name: string) => provider.mayAsk!(client, name);
    for (const [host, name] of [[1, "db1.office"], [2, "db2.office"], [3, "x1.copy"], [4, "x2.copy"]] as const) {
      expect([told(`100.64.0.${host}`, `${name}.mesh.internal.`), told(`${prefix6}::${host}`, `${name}.mesh.internal.`)]).toEqual([true, true]);
    }
    // A /30 has two addresses: one office's, one left for the copy, and none after it.
    const tiny = await c.send("POST", networks, owner, { json: { name: "tiny", ipv4: "10.0.0.0/30" } });
    const tinyKey = await preauthKey(c, owner, `${networks}/tiny`, { reusable: true });
    expect((await enroll(c, tinyKey, "t1")).ipv4).toBe("10.0.0.1");
    c.clock.advance(1); // made after the other: the test clock stands still, and a tie goes by the (random) ids
    expect((await c.send("POST", theirs, owner, { json: { name: "tinycopy", ipv4: "10.0.0.0/30", ipv6: tiny.body.ipv6 } })).status).toBe(200);
    const tinyCopyKey = await preauthKey(c, owner, `${theirs}/tinycopy`, { reusable: true });
    expect((await enroll(c, tinyCopyKey, "u1")).ipv4).toBe("10.0.0.2");
    const full = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key: tinyCopyKey, name: "u2", public_key: (await generateKeyPair()).publicKey } });
    expect([full.status, full.body.detail]).toEqual([409, "pool 10.0.0.0/30 is full (2 addresses): 1 of them held by nodes of other organizations' networks over it"]);
  });

  test("a network made over an older one's prefix, its nodes at every free address, does not fill the older one's pool: the older keeps enrolling and keeps the shared addresses' names (found in review)", async () => {
    const { c, owner, networks } = await setup();
    const tiny = await c.send("POST", networks, owner, { json: { name: "tiny", ipv4: "10.0.0.0/30", ipv6: "fd00:77::/48" } });
    const tinyKey = await preauthKey(c, owner, `${networks}/tiny`, { reusable: true });
    expect((await enroll(c, tinyKey, "t1")).ipv4).toBe("10.0.0.1");
    const me = (await c.send("GET", "/v1/iam/me", owner)).body.id as string;
    const theirs = `/v1/mesh/orgs/${(await c.send("POST", "/v1/iam/orgs", owner, { json: { name: "squatter", owner: me } })).body.id}/networks`;
    c.clock.advance(1); // made after the other: the test clock stands still, and a tie goes by the (random) ids
    expect((await c.send("POST", theirs, owner, { json: { name: "squat", ipv4: "10.0.0.0/30", ipv6: tiny.body.ipv6 } })).status).toBe(200);
    const squatKey = await preauthKey(c, owner, `${theirs}/squat`, { reusable: true });
    // The newcomer passes over t1's address and takes the other of the two.
    expect((await enroll(c, squatKey, "s1")).ipv4).toBe("10.0.0.2");
    const full = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key: squatKey, name: "s2", public_key: (await generateKeyPair()).publicKey } });
    expect([full.status, full.body.detail]).toEqual([409, "pool 10.0.0.0/30 is full (2 addresses): 1 of them held by nodes of other organizations' networks over it"]);
    // The older network still enrolls, at the newcomer's addresses, whose names are then tiny's.
    expect((await enroll(c, tinyKey, "t2")).ipv4).toBe("10.0.0.2");
    const provider = c.kernel.records.list().find((p) => p.name === "mesh")!;
    expect([provider.mayAsk!("10.0.0.2", "t2.tiny.mesh.internal."), provider.mayAsk!("10.0.0.2", "s1.squat.mesh.internal."), provider.mayAsk!("10.0.0.1", "t1.tiny.mesh.internal.")]).toEqual([true, false, true]);
  });

  test("the DNS server answers them: a node's name resolves on the wire, and stops resolving once it is removed", async () => {
    const port = await freeUdpTcpPort();
    const c = await testCitadel({ config: { dns: { udp: [`127.0.0.1:${port}`], tcp: [] } } });
    try {
      const owner = await c.login(c.owner.email, c.owner.password);
      const net = `/v1/mesh/orgs/${c.owner.organization}/networks/office`;
      await c.send("POST", `/v1/mesh/orgs/${c.owner.organization}/networks`, owner, { json: { name: "office" } });
      const key = await preauthKey(c, owner, net, { reusable: true });
      await enroll(c, key, "db1");
      const client = await DnsClient.open(port);
      const ask = async (type: number) => client.query(buildQuery({ name: parseName("db1.office.mesh.internal.", null), type }));
      const a = await ask(1);
      expect(a.rcode).toBe(0);
      expect(a.aa).toBe(true);
      expect(a.answer.map((r) => rdataToText(r.type, r.rdata))).toEqual(["100.64.0.1"]);
      expect((await ask(28)).answer.map((r) => rdataToText(r.type, r.rdata))[0]).toMatch(/::1$/);
      await c.send("DELETE", `${net}/nodes/db1`, owner);
      expect((await ask(1)).rcode).toBe(3); // NXDOMAIN
    } finally {
      await c.stop();
    }
  });
});

describe("hardening (from the security review)", () => {
  test("a single-use key enrolls exactly one node when many requests race with it", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net);
    const results = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => (await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name: `n${i}`, public_key: (await generateKeyPair()).publicKey } })).status),
    );
    expect(results.filter((s) => s === 200)).toHaveLength(1);
    expect(results.filter((s) => s === 401)).toHaveLength(4);
    expect((await c.send("GET", `${net}/keys`, owner)).body.items[0].used).toBe(1);
  });

  test("a workload token makes no pre-auth key (the key would outlive it)", async () => {
    const { c, owner, net } = await setup();
    const pat = (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: "ci", scopes: ["mesh:admin", "mesh:write", "mesh:read"] } })).body.token;
    const exchanged = await c.send("POST", "/oauth/token", undefined, { json: { grant_type: "urn:ietf:params:oauth:grant-type:token-exchange", subject_token: pat, scope: "mesh:admin mesh:write mesh:read" } });
    const refused = await c.send("POST", `${net}/keys`, exchanged.body.access_token, { json: { reusable: true, expires_minutes: 60 } });
    expect([refused.status, refused.body.code]).toEqual([403, "forbidden"]);
    expect((await c.send("POST", `${net}/keys`, pat, { json: { reusable: true, expires_minutes: 60 } })).status).toBe(200);
  });

  test("endpoints: IPv6 only in brackets, IPv4 or a name without; what wg and the agent parse", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const status = async (endpoint: string) => (await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name: `e${Math.random().toString(36).slice(2, 8)}`, public_key: (await generateKeyPair()).publicKey, endpoint } })).status;
    expect(await status("[1.2.3.4]:51820")).toBe(422);
    expect(await status("2001:db8::1:51820")).toBe(422);
    expect(await status("1.2.3.4:0")).toBe(422);
    expect(await status("[2001:db8::1]:51820")).toBe(200);
    expect(await status("vpn.example.org:51820")).toBe(200);
    expect(await status("198.51.100.7:51820")).toBe(200);
    // Addresses a peer would reach itself at, never this node: every peer would send there.
    c.clock.advance(10_000); // enrollment is under the login endpoints' rate limit
    const refused = ["127.0.0.1:51820", "[::1]:51820", "169.254.169.254:80", "0.0.0.0:51820", "[fe80::1]:51820", "[::ffff:127.0.0.1]:53"];
    refused.push("localhost:51820", "db.localhost:1", "224.0.0.1:51820", "255.255.255.255:1", "[ff02::1]:51820", "[::127.0.0.1]:51820");
    refused.push("0x7f000001:51820", "0x7f.1:51820", "2130706433:51820", "ip6-localhost:51820"); // numbers a resolver reads as addresses
    for (const own of refused) {
      c.clock.advance(1000);
      expect([own, await status(own)]).toEqual([own, 422]);
    }
  });

  test("an endpoint inside the network's own addresses is refused, 422 naming endpoint, at enrollment and in a change (found in review)", async () => {
    const { c, owner, net, network } = await setup({ name: "office", ipv4: "100.64.0.0/10", ipv6: "fd7a:115c:a1e0::/48" });
    const key = await preauthKey(c, owner, net, { reusable: true });
    const inside = ["100.64.0.1:51820", "100.100.7.9:51820", "[fd7a:115c:a1e0::1]:51820", "[::ffff:100.64.0.1]:51820"];
    for (const endpoint of inside) {
      c.clock.advance(1000); // enrollment is under the login endpoints' rate limit
      const refused = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name: "x", public_key: (await generateKeyPair()).publicKey, endpoint } });
      expect([endpoint, refused.status, refused.body.errors?.[0]?.field]).toEqual([endpoint, 422, "endpoint"]);
    }
    await enroll(c, key, "a", { endpoint: "100.128.0.1:51820" }); // just past 100.64.0.0/10
    for (const endpoint of inside) {
      const refused = await c.send("PATCH", `${net}/nodes/a`, owner, { json: { endpoint } });
      expect([endpoint, refused.status, refused.body.errors?.[0]?.field]).toEqual([endpoint, 422, "endpoint"]);
    }
    expect((await c.send("GET", `${net}/nodes/a`, owner)).body.endpoint).toBe("100.128.0.1:51820");
    expect(network.ipv6).toBe("fd7a:115c:a1e0::/48");
  });

  test("a network's IPv6 prefix is a locally assigned ULA (fd00::/8): fc00::/8 is refused, 422 naming ipv6 (found in review)", async () => {
    const { c, owner, networks } = await setup();
    const refused = await c.send("POST", networks, owner, { json: { name: "lab", ipv6: "fc00::/48" } });
    expect([refused.status, refused.body.errors?.[0]?.field]).toEqual([422, "ipv6"]);
  });

  test("a node's update is audited with its tags, hub and disabled as before → after (found in review: field names only)", async () => {
    const { c, owner, net } = await setup();
    await enroll(c, await preauthKey(c, owner, net, { tags: ["web"] }), "a");
    await c.send("PATCH", `${net}/nodes/a`, owner, { json: { tags: ["db", "web"], hub: true, endpoint: "198.51.100.1:51820" } });
    await c.send("PATCH", `${net}/nodes/a`, owner, { json: { disabled: true, tags: [] } });
    expect(meshEvents(c).filter((e) => e.action === "mesh.node.update").map((e) => e.reason)).toEqual(["endpoint, hub false → true, tags web → db,web", "disabled false → true, tags db,web → none"]);
  });

  test("a node's own request cannot undo an operator's disable, and a disabled node cannot start a rotation", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    const [patched] = await Promise.all([
      c.send("PATCH", `${net}/nodes/a`, owner, { json: { disabled: true } }),
      c.send("POST", "/v1/mesh/node/rotate", a.token, { json: { public_key: (await generateKeyPair()).publicKey } }),
    ]);
    expect(patched.status).toBe(200);
    expect((await c.send("GET", `${net}/nodes/a`, owner)).body.state).toBe("disabled");
    expect((await c.send("POST", "/v1/mesh/node/rotate", a.token, { json: { public_key: (await generateKeyPair()).publicKey } })).status).toBe(403);
  });

  test("a node disabled between its authentication and its rotation is refused as standing_ended, as authenticateNode refuses it (found in review)", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    const { mesh } = meshOf({ store: c.kernel.store } as never);
    const row = mesh.authenticateNode(a.token); // the request is past its authentication…
    await c.send("PATCH", `${net}/nodes/a`, owner, { json: { disabled: true } }); // …when the operator disables the node
    const refused = await mesh.startRotation(row, {}, (await generateKeyPair()).publicKey).catch((e: Error) => e);
    expect((refused as { code?: string }).code).toBe("standing_ended");
  });

  test("two changes to a node at once both stand: a retag does not undo a disable (found in review)", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    await enroll(c, key, "a");
    const [disabled, retagged] = await Promise.all([
      c.send("PATCH", `${net}/nodes/a`, owner, { json: { disabled: true } }),
      c.send("PATCH", `${net}/nodes/a`, owner, { json: { tags: ["web"] } }),
    ]);
    expect([disabled.status, retagged.status]).toEqual([200, 200]);
    expect((await c.send("GET", `${net}/nodes/a`, owner)).body).toMatchObject({ state: "disabled", tags: ["web"] });
  });

  test("a node the ACL names cannot be removed (a newcomer would inherit its rules); editors cannot retag nodes", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    await enroll(c, key, "db");
    await c.send("PUT", `${net}/acl`, owner, { json: { policy: { rules: [{ src: ["*"], dst: ["node:db"], ports: ["tcp/5432"] }] } } });
    const refused = await c.send("DELETE", `${net}/nodes/db`, owner);
    expect(refused.status).toBe(409);
    expect(refused.body.detail).toContain("node:db");
    const editor = await c.addUser(await c.login(c.owner.email, c.owner.password), "editor@example.org", "editor");
    expect((await c.send("PATCH", `${net}/nodes/db`, editor.token, { json: { tags: ["admin"] } })).status).toBe(403);
    expect((await c.send("PATCH", `${net}/nodes/db`, editor.token, { json: { hub: true } })).status).toBe(403);
  });

  test("an applied version the network never had is not believed", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    await c.send("POST", "/v1/mesh/node/applied", a.token, { json: { version: 1_000_000, public_key: a.publicKey } });
    const node = (await c.send("GET", `${net}/nodes/a`, owner)).body;
    expect(node.applied_version).toBeLessThanOrEqual((await c.send("GET", net, owner)).body.version);
  });

  test("expiry becomes a change: a new version, the name gone from DNS, an audit event", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true, node_ttl_days: 1 });
    await enroll(c, key, "short");
    const before = (await c.send("GET", net, owner)).body.version;
    const { meshOf } = await import("../../../plugins/mesh/index.ts");
    const { mesh } = meshOf({ store: c.kernel.store } as never);
    expect(await mesh.expireNodes()).toBe(0);
    c.clock.advance(86_400_000 + 1000);
    expect(await mesh.expireNodes()).toBe(1);
    expect(await mesh.expireNodes()).toBe(0); // once
    const { MeshService } = await import("../../../plugins/mesh/service.ts");
    expect(await new MeshService(c.kernel as never).expireNodes()).toBe(0); // and once only after a restart too (found in review)
    const again = await c.login(c.owner.email, c.owner.password); // a day later: a new session
    expect((await c.send("GET", net, again)).body.version).toBeGreaterThan(before); // one new version (at least the time of the change)
    expect(c.kernel.records.list().find((p) => p.name === "mesh")!.records()).toEqual([]);
    expect(meshEvents(c).filter((e) => e.action === "mesh.node.expire").map((e) => e.reason)).toEqual(["expired"]); // the name: personal, not in the chain
  });

  test("versions only grow, even when the database goes back (a backup restored): a change after it is newer than anything agents applied (found in review)", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    await enroll(c, key, "b");
    for (const mtu of [1400, 1380, 1360]) await c.send("PATCH", net, owner, { json: { mtu } });
    const applied = (await fetchDocument(c, a)).doc!.version; // what a's agent holds
    c.kernel.store.db.query("UPDATE mesh_networks SET version = 2 WHERE name = 'office'").run(); // the backup's
    c.clock.advance(1000);
    expect((await c.send("DELETE", `${net}/nodes/b`, owner)).status).toBe(200);
    const after = (await fetchDocument(c, a)).doc!;
    expect(peerNames(after)).toEqual([]);
    expect(after.version).toBeGreaterThan(applied); // the agent takes it; a count from 2 it would refuse
  });

  test("without DNS names ([mesh] domain empty), expiry is still a change: a new version and an audit event (found in review)", async () => {
    const c = await testCitadel({ config: { mesh: { domain: "" } } });
    const owner = await c.login(c.owner.email, c.owner.password);
    const networks = `/v1/mesh/orgs/${c.owner.organization}/networks`;
    expect((await c.send("POST", networks, owner, { json: { name: "office" } })).status).toBe(200);
    const net = `${networks}/office`;
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    await enroll(c, key, "b");
    await c.send("PATCH", `${net}/nodes/b`, owner, { json: { expires_at: new Date(c.clock.now() + 60_000).toISOString() } });
    const listed = (await fetchDocument(c, a)).doc!;
    c.clock.advance(61_000);
    let after = (await fetchDocument(c, a)).doc!;
    for (const deadline = Date.now() + 5000; peerNames(after).length > 0 && Date.now() < deadline; await Bun.sleep(5)) after = (await fetchDocument(c, a)).doc!;
    expect([peerNames(after), after.version > listed.version]).toEqual([[], true]);
    expect(meshEvents(c).filter((e) => e.action === "mesh.node.expire").map((e) => e.reason)).toEqual(["expired"]);
  });

  test("a deleted organization's mesh stops: enrollment, polls and names", async () => {
    const { c, owner, org, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    const { mesh } = meshOf(c.kernel as never);
    expect(mesh.noticeDeletedOrganizations()).toBe(0);
    const served: string[] = [];
    c.kernel.records.onChange((provider) => served.push(provider));
    c.kernel.store.db.query("UPDATE organizations SET deleted_at = ? WHERE id = ?").run(c.clock.now(), org);
    c.clock.advance(11_000); // liveness is cached for 10 s
    expect((await fetchDocument(c, a)).status).toBe(403);
    expect((await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name: "b", public_key: (await generateKeyPair()).publicKey } })).status).toBe(401);
    // The names, and who is told them, are read at a change: the periodic check, which notices
    // the deletion once (found in review: it was told only of mesh changes, and kept serving them).
    const records = () => c.kernel.records.list().find((p) => p.name === "mesh")!.records();
    expect(records()).toHaveLength(2);
    expect([mesh.noticeDeletedOrganizations(), served]).toEqual([1, ["mesh"]]);
    expect(records()).toEqual([]);
    expect([mesh.noticeDeletedOrganizations(), served]).toEqual([0, ["mesh"]]);
  });

  test("sealed: no config is served, and nothing derived from keyring secrets stays cached", async () => {
    const { c, owner, net } = await setup({ name: "sealed", preshared_keys: true });
    const key = await preauthKey(c, owner, net, { reusable: true });
    const a = await enroll(c, key, "a");
    await enroll(c, key, "b");
    expect((await fetchDocument(c, a)).status).toBe(200);
    const held = meshOf(c.kernel as never).configs as unknown as { views: Map<string, unknown>; documents: Map<string, unknown>; signerOf: unknown };
    expect([held.views.size > 0, held.documents.size > 0, held.signerOf === null]).toEqual([true, true, false]); // preshared keys, the signer
    c.kernel.seal.seal();
    expect([held.views.size, held.documents.size, held.signerOf]).toEqual([0, 0, null]); // at once, before any request
    expect((await fetchDocument(c, a)).status).toBe(503);
  });
});

describe("subnet routes", () => {
  const node = async (c: App, owner: string, net: string, name: string) => (await c.send("GET", `${net}/nodes/${name}`, owner)).body;
  const version = (c: App, owner: string, net: string) => c.send("GET", net, owner).then((r) => r.body.version as number);

  test("advertised at enrollment they are pending; an approval puts them in every peer's AllowedIPs for the router, and on the router; revoked, they leave; each step audited", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const gw = await enroll(c, key, "gw", { advertise_routes: ["192.168.7.0/24", "fd00:0007::/64"] });
    const laptop = await enroll(c, key, "laptop");
    expect(await node(c, owner, net, "gw")).toMatchObject({ advertised_routes: ["192.168.7.0/24", "fd00:7::/64"], approved_routes: [], pending_routes: ["192.168.7.0/24", "fd00:7::/64"], primary_routes: [] });
    expect((await fetchDocument(c, laptop)).doc!.config.peers[0]!.allowedIps).toHaveLength(2); // not in effect yet

    const approved = await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { approved_routes: ["192.168.7.0/24"] } });
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ approved_routes: ["192.168.7.0/24"], pending_routes: ["fd00:7::/64"], primary_routes: ["192.168.7.0/24"] });
    expect((await fetchDocument(c, laptop)).doc!.config.peers[0]!.allowedIps).toEqual([`${gw.ipv4}/32`, expect.stringMatching(/\/128$/), "192.168.7.0/24"]);
    const routerDoc = (await fetchDocument(c, gw)).doc!;
    expect(routerDoc.config.routes).toEqual(["192.168.7.0/24"]);
    // Every format the operator sees carries it too.
    for (const format of ["wg-quick", "setconf"]) expect((await c.send("GET", `${net}/nodes/laptop/config?format=${format}`, owner)).text).toContain(", 192.168.7.0/24\n");
    expect((await c.send("GET", `${net}/nodes/gw/config?format=nftables`, owner)).text).toContain('ip daddr { 192.168.7.0/24 } accept');

    const revoked = await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { approved_routes: [] } });
    expect(revoked.body).toMatchObject({ approved_routes: [], primary_routes: [] });
    expect((await fetchDocument(c, laptop)).doc!.config.peers[0]!.allowedIps).toHaveLength(2);
    expect(meshEvents(c).filter((e) => e.action === "mesh.node.routes" || e.action === "mesh.node.update" || (e.action === "mesh.node.enroll" && e.reason!.includes("routes")))).toEqual([
      { action: "mesh.node.enroll", outcome: "success", reason: expect.stringContaining(", routes advertised 192.168.7.0/24,fd00:7::/64 (pending approval)") },
      { action: "mesh.node.routes", outcome: "success", reason: "approved 192.168.7.0/24; in effect: 192.168.7.0/24" },
      { action: "mesh.node.routes", outcome: "success", reason: "revoked 192.168.7.0/24; in effect: none" },
    ]);
  });

  test("the node advertises later with its own token: an approved route is in effect at once; a change of nothing in effect makes no new version", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const gw = await enroll(c, key, "gw");
    await enroll(c, key, "laptop");
    // Approved ahead of the advertisement: nothing in effect until the node offers it.
    expect((await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { approved_routes: ["10.9.0.0/16"] } })).body.primary_routes).toEqual([]);
    let before = await version(c, owner, net);
    const pending = await c.send("POST", "/v1/mesh/node/routes", gw.token, { json: { routes: ["10.8.0.0/16"] } });
    expect(pending.status).toBe(200);
    expect(pending.body).toEqual({ advertised_routes: ["10.8.0.0/16"], approved_routes: ["10.9.0.0/16"], pending_routes: ["10.8.0.0/16"] });
    expect(await version(c, owner, net)).toBe(before);
    const offered = await c.send("POST", "/v1/mesh/node/routes", gw.token, { json: { routes: ["10.8.0.0/16", "10.9.0.0/16"] } });
    expect(offered.body.pending_routes).toEqual(["10.8.0.0/16"]);
    expect(await version(c, owner, net)).toBeGreaterThan(before);
    expect((await node(c, owner, net, "gw")).primary_routes).toEqual(["10.9.0.0/16"]);
    before = await version(c, owner, net);
    expect((await c.send("POST", "/v1/mesh/node/routes", gw.token, { json: { routes: ["10.9.0.0/16"] } })).status).toBe(200); // withdraws a pending one only
    expect(await version(c, owner, net)).toBe(before);
    expect(meshEvents(c).filter((e) => e.action === "mesh.node.routes").map((e) => e.reason)).toEqual([
      "approved 10.9.0.0/16; in effect: none",
      "advertised 10.8.0.0/16; in effect: none; pending approval: 10.8.0.0/16",
      "advertised 10.8.0.0/16,10.9.0.0/16; in effect: 10.9.0.0/16; pending approval: 10.8.0.0/16",
      "advertised 10.9.0.0/16; in effect: 10.9.0.0/16",
    ]);
    // Without a node token: 401, whatever the body.
    expect((await c.send("POST", "/v1/mesh/node/routes", owner, { json: { routes: [] } })).status).toBe(401);
  });

  test("nonsense is refused, 422 naming the field, at enrollment, from the node and in an approval; nothing changes", async () => {
    const { c, owner, net, network, networks } = await setup();
    const lab = await c.send("POST", networks, owner, { json: { name: "lab" } });
    expect(lab.status).toBe(200);
    const key = await preauthKey(c, owner, net, { reusable: true });
    const gw = await enroll(c, key, "gw");
    const inPool = network.ipv4.replace("0.0/16", "9.0/24");
    const cases: [unknown, string][] = [
      [["10.1.0.1/24"], "is not a network address (host bits are set): did you mean 10.1.0.0/24?"],
      // An exit node offers both default routes: one alone is refused (exit-nodes.test.ts has them together).
      [["0.0.0.0/0"], "0.0.0.0/0 without ::/0: an exit node offers both default routes, 0.0.0.0/0 and ::/0, together"],
      [["::/0", "10.1.0.0/24"], "::/0 without 0.0.0.0/0"],
      [["128.0.0.0/1"], "is shorter than /8 for IPv4"],
      [["::/1"], "is shorter than /16 for IPv6"],
      [["169.254.169.254/32"], "link-local"],
      [["127.0.0.0/8"], "loopback"],
      [["::ffff:10.1.0.0/120"], "IPv4-mapped"],
      [[inPool], "overlaps the network's own addresses"],
      [Array.from({ length: 33 }, (_, i) => `10.${i}.0.0/16`), "33 routes, at most 32 per node"],
    ];
    // Another network's addresses are refused at the approval only: advertised, they are pending (pools-and-routes.test.ts).
    const refusedAtApproval = [[lab.body.ipv4], [lab.body.ipv6.replace("::/48", ":7::/64")]];
    const before = await version(c, owner, net);
    for (const routes of refusedAtApproval) {
      const approved = await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { approved_routes: routes } });
      expect([approved.status, approved.body.detail, approved.body.errors[0].field]).toEqual([422, expect.stringContaining("overlaps the addresses of the organization's network lab"), "approved_routes[0]"]);
    }
    for (const [routes, message] of cases) {
      c.clock.advance(10_000); // enrollment and the node's routes are under the login endpoints' rate limit
      const enrolled = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name: "other", public_key: (await generateKeyPair()).publicKey, advertise_routes: routes } });
      const advertised = await c.send("POST", "/v1/mesh/node/routes", gw.token, { json: { routes } });
      const approved = await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { approved_routes: routes } });
      for (const [res, field] of [[enrolled, "advertise_routes"], [advertised, "routes"], [approved, "approved_routes"]] as const) {
        expect(res.status).toBe(422);
        expect(res.body.detail).toContain(message);
        expect(res.body.errors[0].field).toStartWith(field);
      }
    }
    expect(await version(c, owner, net)).toBe(before);
    expect((await c.send("GET", `${net}/nodes`, owner)).body.items.map((n: { name: string }) => n.name)).toEqual(["gw"]);
    // An ACL naming the mesh's own addresses as a prefix is refused: nodes are named by tag: or node:.
    const acl = await c.send("PUT", `${net}/acl`, owner, { json: { policy: { rules: [{ src: ["*"], dst: [inPool], ports: ["*"] }] } } });
    expect([acl.status, acl.body.detail]).toEqual([422, expect.stringContaining("overlaps the network's own addresses")]);
    // So is one written IPv4-mapped, unmapped first (found in review).
    const mapped = await c.send("PUT", `${net}/acl`, owner, { json: { policy: { rules: [{ src: ["*"], dst: [`::ffff:${inPool.replace("/24", "/120")}`], ports: ["*"] }] } } });
    expect([mapped.status, mapped.body.detail]).toEqual([422, expect.stringContaining(`${inPool} overlaps the network's own addresses`)]);
  });

  test("two nodes offer the same approved route: the one enrolled first serves it, the other stands by and takes over when it is disabled", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    // "a-gw" sorts first by name, but enrolls second.
    await enroll(c, key, "z-gw", { advertise_routes: ["10.1.0.0/24"] });
    c.clock.advance(1000);
    await enroll(c, key, "a-gw", { advertise_routes: ["10.1.0.0/24"] });
    const laptop = await enroll(c, key, "laptop");
    for (const name of ["z-gw", "a-gw"]) await c.send("PATCH", `${net}/nodes/${name}`, owner, { json: { approved_routes: ["10.1.0.0/24"] } });
    const routers = async () => (await fetchDocument(c, laptop)).doc!.config.peers.filter((p) => p.allowedIps.includes("10.1.0.0/24")).map((p) => p.name);
    expect(await routers()).toEqual(["z-gw"]);
    expect((await node(c, owner, net, "a-gw")).primary_routes).toEqual([]);
    await c.send("PATCH", `${net}/nodes/z-gw`, owner, { json: { disabled: true } });
    expect(await routers()).toEqual(["a-gw"]);
    expect((await node(c, owner, net, "a-gw")).primary_routes).toEqual(["10.1.0.0/24"]);
  });

  test("masquerade_routes: an operator's choice per node, in the router's config while it serves a route; each change a new version, audited; the same value again changes nothing", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true });
    const gw = await enroll(c, key, "gw", { advertise_routes: ["192.168.7.0/24"] });
    const laptop = await enroll(c, key, "laptop");
    expect(await node(c, owner, net, "gw")).toMatchObject({ masquerade_routes: false });
    const on = await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { masquerade_routes: true } });
    expect([on.status, on.body.masquerade_routes]).toEqual([200, true]);
    // Asked before the route is approved: nothing to masquerade yet.
    expect("masquerade" in (await fetchDocument(c, gw)).doc!.config).toBe(false);
    await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { approved_routes: ["192.168.7.0/24"] } });
    expect((await fetchDocument(c, gw)).doc!.config).toMatchObject({ routes: ["192.168.7.0/24"], masquerade: true });
    expect("masquerade" in (await fetchDocument(c, laptop)).doc!.config).toBe(false);
    const before = await version(c, owner, net);
    expect((await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { masquerade_routes: true } })).status).toBe(200);
    expect(await version(c, owner, net)).toBe(before);
    const off = await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { masquerade_routes: false } });
    expect([off.status, off.body.masquerade_routes]).toEqual([200, false]);
    expect(await version(c, owner, net)).toBeGreaterThan(before);
    expect("masquerade" in (await fetchDocument(c, gw)).doc!.config).toBe(false);
    expect(meshEvents(c).filter((e) => e.action === "mesh.node.update").map((e) => e.reason)).toEqual(["masquerade_routes false → true", "masquerade_routes true → false"]);
    // Not a boolean: 422 naming the field.
    const bad = await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { masquerade_routes: "yes" } });
    expect(bad.status).toBe(422);
  });

  test("the ACL governs them: only a rule whose dst names part of the route lets a node reach it", async () => {
    const { c, owner, net } = await setup();
    const key = await preauthKey(c, owner, net, { reusable: true, tags: ["web", "db", "gw"] });
    const gw = await enroll(c, key, "gw", { tags: ["gw"], advertise_routes: ["192.168.7.0/24"] });
    const web = await enroll(c, key, "web", { tags: ["web"] });
    const db = await enroll(c, key, "db", { tags: ["db"] });
    await c.send("PATCH", `${net}/nodes/gw`, owner, { json: { approved_routes: ["192.168.7.0/24"] } });
    const put = await c.send("PUT", `${net}/acl`, owner, { json: { policy: { rules: [{ src: ["tag:web"], dst: ["192.168.7.10"], ports: ["tcp/443"] }, { src: ["tag:db"], dst: ["*"], ports: ["*"] }] } } });
    expect(put.status).toBe(200);
    expect(peerNames((await fetchDocument(c, web)).doc)).toEqual(["db", "gw"]);
    expect((await fetchDocument(c, web)).doc!.config.peers.find((p) => p.name === "gw")!.allowedIps).toContain("192.168.7.0/24");
    // `*` is every node, no route.
    expect((await fetchDocument(c, db)).doc!.config.peers.find((p) => p.name === "gw")!.allowedIps).not.toContain("192.168.7.0/24");
    expect((await fetchDocument(c, gw)).doc!.config.firewall!.routes).toEqual([{ sources: [web.ipv4, expect.stringContaining(":")], destinations: ["192.168.7.10/32"], ports: [{ protocol: "tcp", from: 443, to: 443 }] }]);
  });
});
