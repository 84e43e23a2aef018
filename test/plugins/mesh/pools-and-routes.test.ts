/**
 * A network's pools and the organization's subnet routes keep clear of each other both ways
 * (found in review): a route was checked against the other networks' pools, but a network
 * created later could take a pool overlapping a route — the route stayed in effect over the new
 * network's addresses, and its node's next advertisement, unchanged, was refused. Only routes an
 * operator approved for an active node count (found in review: a node token's pending routes
 * could take every default pool).
 */
import { expect, spyOn, test } from "bun:test";
import { operatorCaller } from "../../helpers/caller.ts";
import { meshOf } from "../../../plugins/mesh/index.ts";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import type { Caller } from "../../../plugins/mesh/service.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";
import { refusal } from "../../helpers/races.ts";

const newCitadel = stoppedAfterEach();

/** An organization with the network office (100.64.0.0/16) and a reusable pre-auth key for it. */
async function organization() {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const org = c.owner.organization;
  const networks = `/v1/mesh/orgs/${org}/networks`;
  expect((await c.send("POST", networks, owner, { json: { name: "office" } })).body.ipv4).toBe("100.64.0.0/16");
  const key = (await c.send("POST", `${networks}/office/keys`, owner, { json: { reusable: true } })).body.key as string;
  const enroll = async (name: string, advertise_routes: string[]) => {
    c.clock.advance(10_000); // enrollment is under the login endpoints' rate limit
    const res = await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name, public_key: (await generateKeyPair()).publicKey, advertise_routes } });
    expect(res.status).toBe(200);
    return res.body.token as string;
  };
  const createNetwork = (body: Record<string, unknown>) => c.send("POST", networks, owner, { json: body });
  return { c, owner, org, networks, enroll, createNetwork };
}

test("a network created without ipv4 takes the first /16 that overlaps no network and no approved route; a pending one is refused at its approval instead", async () => {
  const { c, owner, networks, enroll, createNetwork } = await organization();
  const gw = await enroll("gw", ["100.65.4.0/24"]);
  // Approved ahead of its advertisement: the operator means it to be in effect.
  expect((await c.send("PATCH", `${networks}/office/nodes/gw`, owner, { json: { approved_routes: ["100.66.0.0/16"] } })).status).toBe(200);
  const lab = await createNetwork({ name: "lab" });
  expect([lab.status, lab.body.ipv4]).toEqual([200, "100.65.0.0/16"]);
  expect((await createNetwork({ name: "lab2" })).body.ipv4).toBe("100.67.0.0/16");
  // The node's advertisement, unchanged, is still good: pending, now over lab's addresses...
  c.clock.advance(10_000);
  const again = await c.send("POST", "/v1/mesh/node/routes", gw, { json: { routes: ["100.65.4.0/24"] } });
  expect([again.status, again.body.pending_routes]).toEqual([200, ["100.65.4.0/24"]]);
  // So is a new node's, at its enrollment (enroll expects 200)...
  await enroll("gw2", ["100.65.4.0/24"]);
  // ...which no operator can approve.
  const approval = await c.send("PATCH", `${networks}/office/nodes/gw`, owner, { json: { approved_routes: ["100.65.4.0/24", "100.66.0.0/16"] } });
  expect([approval.status, approval.body.detail]).toEqual([422, expect.stringContaining("100.65.4.0/24 overlaps the addresses of the organization's network lab (100.65.0.0/16)")]);
});

test("a node's token cannot take the default pools: pending routes, and a disabled node's approved ones, leave them free; approved routes that take them all are named in the 409", async () => {
  const { c, owner, org, networks, enroll, createNetwork } = await organization();
  // Every /16 of 100.64.0.0/10 but office's, in six routes.
  const rest = ["100.65.0.0/16", "100.66.0.0/15", "100.68.0.0/14", "100.72.0.0/13", "100.80.0.0/12", "100.96.0.0/11"];
  await enroll("gw", rest);
  const lab = await createNetwork({ name: "lab" });
  expect([lab.status, lab.body.ipv4]).toEqual([200, "100.65.0.0/16"]);
  // Nor a given pool: refused over an approved route only.
  expect((await createNetwork({ name: "given", ipv4: "100.80.0.0/16" })).status).toBe(200);
  const { mesh } = meshOf(c.kernel as never);
  const caller = await callerOf(c);
  for (const name of ["lab", "given"]) await mesh.delete(caller, org, name);
  const node = `${networks}/office/nodes/gw`;
  expect((await c.send("PATCH", node, owner, { json: { approved_routes: rest } })).status).toBe(200);
  const full = await createNetwork({ name: "lab" });
  expect([full.status, full.body.detail]).toEqual([
    409,
    `Every /16 of 100.64.0.0/10 is taken (subnet routes among them: ${rest.map((route) => `${route} of the node gw (network office)`).join(", ")}): give ipv4.`,
  ]);
  // Disabled, its routes are out of effect and keep no pool; enabled again over a pool, it is refused, 409 naming it.
  expect((await c.send("PATCH", node, owner, { json: { disabled: true } })).status).toBe(200);
  const meanwhile = await createNetwork({ name: "lab" });
  expect([meanwhile.status, meanwhile.body.ipv4]).toEqual([200, "100.65.0.0/16"]);
  const enabled = await c.send("PATCH", node, owner, { json: { disabled: false } });
  expect([enabled.status, enabled.body.detail]).toEqual([409, expect.stringContaining("The node gw's approved route 100.65.0.0/16 overlaps the network lab (100.65.0.0/16, ")]);
  expect((await c.send("GET", node, owner)).body.state).toBe("disabled");
  // With that approval revoked in the same request, it is.
  const revoked = await c.send("PATCH", node, owner, { json: { disabled: false, approved_routes: rest.slice(1) } });
  expect([revoked.status, revoked.body.state]).toEqual([200, "active"]);
});

