/**
 * A node's name is often its machine's host name ("alices-laptop"): personal data. It is kept
 * out of the chained audit reason and encrypted under the organization's key with the address
 * the node enrolled from, so the organization's erasure reaches it (found in review: it was in
 * the chain, and the address under the shared "service" key).
 */
import { expect, test } from "bun:test";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import { listAuditEvents } from "../../../src/audit/query.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const DAY = 86_400_000;

test("a node's name and enrolling address: not in the chain, under the organization's key, erased with the organization", async () => {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const net = `/v1/mesh/orgs/${org}/networks/office`;
  expect((await c.send("POST", `/v1/mesh/orgs/${org}/networks`, operator, { json: { name: "office" } })).status).toBe(200);
  const key = (await c.send("POST", `${net}/keys`, operator, { json: {} })).body.key as string;
  const enrolled = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name: "alices-laptop", public_key: (await generateKeyPair()).publicKey }, headers: { "x-test-peer": "198.51.100.23" } });
  expect(enrolled.status).toBe(200);
  const db = c.kernel.store.db;
  const chained = (db.query("SELECT reason FROM audit_events WHERE action LIKE 'mesh.%'").all() as Array<{ reason: string | null }>).map((e) => e.reason ?? "");
  expect(chained.join("\n")).not.toContain("alices-laptop");
  const enrollEvent = () => listAuditEvents(db, c.kernel.seal.keyring(), { action: "mesh.node.enroll" }, 1).events[0]!;
  expect(enrollEvent()).toMatchObject({ subject: org, source_address: "198.51.100.23", personal: { node: "alices-laptop" } });

  const ask = await c.send("POST", `/v1/subject/organization/${org}/erasure`, operator);
  expect((await c.send("POST", `/v1/subject/organization/${org}/erasure`, operator, { headers: { "x-citadel-confirm": ask.body.confirmation_token } })).status).toBe(200);
  c.clock.advance(31 * DAY);
  await c.send("POST", "/v1/subject/erasures/run", await c.login(c.owner.email, c.owner.password));
  expect(enrollEvent()).toMatchObject({ source_address: "[erased]", personal: "[erased]" });
});

test("a refused enrollment with a known key: the organization's event, what the client sent under its key, a fixed reason (found in review: anonymous, the name in the chain)", async () => {
  const c = await newCitadel();
  const operator = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const net = `/v1/mesh/orgs/${org}/networks/office`;
  expect((await c.send("POST", `/v1/mesh/orgs/${org}/networks`, operator, { json: { name: "office" } })).status).toBe(200);
  const key = (await c.send("POST", `${net}/keys`, operator, { json: { reusable: true } })).body.key as string;
  const enroll = (json: Record<string, unknown>) => c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, public_key: "", ...json } });
  expect((await enroll({ name: "alices-laptop", public_key: (await generateKeyPair()).publicKey })).status).toBe(200);
  expect((await enroll({ name: "alices-laptop", public_key: (await generateKeyPair()).publicKey })).status).toBe(409);
  expect((await enroll({ name: "bobs-desktop", public_key: (await generateKeyPair()).publicKey, endpoint: "bobs-desktop.example:0" })).status).toBe(422);
  expect((await enroll({ name: "carols-phone", public_key: (await generateKeyPair()).publicKey, tags: ["carols-tag"] })).status).toBe(403);

  const db = c.kernel.store.db;
  const chained = db.query("SELECT reason, organization FROM audit_events WHERE action = 'mesh.node.enroll' AND outcome = 'failure' ORDER BY seq").all();
  expect(chained).toEqual([
    { reason: "name taken", organization: org },
    { reason: "invalid endpoint", organization: org },
    { reason: "tag the key does not grant", organization: org },
  ]);
  const refusals = listAuditEvents(db, c.kernel.seal.keyring(), { action: "mesh.node.enroll", outcome: "failure" }, 10).events;
  expect(refusals.map((e) => [e.subject, e.personal])).toEqual([
    [org, { node: "carols-phone" }],
    [org, { node: "bobs-desktop", endpoint: "bobs-desktop.example:0" }],
    [org, { node: "alices-laptop" }],
  ]);
});
