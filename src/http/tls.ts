/**
 * TLS material for the API: the operator's certificate, or on the embedded default a
 * self-signed one generated on first start and renewed at start-up before it expires.
 * Clients pin it by the SHA-256 fingerprint printed at start.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { dirname } from "node:path";
import { ConfigError } from "../config/error.ts";
import { describeFsError, writeFileAtomic } from "../files.ts";
import type { Logger } from "../log.ts";
import { isLoopback, parseIp } from "../net/ip.ts";

export interface TlsMaterial {
  cert: string;
  key: string;
  /** SHA-256 of the certificate, colon-separated upper-case hex (as openssl prints it). */
  fingerprint: string;
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
    else log.warn("replaced a missing or broken self-signed TLS certificate: clients must pin the new fingerprint", { cert_file: files.certPath, fingerprint: material.fingerprint });
    return { ...material, generated: true };
  }
  let material = readTls(files);
  if (files.managed && material.notAfter.getTime() - now.getTime() < RENEW_BEFORE_DAYS * DAY_MS) {
    await writeSelfSigned(files, now);
    material = readTls(files);
    log.warn("renewed the self-signed TLS certificate: clients that pinned the old fingerprint must pin the new one", {
      cert_file: files.certPath,
      fingerprint: material.fingerprint,
    });
  } else if (material.notAfter.getTime() < now.getTime()) {
    log.error("the TLS certificate has expired", { cert_file: files.certPath, not_after: material.notAfter.toISOString() });
  }
  return material;
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
  return { cert, key, fingerprint: x509.fingerprint256, notBefore: new Date(x509.validFrom), notAfter: new Date(x509.validTo), generated: false };
}

export function readConfigured(path: string, key: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`${key}: cannot read ${path}: ${describeFsError(error)}`);
  }
}

async function writeSelfSigned(files: TlsFiles, now: Date): Promise<void> {
  const { generateSelfSignedCertificate } = await import("./self-signed.ts");
  const ipAddresses = ["127.0.0.1", "::1"];
  const listen = parseIp(files.listenAddress);
  const unspecified = files.listenAddress === "0.0.0.0" || files.listenAddress === "::";
  if (listen && !isLoopback(listen) && !unspecified) ipAddresses.push(files.listenAddress);
  const names = ["localhost", hostname()].filter((n, i, all) => n && all.indexOf(n) === i);
  const { certPem, keyPem } = await generateSelfSignedCertificate({ dnsNames: names, ipAddresses, validDays: VALID_DAYS, now });
  for (const path of [files.certPath, files.keyPath]) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileAtomic(files.keyPath, keyPem, 0o600);
  writeFileAtomic(files.certPath, certPem, 0o600);
}
