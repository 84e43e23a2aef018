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

  test("halves that with the entries of their kind in force name every address are a 422 as well, as for a list (found in review)", async () => {
    const c = await citadel({ config: { intel: { trust_loopback: false } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    // From the other family: a deny half must not refuse the test's own requests.
    const peer = (family: number) => from(family === 4 ? "2001:db8::1" : "192.0.2.1");
    const add = (kind: string, target: string, family = 4) => c.send("POST", "/v1/intel/manual", operator, { json: { kind, target }, ...peer(family) });
    for (const kind of ["allow", "deny"]) {
      for (const [first, second, family] of [["0.0.0.0/1", "128.0.0.0/1", 4], ["::/1", "8000::/1", 6], ["::ffff:0.0.0.0/97", "128.0.0.0/1", 4]] as const) {
        const taken = await add(kind, first, family);
        expect(taken.status).toBe(200);
        const refused = await add(kind, second, family);
        expect([kind, second, refused.status, refused.body.detail]).toEqual([kind, second, 422, expect.stringContaining(`and the ${kind} entries in force cover every IPv${family} address together`)]);
        expect((await c.send("DELETE", `/v1/intel/manual/${taken.body.id}`, operator, peer(family))).status).toBe(200);
      }
    }
    // An allow half and a deny half are no such thing.
    expect((await add("allow", "0.0.0.0/1")).status).toBe(200);
    expect((await add("deny", "128.0.0.0/1")).status).toBe(200);
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

  test("a throttle is a 409 saying the caller would be throttled, not refused (found in review)", async () => {
    const c = await citadel({ config: { intel: { trust_loopback: false } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    const refused = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.0/24", action: "throttle" }, ...from("198.51.100.10") });
    expect([refused.status, refused.body.detail]).toEqual([409, expect.stringContaining("your next request would be throttled.")]);
  });

  test("citadel intel deny --yes sends lock_out; without it, none", async () => {
    const answer = () => ({ id: "man_1", target: "198.51.100.0/24", action: "refuse", until: null });
    const yes = await runCommand(intelCommands, "intel deny", { args: ["198.51.100.0/24"], options: { yes: true }, answer });
    expect(yes.requests.map((r) => r.body)).toEqual([{ kind: "deny", target: "198.51.100.0/24", lock_out: true }]);
    const no = await runCommand(intelCommands, "intel deny", { args: ["198.51.100.0/24"], answer });
    expect(no.requests.map((r) => r.body)).toEqual([{ kind: "deny", target: "198.51.100.0/24" }]);
  });
});

describe("other changes that would lock the caller out (found in review: taken, and the next request refused)", () => {
  test("removing the allow entry that shields the caller from a deny is a 409; with lock_out it is removed, and the caller is refused", async () => {
    const c = await citadel({ config: { intel: { trust_loopback: false } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    const office = from("198.51.100.10");
    const allow = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "allow", target: "198.51.100.10" }, ...office });
    expect(allow.status).toBe(200);
    expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.100.0/24" }, ...office })).status).toBe(200);
    const refused = await c.send("DELETE", `/v1/intel/manual/${allow.body.id}`, operator, office);
    expect([refused.status, refused.body.detail]).toEqual([409, expect.stringContaining("without the allow entry on 198.51.100.10/32 your next request (from 198.51.100.10) would be refused")]);
    expect((await c.send("GET", "/v1/intel/manual", operator, office)).body.items.length).toBe(2);
    // Removed from an address it does not shield: taken, and the office is refused from then on.
    const elsewhere = await c.send("DELETE", `/v1/intel/manual/${allow.body.id}`, operator, from("192.0.2.1"));
    expect(elsewhere.status).toBe(200);
    expect((await c.send("GET", "/v1/intel/manual", operator, office)).status).toBe(403);
  });

  test("removing it with lock_out=true is taken", async () => {
    const c = await citadel({ config: { intel: { trust_loopback: false } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    const office = from("198.51.100.10");
    const allow = await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "allow", target: "198.51.100.0/24" }, ...office });
    expect((await c.send("POST", "/v1/intel/manual", operator, { json: { kind: "deny", target: "198.51.0.0/16", action: "throttle" }, ...office })).status).toBe(200);
    const refused = await c.send("DELETE", `/v1/intel/manual/${allow.body.id}`, operator, office);
    expect([refused.status, refused.body.detail]).toEqual([409, expect.stringContaining("would be throttled")]);
    expect((await c.send("DELETE", `/v1/intel/manual/${allow.body.id}?lock_out=true`, operator, office)).status).toBe(200);
    expect((await c.send("GET", "/v1/intel/manual", operator, office)).body.items.map((e: { kind: string }) => e.kind)).toEqual(["deny"]);
  });

  test("a list that would refuse the caller is a 409, and is not taken; one that throttles is taken; with lock_out it is taken, and the caller is refused", async () => {
    const c = await citadel({ config: { intel: { trust_loopback: false } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    const office = from("198.51.100.10");
    const refused = await c.send("PUT", "/v1/intel/lists/bad", operator, { json: { weight: 100, content: "198.51.100.0/24\n" }, ...office });
    expect([refused.status, refused.body.detail]).toEqual([409, expect.stringContaining("the list bad would hold your own address (198.51.100.10): your next request would be dropped")]);
    expect((await c.send("GET", "/v1/intel/lists", operator, office)).body.items).toEqual([]);
    expect((await c.send("PUT", "/v1/intel/lists/bad", operator, { json: { weight: 45, content: "198.51.100.0/24\n" }, ...office })).status).toBe(200);
    // Raising its weight is the same change.
    expect((await c.send("PUT", "/v1/intel/lists/bad", operator, { json: { weight: 75, content: "198.51.100.0/24\n" }, ...office })).status).toBe(409);
    expect((await c.send("PUT", "/v1/intel/lists/bad", operator, { json: { weight: 75, content: "198.51.100.0/24\n", lock_out: true }, ...office })).status).toBe(200);
    expect((await c.send("GET", "/v1/intel/lists", operator, office)).status).toBe(403);
  });

  test("citadel intel manual --remove --yes and list import --yes send lock_out; without --yes, none", async () => {
    const removed = await runCommand(intelCommands, "intel manual", { options: { remove: "man_1", yes: true }, answer: () => ({ ok: true }) });
    expect(removed.requests.map((r) => r.path)).toEqual(["/v1/intel/manual/man_1?lock_out=true"]);
    const plain = await runCommand(intelCommands, "intel manual", { options: { remove: "man_1" }, answer: () => ({ ok: true }) });
    expect(plain.requests.map((r) => r.path)).toEqual(["/v1/intel/manual/man_1"]);
    const answer = () => ({ name: "bad", entries: 1, bad_lines: 0, format: "plain" });
    const imported = await runCommand(intelCommands, "intel list import", { args: ["bad"], options: { url: "https://lists.example.org/bad", weight: "100", yes: true }, answer });
    expect(imported.requests.map((r) => r.body)).toEqual([{ weight: 100, url: "https://lists.example.org/bad", lock_out: true }]);
    const plainImport = await runCommand(intelCommands, "intel list import", { args: ["bad"], options: { url: "https://lists.example.org/bad", weight: "100" }, answer });
    expect(plainImport.requests.map((r) => r.body)).toEqual([{ weight: 100, url: "https://lists.example.org/bad" }]);
  });
});

describe("a policy whose points would refuse the caller (found in review: a policy change had no lock-out check)", () => {
  test("is a 409, and is not taken; one that throttles is taken; with lock_out it is taken, and the caller is refused", async () => {
    const c = await citadel({ config: { intel: { trust_loopback: false } } });
    const operator = await c.login(c.owner.email, c.owner.password);
    // 193.0.0.1 (RIPE NCC) is NL in the embedded database.
    const office = from("193.0.0.1");
    const refused = await c.send("PUT", "/v1/intel/policy", operator, { json: { countries: { NL: 80 } }, ...office });
    expect([refused.status, refused.body.detail]).toEqual([409, expect.stringContaining('with these points, your next request (from 193.0.0.1) would be refused. Send "lock_out": true')]);
    expect((await c.send("GET", "/v1/intel/policy", operator, office)).body.countries).toEqual({});
    expect((await c.send("PUT", "/v1/intel/policy", operator, { json: { countries: { NL: 45 } }, ...office })).status).toBe(200);
    // Another address is no reason to ask: the caller's own is what is checked.
    expect((await c.send("PUT", "/v1/intel/policy", operator, { json: { countries: { DE: 100 } }, ...office })).status).toBe(200);
    const meant = await c.send("PUT", "/v1/intel/policy", operator, { json: { countries: { NL: 95 }, lock_out: true }, ...office });
    expect([meant.status, meant.body.countries]).toEqual([200, { NL: 95 }]);
    expect(c.kernel.store.db.query("SELECT reason FROM audit_events WHERE action = 'intel.policy.update' ORDER BY seq DESC LIMIT 1").get()).toEqual({ reason: 'set countries {"NL":95}' });
    expect((await c.send("GET", "/v1/intel/policy", operator, office)).status).toBe(403);
  });

  test("citadel intel policy set --yes sends lock_out; without it, none", async () => {
    const file = `${process.env.TMPDIR ?? "/tmp"}/citadel-policy-${process.pid}.json`;
    await Bun.write(file, JSON.stringify({ countries: { NL: 95 } }));
    try {
      const yes = await runCommand(intelCommands, "intel policy set", { args: [file], options: { yes: true }, answer: () => ({}) });
      expect(yes.requests.map((r) => r.body)).toEqual([{ countries: { NL: 95 }, lock_out: true }]);
      const plain = await runCommand(intelCommands, "intel policy set", { args: [file], answer: () => ({}) });
      expect(plain.requests.map((r) => r.body)).toEqual([{ countries: { NL: 95 } }]);
    } finally {
      await Bun.file(file).delete();
    }
  });
});
