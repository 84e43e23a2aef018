/**
 * A TLS server's public key pin: the SHA-256 of its certificate's SubjectPublicKeyInfo, as
 * HPKP (RFC 7469) pinned it, written as curl's --pinnedpubkey takes it (`sha256//` and base64).
 * The same from the shell: openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin
 * -outform der | openssl dgst -sha256 -binary | base64. A certificate renewed over the same key
 * has the same pin.
 */
import { createHash, X509Certificate } from "node:crypto";

const PREFIX = "sha256//";

/** The key pin of a certificate (PEM, DER or parsed). */
export function publicKeyPin(certificate: string | Buffer | X509Certificate): string {
  const x509 = certificate instanceof X509Certificate ? certificate : new X509Certificate(certificate);
  const spki = x509.publicKey.export({ type: "spki", format: "der" });
  return PREFIX + createHash("sha256").update(spki).digest("base64");
}

/** Whether what a client trusts a server by is a key pin (else a certificate pinned whole, PEM). */
export function isPublicKeyPin(trust: string): boolean {
  return trust.startsWith(PREFIX);
}
