/**
 * `citadel backup --out FILE`: a file that cannot be written is refused before the server is
 * asked (found in review: the backup was made, audited and counted against `keep`, then the
 * command failed with a raw ENOENT naming its temporary file); a write that fails after names
 * the backup that was made, and the file, in words.
 */
import { afterAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backupCommands } from "../../../plugins/backup/commands.ts";
import { createApiClient } from "../../../src/cli/api-client.ts";
import type { CommandContext } from "../../../src/plugin.ts";
import { runCommand, type SentRequest } from "../../helpers/command.ts";

const root = mkdtempSync(join(tmpdir(), "citadel-backup-out-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const BYTES = Buffer.from("an encrypted backup");
const NAME = "citadel-20260601T000000Z.backup";
const created = { name: NAME, bytes: BYTES.length, sha256: new Bun.CryptoHasher("sha256").update(BYTES).digest("hex"), key: { kind: "passphrase" }, manifest: {}, pruned: [] };
const server = (onCreate: () => void = () => {}) => (request: SentRequest) => {
  if (request.method === "POST") {
    onCreate();
    return created;
  }
  return BYTES.toString(); // the stand-in's requestStream sends the text as it is
};

test("an --out whose directory does not exist, or that is a directory, is refused before any backup is made", async () => {
  for (const [out, problem] of [
    [join(root, "nonexistent", "x.backup"), `the directory ${join(root, "nonexistent")} does not exist`],
    [root, "is a directory: give the file's name in it"],
  ]) {
    const run = await runCommand(backupCommands, "backup", { options: { out }, answer: server() });
    expect([run.code, run.error?.message]).toEqual([2, `--out ${out}: ${problem}; no backup was made`]);
    expect(run.requests).toEqual([]);
  }
});

test("a write that fails once the backup is made names the backup, where it is, and the file, in words (no temporary name)", async () => {
  const going = join(root, "going");
  mkdirSync(going);
  const out = join(going, "x.backup");
  // The directory goes while the server makes the backup.
  const run = await runCommand(backupCommands, "backup", { options: { out }, answer: server(() => rmSync(going, { recursive: true })) });
  expect([run.code, run.error?.message]).toEqual([1, `the backup ${NAME} was made, and is in the server's backup directory (citadel backup list), but it could not be written to ${out}: no such file`]);
});

test("a writable --out receives the backup", async () => {
  const out = join(root, "ok.backup");
  const run = await runCommand(backupCommands, "backup", { options: { out }, json: true, answer: server() });
  expect(run.code).toBe(0);
  expect(readFileSync(out)).toEqual(BYTES);
});

/**
 * A server over HTTP on loopback, with the real API client (found in review: the CLI fetched the
 * whole backup as one base64 body within a 30 s limit, so a large one never arrived). It makes
 * the backup and serves its file as the route does: octet-stream, in pieces; base64 it refuses.
 * `serve` may change what is sent (a damaged download), or drop the connection half-way.
 */
async function overHttp(file: Uint8Array, out: string, serve: (file: Uint8Array, dropConnections: () => void) => ReadableStream<Uint8Array> = inPieces) {
  const sha256 = new Bun.CryptoHasher("sha256").update(file).digest("hex");
  const asked: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const url = new URL(request.url);
      asked.push(`${request.method} ${url.pathname}${url.search}`);
      if (request.method === "POST") return Response.json({ ...created, bytes: file.length, sha256 });
      if (url.pathname !== `/v1/backup/snapshots/${NAME}` || url.search !== "") return Response.json({ detail: "only the file itself" }, { status: 400 });
      return new Response(serve(file, () => void server.stop(true)), { headers: { "content-type": "application/octet-stream" } });
    },
  });
  const lines: string[] = [];
  const ctx = {
    args: [],
    options: { out, json: true },
    json: true,
    out: (text: string) => lines.push(text),
    err: (text: string) => lines.push(text),
    api: async () => createApiClient({ baseUrl: `http://127.0.0.1:${server.port}` }),
  } as unknown as CommandContext;
  try {
    const command = backupCommands.find((c) => c.words.join(" ") === "backup")!;
    const result = await command.run(ctx).then(
      (code) => ({ code, error: null }),
      (error: Error) => ({ code: 1, error }),
    );
    return { ...result, asked, sha256, output: lines.join("\n") };
  } finally {
    server.stop(true);
  }
}

