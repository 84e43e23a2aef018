/**
 * Intel changes made at once (found in review): the checks that refuse an entry covering every
 * address, or a change locking the caller out, were made before the write and each saw the
 * state without the other's change — both were taken. Now one of each pair is refused.
 */
import { describe, expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();
const from = (peer: string) => ({ headers: { "x-test-peer": peer } });
const office = from("198.51.100.10");

async function operatorOf() {
  const c = await citadel({ config: { intel: { trust_loopback: false } } });
  return { c, operator: await c.login(c.owner.email, c.owner.password) };
}

const statuses = (responses: Array<{ status: number }>) => responses.map((r) => r.status).sort();

describe("intel changes sent at once", () => {
  test("two deny halves covering every IPv4 address: one is a 422", async () => {
    const { c, operator } = await operatorOf();
    const elsewhere = from("2001:db8::1");
    const add = (target: string) => c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target }, ...elsewhere });
    const both = await Promise.all([add("0.0.0.0/1"), add("128.0.0.0/1")]);
    expect(statuses(both)).toEqual([200, 422]);
    expect((await c.send("GET", "/v1/intel/manual", operator, elsewhere)).body.items.length).toBe(1);
  });

  test("removing both allow entries that shield the caller: one is a 409, and the caller is still let in", async () => {
    const { c, operator } = await operatorOf();
    const add = (json: object) => c.send("POST", "/v1/intel/manual", operator, { json, ...office });
    const one = await add({ kind: "allow", target: "198.51.100.10" });
    const net = await add({ kind: "allow", target: "198.51.100.0/24" });
    expect((await add({ kind: "deny", target: "198.51.0.0/16" })).status).toBe(200);
    const both = await Promise.all([one, net].map((a) => c.send("DELETE", `/v1/intel/manual/${a.body.id}`, operator, office)));
    expect(statuses(both)).toEqual([200, 409]);
    expect((await c.send("GET", "/v1/intel/manual", operator, office)).status).toBe(200);
  });

  test("removing the allow entry while a deny is added: one is a 409, and the caller is still let in", async () => {
    const { c, operator } = await operatorOf();
    const allow = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "allow", target: "198.51.100.10" }, ...office });
    const both = await Promise.all([
      c.send("DELETE", `/v1/intel/manual/${allow.body.id}`, operator, office),
      c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.0.0/16" }, ...office }),
    ]);
    expect(statuses(both)).toEqual([200, 409]);
    expect((await c.send("GET", "/v1/intel/manual", operator, office)).status).toBe(200);
  });

  test("two lists that together would drop the caller: one is a 409, and the caller is still let in", async () => {
    const { c, operator } = await operatorOf();
    const put = (name: string) => c.send("PUT", `/v1/intel/lists/${name}`, operator, { json: { weight: 45, content: "198.51.100.0/24\n" }, ...office });
    const both = await Promise.all([put("a"), put("b")]);
    expect(statuses(both)).toEqual([200, 409]);
    expect((await c.send("GET", "/v1/intel/lists", operator, office)).body.items.length).toBe(1);
  });

  test("a list that would drop the caller put while the allow entry shielding them is removed: one is a 409", async () => {
    const { c, operator } = await operatorOf();
    const allow = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "allow", target: "198.51.100.10" }, ...office });
    const both = await Promise.all([
      c.send("DELETE", `/v1/intel/manual/${allow.body.id}`, operator, office),
      c.send("PUT", "/v1/intel/lists/bad", operator, { json: { weight: 100, content: "198.51.100.0/24\n" }, ...office }),
    ]);
    expect(statuses(both)).toEqual([200, 409]);
    expect((await c.send("GET", "/v1/intel/manual", operator, office)).status).toBe(200);
  });
});
