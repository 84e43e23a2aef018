/**
 * CLI: citadel backup [--out FILE] | backup list | backup verify FILE | restore FILE.
 *
 * `backup` and `backup list` ask the running server (the snapshot must be taken by the
 * process that holds the database). `backup verify` and `restore` work on files alone,
 * offline: they need the key the backup was made under, and restore needs the server stopped.
 */
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { dirname, join } from "node:path";
import { UsageError } from "../../src/cli/command-line.ts";
import { boundedFile, type Bound } from "../../src/cli/input-files.ts";
import { dataPath } from "../../src/config/load.ts";
import { actAsDataDirectoryOwner } from "../../src/data-dir.ts";
import type { Config } from "../../src/config/schema.ts";
import { sameInstanceFlags, shellQuote } from "../../src/cli/next-command.ts";
import { stringOption } from "../../src/cli/output.ts";
import { readPassphraseFile } from "../../src/cli/passphrase-file.ts";
import { secretPrompter } from "../../src/cli/prompt.ts";
import { readRootKeyFile, rootKeyId, rootKeyVerifier } from "../../src/crypto/root-key.ts";
import { ApiError } from "../../src/cli/api-client.ts";
import { describeFsError, fileWriteProblem } from "../../src/files.ts";
import type { ApiClient, Command, CommandContext, CommandOption } from "../../src/plugin.ts";
import { BackupError, BackupFileUnreadable, ConfirmationNeeded, DataDirectoryBusy } from "./errors.ts";
import { readBackupHeader, type BackupHeader } from "./format.ts";
import { rootKeyFromShares, SharesUnusable, type KeySupply } from "./keys.ts";
import { describeManifest } from "./manifest.ts";
import type { BackupListing, CreatedBackup } from "./model.ts";
import { restoreBackup, verifyBackup } from "./restore.ts";

const PASSPHRASE_FILE: CommandOption = { type: "string", description: "A file holding the backup passphrase (- for standard input); without it the root key is used" };

const KEY_OPTIONS: Record<string, CommandOption> = {
  "key-file": { type: "string", description: "The root key file the backup was made under (default: the configured seal.key_file, root.key in the data directory)" },
  "shares-file": { type: "string", description: "A file of Shamir key shares, one per line, that rebuild that root key" },
  "passphrase-file": { type: "string", description: "A file holding the passphrase of a passphrase backup (- for standard input; asked for when absent)" },
};

