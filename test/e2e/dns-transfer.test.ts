/**
 * Citadel as the primary of a real secondary: Knot (knotd), configured with a TSIG key made
 * through Citadel's API, transfers the zone once Citadel adds it as a secondary and NOTIFYs it;
 * after a change made through the API, Citadel's NOTIFY makes Knot transfer again and Knot
 * answers the new record; a zone signed with the CLI is transferred fully signed and served by
 * Knot to a validator, with NSEC and once switched to NSEC3; signed again, each change to it is
 * edited into the signed zone, followed by Knot and validated. Both ends are the real programs:
 * the compiled binary and knotd.
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

/** A tool's output (stdout and stderr), spawned apart from this process. */
async function run(argv: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out: out + err };
}

const validators = [requireTool("kdig", "knot-dnsutils"), requireTool("dnssec-verify", "bind9-utils"), requireTool("delv", "bind9-dnsutils")];

test.skipIf((skip !== null || validators.includes(null)) && process.env.CI !== "true")("a signed zone: its AXFR is fully signed (dnssec-verify), and Knot, its secondary, serves it signed to a validator (delv, DS from citadel dns zone ds), with NSEC and then NSEC3 (citadel dns zone dnssec set --denial nsec3)", async () => {
  const [kdig, verify, delv] = validators as [string, string, string];
  const enabled = await cli(["dns", "zone", "dnssec", "enable", "example.test"]);
  expect(enabled.code).toBe(0);
  expect(enabled.stdout).toContain("Give the parent zone (your registrar) this DS record:");
  const ds = await cli(["dns", "zone", "ds", "example.test"]);
  const dsLine = ds.stdout.split("\n").find((l) => l.includes(" IN DS "))!;
  expect(dsLine).toMatch(/^example\.test\. IN DS \d+ 13 2 [0-9A-F]{64}$/);
  expect(ds.stdout).toMatch(/example\.test\. IN DNSKEY 257 3 13 /);
  const serial = (await api("GET", zone)).body.serial as number;

  // The AXFR a secondary gets, with Citadel's TSIG key (from the secondary's address).
  const axfr = await run([kdig, "@127.0.0.1", "-p", String(dnsPort), "-y", `hmac-sha256:transfer-key:${secret}`, "+noall", "+answer", "AXFR", "example.test."]);
  expect(axfr.out).toContain("RRSIG");
  const dir = tempDir("citadel-e2e-dnssec-");
  try {
    const file = join(dir.path, "example.test.zone");
    // The last SOA closes the transfer; kdig's lines are zone-file lines.
    const lines = axfr.out.split("\n").filter((l) => l.trim() !== "" && !l.startsWith(";"));
    writeFileSync(file, lines.slice(0, -1).join("\n") + "\n");
    const verified = await run([verify, "-z", "-o", "example.test.", file]);
    expect(verified.out).toContain("Zone fully signed");

    // Knot follows the new serial and answers with the signatures.
    await untilKnot("example.test.", RRType.SOA, (a) => a[0] === String(serial));
    const [tag, algorithm, digestType, digest] = dsLine.split(" ").slice(3);
    const anchors = join(dir.path, "anchors.conf");
    writeFileSync(anchors, `trust-anchors { example.test. static-ds ${tag} ${algorithm} ${digestType} "${digest}"; };\n`);
    for (const [name, type, verdict] of [
      ["www.example.test.", "A", "; fully validated"],
      ["nothing.example.test.", "A", "; negative response, fully validated"],
    ]) {
      const out = await run([delv, "@127.0.0.1", "-p", String(knot!.port), "-a", anchors, "+root=example.test.", name!, type!]);
      expect(out.out).toContain(verdict!);
    }

    // Switched to NSEC3 (hashed names) with the CLI: more iterations are refused, saying why; the
    // switch is one new serial whose AXFR carries the NSEC3PARAM and a whole NSEC3 chain, and
    // Knot, transferring it, serves NSEC3 proofs a validator takes with the same DS.
    const iterations = await cli(["dns", "zone", "dnssec", "set", "example.test", "--denial", "nsec3", "--iterations", "10"]);
    expect([iterations.code, iterations.stderr]).toEqual([1, expect.stringContaining("NSEC3 iterations must be 0 (RFC 9276 section 3.1)")]);
    const switched = await cli(["dns", "zone", "dnssec", "set", "example.test", "--denial", "nsec3"]);
    expect([switched.code, switched.stdout]).toEqual([0, expect.stringContaining("example.test. proves absence with NSEC3, SHA-1, 0 iterations, no salt, no opt-out (example.test. IN NSEC3PARAM 1 0 0 -)")]);
    expect((await cli(["dns", "zone", "dnssec", "show", "example.test"])).stdout).toContain("denial of existence: NSEC3, SHA-1, 0 iterations, no salt, no opt-out");
    const nsec3Serial = (await api("GET", zone)).body.serial as number;
    expect(nsec3Serial).toBeGreaterThan(serial);
    const nsec3Axfr = await run([kdig, "@127.0.0.1", "-p", String(dnsPort), "-y", `hmac-sha256:transfer-key:${secret}`, "+noall", "+answer", "AXFR", "example.test."]);
    const nsec3Lines = nsec3Axfr.out.split("\n").filter((l) => l.trim() !== "" && !l.startsWith(";"));
    expect(nsec3Lines.filter((l) => /\sNSEC3PARAM\s+1 0 0 -/.test(l))).toHaveLength(1);
    expect(nsec3Lines.some((l) => /\sNSEC3\s+1 0 0 - /.test(l)) && !nsec3Lines.some((l) => /\sNSEC\s/.test(l))).toBe(true);
    writeFileSync(file, nsec3Lines.slice(0, -1).join("\n") + "\n");
    expect((await run([verify, "-z", "-o", "example.test.", file])).out).toContain("Zone fully signed");
    await untilKnot("example.test.", RRType.SOA, (a) => a[0] === String(nsec3Serial));
    for (const [name, type, verdict] of [
      ["www.example.test.", "A", "; fully validated"],
      ["nothing.example.test.", "A", "; negative response, fully validated"],
      ["www.example.test.", "TXT", "; negative response, fully validated"],
    ]) {
      const out = await run([delv, "@127.0.0.1", "-p", String(knot!.port), "-a", anchors, "+root=example.test.", name!, type!]);
      expect([name, type, out.out.includes(verdict!)]).toEqual([name, type, true]);
      if (verdict !== "; fully validated") expect(out.out).toMatch(/\sNSEC3\s+1 0 0 - /);
    }
  } finally {
    dir.remove();
  }

  // Turning it off needs --yes, and says why.
  const refused = await cli(["dns", "zone", "dnssec", "disable", "example.test"]);
  expect([refused.code, refused.stderr]).toEqual([2, expect.stringContaining("remove the DS at the registrar")]);
  expect((await cli(["dns", "zone", "dnssec", "disable", "example.test", "--yes"])).stdout).toContain("example.test. is no longer signed");
}, 60_000);

test.skipIf((skip !== null || validators.includes(null)) && process.env.CI !== "true")("signed again, then changed record by record: each change is edited into the signed zone (not signed whole, docs/dns.md), Knot follows it by NOTIFY, its AXFR is fully signed and delv validates the changed names and denials, an empty non-terminal gone with its last name — with NSEC, then NSEC3", async () => {
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
