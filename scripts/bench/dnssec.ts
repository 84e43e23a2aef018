/**
 * What a change to a large signed zone costs on the event loop, in process: a zone of N names
 * (one A each) signed whole, then one-record changes — an address updated, a name added, a name
 * removed (the last two move the NSEC or NSEC3 chain) — each built (Zone.build, as the service
 * does) and signed keeping the signatures before it (signZone with `previous`, as every change
 * does) — and the same change made by signChange on the zone served (the zone edited where the
 * change falls, as the service's write does since stop 30's second phase). The reference in the
 * same run: the same zone signed whole, and BIND's dnssec-signzone of it when installed. CPU
 * time (this process's user + system) per step, the median of the changes made.
 *
 *   bun scripts/bench/dnssec.ts [--names 10000,50000] [--changes 9] [--nsec3] [--no-signzone]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateSigningKey, signaturesOf, signChange, signingKeyFrom, signZone, type Denial, type RrsetChange } from "../../plugins/dns/dnssec.ts";
import { RFC9276_PARAMS } from "../../plugins/dns/nsec3.ts";
import { parseName } from "../../plugins/dns/names.ts";
import { parseRdata, RRType } from "../../plugins/dns/rdata.ts";
import { rrToText, Zone, type RR } from "../../plugins/dns/zone.ts";

const { values } = parseArgs({ options: { names: { type: "string", default: "10000,50000" }, changes: { type: "string", default: "9" }, nsec3: { type: "boolean", default: false }, "no-signzone": { type: "boolean", default: false } } });
const sizes = values.names!.split(",").map(Number);
const changes = Number(values.changes);
const denial: Denial = values.nsec3 ? { mode: "nsec3", params: RFC9276_PARAMS } : { mode: "nsec" };
const origin = parseName("bench.test.", null);
const key = signingKeyFrom(generateSigningKey().pkcs8);

const soa = (serial: number): RR => ({ name: origin, ttl: 3600, type: RRType.SOA, rdata: parseRdata(RRType.SOA, ["ns1.example.net.", "hostmaster.bench.test.", String(serial), "3600", "900", "1209600", "300"], origin) });
const a = (owner: string, address: string): RR => ({ name: parseName(owner, origin), ttl: 300, type: RRType.A, rdata: parseRdata(RRType.A, [address], origin) });
const address = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

/** CPU milliseconds `fn` takes (user + system: what it holds the event loop for, less any wait). */
function cpu<T>(fn: () => T): { ms: number; result: T } {
  const before = process.cpuUsage();
  const result = fn();
  const used = process.cpuUsage(before);
  return { ms: (used.user + used.system) / 1000, result };
}
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

function dnssecSignzone(records: RR[]): number | null {
  if (values["no-signzone"]) return null;
  const which = Bun.spawnSync(["sh", "-c", "command -v dnssec-signzone"]);
  if (which.exitCode !== 0) return null;
  const dir = mkdtempSync(join(tmpdir(), "citadel-bench-dnssec-"));
  try {
    const keygen = Bun.spawnSync(["dnssec-keygen", "-K", dir, "-a", "ECDSAP256SHA256", "-f", "KSK", "bench.test."]);
    if (keygen.exitCode !== 0) return null;
    const file = join(dir, "zone");
    writeFileSync(file, records.map((r) => rrToText(r).replace(/^(\S+) (\d+) /, "$1 $2 IN ")).join("\n") + "\n");
    const started = performance.now();
    const args = ["dnssec-signzone", "-K", dir, "-d", dir, "-S", "-z", "-o", "bench.test.", ...(values.nsec3 ? ["-3", "-"] : []), "-f", join(dir, "signed"), file];
    const run = Bun.spawnSync(args);
    if (run.exitCode !== 0) return null;
    return performance.now() - started;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`Bun ${Bun.version}, ${values.nsec3 ? "NSEC3 (RFC 9276: no salt, 0 iterations)" : "NSEC"}, one key (ECDSAP256SHA256), CPU ms (median of ${changes} changes of each kind)\n`);
console.log("| names | Zone.build | sign whole | dnssec-signzone (wall) | update an A: build + sign | add a name: build + sign | remove a name: build + sign | update an A: signChange | add a name: signChange | remove a name: signChange |");
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const size of sizes) {
  const data = new Map<string, RR>();
  data.set("ns", { name: origin, ttl: 3600, type: RRType.NS, rdata: parseRdata(RRType.NS, ["ns1.example.net."], origin) });
  for (let i = 0; i < size; i++) data.set(`host${i}`, a(`host${i}`, address(i)));
  let serial = 1;
  const build = () => Zone.build(origin, [soa(serial), ...data.values()], { loading: true });
  const built = cpu(build);
  const whole = cpu(() => signZone(built.result, [key], Date.now(), undefined, denial));
  let served = whole.result;
  let edited = whole.result;
  /** One change, made both ways: the zone built and signed keeping the signatures before it, and edited by signChange. */
  const step = (host: string, record: RR | null) => {
    if (record === null) data.delete(host);
    else data.set(host, record);
    serial++;
    const change: RrsetChange = { owner: parseName(host, origin), type: RRType.A, records: record === null ? [] : [record] };
    const before = cpu(() => signZone(build(), [key], Date.now(), signaturesOf(served), denial));
    served = before.result;
    const after = cpu(() => signChange(edited, soa(serial), [change], [key], Date.now(), denial));
    if (after.result === null) throw new Error(`signChange declined ${host}`);
    edited = after.result;
    return { before: before.ms, after: after.ms };
  };
  const kinds = { update: [] as Array<{ before: number; after: number }>, add: [] as Array<{ before: number; after: number }>, remove: [] as Array<{ before: number; after: number }> };
  for (let i = 0; i < changes; i++) {
    kinds.update.push(step(`host${i * 7}`, a(`host${i * 7}`, address(size + i))));
    kinds.add.push(step(`new${i}`, a(`new${i}`, "192.0.2.1")));
    kinds.remove.push(step(`host${i * 11 + 1}`, null));
  }
  const signzone = dnssecSignzone([soa(serial), ...data.values()]);
  const f = (ms: number) => ms.toFixed(1);
  const m = (xs: Array<{ before: number; after: number }>, which: "before" | "after") => f(median(xs.map((x) => x[which])));
  console.log(
    `| ${size.toLocaleString("en")} | ${f(built.ms)} | ${f(whole.ms)} | ${signzone === null ? "—" : f(signzone)} | ${m(kinds.update, "before")} | ${m(kinds.add, "before")} | ${m(kinds.remove, "before")} | ${m(kinds.update, "after")} | ${m(kinds.add, "after")} | ${m(kinds.remove, "after")} |`,
  );
}