export const backupCommands: Command[] = [
  {
    words: ["backup"],
    summary: "Make a backup on the running server now, and download it with --out",
    options: {
      out: { type: "string", description: "Download the backup to this file (mode 0600)" },
      "passphrase-file": PASSPHRASE_FILE,
    },
    async run(ctx) {
      const passphraseFile = stringOption(ctx, "passphrase-file");
      const passphrase = passphraseFile === undefined ? undefined : await readPassphraseFile(passphraseFile);
      const out = stringOption(ctx, "out");
      if (out !== undefined) refuseUnwritableOut(out);
      const api = await ctx.api();
      const created = await api.request<CreatedBackup>("POST", "/v1/backup/snapshots", passphrase === undefined ? {} : { passphrase }, { worksLong: true });
      if (out !== undefined) await download(api, created, out);
      if (ctx.json) {
        ctx.out(JSON.stringify({ ...created, out: out ?? null }, null, 2));
        return 0;
      }
      ctx.out(`backup ${created.name}: ${created.bytes} bytes, ${created.key.kind === "root_key" ? `encrypted under root key ${created.key.root_key_id}` : "encrypted with the passphrase"}`);
      for (const line of describeManifest(created.manifest)) ctx.out(`  ${line}`);
      if (out !== undefined) ctx.out(`written to ${out}`);
      if (created.pruned.length > 0) ctx.out(`deleted old backups: ${created.pruned.join(", ")}`);
      return 0;
    },
  },
  {
    words: ["backup", "list"],
    summary: "List the backups in the running server's backup directory, newest first",
    async run(ctx) {
      const listing = await (await ctx.api()).request<BackupListing>("GET", "/v1/backup/snapshots");
      if (ctx.json) ctx.out(JSON.stringify(listing, null, 2));
      else if (listing.items.length === 0) ctx.out(`no backups in ${listing.directory}`);
      else for (const item of listing.items) ctx.out(`${item.name}  ${String(item.bytes).padStart(12)} bytes`);
      return 0;
    },
  },
  {
    words: ["backup", "verify"],
    summary: "Check a backup file completely (key, every chunk, SHA-256, SQLite integrity) and print its manifest",
    args: "<file>",
    maxArgs: 1,
    options: KEY_OPTIONS,
    async run(ctx) {
      const file = requiredFile(ctx);
      try {
        const header = await readBackupHeader(file);
        // Reads only: no need to become the data directory's owner (a backup only root may
        // read stays readable); the default key file is read safely (readRootKeyFile).
        // The instance's key file only when no key is named: verifying with one needs no config (which may be root's alone).
        const opened = await verifyBackup(file, await keySupply(ctx, header, () => configuredKeyFile(ctx)), ctx.migrations());
        if (ctx.json) ctx.out(JSON.stringify({ ok: true, file, key: keyInfo(opened.header), manifest: opened.manifest }, null, 2));
        else {
          ctx.out(`OK: ${file} is intact and opens (${keyInfo(opened.header).text})`);
          for (const line of describeManifest(opened.manifest)) ctx.out(`  ${line}`);
        }
        return 0;
      } catch (error) {
        return reportFailure(ctx, error);
      }
    },
  },
  {
    words: ["restore"],
    summary: "Restore a backup into this data directory while Citadel is stopped (the current database is kept aside)",
    args: "<file>",
    maxArgs: 1,
    options: { ...KEY_OPTIONS, yes: { type: "boolean", description: "Put an existing database aside (renamed, not deleted) and restore over it" } },
    async run(ctx) {
      const file = requiredFile(ctx);
      const dataDir = ctx.dataDir();
      const config = configOf(ctx);
      // The key file the restored instance will unseal with: the default key, and checked against the backup's root key.
      const keyFile = configuredKeyFile(ctx);
      try {
        const header = await readBackupHeader(file);
        const { supply, actingAs } = await keyAsOwner(ctx, header, dataDir, keyFile);
        if (actingAs !== null) ctx.err(`restoring as uid ${actingAs}, the owner of ${dataDir} (the backup file must be readable by them)`);
        const result = await restoreBackup({
          file,
          dataDir,
          supply,
          replace: ctx.options.yes === true,
          migrations: ctx.migrations(),
          unsealKeyFile: keyFile,
          now: Date.now,
        });
        const m = result.opened.manifest;
        if (ctx.json) {
          ctx.out(JSON.stringify({ ok: true, database: result.database, previous: result.previous, root_key_matches: result.rootKeyMatches, manifest: m }, null, 2));
        } else {
          ctx.out(`Restored ${file} (taken ${m.created_at}, audit head ${m.audit_head ? `event ${m.audit_head.seq}` : "empty"}) into ${result.database}`);
          if (result.previous) ctx.out(`The previous database is kept as ${result.previous}`);
          ctx.out(`Next: start Citadel, then run  citadel audit verify${sameInstanceFlags(ctx.options)}`);
        }
        // Only a key file instance unseals from that file: on another, it is what a migration left (keep it).
        if (result.rootKeyMatches === false && config?.seal.method === "key_file") {
          ctx.err(`warning: ${keyFile} does not unseal the restored database: put root key ${m.root_key_id ?? "(unknown)"} there (or configure its source) before starting`);
        } else if (result.rootKeyMatches === null && config?.seal.method === "key_file") {
          ctx.err(`warning: there is no root key file ${keyFile}, which this instance unseals with: put root key ${m.root_key_id ?? "(unknown)"} there before starting`);
        }
        return 0;
      } catch (error) {
        return reportFailure(ctx, error);
      }
    },
  },
];

/**
 * Restore's key, read with the right rights. One named on the command line may be root's
 * alone: read as root, then (run as root) restore becomes the data directory's owner. The
 * default key file is in that directory, whose owner can put a link there: read as them. The
 * data directory is worked out once, before: the config may be root's alone too.
 */
async function keyAsOwner(ctx: CommandContext, header: BackupHeader, dataDir: string, defaultKeyFile: string): Promise<{ supply: KeySupply; actingAs: number | null }> {
  const keyNamed = header.derivation.kind === "passphrase" || ["key-file", "shares-file"].some((o) => ctx.options[o] !== undefined);
  let actingAs = keyNamed ? null : actAsDataDirectoryOwner(dataDir);
  const supply = await keySupply(ctx, header, () => defaultKeyFile);
  actingAs ??= actAsDataDirectoryOwner(dataDir);
  return { supply, actingAs };
}

