/**
 * Fuzzes the authoritative DNS server's decoder and answer path: random, well-formed and mutated
 * packets (see dns-cases.ts for what is generated and checked), a million cases by default.
 * Prints the seed first, then per-chunk progress, throughput, a histogram of outcomes, memory,
 * and every failure with its case index and packet in hex. Exit code 1 on any failure.
 *
 * Usage: bun scripts/fuzz/dns.ts [--cases 1000000] [--seed S] [--case I]
 *   --seed S   replays a run (default: a random seed, printed)
 *   --case I   runs case I of the seed alone and prints its packet, replies and problems
 */
import { parseArgs } from "node:util";
import { answerAll } from "../../plugins/dns/server.ts";
import { checkPacket, fuzzCase, fuzzContext, mergeResults, runFuzz, type FuzzResult, type Histogram } from "./dns-cases.ts";

const { values } = parseArgs({
  options: { cases: { type: "string", default: "1000000" }, seed: { type: "string" }, case: { type: "string" } },
});
const cases = Number(values.cases);
const seed = values.seed === undefined ? crypto.getRandomValues(new Uint32Array(1))[0]! : Number(values.seed);
for (const [flag, value] of [["--cases", cases], ["--seed", seed], ["--case", Number(values.case ?? 0)]] as const) {
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${flag} must be a whole number, not ${value}`);
}
/** Chunks let progress and the heap be watched while a long run goes on. */
const CHUNK = 100_000;
/** Heap growth past the warmed-up baseline that counts as a leak: the whole fuzz zone is far smaller. */
const MAX_HEAP_GROWTH = 64 * 1024 * 1024;

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const heapAfterGc = () => {
  Bun.gc(true);
  return process.memoryUsage().heapUsed;
};

if (values.case !== undefined) {
  replay(Number(values.case));
} else {
  process.exit(fuzz() ? 0 : 1);
}

/** One case, in full: enough to turn a failure into a test. */
function replay(index: number): void {
  const { kind, packet, client } = fuzzCase(seed, index);
  console.log(`seed ${seed} case ${index} (${kind}) from ${client}\npacket ${Buffer.from(packet).toString("hex")}`);
  for (const transport of ["udp", "tcp"] as const) {
    const replies = answerAll(packet, client, transport, fuzzContext());
    console.log(`${transport} reply ${replies.map((r) => Buffer.from(r).toString("hex")).join(" + ") || "(none)"}`);
  }
  const { udp, tcp, problems } = checkPacket(packet, client);
  console.log(`outcome udp ${udp}, tcp ${tcp}`);
  for (const problem of problems) console.log(`  ${problem}`);
  process.exitCode = problems.length > 0 ? 1 : 0;
}

function fuzz(): boolean {
  const rssStart = process.memoryUsage.rss();
  const heapStart = heapAfterGc();
  fuzzContext();
  const heapZone = heapAfterGc() - heapStart;
  console.log(`dns fuzz: seed ${seed}, ${cases} cases (replay one: bun scripts/fuzz/dns.ts --seed ${seed} --case I)`);
  console.log(`rss at start ${mib(rssStart)}; the zone and keys take ${mib(heapZone)} of heap`);

  let total: FuzzResult | null = null;
  let heapBaseline = 0;
  for (let first = 0; first < cases; first += CHUNK) {
    const chunk = runFuzz({ cases: Math.min(CHUNK, cases - first), seed, first });
    if (total === null) {
      total = chunk;
      heapBaseline = heapAfterGc(); // after one chunk: the JIT and the encoder's buffers are warm
    } else {
      mergeResults(total, chunk);
    }
    const rate = Math.round(chunk.cases / chunk.seconds);
    console.log(`  ${first + chunk.cases} cases, ${rate} cases/s, ${total.failureCount} failing, rss ${mib(process.memoryUsage.rss())}`);
  }
  if (total === null) return true;

  const heapGrowth = heapAfterGc() - heapBaseline;
  const rssEnd = process.memoryUsage.rss();
  console.log(`\n${total.cases} cases in ${total.seconds.toFixed(1)} s: ${Math.round(total.cases / total.seconds)} cases/s`);
  console.log(`kinds: ${JSON.stringify(total.kinds)}`);
  printHistogram(total.histogram);
  console.log(`rss ${mib(rssStart)} at start, ${mib(rssEnd)} at the end; heap growth after warm-up ${mib(heapGrowth)}`);

  for (const f of total.failures) {
    console.log(`\nFAIL case ${f.index} (${f.kind}) from ${f.client}: bun scripts/fuzz/dns.ts --seed ${seed} --case ${f.index}`);
    console.log(`  packet ${f.packetHex}`);
    for (const problem of f.problems) console.log(`  ${problem}`);
  }
  if (total.failureCount > total.failures.length) console.log(`\n... and ${total.failureCount - total.failures.length} more failing cases`);
  const leak = heapGrowth > MAX_HEAP_GROWTH;
  if (leak) console.log(`\nFAIL the heap grew by ${mib(heapGrowth)}, more than ${mib(MAX_HEAP_GROWTH)}: something keeps what it answered`);
  console.log(total.failureCount === 0 && !leak ? "\nOK" : `\nFAILED: ${total.failureCount} failing cases`);
  return total.failureCount === 0 && !leak;
}

function printHistogram(histogram: { udp: Histogram; tcp: Histogram }): void {
  console.log("outcome      udp        tcp");
  for (const outcome of Object.keys(histogram.udp) as (keyof Histogram)[]) {
    console.log(`${outcome.padEnd(9)}${String(histogram.udp[outcome]).padStart(9)}  ${String(histogram.tcp[outcome]).padStart(9)}`);
  }
}
