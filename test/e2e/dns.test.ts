/**
 * The DNS listener of the compiled binary: a zone made through the API is answered over UDP
 * and TCP at once, a change is served on the next query, and names outside are refused.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeMessage, Rcode } from "../../plugins/dns/message.ts";
import { nameToText, nameToWire, parseName } from "../../plugins/dns/names.ts";
import { rdataToText, RRType } from "../../plugins/dns/rdata.ts";
import { callApi, ensureBinary, firstLogin, freePort, oneTimePassword, runCitadel, startCitadel, tempDir, type RunningCitadel } from "../helpers/binary.ts";

const data = tempDir("citadel-e2e-dns-");
let citadel: RunningCitadel;
let dnsPort: number;
let token: string;
let ca: string;
let org: string;
let httpPort: number;

const api = (method: string, path: string, body?: unknown) => callApi(citadel.url, ca, token, method, path, body);

/** A plain query: header (id, RD), one question, class IN. */
function query(id: number, name: string, type: number): Uint8Array {
  const qname = nameToWire(parseName(name, null));
  const packet = new Uint8Array(12 + qname.length + 4);
  const view = new DataView(packet.buffer);
  view.setUint16(0, id);
  view.setUint16(2, 0x0100); // RD
  view.setUint16(4, 1); // QDCOUNT
  packet.set(qname, 12);
  view.setUint16(12 + qname.length, type);
  view.setUint16(14 + qname.length, 1);
  return packet;
}

async function overUdp(packet: Uint8Array): Promise<Uint8Array> {
  const { promise, resolve } = Promise.withResolvers<Uint8Array>();
  const socket = await Bun.udpSocket({ hostname: "127.0.0.1", socket: { data: (_s, buf) => resolve(new Uint8Array(buf)) } });
  socket.send(packet, dnsPort, "127.0.0.1");
  const timer = setTimeout(() => resolve(new Uint8Array()), 3000);
  const reply = await promise;
  clearTimeout(timer);
  socket.close();
  return reply;
}

async function overTcp(packet: Uint8Array): Promise<Uint8Array> {
  const { promise, resolve } = Promise.withResolvers<Uint8Array>();
  let buffered = new Uint8Array();
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port: dnsPort,
    socket: {
      data(_s, chunk) {
        buffered = new Uint8Array([...buffered, ...chunk]);
        if (buffered.length >= 2 && buffered.length >= 2 + ((buffered[0]! << 8) | buffered[1]!)) resolve(buffered.subarray(2));
      },
    },
  });
  socket.write(new Uint8Array([packet.length >> 8, packet.length & 0xff, ...packet]));
  const reply = await promise;
  socket.end();
  return reply;
}

beforeAll(async () => {
  await ensureBinary();
  httpPort = await freePort();
  dnsPort = await freePort();
  const address = `127.0.0.1:${dnsPort}`;
  citadel = await startCitadel(["--data", data.path], { CITADEL_HTTP_PORT: String(httpPort), CITADEL_DNS_UDP: address, CITADEL_DNS_TCP: address });
  ca = readFileSync(join(data.path, "tls/cert.pem"), "utf8");
  token = await firstLogin(citadel.url, ca, oneTimePassword(citadel.stderr()));
  org = (await api("GET", "/v1/iam/me")).body.organizations[0].id;
  expect((await api("POST", `/v1/dns/orgs/${org}/zones`, { name: "example.test" })).status).toBe(200);
  expect((await api("PUT", `/v1/dns/orgs/${org}/zones/example.test/rrsets/www/A`, { ttl: 300, records: ["192.0.2.10"] })).status).toBe(200);
}, 30_000);

afterAll(() => {
  citadel?.proc.kill("SIGKILL");
  data.remove();
});

test("a zone made through the API is answered over UDP and TCP, with AA and the query's case", async () => {
  for (const send of [overUdp, overTcp]) {
    const reply = decodeMessage(await send(query(0x1234, "WwW.Example.Test.", RRType.A)));
    expect([reply.id, reply.rcode, reply.aa]).toEqual([0x1234, Rcode.NOERROR, true]);
    expect(nameToText(reply.questions[0]!.name)).toBe("WwW.Example.Test.");
    expect(reply.answer.map((rr) => rdataToText(rr.type, rr.rdata))).toEqual(["192.0.2.10"]);
  }
});

test("a change is served at once; missing names get NXDOMAIN with the SOA; other names are refused", async () => {
  expect((await api("PUT", `/v1/dns/orgs/${org}/zones/example.test/rrsets/www/A`, { ttl: 300, records: ["192.0.2.11", "192.0.2.12"] })).status).toBe(200);
  const changed = decodeMessage(await overUdp(query(1, "www.example.test.", RRType.A)));
  expect(changed.answer.map((rr) => rdataToText(rr.type, rr.rdata)).sort()).toEqual(["192.0.2.11", "192.0.2.12"]);
  const missing = decodeMessage(await overUdp(query(2, "nope.example.test.", RRType.A)));
  expect([missing.rcode, missing.authority[0]?.type]).toEqual([Rcode.NXDOMAIN, RRType.SOA]);
  const outside = decodeMessage(await overUdp(query(3, "example.org.", RRType.A)));
  expect([outside.rcode, outside.aa]).toEqual([Rcode.REFUSED, false]);
});