/** What opens the backup, by what its header asks for: the root key (file or shares) or a passphrase. */
async function keySupply(ctx: CommandContext, header: BackupHeader, defaultKeyFile: () => string): Promise<KeySupply> {
  const derivation = header.derivation;
  if (derivation.kind === "passphrase") {
    const file = stringOption(ctx, "passphrase-file");
    // Typed as it was written to --passphrase-file when the backup was made: spaces included.
    return { passphrase: file === undefined ? await secretPrompter()("Backup passphrase: ") : await readPassphraseFile(file) };
  }
  const sharesFile = stringOption(ctx, "shares-file");
  const rootKey = sharesFile !== undefined ? readSharesFile(sharesFile) : readKeyFile(ctx, derivation.rootKeyId, defaultKeyFile);
  refuseWhenKeptKeyFits(rootKey, derivation.rootKeyId, defaultKeyFile);
  return { rootKey };
}

/** The root key in --key-file, else in the instance's key file. */
function readKeyFile(ctx: CommandContext, wanted: string, defaultKeyFile: () => string): Buffer {
  const explicit = stringOption(ctx, "key-file");
  const keyFile = explicit ?? defaultKeyFile();
  try {
    // The default lies in the data directory (or where the config says), which may be another user's (the service's) while root reads it.
    return readRootKeyFile(keyFile, { planted: explicit === undefined });
  } catch (error) {
    // One named that cannot be read (or holds no key) is the input's fault, not the backup's: exit 2, no FAILED.
    if (explicit !== undefined) throw new UsageError(`--key-file: ${(error as Error).message}`);
    if ((error as Error).message.includes("no such file")) {
      throw new BackupError(`this backup is encrypted under root key ${wanted}: give it with --key-file FILE (or --shares-file FILE); there is no ${keyFile}`);
    }
    throw new BackupError((error as Error).message);
  }
}

/**
 * A key that is not the backup's, while the backup's lies beside the instance's key file, kept
 * there by a rekey (`<seal.key_file>.<id>`, root.key.<id> in the data directory by default):
 * the refusal names that file, the one the operator is looking for. Otherwise the key goes on
 * to be checked as any other (openingKeys), which refuses a wrong one.
 */
function refuseWhenKeptKeyFits(rootKey: Buffer, wanted: string, defaultKeyFile: () => string): void {
  const given = rootKeyId(rootKeyVerifier(rootKey));
  if (given === wanted) return;
  const kept = keptKeyFile(defaultKeyFile, wanted);
  if (kept === null) return;
  throw new BackupError(`this backup is encrypted under root key ${wanted}, but the key given is ${given}; ${kept} holds root key ${wanted}, kept by a rekey: give --key-file ${shellQuote(kept)}`);
}

/** Where a rekey kept root key `id` beside the instance's key file, if it is there; null when not (or the instance is unknown). */
function keptKeyFile(defaultKeyFile: () => string, id: string): string | null {
  try {
    const path = `${defaultKeyFile()}.${id}`;
    return existsSync(path) ? path : null;
  } catch {
    return null; // no configuration or data directory to look in: a --key-file alone needs none
  }
}


/**
 * The root key the shares in --shares-file rebuild. One that cannot be read, or holds no
 * shares that combine, is a usage error (exit 2, no FAILED), as a --key-file that holds no key;
 * shares that combine to another key are the backup's failure to open (SharesUnusable's note).
 */
function readSharesFile(path: string): Buffer {
  const text = Buffer.from(boundedFile(path, `--shares-file ${path}`, sharesBound(path))).toString("utf8");
  try {
    return rootKeyFromShares(text);
  } catch (error) {
    throw error instanceof SharesUnusable ? new UsageError(`--shares-file ${path}: ${error.message}`) : error;
  }
}

/** The most a shares file is read of. */
const MOST_SHARES_BYTES = 64 * 1024;

/**
 * Past MOST_SHARES_BYTES a shares file is refused, not read on: 255 shares (the most a split
 * makes) take 25 KiB, and a device or stream without end (`--shares-file /dev/zero`, a
 * FIFO) grew to gigabytes (found in review).
 */
function sharesBound(path: string): Bound {
  return { bytes: MOST_SHARES_BYTES, tooLarge: `--shares-file ${path}: larger than ${MOST_SHARES_BYTES / 1024} KiB, more than any set of key shares (is it the right file?): nothing was read further` };
}

function keyInfo(header: BackupHeader): { kind: string; root_key_id?: string; text: string } {
  const d = header.derivation;
  return d.kind === "root_key"
    ? { kind: d.kind, root_key_id: d.rootKeyId, text: `encrypted under root key ${d.rootKeyId}` }
    : { kind: d.kind, text: `encrypted with a passphrase, argon2id m=${d.argon2.memoryKiB} KiB t=${d.argon2.iterations} p=${d.argon2.parallelism}` };
}

