/**
 * Replacing the API's certificate without a restart: on SIGHUP (`systemctl reload citadel`)
 * the certificate and key files are read again and, when they are a valid pair that differs
 * from the one served (the key, or any certificate of the chain: an intermediate added to a
 * chain that lacked it is a change), new connections get them while open ones finish on the old. A restart
 * would also stop the DNS server and drop the resolver's cache; certificates from an internal
 * CA may live a day. A bad pair is refused and the running certificate kept; either way the
 * outcome is logged and audited.
 */
import type { AuditLog } from "../audit/log.ts";
import type { Logger } from "../log.ts";
import type { Store } from "../store/store.ts";
import type { HttpServer } from "./edge.ts";
import { readTlsForReload, type TlsFiles, type TlsMaterial } from "./tls.ts";

export interface TlsReloader {
  /** Reads the files and swaps the certificate if they changed; never throws. */
  reload(): Promise<"replaced" | "unchanged" | "refused">;
}

export function tlsReloader(options: { files: TlsFiles; served: TlsMaterial; server: HttpServer; store: Store; audit: AuditLog; log: Logger; now: () => number }): TlsReloader {
  let served = options.served;
  const record = (outcome: "success" | "failure", reason: string) =>
    options.store.write((tx) => options.audit.record(tx, { action: "sys.tls.reload", actor: { kind: "system" }, outcome, reason })).catch((error) => options.log.error("could not record a security event", { error }));
  return {
    async reload() {
      let next: TlsMaterial;
      try {
        next = readTlsForReload(options.files, new Date(options.now()));
      } catch (error) {
        const problem = error instanceof Error ? error.message : String(error);
        options.log.error("TLS reload refused: still serving the certificate loaded before", { problem, fingerprint: served.fingerprint });
        await record("failure", problem);
        return "refused";
      }
      if (next.key === served.key && sameCertificates(next.cert, served.cert)) {
        options.log.info("TLS reload: the certificate is unchanged", { fingerprint: served.fingerprint });
        return "unchanged";
      }
      try {
        options.server.replaceTls({ cert: next.cert, key: next.key });
      } catch (error) {
        const problem = `the new certificate could not be served: ${error instanceof Error ? error.message : String(error)}`;
        options.log.error("TLS reload refused: still serving the certificate loaded before", { problem, fingerprint: served.fingerprint });
        await record("failure", problem);
        return "refused";
      }
      const previous = served.fingerprint;
      const previousPin = served.publicKeyPin;
      served = next;
      if (next.fingerprint === previous) {
        // The leaf is the one served: its chain (or its key file's text) changed, and pins still hold.
        options.log.info("TLS certificate chain replaced: the same certificate, pins still hold", { fingerprint: next.fingerprint, public_key_pin: next.publicKeyPin });
        await record("success", `certificate chain of ${next.fingerprint} replaced, valid until ${next.notAfter.toISOString()}`);
        return "replaced";
      }
      const facts = { fingerprint: next.fingerprint, previous, public_key_pin: next.publicKeyPin, not_after: next.notAfter.toISOString() };
      if (next.publicKeyPin === previousPin) options.log.info("TLS certificate replaced over the same key: clients that pinned its public key accept it as they are", facts);
      else options.log.warn("TLS certificate replaced over a new key: clients that pinned the old public key must pin the new one", { ...facts, previous_public_key_pin: previousPin });
      await record("success", `certificate ${next.fingerprint}, valid until ${next.notAfter.toISOString()} (was ${previous})`);
      return "replaced";
    },
  };
}

/**
 * Whether two PEM files hold the same certificates in the same order — the leaf and every
 * intermediate — whatever their line breaks or the text around them.
 */
function sameCertificates(a: string, b: string): boolean {
  const first = certificatesOf(a);
  const second = certificatesOf(b);
  return first.length === second.length && first.every((certificate, i) => certificate === second[i]);
}

/** Each certificate of a PEM file as its base64 text without white space. */
function certificatesOf(pem: string): string[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([^-]*)-----END CERTIFICATE-----/g)].map((match) => match[1]!.replace(/\s+/g, ""));
}
