/**
 * TLS material for the API: the operator's certificate, or on the embedded default a
 * self-signed one generated on first start and renewed at start-up before it expires, over
 * the same key pair. Clients pin it by its public key (the pin printed at start, see
 * src/crypto/public-key-pin.ts), which a renewal keeps; only a new key (`citadel tls renew
 * --new-key`, for a key that may have leaked) makes them pin again.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { dirname } from "node:path";
import { ConfigError } from "../config/error.ts";
import { publicKeyPin } from "../crypto/public-key-pin.ts";
import { describeFsError, writeFileAtomic } from "../files.ts";
import type { Logger } from "../log.ts";
import { isLoopback, parseIp } from "../net/ip.ts";
import type { CertificateNames } from "./self-signed.ts";

export interface TlsMaterial {
  cert: string;
  key: string;
  /** SHA-256 of the certificate, colon-separated upper-case hex (as openssl prints it). */
  fingerprint: string;
  /** The SHA-256 of its public key, sha256//base64: what clients pin (see src/crypto/public-key-pin.ts). */
  publicKeyPin: string;
  notBefore: Date;
  notAfter: Date;
  generated: boolean;
}

export interface TlsFiles {
  certPath: string;
  keyPath: string;
  /** True for the default paths in the data dir: only then may Citadel write them. */
  managed: boolean;
  /** The configured listen address, added to the certificate when it is a specific address. */
  listenAddress: string;
}

const VALID_DAYS = 397;
const RENEW_BEFORE_DAYS = 30;
const DAY_MS = 24 * 60 * 60 * 1000;

export async function loadOrCreateTls(files: TlsFiles, log: Logger, now = new Date()): Promise<TlsMaterial> {
  if (files.managed && !usable(files)) {
    // Ours to make: on first start, or when a file is missing or broken (a crash mid-write,
    // a careless rm). Both files are replaced, the key first.
    const first = !existsSync(files.certPath) && !existsSync(files.keyPath);
    await writeSelfSigned(files, now);
    const material = readTls(files);
    if (first) log.info("generated a self-signed TLS certificate", { cert_file: files.certPath });
    else log.warn("replaced a missing or broken self-signed TLS certificate with a new key: clients must pin the new public key", { cert_file: files.certPath, public_key_pin: material.publicKeyPin });
    return { ...material, generated: true };
  }
  let material = readTls(files);
  if (files.managed && material.notAfter.getTime() - now.getTime() < RENEW_BEFORE_DAYS * DAY_MS) {
    material = await renewSelfSigned(files, log, { newKey: false }, now);
  } else if (material.notAfter.getTime() < now.getTime()) {
    log.error("the TLS certificate has expired", { cert_file: files.certPath, not_after: material.notAfter.toISOString() });
  }
  return material;
}

/**
 * Makes the self-signed certificate anew (new validity, the same names) over the key it has,
 * unless `newKey` (a key that may have leaked) or the key is not one it can keep (not ECDSA
 * P-256: not of Citadel's making). Pins name the key: over the same key, clients accept the
 * new certificate as they are; over a new one, they must pin it again, which is logged.
 */
export async function renewSelfSigned(files: TlsFiles, log: Logger, { newKey }: { newKey: boolean }, now = new Date()): Promise<TlsMaterial> {
  const before = readTls(files);
  const kept = newKey ? undefined : keepableKey(before.key);
  await writeSelfSigned(files, now, kept === undefined ? undefined : { keyPem: kept, names: await namesKept(before.cert, files) });
  const material = readTls(files);
  const facts = { cert_file: files.certPath, public_key_pin: material.publicKeyPin, not_after: material.notAfter.toISOString() };
  if (kept) log.info("renewed the self-signed TLS certificate over the same key: clients that pinned its public key accept it as they are", facts);
  else log.warn(`renewed the self-signed TLS certificate over a new key${newKey ? " (as asked)" : ", the old one not being ECDSA P-256"}: clients must pin the new public key`, { ...facts, previous_public_key_pin: before.publicKeyPin });
  return material;
}

/** The key PEM when a renewal can keep it (the ECDSA P-256 key Citadel makes), else undefined. */
function keepableKey(keyPem: string): string | undefined {
  return createPrivateKey(keyPem).asymmetricKeyDetails?.namedCurve === "prime256v1" ? keyPem : undefined;
}

