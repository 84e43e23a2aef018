/**
 * What the ops tests start from: a data directory made once by `citadel init` (in-process,
 * as the CLI does it), copied afresh for each test with its modes.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../../src/main.ts";
import { Database } from "bun:sqlite";

/** A loopback port free a moment ago (TCP; the same number is taken for UDP). */
export function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

export interface OpsFixture {
  /** A private temporary directory, removed after the file's tests. */
  readonly work: string;
  readonly HOME: string;
  /** The environment init ran with (ports chosen then): CITADEL_HTTP_PORT, CITADEL_DNS_*. */
  readonly env: Record<string, string>;
  /** A fresh copy of the initialized data directory. */
  dataDir(): string;
}

/** `dns`: give DNS a free loopback port (else no DNS listener is configured). */
export function opsFixture(prefix: string, { dns }: { dns: boolean }): OpsFixture {
  const work = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  const HOME = join(work, "home");
  mkdirSync(HOME, { mode: 0o700 });
  const template = join(work, "template");
  let env: Record<string, string> = {};
  let counter = 0;
  beforeAll(async () => {
    const dnsAddress = dns ? `127.0.0.1:${freePort()}` : "";
    env = { HOME, XDG_CONFIG_HOME: HOME, CITADEL_HTTP_PORT: String(freePort()), CITADEL_DNS_UDP: dnsAddress, CITADEL_DNS_TCP: dnsAddress };
    const write = process.stdout.write;
    process.stdout.write = () => true; // init prints the one-time password
    try {
      expect(await main(["--data", template, "init"], env)).toBe(0);
    } finally {
      process.stdout.write = write;
    }
  });
  return {
    work,
    HOME,
    get env() {
      return env;
    },
    dataDir() {
      const dir = join(work, `data-${counter++}`);
      cpSync(template, dir, { recursive: true, mode: 0 });
      chmodSync(dir, 0o700);
      // As Citadel leaves it when it stops: the last connection's close checkpoints the WAL and
      // removes the -wal and -shm files. The template may still have them (init's in-process
      // store is closed once the garbage collector finalizes its statements); a connection
      // reads the WAL only once it is used, hence the checkpoint before the close.
      const db = new Database(join(dir, "citadel.db"));
      db.run("PRAGMA wal_checkpoint(TRUNCATE)");
      db.close();
      return dir;
    },
  };
}