test("kdig, a standard client, over UDP and TCP; a big answer truncated over UDP is retried over TCP", async () => {
  const kdig = Bun.which("kdig");
  if (!kdig) {
    if (process.env.CI) throw new Error("kdig is missing: .ci/run should have installed knot-dnsutils");
    console.warn("kdig not installed: the interoperability check did not run");
    return;
  }
  const run = async (...args: string[]) => {
    const proc = Bun.spawn([kdig, "@127.0.0.1", "-p", String(dnsPort), "+timeout=3", "+retry=0", ...args], { stdout: "pipe", stderr: "pipe" });
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    return out;
  };
  expect((await run("+short", "www.example.test", "A")).trim().split("\n").sort()).toEqual(["192.0.2.11", "192.0.2.12"]);
  expect((await run("+short", "+tcp", "www.example.test", "A")).trim().split("\n").sort()).toEqual(["192.0.2.11", "192.0.2.12"]);
  // 40 TXT records of 200 octets: far over 512 octets, so UDP without EDNS answers TC and kdig retries over TCP.
  const big = Array.from({ length: 40 }, (_, i) => `"${String(i).padStart(2, "0")}${"x".repeat(198)}"`);
  expect((await api("PUT", `/v1/dns/orgs/${org}/zones/example.test/rrsets/big/TXT`, { ttl: 60, records: big })).status).toBe(200);
  const full = await run("+noedns", "big.example.test", "TXT");
  expect(full).toContain("TC");
  expect(full.match(/\tTXT\t/g)?.length ?? full.match(/ TXT /g)?.length).toBe(40);
});

test("the CLI with a DNS API key: --org is asked for (found in review: looking the organization up was refused as outside the key's service)", async () => {
  expect((await api("PUT", `/v1/iam/orgs/${org}/services/dns`)).status).toBe(200);
  const made = await api("POST", `/v1/iam/orgs/${org}/api-keys`, { name: "zones", service: "dns", scopes: ["dns:read"] });
  expect(made.status).toBe(200);
  const cli = (...args: string[]) => runCitadel(["dns", "zone", "list", "--data", data.path, ...args], { CITADEL_HTTP_PORT: String(httpPort), CITADEL_TOKEN: made.body.token });
  const refused = await cli();
  expect(refused.code).toBe(2);
  expect(refused.stderr).toStartWith("citadel: an API key must be given --org ORG_ID\n");
  const listed = await cli("--org", org);
  expect(listed.stderr).toBe("");
  expect(listed.code).toBe(0);
  expect(listed.stdout).toContain("example.test.");
});

test("the CLI with a `read` token and no --org finds the organization (iam:read), and one that may not look it up is told to name it (found in review: iam:self was needed)", async () => {
  const cli = (scopes: string[]) => async () => {
    const made = await api("POST", "/v1/iam/me/tokens", { name: `ci-${scopes.join("-").replaceAll(":", "-")}`, scopes });
    expect(made.status).toBe(200);
    return runCitadel(["dns", "zone", "list", "--data", data.path], { CITADEL_HTTP_PORT: String(httpPort), CITADEL_TOKEN: made.body.token });
  };
  const listed = await cli(["read"])();
  expect([listed.code, listed.stderr]).toEqual([0, ""]);
  expect(listed.stdout).toContain("example.test.");
  const narrow = await cli(["dns:read"])();
  expect(narrow.code).toBe(2);
  expect(narrow.stderr).toStartWith("citadel: this token may not list your organizations (");
  expect(narrow.stderr).toContain("name the organization with --org ORG_ID\n");
});

test("a token that may ask who it is (iam:self) but not list organizations (iam:read) is told to name it, and works with --org (found in review: a second request after the refusal had every run refused twice, and rate limited after a dozen runs)", async () => {
  const made = await api("POST", "/v1/iam/me/tokens", { name: "ci-dns-read-iam-self", scopes: ["dns:read", "iam:self"] });
  expect(made.status).toBe(200);
  const env = { CITADEL_HTTP_PORT: String(httpPort), CITADEL_TOKEN: made.body.token };
  const told = await runCitadel(["dns", "zone", "list", "--data", data.path], env);
  expect([told.code, told.stderr]).toEqual([2, expect.stringContaining("name the organization with --org ORG_ID")]);
  const org = (await api("GET", "/v1/iam/orgs")).body.items[0].id;
  const listed = await runCitadel(["dns", "zone", "list", "--data", data.path, "--org", org], env);
  expect([listed.code, listed.stderr]).toEqual([0, ""]);
  expect(listed.stdout).toContain("example.test.");
});
