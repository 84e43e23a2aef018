/**
 * Makes the self-signed certificate of the embedded default (ECDSA P-256, SHA-256) with
 * @peculiar/x509. Imported lazily, on first start only, so normal start-up does not load
 * the ASN.1 machinery.
 */
import type * as X509 from "@peculiar/x509";

/** @peculiar/x509's dependency injection needs the Reflect polyfill before it loads. */
async function loadX509(): Promise<typeof X509> {
  await import("reflect-metadata");
  return await import("@peculiar/x509");
}

export interface SelfSignedOptions extends CertificateNames {
  validDays: number;
  now: Date;
  /**
   * The private key (PKCS#8 PEM, ECDSA P-256) to make the certificate over: a renewal keeps the
   * key pair, so that clients that pinned the public key accept the new certificate. Absent: a new key pair.
   */
  keyPem?: string;
}

/** The names a certificate is for (its subjectAltName): DNS names (the first one also the subject CN) and IP addresses. */
export interface CertificateNames {
  dnsNames: string[];
  ipAddresses: string[];
}

/** The DNS names and IP addresses of a certificate's subjectAltName, in order: what a renewal over the same key keeps. */
export async function subjectAltNamesOf(certPem: string): Promise<CertificateNames> {
  const x509 = await loadX509();
  const names = new x509.X509Certificate(certPem).getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
  const valuesOf = (type: string) => names.filter((name) => name.type === type).map((name) => name.value);
  return { dnsNames: valuesOf("dns"), ipAddresses: valuesOf("ip") };
}

export interface GeneratedCertificate {
  certPem: string;
  keyPem: string;
}

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export async function generateSelfSignedCertificate(options: SelfSignedOptions): Promise<GeneratedCertificate> {
  const x509 = await loadX509();
  x509.cryptoProvider.set(crypto);
  const keys = options.keyPem ? await importKeyPair(options.keyPem) : ((await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair);
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0]! &= 0x7f; // a positive INTEGER, as RFC 5280 requires
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(serial).toString("hex"),
    name: `CN=${options.dnsNames[0] ?? "localhost"}, O=Citadel self-signed`,
    notBefore: new Date(options.now.getTime() - 60 * 60 * 1000), // tolerate small clock skew
    notAfter: new Date(options.now.getTime() + options.validDays * 24 * 60 * 60 * 1000),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        ...options.dnsNames.map((value) => ({ type: "dns" as const, value })),
        ...options.ipAddresses.map((value) => ({ type: "ip" as const, value })),
      ]),
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { certPem: cert.toString("pem") + "\n", keyPem: options.keyPem ?? x509.PemConverter.encode(pkcs8, "PRIVATE KEY") + "\n" };
}

/** A key pair from its private key's PEM (Web Crypto imports no public key from a private one: node:crypto derives it). */
async function importKeyPair(keyPem: string): Promise<CryptoKeyPair> {
  const { createPrivateKey, createPublicKey } = await import("node:crypto");
  const privateKey = createPrivateKey(keyPem);
  const pkcs8 = privateKey.export({ type: "pkcs8", format: "der" });
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  return {
    privateKey: await crypto.subtle.importKey("pkcs8", pkcs8, ALGORITHM, true, ["sign"]),
    publicKey: await crypto.subtle.importKey("spki", spki, ALGORITHM, true, ["verify"]),
  };
}
