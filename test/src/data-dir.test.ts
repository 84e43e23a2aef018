/**
 * The data directory must be the running user's (found in review: another user's gave a bare
 * "EACCES … citadel.db", exit 1, which systemd retries for ever; root got in and made files
 * the service could not read). Giving a directory away, and running as another user, need root.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../src/config/error.ts";
import { prepareDataDir } from "../../src/data-dir.ts";
import { ensureBinary } from "../helpers/binary.ts";

const asRoot = process.getuid?.() === 0;
let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "citadel-data-dir-"));
  chmodSync(work, 0o755); // another user must reach what is in it
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("the running user's own directory is taken", () => {
  const dir = join(work, "own");
  prepareDataDir(dir);
  prepareDataDir(dir);
});

test.if(asRoot)("root is refused another user's directory, told to run as that user", () => {
  const dir = join(work, "service");
  mkdirSync(dir, { mode: 0o700 });
  chownSync(dir, 4321, 4321);
  expect(() => prepareDataDir(dir)).toThrow(ConfigError);
  expect(() => prepareDataDir(dir)).toThrow(`data_dir: ${dir} belongs to uid 4321, not to root: run Citadel as that user, the service's (sudo -u '#4321' citadel ...)`);
});

test.if(asRoot)("another user is refused root's directory with exit code 2, naming its owner", async () => {
  const binary = await ensureBinary();
  const dir = join(work, "roots");
  mkdirSync(dir, { mode: 0o700 });
  const config = join(work, "citadel.toml");
  writeFileSync(config, "[http]\nport = 0\n", { mode: 0o644 });
  const proc = Bun.spawn([binary, "serve", "--config", config, "--data", dir], { env: { PATH: process.env.PATH ?? "", HOME: work, CITADEL_DNS_UDP: "", CITADEL_DNS_TCP: "" }, uid: 65534, gid: 65534, stdout: "pipe", stderr: "pipe" });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  expect(code).toBe(2);
  expect(stderr).toContain(`data_dir: ${dir} belongs to the user root (uid 0), not to this user (uid 65534): run Citadel as root, or give it a data directory of your own (--data DIR)`);
});
