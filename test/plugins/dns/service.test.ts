/**
 * The zone service's own work, counted: the cost of a change follows its size, not its square.
 */
import { expect, spyOn, test } from "bun:test";
import * as rdata from "../../../plugins/dns/rdata.ts";
import { testCitadel } from "../../helpers/citadel.ts";

test("a large RRset's duplicate check works out each record's identity a few times, not once per pair (found in review: 1,000 A records took about a second to PUT)", async () => {
  const c = await testCitadel();
  const identities = spyOn(rdata, "rdataIdentity");
  try {
    const owner = await c.login(c.owner.email, c.owner.password);
    const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
    expect((await c.send("POST", zones, owner, { json: { name: "big.example" } })).status).toBe(200);
    // 999 records, and the first again (1,000 is the most an RRset takes) spelled alike: it is dropped as a duplicate.
    const records = Array.from({ length: 999 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
    identities.mockClear();
    const put = await c.send("PUT", `${zones}/big.example/rrsets/www/A`, owner, { json: { records: [...records, records[0]] } });
    expect([put.status, put.body.records.length]).toEqual([200, 999]);
    // A few per record (here, and each time the zone is built): some 1,000,000 before.
    expect(identities.mock.calls.length).toBeLessThan(10 * records.length);
  } finally {
    identities.mockRestore();
    await c.stop();
  }
});