/** The instance's key file (seal.key_file, root.key in the data directory by default). */
function configuredKeyFile(ctx: CommandContext): string {
  const config = configOf(ctx);
  return config ? dataPath(config, config.seal.key_file) : join(ctx.dataDir(), "root.key");
}

/** The configuration; null when it cannot be read (restore needs none). */
function configOf(ctx: CommandContext): Readonly<Config> | null {
  try {
    return ctx.config();
  } catch {
    return null;
  }
}

/**
 * Downloads the backup made to `out`: streamed (the file as it is, not base64) into a new file
 * beside it, hashed as it is written, and renamed into place once its SHA-256 is the one the
 * server reported. A backup of any size: never held whole in memory, and no limit on the whole
 * download, only on a stall (the client's idle timeout). On any failure, or SIGINT or SIGTERM,
 * nothing is left at `out` but what was there, and no part beside it.
 */
async function download(api: ApiClient, created: CreatedBackup, out: string): Promise<void> {
  const pieces = await api.requestStream("GET", `/v1/backup/snapshots/${encodeURIComponent(created.name)}`);
  // A fresh, unguessable name, created exclusively (as writeFileAtomic's): never written through a link put there.
  const partial = `${out}.tmp-${process.pid}-${Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex")}`;
  const notWritten = (error: unknown) =>
    new BackupError(`the backup ${created.name} was made, and is in the server's backup directory (citadel backup list), but it could not be written to ${out}: ${describeFsError(error)}`);
  // A signal skips the finally below: a handler removes the part and exits itself (128 + the
  // signal, as the default would). In place before the part is made: a signal between the two left it.
  const removeOnSignal = (signal: NodeJS.Signals) => {
    rmSync(partial, { force: true });
    process.exit(128 + osConstants.signals[signal]);
  };
  process.once("SIGINT", removeOnSignal);
  process.once("SIGTERM", removeOnSignal);
  let fd: number;
  try {
    fd = openSync(partial, "wx", 0o600);
  } catch (error) {
    stopRemovingOnSignal(removeOnSignal);
    throw notWritten(error);
  }
  try {
    const hasher = new Bun.CryptoHasher("sha256");
    try {
      for await (const piece of pieces) {
        hasher.update(piece);
        writeAll(fd, piece);
      }
      fsyncSync(fd);
    } catch (error) {
      throw error instanceof ApiError ? error : notWritten(error); // a download that broke off or stalled says so itself
    }
    const sha256 = hasher.digest("hex");
    if (sha256 !== created.sha256) throw new BackupError(`the download of ${created.name} is damaged (SHA-256 ${sha256}, the server has ${created.sha256}); try again`);
    try {
      renameSync(partial, out);
      syncDirectoryOf(out);
    } catch (error) {
      throw notWritten(error);
    }
  } finally {
    stopRemovingOnSignal(removeOnSignal);
    closeSync(fd);
    rmSync(partial, { force: true });
  }
}

function stopRemovingOnSignal(handler: (signal: NodeJS.Signals) => void): void {
  process.off("SIGINT", handler);
  process.off("SIGTERM", handler);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written);
}

/** Makes a rename into the directory of `path` durable. */
function syncDirectoryOf(path: string): void {
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/**
 * Refuses an --out the backup could not be written to, before the server is asked: after, the
 * backup was made and audited for nothing — and one made on demand counts against [backup]
 * keep, so each retry pruned a real one.
 */
function refuseUnwritableOut(out: string): void {
  const problem = fileWriteProblem(out);
  if (problem !== null) throw new UsageError(`--out ${out}: ${problem}; no backup was made`);
}

function reportFailure(ctx: CommandContext, error: unknown): number {
  // The input's fault (no --yes, a FILE that cannot be read): a usage error, exit 2.
  if (error instanceof ConfirmationNeeded || error instanceof BackupFileUnreadable) throw new UsageError(error.message);
  if (!(error instanceof BackupError)) throw error;
  if (ctx.json) ctx.out(JSON.stringify({ ok: false, error: error.message }, null, 2));
  // An error line like any other (docs/cli.md): "citadel: " first, FAILED kept for scripts that look for it;
  // a data directory in use is a refusal, not a backup that failed its check.
  ctx.err(error instanceof DataDirectoryBusy ? `citadel: ${error.message}` : `citadel: FAILED: ${error.message}`);
  return 1;
}

function requiredFile(ctx: CommandContext): string {
  const file = ctx.args[0];
  if (!file) throw new UsageError("give the backup file");
  return file;
}

