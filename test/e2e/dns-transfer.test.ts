/**
 * Citadel as the primary of a real secondary: Knot (knotd), configured with a TSIG key made
 * through Citadel's API, transfers the zone once Citadel adds it as a secondary and NOTIFYs it;
 * after a change made through the API, Citadel's NOTIFY makes Knot transfer again and Knot
 * answers the new record. Both ends are the real programs: the compiled binary and knotd.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseName } from "../../plugins/dns/names.ts";
import { rdataToText, RRType } from "../../plugins/dns/rdata.ts";
import { soaSerial } from "../../plugins/dns/transfer.ts";
import { callApi, cliRunner, ensureBinary, firstLogin, freePort, oneTimePassword, startCitadel, tempDir, type RunningCitadel } from "../helpers/binary.ts";
import { buildQuery, DnsClient, referenceSkipReason, startReference, type ReferenceServer } from "../helpers/reference-dns.ts";

const skip = referenceSkipReason("knot");
const data = tempDir("citadel-e2e-xfr-");
const home = tempDir("citadel-e2e-xfr-home-");
let citadel: RunningCitadel;
let httpPort: number;
let knot: ReferenceServer | null = null;
let client: DnsClient;
let token: string;
let ca: string;
let zone: string;

const api = (method: string, path: string, body?: unknown) => callApi(citadel.url, ca, token, method, path, body);
const cli = cliRunner({ data: data.path, port: () => httpPort, token: () => token, home: home.path });

/** Asks Knot until `check` passes on the answer to name/type, or the time is up. */
async function untilKnot(name: string, type: number, check: (answers: string[]) => boolean, timeoutMs = 20_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let last: string[] = [];
  while (Date.now() < deadline) {
    try {
      const reply = await client.query(buildQuery({ name: parseName(name, null), type }));
      last = reply.answer.filter((r) => r.type === type).map((r) => (type === RRType.SOA ? String(soaSerial(r.rdata)) : rdataToText(r.type, r.rdata)));
      if (check(last)) return last;
    } catch {
      // not up yet
    }
    await Bun.sleep(100);
  }
  throw new Error(`Knot never answered ${name} as expected (last: ${JSON.stringify(last)})\nknot log:\n${knot?.log().slice(-3000)}\ncitadel log:\n${JSON.stringify(citadel.logs().slice(-30))}`);
}

beforeAll(async () => {
  if (skip !== null && process.env.CI !== "true") return;
  await ensureBinary();
  const dnsPort = await freePort();
  const address = `127.0.0.1:${dnsPort}`;
  httpPort = await freePort();
  citadel = await startCitadel(["--data", data.path], { CITADEL_HTTP_PORT: String(httpPort), CITADEL_DNS_UDP: address, CITADEL_DNS_TCP: address });
  ca = readFileSync(join(data.path, "tls/cert.pem"), "utf8");
  token = await firstLogin(citadel.url, ca, oneTimePassword(citadel.stderr()));
  const org = (await api("GET", "/v1/iam/me")).body.organizations[0].id;
  zone = `/v1/dns/orgs/${org}/zones/example.test`;
  expect((await api("POST", `/v1/dns/orgs/${org}/zones`, { name: "example.test" })).status).toBe(200);
  expect((await api("PUT", `${zone}/rrsets/www/A`, { ttl: 300, records: ["192.0.2.10"] })).status).toBe(200);

  // The operator's CLI makes the key and prints it once, with the secondary's configuration lines.
  const made = await cli(["dns", "tsig", "create", "transfer-key"]);
  expect(made.code).toBe(0);
  const secret = /secret: (\S+)/.exec(made.stdout)![1]!;
  expect(made.stdout).toContain("Knot (knot.conf):");
  expect(Buffer.from(secret, "base64").length).toBe(32);
  knot = await startReference("knot", {
    zones: [{ origin: "example.test." }],
    role: "secondary",
    primary: { address: "127.0.0.1", port: dnsPort },
    tsig: { name: "transfer-key", algorithm: "hmac-sha256", secretBase64: secret },
    ready: "listening",
  });
  client = await DnsClient.open(knot!.port, { timeoutMs: 500, retries: 0 });
  // Knot is now refused (it is no secondary yet); adding it makes Citadel NOTIFY it.
  const added = await cli(["dns", "secondary", "add", "knot", "--address", "127.0.0.1", "--port", String(knot!.port), "--key", "transfer-key"]);
  expect(added.stderr).toBe("");
  expect(added.stdout).toContain("knot added: 127.0.0.1 may transfer every zone with key transfer-key.");
  const missing = await cli(["dns", "secondary", "add", "ns9", "--address", "127.0.0.9"]);
  expect([missing.code, missing.stderr]).toEqual([2, expect.stringContaining("--key")]); // a usage error
}, 40_000);

afterAll(async () => {
  client?.close();
  await knot?.stop();
  citadel?.proc.kill("SIGKILL");
  data.remove();
  home.remove();
});

test.skipIf(skip !== null && process.env.CI !== "true")("Knot, a secondary with Citadel's TSIG key, transfers the zone and follows a change after NOTIFY", async () => {
  const serial = (await api("GET", zone)).body.serial as number;
  expect(await untilKnot("example.test.", RRType.SOA, (a) => a[0] === String(serial))).toEqual([String(serial)]);
  expect(await untilKnot("www.example.test.", RRType.A, (a) => a.length > 0)).toEqual(["192.0.2.10"]);

  const changed = await api("PUT", `${zone}/rrsets/new/A`, { ttl: 300, records: ["192.0.2.77"] });
  expect(changed.status).toBe(200);
  // Well before Knot's own refresh timer (the SOA refresh is an hour): only NOTIFY explains it.
  expect(await untilKnot("new.example.test.", RRType.A, (a) => a.length > 0, 15_000)).toEqual(["192.0.2.77"]);
  expect(await untilKnot("example.test.", RRType.SOA, (a) => a[0] === String(changed.body.serial))).toEqual([String(changed.body.serial)]);
  const logs = citadel.logs().map((l) => l.msg);
  expect(logs).toContain("dns zone transfer");
  expect(logs).toContain("dns notify answered");
  const listed = await cli(["dns", "secondary", "list"]);
  expect(listed.stdout).toMatch(/knot\s+127\.0\.0\.1\s+\d+\s+transfer-key\.\s+every zone/);
}, 60_000);
