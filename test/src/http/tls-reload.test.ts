/**
 * What a reload (SIGHUP) compares to decide whether the files changed: the key and every
 * certificate of cert_file, not the leaf alone — an intermediate added to a broken chain is a
 * change to serve. (The binary's reload end to end: test/e2e/tls-reload.test.ts.)
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditLog } from "../../../src/audit/log.ts";
import type { HttpServer } from "../../../src/http/edge.ts";
import { generateSelfSignedCertificate } from "../../../src/http/self-signed.ts";
import { readTlsForReload, type TlsFiles } from "../../../src/http/tls.ts";
import { tlsReloader } from "../../../src/http/tls-reload.ts";
import type { Store } from "../../../src/store/store.ts";
import { captureLog } from "../../helpers/http.ts";

const root = mkdtempSync(join(tmpdir(), "citadel-tls-reload-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const files: TlsFiles = { certPath: join(root, "cert.pem"), keyPath: join(root, "key.pem"), managed: false, listenAddress: "127.0.0.1" };

const certificate = (name: string) => generateSelfSignedCertificate({ dnsNames: [name], ipAddresses: [], validDays: 30, now: new Date() });

function reloaderOverFiles() {
  const served: Array<{ cert: string; key: string }> = [];
  const server = { url: "", port: 0, replaceTls: (tls) => served.push(tls), stop: async () => {} } satisfies HttpServer;
  const reasons: string[] = [];
  const audit = { record: (_tx: unknown, event: { reason: string }) => reasons.push(event.reason) } as unknown as AuditLog;
  const store = { write: async (fn: (tx: unknown) => unknown) => fn(undefined) } as unknown as Store;
  const log = captureLog();
  const reloader = tlsReloader({ files, served: readTlsForReload(files), server, store, audit, log: log.logger, now: Date.now });
  return { reloader, served, reasons, log };
}

test("the same leaf with an intermediate added is a change: the whole chain is served (found in review)", async () => {
  const leaf = await certificate("leaf.test");
  const intermediate = await certificate("intermediate.test"); // stands for the CA's certificate: the reload does not verify the chain
  writeFileSync(files.certPath, leaf.certPem, { mode: 0o600 });
  writeFileSync(files.keyPath, leaf.keyPem, { mode: 0o600 });
  const { reloader, served, log } = reloaderOverFiles();

  writeFileSync(files.certPath, leaf.certPem + intermediate.certPem, { mode: 0o600 });
  expect(await reloader.reload()).toBe("replaced");
  expect(served).toEqual([{ cert: leaf.certPem + intermediate.certPem, key: leaf.keyPem }]);
  // The leaf is the same: clients that pinned its fingerprint need do nothing.
  expect(log.lines.some((l) => String(l.msg).includes("must pin the new one"))).toBe(false);

  // The same chain again, written with other line breaks: nothing to do.
  writeFileSync(files.certPath, (leaf.certPem + intermediate.certPem).replaceAll("\n", "\r\n"), { mode: 0o600 });
  expect(await reloader.reload()).toBe("unchanged");
  expect(served).toHaveLength(1);
});

test("an intermediate taken out is a change too; the same files are not", async () => {
  const leaf = await certificate("leaf.test");
  const intermediate = await certificate("intermediate.test");
  writeFileSync(files.certPath, leaf.certPem + intermediate.certPem, { mode: 0o600 });
  writeFileSync(files.keyPath, leaf.keyPem, { mode: 0o600 });
  const { reloader, served } = reloaderOverFiles();
  expect(await reloader.reload()).toBe("unchanged");

  writeFileSync(files.certPath, leaf.certPem, { mode: 0o600 });
  expect(await reloader.reload()).toBe("replaced");
  expect(served.map((tls) => tls.cert)).toEqual([leaf.certPem]);
});
