import { afterAll, describe, expect, test } from "bun:test";
import { createHash, X509Certificate } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../../src/config/error.ts";
import { generateSelfSignedCertificate } from "../../../src/http/self-signed.ts";
import { loadOrCreateTls, renewSelfSigned } from "../../../src/http/tls.ts";
import { captureLog } from "../../helpers/http.ts";

const root = mkdtempSync(join(tmpdir(), "citadel-tls-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const files = (managed = true) => {
  const dir = join(root, String(n++));
  return { certPath: join(dir, "tls/cert.pem"), keyPath: join(dir, "tls/key.pem"), managed, listenAddress: "192.0.2.10" };
};

describe("self-signed certificate of the embedded default", () => {
  test("first start makes an ECDSA P-256 certificate for localhost, owner-only", async () => {
    const f = files();
    const { logger } = captureLog();
    const tls = await loadOrCreateTls(f, logger, new Date("2026-06-01T00:00:00Z"));
    expect(tls.generated).toBe(true);
    const x509 = new X509Certificate(readFileSync(f.certPath));
    expect(x509.fingerprint256).toBe(tls.fingerprint);
    expect(x509.subjectAltName).toContain("DNS:localhost");
    expect(x509.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(x509.subjectAltName).toContain("IP Address:192.0.2.10"); // the specific listen address
    expect(x509.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(x509.ca).toBe(false);
    expect(new Date(x509.validTo).getTime() - Date.parse("2026-06-01T00:00:00Z")).toBeGreaterThan(396 * 86_400_000);
    for (const path of [f.certPath, f.keyPath]) expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  test("a second start reuses it; near expiry it is renewed over the same key, so that key pins hold", async () => {
    const f = files();
    const { logger, lines } = captureLog();
    const first = await loadOrCreateTls(f, logger, new Date("2026-06-01T00:00:00Z"));
    const key = readFileSync(f.keyPath, "utf8");
    const again = await loadOrCreateTls(f, logger, new Date("2026-07-01T00:00:00Z"));
    expect(again.fingerprint).toBe(first.fingerprint);
    const late = await loadOrCreateTls(f, logger, new Date("2027-06-20T00:00:00Z")); // < 30 days left
    // A new certificate (new validity, the same names) over the same key pair.
    expect(late.fingerprint).not.toBe(first.fingerprint);
    expect(late.notAfter.getTime()).toBeGreaterThan(first.notAfter.getTime());
    expect(late.publicKeyPin).toBe(first.publicKeyPin);
    expect(readFileSync(f.keyPath, "utf8")).toBe(key);
    const [before, after] = [new X509Certificate(first.cert), new X509Certificate(late.cert)];
    expect(after.subjectAltName).toBe(before.subjectAltName!);
    expect(after.subject).toBe(before.subject);
    expect(lines.find((l) => String(l.msg).startsWith("renewed the self-signed TLS certificate"))).toMatchObject({ level: "info", msg: "renewed the self-signed TLS certificate over the same key: clients that pinned its public key accept it as they are", public_key_pin: first.publicKeyPin });
    for (const path of [f.certPath, f.keyPath]) expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  test("a renewal over the same key keeps the certificate's names, whatever the host's name and listen address are now (found in review: they were made anew)", async () => {
    const f = files(); // listening on 192.0.2.10, on a host not named citadel.old
    const { logger } = captureLog();
    // Made when the host was citadel.old, listening on 198.51.100.7.
    const old = await generateSelfSignedCertificate({ dnsNames: ["citadel.old", "localhost"], ipAddresses: ["127.0.0.1", "198.51.100.7", "::1"], validDays: 20, now: new Date() });
    mkdirSync(join(f.certPath, ".."), { recursive: true, mode: 0o700 });
    writeFileSync(f.keyPath, old.keyPem, { mode: 0o600 });
    writeFileSync(f.certPath, old.certPem, { mode: 0o600 });
    const renewed = await renewSelfSigned(f, logger, { newKey: false });
    const [before, after] = [new X509Certificate(old.certPem), new X509Certificate(renewed.cert)];
    expect(after.fingerprint256).not.toBe(before.fingerprint256);
    expect(after.subjectAltName).toBe("DNS:citadel.old, DNS:localhost, IP Address:127.0.0.1, IP Address:198.51.100.7, IP Address:0:0:0:0:0:0:0:1");
    expect(after.subject).toBe(before.subject);
    // A new key is a new certificate for this host, as at first start.
    const fresh = new X509Certificate((await renewSelfSigned(f, logger, { newKey: true })).cert);
    expect(fresh.subjectAltName).toContain("IP Address:192.0.2.10");
    expect(fresh.subjectAltName).not.toContain("citadel.old");
  });

  test("the pin is the SHA-256 of the certificate's SubjectPublicKeyInfo, in base64 (RFC 7469), as curl's --pinnedpubkey takes it", async () => {
    const f = files();
    const tls = await loadOrCreateTls(f, captureLog().logger);
    const spki = new X509Certificate(tls.cert).publicKey.export({ type: "spki", format: "der" });
    expect(tls.publicKeyPin).toBe(`sha256//${createHash("sha256").update(spki).digest("base64")}`);
  });

  test("renewed with a new key when asked (a key that may have leaked): the pin changes, and the log says clients must pin again", async () => {
    const f = files();
    const { logger, lines } = captureLog();
    const first = await loadOrCreateTls(f, logger);
    const renewed = await renewSelfSigned(f, logger, { newKey: true });
    expect(renewed.publicKeyPin).not.toBe(first.publicKeyPin);
    expect(renewed.key).not.toBe(first.key);
    expect(lines.at(-1)).toMatchObject({ level: "warn", msg: "renewed the self-signed TLS certificate over a new key (as asked): clients must pin the new public key", previous_public_key_pin: first.publicKeyPin, public_key_pin: renewed.publicKeyPin });
    // Asked for without a new key, the key stays.
    expect((await renewSelfSigned(f, logger, { newKey: false })).publicKeyPin).toBe(renewed.publicKeyPin);
  });

  test("a missing or broken file is replaced rather than blocking start-up", async () => {
    const f = files();
    const { logger, lines } = captureLog();
    const first = await loadOrCreateTls(f, logger);
    writeFileSync(f.certPath, ""); // as a crash mid-write would have left it
    const fixed = await loadOrCreateTls(f, logger);
    expect(fixed.fingerprint).not.toBe(first.fingerprint);
    expect(lines.some((l) => String(l.msg).startsWith("replaced a missing or broken"))).toBe(true);
  });
});

describe("an operator's certificate", () => {
  test("is never written by Citadel; a missing file, a mismatched key or a world-readable key stops start-up, naming the key", async () => {
    const source = files();
    await loadOrCreateTls(source, captureLog().logger);
    const f = files(false);
    await expect(loadOrCreateTls(f, captureLog().logger)).rejects.toThrow(/http\.tls\.cert_file: cannot read .*: no such file/);

    const other = files();
    await loadOrCreateTls(other, captureLog().logger);
    const mixed = { ...files(false), certPath: source.certPath, keyPath: other.keyPath };
    await expect(loadOrCreateTls(mixed, captureLog().logger)).rejects.toThrow(/http\.tls\.key_file: .* is not the private key of/);

    const readable = { ...files(false), certPath: source.certPath, keyPath: join(root, "readable-key.pem") };
    copyFileSync(source.keyPath, readable.keyPath);
    chmodSync(readable.keyPath, 0o644);
    const error = await loadOrCreateTls(readable, captureLog().logger).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain("is readable by everyone; chmod 600 it");
  });
});