/**
 * The certificate and key as they are on disk now, for a reload (SIGHUP): never generated or
 * renewed here, and refused when the pair does not match, the key is open to everyone, or the
 * certificate is not valid now — whoever replaced the files made a mistake, and the running
 * certificate is better kept than swapped for one no client accepts.
 */
export function readTlsForReload(files: TlsFiles, now = new Date()): TlsMaterial {
  const material = readTls(files);
  const problem = validityProblem(material, files.certPath, now);
  if (problem) throw new ConfigError(problem);
  return material;
}

/** Why the certificate is not valid at `now` (expired, or not yet valid), or null: what a reload refuses, and what `citadel doctor` reports. */
export function validityProblem(material: Pick<TlsMaterial, "notBefore" | "notAfter">, certPath: string, now: Date): string | null {
  if (material.notAfter.getTime() <= now.getTime()) return `http.tls.cert_file: ${certPath} expired on ${material.notAfter.toISOString()}`;
  if (material.notBefore.getTime() > now.getTime()) return `http.tls.cert_file: ${certPath} is not valid before ${material.notBefore.toISOString()}`;
  return null;
}

function usable(files: TlsFiles): boolean {
  try {
    readTls(files);
    return true;
  } catch {
    return false;
  }
}

/**
 * The certificate and key as serve takes them: both readable, the key not readable by
 * everyone, the certificate a PEM one and the key its private key; else a ConfigError that
 * names the file. `citadel doctor` checks the files with this very function.
 */
export function readTls(files: Pick<TlsFiles, "certPath" | "keyPath">, keys = { cert: "http.tls.cert_file", key: "http.tls.key_file" }): TlsMaterial {
  const cert = readConfigured(files.certPath, keys.cert);
  const key = readConfigured(files.keyPath, keys.key);
  if ((statSync(files.keyPath).mode & 0o004) !== 0) {
    throw new ConfigError(`${keys.key}: ${files.keyPath} is readable by everyone; chmod 600 it`);
  }
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new ConfigError(`${keys.cert}: ${files.certPath} is not a PEM certificate`);
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key))) throw new Error("mismatch");
  } catch {
    throw new ConfigError(`${keys.key}: ${files.keyPath} is not the private key of ${files.certPath}`);
  }
  return { cert, key, fingerprint: x509.fingerprint256, publicKeyPin: publicKeyPin(x509), notBefore: new Date(x509.validFrom), notAfter: new Date(x509.validTo), generated: false };
}

export function readConfigured(path: string, key: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`${key}: cannot read ${path}: ${describeFsError(error)}`);
  }
}

/**
 * The names a renewal over the same key keeps: the certificate's own, as promised (found in
 * review: they were made anew from the host name and listen address of the day, which may have
 * changed since, and clients reach it by the old ones). One that names nothing gets this host's.
 */
async function namesKept(certPem: string, files: TlsFiles): Promise<CertificateNames> {
  const { subjectAltNamesOf } = await import("./self-signed.ts");
  const names = await subjectAltNamesOf(certPem);
  return names.dnsNames.length + names.ipAddresses.length > 0 ? names : namesFor(files);
}

/** The names of a new self-signed certificate: localhost, the host's name, loopback, and a specific listen address. */
function namesFor(files: TlsFiles): CertificateNames {
  const ipAddresses = ["127.0.0.1", "::1"];
  const listen = parseIp(files.listenAddress);
  const unspecified = files.listenAddress === "0.0.0.0" || files.listenAddress === "::";
  if (listen && !isLoopback(listen) && !unspecified) ipAddresses.push(files.listenAddress);
  const dnsNames = ["localhost", hostname()].filter((n, i, all) => n && all.indexOf(n) === i);
  return { dnsNames, ipAddresses };
}

/** Writes a self-signed certificate over a kept key with its names (a renewal), else over a new key pair for this host. */
async function writeSelfSigned(files: TlsFiles, now: Date, renewal?: { keyPem: string; names: CertificateNames }): Promise<void> {
  const { generateSelfSignedCertificate } = await import("./self-signed.ts");
  const keyPem = renewal?.keyPem;
  const made = await generateSelfSignedCertificate({ ...(renewal?.names ?? namesFor(files)), validDays: VALID_DAYS, now, keyPem });
  for (const path of [files.certPath, files.keyPath]) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // A key kept is not written again: a reload between the two writes sees a valid pair either way.
  if (made.keyPem !== keyPem) writeFileAtomic(files.keyPath, made.keyPem, 0o600);
  writeFileAtomic(files.certPath, made.certPem, 0o600);
}
