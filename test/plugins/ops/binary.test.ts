/**
 * The ops commands of the compiled binary against a running Citadel: the SBOM baked in at
 * build time is dist/sbom.cdx.json; the doctor asks the server (seal, keys, ports) and the DNS
 * listener (a hosted zone's SOA); the sovereignty report lists a webhook made through the API
 * and the resolver's upstream; stopped, the doctor says the server is not reachable.
 *
 * Plugin keys are set in the config file and, with the same values, in CITADEL_* variables, so
 * the commands see them whether or not the command context carries the whole configuration.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DoctorReport } from "../../../plugins/ops/doctor.ts";
import type { SovereigntyReport } from "../../../plugins/ops/sovereignty.ts";
import { callApi, ensureBinary, firstLogin, freePort, oneTimePassword, ROOT, runCitadel, startCitadel, tempDir, type RunningCitadel } from "../../helpers/binary.ts";

const data = tempDir("citadel-e2e-ops-");
let citadel: RunningCitadel | null = null;
let token: string;
let env: Record<string, string>;

beforeAll(async () => {
  await ensureBinary();
  const httpPort = await freePort();
  const dns = `127.0.0.1:${await freePort()}`;
  const resolver = `127.0.0.1:${await freePort()}`;
  env = {
    CITADEL_HTTP_PORT: String(httpPort),
    CITADEL_DNS_UDP: dns,
    CITADEL_DNS_TCP: dns,
    CITADEL_DNS_RESOLVER_UDP: resolver,
    CITADEL_DNS_RESOLVER_UPSTREAMS: "192.0.2.53:53",
    CITADEL_SECRETS_WEBHOOK_ALLOWED_URLS: "https://hooks.example.test/",
  };
  writeFileSync(
    join(data.path, "citadel.toml"),
    [
      "[dns]",
      `udp = ["${dns}"]`,
      `tcp = ["${dns}"]`,
      `resolver_udp = ["${resolver}"]`,
      `resolver_upstreams = ["192.0.2.53:53"]`,
      "[secrets]",
      `webhook_allowed_urls = ["https://hooks.example.test/"]`,
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  citadel = await startCitadel(["--data", data.path], env);
  const ca = readFileSync(join(data.path, "tls/cert.pem"), "utf8");
  token = await firstLogin(citadel.url, ca, oneTimePassword(citadel.stderr()));
  const api = (method: string, path: string, body?: unknown) => callApi(citadel!.url, ca, token, method, path, body);
  const org = (await api("GET", "/v1/iam/me")).body.organizations[0].id;
  expect((await api("POST", `/v1/dns/orgs/${org}/zones`, { name: "example.test" })).status).toBe(200);
  const ws = (await api("POST", `/v1/iam/orgs/${org}/workspaces`, { name: "app" })).body.id;
  expect((await api("POST", `/v1/secrets/workspaces/${ws}/webhooks`, { url: "https://hooks.example.test/citadel" })).status).toBe(200);
  // The first checkpoint makes the audit signing key: ask for one now rather than wait for it.
  expect((await api("POST", "/v1/audit/checkpoints")).status).toBe(200);
}, 60_000);

afterAll(async () => {
  await citadel?.stop();
  data.remove();
});

const ops = (args: string[], extra: Record<string, string> = {}) => runCitadel(["--data", data.path, ...args], { ...env, ...extra });

test("the binary prints the SBOM baked in at build time, the same as dist/sbom.cdx.json", async () => {
  const { code, stdout } = await runCitadel(["sovereignty", "sbom"]);
  expect(code).toBe(0);
  expect(stdout).toBe(readFileSync(join(ROOT, "dist/sbom.cdx.json"), "utf8"));
  const bom = JSON.parse(stdout);
  expect(bom.metadata.properties).toContainEqual({ name: "citadel:sbom-made", value: "at build time, embedded in the binary" });
  expect(bom.components.find((c: { name: string }) => c.name === "bun").hashes[0]).toMatchObject({ alg: "SHA-256", content: expect.stringMatching(/^[0-9a-f]{64}$/) });
});

test("doctor, Citadel running: ready and unsealed, keys from the server, ports held, the hosted zone answered", async () => {
  const { code, stdout } = await ops(["doctor", "--json"], { CITADEL_TOKEN: token });
  const report = JSON.parse(stdout) as DoctorReport;
  const of = (check: string) => report.checks.filter((c) => c.check === check);
  expect(report.checks.filter((c) => c.status === "fail")).toEqual([]);
  expect(code).toBe(0);
  expect(of("server")[0]).toMatchObject({ status: "ok", message: `Citadel answers at ${citadel!.url} and is ready` });
  expect(of("seal")[0]!.message).toMatch(/^unsealed \(seal method key_file, root key [0-9a-f]{8}\)$/);
  expect(of("keys")[0]!.message).toMatch(/^root key [0-9a-f]{8} \(key_file\) 0 days old; KEK v1 0 days old, rotation every 90 days$/);
  // UDP listeners are proven by a question (the dns check), not by a port probe; the resolver is not asked (it would forward).
  expect(of("port").map((c) => c.message)).toEqual([`HTTP API 127.0.0.1:${env.CITADEL_HTTP_PORT}/tcp: held by this Citadel`, `DNS ${env.CITADEL_DNS_TCP}/tcp: listening`]);
  expect(of("dns")[0]).toMatchObject({ status: "ok", message: expect.stringMatching(new RegExp(`^${env.CITADEL_DNS_UDP}/udp answers example\\.test\\. SOA: NOERROR \\(authoritative\\) in \\d+ ms$`)) });
});

test("sovereignty report: the webhook made through the API and the resolver's upstream; keys from the server", async () => {
  const { code, stdout } = await ops(["sovereignty", "report", "--json"], { CITADEL_TOKEN: token });
  expect(code).toBe(0);
  const report = JSON.parse(stdout) as SovereigntyReport;
  expect(report.outbound.none).toBe(false);
  expect(report.outbound.destinations.map((d) => [d.kind, d.destination, d.active])).toEqual([
    ["secrets_webhook", "https://hooks.example.test", true],
    ["dns_resolver_upstream", "192.0.2.53:53", true],
    ["system_resolver", expect.any(String), true], // this machine's name servers: they are asked hooks.example.test
  ]);
  expect(report.outbound.destinations.at(-1)!.detail).toContain("the host names above (hooks.example.test) are looked up through the system resolver");
  expect(report.keys.ages?.source).toBe("server");
  expect(report.keys.signing_keys.map((k) => k.purpose)).toEqual(["audit checkpoints"]);
  expect(report.dependencies.sbom).toContain("made at build time, embedded in the binary");
  const text = (await ops(["sovereignty", "report"], { CITADEL_TOKEN: token })).stdout;
  expect(text).toContain("secrets webhook: https://hooks.example.test\n");
  expect(text).toContain("dns resolver upstream: 192.0.2.53:53\n");
});

test("doctor, Citadel stopped: the server is not reachable (a warning) and its ports are free", async () => {
  expect((await citadel!.stop()).code).toBe(0);
  citadel = null;
  const { code, stdout } = await ops(["doctor", "--json"]);
  const report = JSON.parse(stdout) as DoctorReport;
  expect(code).toBe(0);
  expect(report.checks.find((c) => c.check === "server")).toMatchObject({ status: "warn", fix: "systemctl start citadel (or: citadel serve)" });
  expect(report.checks.find((c) => c.check === "server")!.message).toStartWith("server not reachable");
  expect(report.checks.filter((c) => c.check === "port").every((c) => c.status === "ok" && c.message.endsWith("free (Citadel is stopped)"))).toBe(true);
  expect(report.checks.find((c) => c.check === "dns")).toMatchObject({ status: "skip" });
});