test("a pool asked for that overlaps a route of the organization is refused, 409 naming it; nothing is created", async () => {
  const { c, owner, networks, enroll, createNetwork } = await organization();
  await enroll("gw", ["100.65.4.0/24"]);
  // Approved ahead of its advertisement, the IPv6 one counts as much.
  expect((await c.send("PATCH", `${networks}/office/nodes/gw`, owner, { json: { approved_routes: ["100.65.4.0/24", "fd00:7::/64"] } })).status).toBe(200);
  const cases: [Record<string, unknown>, string][] = [
    // Containing the route, and inside it; an IPv6 route as much as an IPv4 one, in effect or not yet.
    [{ name: "lab", ipv4: "100.65.0.0/16" }, "ipv4: 100.65.0.0/16 overlaps the subnet route 100.65.4.0/24 of the node gw (network office)"],
    [{ name: "lab", ipv4: "100.65.4.0/26" }, "ipv4: 100.65.4.0/26 overlaps the subnet route 100.65.4.0/24 of the node gw (network office)"],
    [{ name: "lab", ipv4: "100.70.0.0/16", ipv6: "fd00:7::/48" }, "ipv6: fd00:7::/48 overlaps the subnet route fd00:7::/64 of the node gw (network office)"],
  ];
  for (const [body, message] of cases) {
    const res = await createNetwork(body);
    expect([res.status, res.body.detail]).toEqual([409, expect.stringContaining(message)]);
  }
  expect((await c.send("GET", networks, owner)).body.items.map((n: { name: string }) => n.name)).toEqual(["office"]);
});

test("a network created without ipv6 draws its ULA prefix again while it overlaps a route; 409 when the draws run out", async () => {
  const { c, owner, networks, enroll, createNetwork } = await organization();
  await enroll("gw", ["fd12::/16"]);
  expect((await c.send("PATCH", `${networks}/office/nodes/gw`, owner, { json: { approved_routes: ["fd12::/16"] } })).status).toBe(200);
  // The draws (randomUlaPrefix's five random bytes after fd): fd12:…, then fd34:….
  const draws = [[0x12, 1, 2, 3, 4], [0x34, 1, 2, 3, 4]];
  const real = crypto.getRandomValues.bind(crypto);
  const drawn = spyOn(crypto, "getRandomValues").mockImplementation(<T extends ArrayBufferView | null>(array: T): T => {
    if (array instanceof Uint8Array && array.length === 5) array.set(draws.length > 1 ? draws.shift()! : draws[0]!);
    else real(array as never);
    return array;
  });
  try {
    const lab = await createNetwork({ name: "lab" });
    expect([lab.status, lab.body.ipv6]).toEqual([200, "fd34:102:304::/48"]);
    draws.splice(0, draws.length, [0x12, 9, 9, 9, 9]);
    const never = await createNetwork({ name: "lab2" });
    expect([never.status, never.body.detail]).toEqual([409, expect.stringContaining("(subnet routes among them: fd12::/16 of the node gw (network office)): give ipv6")]);
  } finally {
    drawn.mockRestore();
  }
});

test("a network created while a route is approved: whichever is written second is refused, never both written (found in review: the route's check read the networks before its transaction)", async () => {
  const { c, org, enroll } = await organization();
  await enroll("gw", []);
  const { mesh } = meshOf(c.kernel as never);
  const caller = await callerOf(c);
  // The creation first: the approval, checked before its transaction, did not see it.
  const [created, approved] = [mesh.create(caller, org, { name: "lab", ipv4: "100.65.0.0/16" }), mesh.updateNode(caller, org, "office", "gw", { approved_routes: ["100.65.4.0/24"] })];
  expect(await refusal(created)).toBeNull();
  expect(await refusal(approved)).toEqual({ code: "invalid", message: expect.stringContaining("overlaps the addresses of the organization's network lab") });
  // The approval first: the creation, in its transaction, sees it.
  await mesh.delete(caller, org, "lab");
  const [approvedFirst, createdSecond] = [mesh.updateNode(caller, org, "office", "gw", { approved_routes: ["100.65.4.0/24"] }), mesh.create(caller, org, { name: "lab", ipv4: "100.65.0.0/16" })];
  expect(await refusal(approvedFirst)).toBeNull();
  expect(await refusal(createdSecond)).toEqual({ code: "conflict", message: expect.stringContaining("overlaps the subnet route 100.65.4.0/24 of the node gw") });
});

async function callerOf(c: Awaited<ReturnType<typeof newCitadel>>): Promise<Caller> {
  const userId = (c.kernel.store.db.query("SELECT id FROM users WHERE email = ?").get(c.owner.email) as { id: string }).id;
  return operatorCaller(userId);
}
