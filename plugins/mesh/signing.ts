/**
 * The control plane's Ed25519 signature on node configs. An agent learns the public key when it
 * enrolls (over the TLS connection it pinned) and from then on applies only configs signed by
 * it: a stolen database copy, a proxy or a look-alike server cannot hand a node a config.
 *
 * What is signed is the exact body the agent receives (a JSON document naming the node and the
 * network version), so the signature also binds the config to its node and to its version; the
 * agent refuses a version older than the one it applied (a replayed config).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";

/** DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte key follows. */
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export interface SigningKey {
  /** Base64 of the raw 32-byte public key. */
  publicKey: string;
  /** PKCS#8 DER of the private key (kept as a keyring envelope at rest). */
  privateKeyDer: Buffer;
}

export function generateSigningKey(): SigningKey {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const spki = publicKey.export({ format: "der", type: "spki" });
  return { publicKey: spki.subarray(SPKI_PREFIX.length).toString("base64"), privateKeyDer: privateKey.export({ format: "der", type: "pkcs8" }) };
}

export class Signer {
  private readonly key: KeyObject;

  constructor(privateKeyDer: Uint8Array) {
    this.key = createPrivateKey({ key: Buffer.from(privateKeyDer), format: "der", type: "pkcs8" });
  }

  /** Base64 Ed25519 signature of `body`. */
  sign(body: string | Uint8Array): string {
    return sign(null, typeof body === "string" ? Buffer.from(body) : body, this.key).toString("base64");
  }
}

/** True when `signature` (base64) is `publicKey`'s (base64, raw 32 bytes) signature of `body`. */
export function verifySignature(publicKey: string, body: string | Uint8Array, signature: string): boolean {
  const raw = Buffer.from(publicKey, "base64");
  const sig = Buffer.from(signature, "base64");
  if (raw.length !== 32 || sig.length !== 64) return false;
  const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: "der", type: "spki" });
  return verify(null, typeof body === "string" ? Buffer.from(body) : body, key, sig);
}
