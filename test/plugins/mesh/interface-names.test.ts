/**
 * A network's interface name: the default stays unique when the network's name is too long for
 * it, and no two networks of an organization share one (found in review: "production-east" and
 * "production-west" both got "wgc-production-", and a host in both had one interface for two).
 */
import { expect, test } from "bun:test";
import { defaultInterfaceName } from "../../../plugins/mesh/service.ts";
import { isInterfaceName } from "../../../plugins/mesh/types.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

async function organization() {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const networks = `/v1/mesh/orgs/${c.owner.organization}/networks`;
  const create = (json: Record<string, unknown>) => c.send("POST", networks, owner, { json });
  const change = (name: string, json: Record<string, unknown>) => c.send("PATCH", `${networks}/${name}`, owner, { json });
  return { c, create, change };
}

test("the default: wgc-<name> when it fits, else the name's start and a hash of the whole name", () => {
  expect(defaultInterfaceName("office")).toBe("wgc-office");
  expect(defaultInterfaceName("production1")).toBe("wgc-production1"); // 15: fits
  const east = defaultInterfaceName("production-east");
  const west = defaultInterfaceName("production-west");
  expect(east).not.toBe(west);
  for (const name of [east, west, defaultInterfaceName("a".repeat(63))]) {
    expect(name).toMatch(/^wgc-[a-z0-9-]{6}-[0-9a-f]{4}$/);
    expect(isInterfaceName(name)).toBe(true);
  }
  expect(defaultInterfaceName("production-east")).toBe(east); // the same name, the same default
});

test("networks with long names sharing their start get different interfaces", async () => {
  const { create } = await organization();
  const east = await create({ name: "production-east" });
  const west = await create({ name: "production-west" });
  expect([east.status, west.status]).toEqual([200, 200]);
  expect(east.body.interface_name).toBe(defaultInterfaceName("production-east"));
  expect(west.body.interface_name).toBe(defaultInterfaceName("production-west"));
});

test("an interface name another network of the organization uses is refused, 409, given or changed to", async () => {
  const { c, create, change } = await organization();
  expect((await create({ name: "office" })).status).toBe(200);
  const taken = await create({ name: "lab", interface_name: "wgc-office" });
  expect([taken.status, taken.body.detail]).toEqual([409, expect.stringContaining("the network office uses wgc-office already")]);
  expect((await create({ name: "lab", interface_name: "wg-lab" })).status).toBe(200);
  const renamed = await change("lab", { interface_name: "wgc-office" });
  expect([renamed.status, renamed.body.detail]).toEqual([409, expect.stringContaining("the network office uses wgc-office already")]);
  expect((await change("lab", { interface_name: "wg-lab2" })).body.interface_name).toBe("wg-lab2");
  // Two networks that share one from before the check keep it, and their other settings still change.
  c.kernel.store.db.query("UPDATE mesh_networks SET interface_name = 'wgc-office' WHERE name = 'lab'").run();
  const mtu = await change("lab", { mtu: 1380 });
  expect([mtu.status, mtu.body.interface_name, mtu.body.mtu]).toEqual([200, "wgc-office", 1380]);
});
