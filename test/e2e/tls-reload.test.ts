/**
 * The compiled binary replaces its TLS certificate on SIGHUP (`systemctl reload citadel`)
 * without a restart: new connections get the new certificate, a connection opened before
 * finishes on the old one, a bad pair is refused and the running certificate kept, and the
 * port bound for this (SO_REUSEPORT) cannot be shared by another process by mistake.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type TLSSocket } from "node:tls";
import { generateSelfSignedCertificate } from "../../src/http/self-signed.ts";
import { BINARY, ensureBinary, freePort, startCitadel, tempDir, type RunningCitadel } from "../helpers/binary.ts";

const data = tempDir();
const certFile = join(data.path, "..", `${data.path.split("/").pop()}-cert.pem`);
const keyFile = join(data.path, "..", `${data.path.split("/").pop()}-key.pem`);
const others: Array<{ remove(): void }> = [];
let citadel: RunningCitadel;
let port: number;

async function certificate(name: string) {
  return generateSelfSignedCertificate({ dnsNames: [name, "localhost"], ipAddresses: ["127.0.0.1"], validDays: 30, now: new Date() });
}

function install(pair: { certPem: string; keyPem: string }) {
  writeFileSync(certFile, pair.certPem, { mode: 0o600 });
  writeFileSync(keyFile, pair.keyPem, { mode: 0o600 });
}

/** A TLS connection to Citadel and the SHA-256 fingerprint of the certificate it was shown. */
async function open(): Promise<{ socket: TLSSocket; fingerprint: string }> {
  const socket = connect({ host: "127.0.0.1", port, rejectUnauthorized: false, servername: "localhost" });
  await new Promise<void>((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
  return { socket, fingerprint: socket.getPeerCertificate().fingerprint256 };
}

/** GET /healthz over an open connection (keep-alive): its status line. */
async function healthOver(socket: TLSSocket): Promise<string> {
  const answer = new Promise<string>((resolve) => socket.once("data", (chunk: Buffer) => resolve(chunk.toString("latin1").split("\r\n")[0]!)));
  socket.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
  return answer;
}

async function hangUpAndWaitFor(message: string): Promise<void> {
  const seen = citadel.logs().filter((l) => l.msg === message).length;
  citadel.proc.kill("SIGHUP");
  for (const deadline = Date.now() + 10_000; citadel.logs().filter((l) => l.msg === message).length === seen; ) {
    if (Date.now() > deadline) throw new Error(`no "${message}" in the log: ${JSON.stringify(citadel.logs().slice(-5))}`);
    await Bun.sleep(10);
  }
}

const fingerprintOf = (pem: string) => new (require("node:crypto").X509Certificate)(pem).fingerprint256 as string;

beforeAll(async () => {
  await ensureBinary();
  port = await freePort();
  install(await certificate("first.test"));
  others.push({ remove: () => Bun.spawnSync(["rm", "-f", certFile, keyFile]) });
  citadel = await startCitadel(["--data", data.path], { CITADEL_HTTP_PORT: String(port), CITADEL_HTTP_TLS_CERT_FILE: certFile, CITADEL_HTTP_TLS_KEY_FILE: keyFile });
});

afterAll(() => {
  citadel?.proc.kill("SIGKILL");
  for (const o of others) o.remove();
  data.remove();
});

test("SIGHUP serves a renewed certificate to new connections; one opened before finishes on the old", async () => {
  const first = await open();
  expect(first.fingerprint).toBe(citadel.fingerprint!);
  const renewed = await certificate("renewed.test");
  install(renewed);
  await hangUpAndWaitFor("TLS certificate replaced over a new key: clients that pinned the old public key must pin the new one");
  for (let i = 0; i < 5; i++) {
    const next = await open();
    expect(next.fingerprint).toBe(fingerprintOf(renewed.certPem));
    expect(await healthOver(next.socket)).toBe("HTTP/1.1 200 OK");
    next.socket.destroy();
  }
  expect(await healthOver(first.socket)).toBe("HTTP/1.1 200 OK"); // the old connection still answers
  first.socket.destroy();

  // The same files again: nothing to do.
  await hangUpAndWaitFor("TLS reload: the certificate is unchanged");
  expect((await open().then((c) => (c.socket.destroy(), c))).fingerprint).toBe(fingerprintOf(renewed.certPem));
});

test("a key that is not the certificate's is refused: the running certificate stays, the refusal is audited", async () => {
  const served = (await open().then((c) => (c.socket.destroy(), c))).fingerprint;
  const stranger = await certificate("stranger.test");
  const other = await certificate("other.test");
  install({ certPem: stranger.certPem, keyPem: other.keyPem });
  await hangUpAndWaitFor("TLS reload refused: still serving the certificate loaded before");
  const refusal = citadel.logs().findLast((l) => l.msg === "TLS reload refused: still serving the certificate loaded before")!;
  expect(String(refusal.problem)).toContain("is not the private key of");
  expect((await open().then((c) => (c.socket.destroy(), c))).fingerprint).toBe(served);
  expect(citadel.proc.exitCode).toBeNull(); // SIGHUP does not end it

  const db = new Database(join(data.path, "citadel.db"), { readonly: true });
  try {
    const events = db.query("SELECT outcome, reason FROM audit_events WHERE action = 'sys.tls.reload' ORDER BY seq").all() as Array<{ outcome: string; reason: string }>;
    expect(events.map((e) => e.outcome)).toEqual(["success", "failure"]);
    expect(events[0]!.reason).toContain(served);
  } finally {
    db.close();
  }
});

test("another process cannot bind the port beside it (the listener's SO_REUSEPORT is not an open door)", async () => {
  const second = tempDir();
  others.push(second);
  const started = startCitadel(["--data", second.path], { CITADEL_HTTP_PORT: String(port) }, 8_000); // its own certificate
  await expect(started).rejects.toThrow(`Is port ${port} in use?`);
  expect(await healthOver((await open()).socket)).toBe("HTTP/1.1 200 OK");
});

test("a SIGHUP while it starts or stops is ignored, never the end of the process (found in review)", async () => {
  const data = tempDir();
  others.push(data);
  const env = { PATH: process.env.PATH ?? "", HOME: data.path, CITADEL_HTTP_PORT: String(await freePort()), CITADEL_DNS_UDP: "", CITADEL_DNS_TCP: "" };
  const proc = Bun.spawn([BINARY, "serve", "--data", data.path], { env, stdout: "pipe", stderr: "ignore", stdin: "ignore" });
  const lines: string[] = [];
  const reader = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) lines.push(...decoder.decode(chunk).split("\n").filter(Boolean));
  })();
  const seen = async (test: (line: string) => boolean) => {
    for (const deadline = Date.now() + 10_000; !lines.some(test); await Bun.sleep(5)) if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`not seen; exit ${proc.exitCode}: ${lines.join("\n")}`);
  };
  try {
    await seen(() => true); // its first log line: start-up is under way, not yet listening
    proc.kill("SIGHUP");
    await seen((l) => l.includes('"msg":"listening"'));
    expect(lines.some((l) => l.includes("SIGHUP while starting: ignored"))).toBe(true);
    proc.kill("SIGTERM");
    proc.kill("SIGHUP"); // arrives while it stops
    expect(await proc.exited).toBe(0);
    await reader;
  } finally {
    proc.kill("SIGKILL");
  }
}, 30_000);
