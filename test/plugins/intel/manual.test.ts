/** Manual entries that would do what nobody means (found in review): every address, or a lock-out of the operator. */
import { describe, expect, test } from "bun:test";
import { intelCommands } from "../../../plugins/intel/commands.ts";
import { runCommand } from "../../helpers/command.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();
const from = (peer: string) => ({ headers: { "x-test-peer": peer } });

describe("a manual entry for every address", () => {
  test("is a 422 for allow and deny, IPv4, IPv6 and IPv4-mapped; nothing is stored", async () => {
    const c = await citadel({ config: { intel: { trust_loopback: false } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    for (const kind of ["allow", "deny"]) {
      for (const target of ["0.0.0.0/0", "::/0", "::ffff:0.0.0.0/96"]) {
        const add = await c.send("POST", "/v1/intel/manual", operator, { json: { kind, target, lock_out: true } });
        expect([kind, target, add.status, add.body.detail]).toEqual([kind, target, 422, expect.stringContaining("is every IPv")]);
      }
    }
    expect((await c.send("GET", "/v1/intel/manual", operator)).body.items).toEqual([]);
  });
});

describe("a deny entry covering the caller's own address", () => {
  test("is a 409 saying so, and changes nothing; with lock_out it is taken, and the caller is refused", async () => {
    const c = await citadel({ config: { intel: { trust_loopback: false } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    const office = from("198.51.100.10");
    const refused = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.0/24" }, ...office });
    expect([refused.status, refused.body.detail]).toEqual([409, expect.stringContaining('198.51.100.0/24 covers your own address (198.51.100.10): your next request would be refused. Send "lock_out": true')]);
    expect((await c.send("GET", "/v1/intel/manual", operator, office)).status).toBe(200);
    expect((await c.send("GET", "/v1/intel/manual", operator, office)).body.items).toEqual([]);
    // Another's address, or the caller's own given for a time: the same rule.
    expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.10", minutes: 5 }, ...office })).status).toBe(409);
    expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.11" }, ...office })).status).toBe(200);
    const meant = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.0/24", lock_out: true }, ...office });
    expect(meant.status).toBe(200);
    expect((await c.send("GET", "/v1/intel/manual", operator, office)).status).toBe(403);
  });

  test("is taken when the deny does not reach the caller: trusted loopback, or an allow entry lasting as long", async () => {
    const trusting = await citadel({ config: { intel: { trust_loopback: true } } });
    const own = await trusting.login(trusting.owner.email, trusting.owner.password);
    expect((await trusting.send("POST", "/v1/intel/manual", own, { json: { kind: "deny", target: "127.0.0.0/8" }, ...from("127.0.0.1") })).status).toBe(200);

    const c = await citadel({ config: { intel: { trust_loopback: false } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    // Loopback the shield does not trust is refused like anyone.
    expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "127.0.0.0/8" }, ...from("127.0.0.1") })).status).toBe(409);
    const office = from("198.51.100.10");
    expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "allow", target: "198.51.100.10", minutes: 60 }, ...office })).status).toBe(200);
    // The allow entry ends first: the deny would reach the caller then.
    expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.0/24", minutes: 120 }, ...office })).status).toBe(409);
    expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.0/24", minutes: 60 }, ...office })).status).toBe(200);
    expect((await c.send("GET", "/v1/intel/manual", operator, office)).status).toBe(200);
  });

  test("citadel intel deny --yes sends lock_out; without it, none", async () => {
    const answer = () => ({ id: "man_1", target: "198.51.100.0/24", action: "refuse", until: null });
    const yes = await runCommand(intelCommands, "intel deny", { args: ["198.51.100.0/24"], options: { yes: true }, answer });
    expect(yes.requests.map((r) => r.body)).toEqual([{ kind: "deny", target: "198.51.100.0/24", lock_out: true }]);
    const no = await runCommand(intelCommands, "intel deny", { args: ["198.51.100.0/24"], answer });
    expect(no.requests.map((r) => r.body)).toEqual([{ kind: "deny", target: "198.51.100.0/24" }]);
  });
});
