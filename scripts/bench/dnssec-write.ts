/**
 * What a change of one RRset to a large signed zone costs through the API, in process: a zone of
 * N names (one A each) written to the store and signed (NSEC, or NSEC3 with --nsec3), then PUT
 * /rrsets/<name>/A — an address updated, a name added, a name removed — each followed by the
 * listener's build of the zone (DnsService.zone, which takes the zone signed in the write). CPU
 * time of this process (user + system: what the change holds the event loop for), median of the
 * changes of each kind. The reference: the same script run against the code before (docs/BENCHMARKS.md
 * says how), in the same conditions.
 *
 *   bun scripts/bench/dnssec-write.ts [--names 10000,50000] [--changes 5] [--nsec3]
 */
import { parseArgs } from "node:util";
import { dnsServiceOf } from "../../plugins/dns/index.ts";
import { testCitadel } from "../../test/helpers/citadel.ts";

const { values } = parseArgs({ options: { names: { type: "string", default: "10000,50000" }, changes: { type: "string", default: "5" }, nsec3: { type: "boolean", default: false } } });
const sizes = values.names!.split(",").map(Number);
const changes = Number(values.changes);

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
async function cpu(fn: () => Promise<unknown>): Promise<number> {
  const before = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

console.log(`Bun ${Bun.version}, ${values.nsec3 ? "NSEC3" : "NSEC"}: one PUT of an RRset to a signed zone and the listener's build after it, CPU ms (median of ${changes})\n`);
console.log("| names | update an A | add a name | remove a name |");
console.log("|---:|---:|---:|---:|");
for (const size of sizes) {
  const c = await testCitadel({ config: { dns: { max_records_per_zone: size * 2 } } });
  const owner = await c.login(c.owner.email, c.owner.password);
  const zones = `/v1/dns/orgs/${c.owner.organization}/zones`;
  const created = await c.send("POST", zones, owner, { json: { name: "bench.test", ns: ["ns1.example.net."] } });
  const zone = `${zones}/bench.test`;
  // Written straight into the store (an import's request body is capped at 1 MiB), then signed whole by the enable.
  const id = created.body.id as string;
  const insert = c.kernel.store.db.query("INSERT INTO dns_records (zone_id, owner, type, ttl, rdata) VALUES (?, ?, 1, 300, ?)");
  c.kernel.store.db.transaction(() => {
    for (let i = 0; i < size; i++) insert.run(id, `host${i}.bench.test.`, Uint8Array.of(10, (i >> 16) & 255, (i >> 8) & 255, i & 255));
  })();
  if ((await c.send("POST", `${zone}/dnssec`, owner, { json: values.nsec3 ? { denial: "nsec3" } : {} })).status !== 200) throw new Error("enable");
  const dns = dnsServiceOf(c.kernel as never);
  dns.zone(id); // served, as the listener would
  const put = async (host: string, records: string[]) => {
    c.clock.advance(1000);
    const ms = await cpu(async () => {
      const r = await c.send("PUT", `${zone}/rrsets/${host}/A`, owner, { json: { ttl: 300, records } });
      if (r.status !== 200) throw new Error(`PUT ${host}: ${r.status} ${JSON.stringify(r.body)}`);
      dns.zone(id);
    });
    return ms;
  };
  const kinds = { update: [] as number[], add: [] as number[], remove: [] as number[] };
  for (let i = 0; i < changes; i++) {
    kinds.update.push(await put(`host${i * 7}`, [`192.0.2.${i + 2}`]));
    kinds.add.push(await put(`new${i}`, ["192.0.2.200"]));
    kinds.remove.push(await put(`host${i * 11 + 1}`, []));
  }
  const f = (ms: number) => ms.toFixed(1);
  console.log(`| ${size.toLocaleString("en")} | ${f(median(kinds.update))} | ${f(median(kinds.add))} | ${f(median(kinds.remove))} |`);
  await c.stop?.();
}
