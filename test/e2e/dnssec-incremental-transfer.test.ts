/**
 * A signed zone changed record by record on the compiled binary, each change edited into the
 * served signed zone (incremental re-signing, docs/dns.md) rather than signed whole: after each,
 * Knot as its secondary follows by NOTIFY, BIND's dnssec-verify accepts the AXFR, and delv
 * validates the changed names through Knot — answers and denials, an empty non-terminal gone
 * with its last name — with NSEC, then switched to NSEC3.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseName } from "../../plugins/dns/names.ts";
import { rdataToText, RRType } from "../../plugins/dns/rdata.ts";
import { soaSerial } from "../../plugins/dns/transfer.ts";
import { callApi, cliRunner, ensureBinary, firstLogin, freePort, oneTimePassword, startCitadel, tempDir, type RunningCitadel } from "../helpers/binary.ts";
import { buildQuery, DnsClient, referenceSkipReason, startReference, type ReferenceServer } from "../helpers/reference-dns.ts";
import { requireTool } from "../helpers/tools.ts";

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
let secret: string;
let dnsPort: number;

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
  dnsPort = await freePort();
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
  secret = /secret: (\S+)/.exec(made.stdout)![1]!;
  knot = await startReference("knot", {
    zones: [{ origin: "example.test." }],
    role: "secondary",
    primary: { address: "127.0.0.1", port: dnsPort },
    tsig: { name: "transfer-key", algorithm: "hmac-sha256", secretBase64: secret },
    ready: "listening",
  });
  client = await DnsClient.open(knot!.port, { timeoutMs: 500, retries: 0 });
  // Added as a secondary, Knot is NOTIFYed and transfers the zone.
  const added = await cli(["dns", "secondary", "add", "knot", "--address", "127.0.0.1", "--port", String(knot!.port), "--key", "transfer-key"]);
  expect(added.stderr).toBe("");
  expect(added.stdout).toContain("knot added: 127.0.0.1 may transfer every zone with key transfer-key.");
}, 40_000);

afterAll(async () => {
  client?.close();
  await knot?.stop();
  citadel?.proc.kill("SIGKILL");
  data.remove();
  home.remove();
});

/** A tool's output (stdout and stderr), spawned apart from this process. */
async function run(argv: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out: out + err };
}

const validators = [requireTool("kdig", "knot-dnsutils"), requireTool("dnssec-verify", "bind9-utils"), requireTool("delv", "bind9-dnsutils")];

test.skipIf((skip !== null || validators.includes(null)) && process.env.CI !== "true")("incremental changes to a signed zone: Knot follows by NOTIFY, dnssec-verify and delv accept", async () => {
  const [kdig, verify, delv] = validators as [string, string, string];
  expect((await cli(["dns", "zone", "dnssec", "enable", "example.test"])).code).toBe(0);
  for (const [h, t, r] of [["www", "A", ["192.0.2.10"]], ["mail", "A", ["192.0.2.20"]], ["a.deep", "A", ["192.0.2.30"]]] as const) expect((await api("PUT", `${zone}/rrsets/${h}/${t}`, { ttl: 300, records: r })).status).toBe(200);
  const ds = await cli(["dns", "zone", "ds", "example.test"]);
  const dsLine = ds.stdout.split("\n").find((l) => l.includes(" IN DS "))!;
  const dir = tempDir("citadel-e2e-rr-");
  const file = join(dir.path, "z");
  const [tag, algorithm, digestType, digest] = dsLine.split(" ").slice(3);
  const anchors = join(dir.path, "anchors.conf");
  writeFileSync(anchors, `trust-anchors { example.test. static-ds ${tag} ${algorithm} ${digestType} "${digest}"; };\n`);
  const steps: Array<[string, string, string[], Array<[string, string, string]>]> = [
    ["www", "A", ["192.0.2.11"], [["www.example.test.", "A", "192.0.2.11"]]],
    ["new", "TXT", ['"hello"'], [["new.example.test.", "TXT", "hello"]]],
    ["mail", "A", [], [["mail.example.test.", "A", "; negative response, fully validated"]]],
    ["a.deep", "A", [], [["a.deep.example.test.", "A", "; negative response, fully validated"], ["deep.example.test.", "A", "; negative response, fully validated"]]],
    ["www", "AAAA", ["2001:db8::5"], [["www.example.test.", "AAAA", "2001:db8::5"]]],
  ];
  for (const denialStep of [0, 1]) {
    if (denialStep === 1) expect((await cli(["dns", "zone", "dnssec", "set", "example.test", "--denial", "nsec3"])).code).toBe(0);
    for (const [h, t, r, checks] of steps) {
      const res = await api("PUT", `${zone}/rrsets/${denialStep ? "n3" + h : h}/${t}`, { ttl: 300, records: r });
      expect(res.status).toBe(200);
      const serial = res.body.serial as number;
      await untilKnot("example.test.", RRType.SOA, (a) => a[0] === String(serial), 15_000);
      const axfr = await run([kdig, "@127.0.0.1", "-p", String(dnsPort), "-y", `hmac-sha256:transfer-key:${secret}`, "+noall", "+answer", "AXFR", "example.test."]);
      const lines = axfr.out.split("\n").filter((l) => l.trim() !== "" && !l.startsWith(";"));
      writeFileSync(file, lines.slice(0, -1).join("\n") + "\n");
      const v = await run([verify, "-z", "-o", "example.test.", file]);
      expect(`${denialStep} ${h} ${t}: ${v.out.includes("Zone fully signed") ? "ok" : v.out}`).toBe(`${denialStep} ${h} ${t}: ok`);
      for (const [name, type, want] of checks) {
        const qn = denialStep ? "n3" + name : name;
        const out = await run([delv, "@127.0.0.1", "-p", String(knot!.port), "-a", anchors, "+root=example.test.", qn, type]);
        const okv = out.out.includes("fully validated") && out.out.includes(want);
        expect(`${qn} ${type}: ${okv ? "ok" : out.out}`).toBe(`${qn} ${type}: ok`);
      }
    }
  }
  dir.remove();
}, 120_000);
