/**
 * The real DNSSEC validators the tests run against served zones: BIND's delv, asking a listener
 * with a zone's DS as its trust anchor (as a registrar would publish it), and BIND's
 * dnssec-verify on what an AXFR carries. Each gives null when its tool is missing (requireTool:
 * skipped with a warning, an error in CI).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../src/log.ts";
import { decodeMessage } from "../../plugins/dns/message.ts";
import { parseName } from "../../plugins/dns/names.ts";
import { allowAll, answerAll, startDnsServer, ZoneTable } from "../../plugins/dns/server.ts";
import type { TransferPolicy } from "../../plugins/dns/transfer.ts";
import { rrToText, type RR, type Zone } from "../../plugins/dns/zone.ts";
import { buildQuery, freeUdpTcpPort } from "./reference-dns.ts";
import { requireTool } from "./tools.ts";

/** A delv trust anchor file's text for a DS line as the API gives it ("example.org. IN DS tag 13 2 HEX"), the digest quoted. */
export function trustAnchor(ds: string): string {
  const [owner, , , tag, algorithm, digestType, digest] = ds.split(" ");
  return `trust-anchors { ${owner} static-ds ${tag} ${algorithm} ${digestType} "${digest}"; };\n`;
}

/** A DNS listener on 127.0.0.1 (UDP and TCP, one free port) serving `zones`, as delv asks it; transfers to whom `transfers` allows. */
export async function listenerFor(zones: ZoneTable, transfers?: TransferPolicy): Promise<{ port: number; stop(): Promise<void> }> {
  for (let attempt = 0; ; attempt++) {
    const port = await freeUdpTcpPort();
    try {
      const server = await startDnsServer({ udp: [{ address: "127.0.0.1", port }], tcp: [{ address: "127.0.0.1", port }], zones, transfers, log: silentLogger });
      return { port, stop: () => server.stop() };
    } catch (e) {
      if (attempt >= 3) throw e;
    }
  }
}

/**
 * delv's verdict and answer on `qname qtype` asked of the listener at `port`, trusting `ds` (a DS
 * line) for the zone; null without delv. Spawned, not spawnSync: the listener runs in this process.
 */
export async function delv(port: number, ds: string, qname: string, qtype: string): Promise<string | null> {
  const tool = requireTool("delv", "bind9-dnsutils");
  if (tool === null) return null;
  const dir = mkdtempSync(join(tmpdir(), "citadel-delv-"));
  try {
    writeFileSync(join(dir, "anchors.conf"), trustAnchor(ds));
    const run = Bun.spawn([tool, "@127.0.0.1", "-p", String(port), "-a", join(dir, "anchors.conf"), `+root=${ds.split(" ")[0]}`, qname, qtype], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
    const [out, err] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
    return out + err;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** delv's verdict on `qname qtype` asked of a listener serving `zone` alone, started for the question. */
export async function delvAgainst(zone: Zone, ds: string, qname: string, qtype: string): Promise<string | null> {
  const table = new ZoneTable();
  table.set(zone);
  const listener = await listenerFor(table);
  try {
    return await delv(listener.port, ds, qname, qtype);
  } finally {
    await listener.stop();
  }
}

/** What an AXFR of `origin` from `zones` carries, the closing SOA left out. */
export function axfrRecords(zones: ZoneTable, origin: string): RR[] {
  const messages = answerAll(buildQuery({ name: parseName(origin, null), type: 252 }), "127.0.0.1", "tcp", { zones, gate: allowAll, transfers: { allowed: () => true } });
  return messages.flatMap((m) => decodeMessage(m).answer).slice(0, -1) as RR[];
}

/**
 * dnssec-verify's verdict on `records` (or zone-file lines) as the zone `origin`; null without
 * it. `-z`: the keys are combined signing keys (flags 257), each signing everything, with no ZSK
 * apart.
 */
export function dnssecVerify(records: readonly RR[] | readonly string[], origin: string): { code: number; out: string } | null {
  const tool = requireTool("dnssec-verify", "bind9-utils");
  if (tool === null) return null;
  const dir = mkdtempSync(join(tmpdir(), "citadel-dnssec-verify-"));
  try {
    const file = join(dir, "zone");
    const lines = records.map((r) => (typeof r === "string" ? r : rrToText(r).replace(/^(\S+) (\d+) /, "$1 $2 IN ")));
    writeFileSync(file, lines.join("\n") + "\n");
    const run = Bun.spawnSync([tool, "-z", "-o", origin, file]);
    return { code: run.exitCode, out: run.stderr.toString() + run.stdout.toString() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