/** The file in pieces of 64 KiB, each sent when the client asks for more. */
function inPieces(file: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= file.length) return controller.close();
      controller.enqueue(file.subarray(at, (at += 65_536)));
    },
  });
}

test("a download of many megabytes is streamed to the file, intact, its SHA-256 the server's (found in review)", async () => {
  const dir = join(root, "large");
  mkdirSync(dir);
  const out = join(dir, "large.backup");
  const file = randomBytes(48 * 1024 * 1024 + 12_345);
  const run = await overHttp(file, out);
  expect(run.error).toBeNull();
  expect(run.code).toBe(0);
  expect(run.asked).toEqual(["POST /v1/backup/snapshots", `GET /v1/backup/snapshots/${NAME}`]); // the file itself, not its base64
  expect(new Bun.CryptoHasher("sha256").update(readFileSync(out)).digest("hex")).toBe(run.sha256);
  expect(readdirSync(dir)).toEqual(["large.backup"]); // nothing left beside it
  expect(JSON.parse(run.output).out).toBe(out);
});

test("a download that breaks off, or arrives damaged, leaves no file, and none beside where it would be (found in review)", async () => {
  const dir = join(root, "failing");
  mkdirSync(dir);
  const out = join(dir, "x.backup");
  const file = randomBytes(4 * 1024 * 1024);
  const cutShort = (whole: Uint8Array, dropConnections: () => void) => {
    const pieces = inPieces(whole).getReader();
    let sent = 0;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent++ === 8) return dropConnections(); // half-way: the connection goes, and nothing more comes
        const { value } = await pieces.read();
        controller.enqueue(value!);
      },
    });
  };
  const broken = await overHttp(file, out, cutShort);
  expect(broken.code).toBe(1);
  expect(broken.error?.message).toContain("incomplete");
  expect(readdirSync(dir)).toEqual([]);

  const flipped = (whole: Uint8Array) => {
    const copy = Buffer.from(whole);
    copy[copy.length - 1]! ^= 1;
    return inPieces(copy);
  };
  writeFileSync(out, "an earlier backup");
  const damaged = await overHttp(file, out, flipped);
  expect([damaged.code, damaged.error?.message]).toEqual([1, expect.stringMatching(new RegExp(`^the download of ${NAME} is damaged \\(SHA-256 [0-9a-f]{64}, the server has ${damaged.sha256}\\); try again$`))]);
  expect(readdirSync(dir)).toEqual(["x.backup"]);
  expect(readFileSync(out, "utf8")).toBe("an earlier backup"); // what was there stays
  expect(existsSync(out)).toBe(true);
});

test("stopped by SIGINT or SIGTERM mid-download, it removes the partial file and exits 128 + the signal (found in review: the part was left beside --out)", async () => {
  const endless = () =>
    new ReadableStream<Uint8Array>({
      pull: (controller) => controller.enqueue(new Uint8Array(65_536)),
    });
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (request) =>
      request.method === "POST" ? Response.json(created) : new Response(endless(), { headers: { "content-type": "application/octet-stream" } }),
  });
  const home = join(root, "signal-home");
  mkdirSync(home);
  try {
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      const dir = join(root, `signal-${signal}`);
      mkdirSync(dir);
      const out = join(dir, "x.backup");
      const backup = Bun.spawn(["bun", join(import.meta.dir, "../../../src/main.ts"), "backup", "--out", out], {
        env: { PATH: process.env.PATH ?? "", HOME: home, XDG_CONFIG_HOME: home, CITADEL_SERVER: `http://127.0.0.1:${server.port}` },
        stdout: "pipe",
        stderr: "pipe",
        stdin: "ignore",
      });
      // Signalled once the download is under way: its partial file beside --out has grown.
      const partialGrown = () => readdirSync(dir).some((name) => name.startsWith("x.backup.tmp-") && Bun.file(join(dir, name)).size > 0);
      while (!partialGrown() && backup.exitCode === null) await Bun.sleep(5);
      backup.kill(signal);
      const [stdout, stderr, exited] = await Promise.all([new Response(backup.stdout).text(), new Response(backup.stderr).text(), backup.exited]);
      expect([signal, exited, stdout, stderr]).toEqual([signal, code, "", ""]);
      expect(readdirSync(dir)).toEqual([]);
    }
  } finally {
    server.stop(true);
  }
}, 60_000);
