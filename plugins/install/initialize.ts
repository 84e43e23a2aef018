/**
 * The root key and the database, made once by the installed binary's own `citadel init`.
 * init is the one implementation of first-time setup (migrations of every plugin, the key
 * hierarchy, the first organization and owner); it lives in the composition root, which a
 * plugin cannot import, and running the installed binary also means the database is made by
 * the very program that will serve it. Running it here rather than letting the first start do
 * it shows the one-time password (and the Shamir shares) on the operator's terminal instead of
 * in the journal. init runs as the service's user (on this machine; under another root as
 * whoever runs install): Citadel refuses a data directory that is not the running user's, and
 * what init makes is then the service's from the start.
 *
 * Nothing here ever replaces a key: an existing database is left alone, and a database whose
 * key material is missing is an error for the operator to resolve from a backup.
 *
 * init commits the database and the key before the first organization and owner are set up. When
 * it fails after that, what it made is removed again: kept, a re-run would see an installation
 * and never run init to finish it, and with a credential it would stop at a database whose key,
 * printed but never stored, nobody has.
 */
import { chmodSync, existsSync, lchownSync, lstatSync, renameSync, rmSync, type Stats } from "node:fs";
import { isAbsolute, join } from "node:path";
import type { InstalledConfig } from "./config-file.ts";
import type { Layout } from "./layout.ts";
import type { ReportItem } from "./report.ts";
import type { SealDecision } from "./seal-choice.ts";
import type { RunAs, SystemTools } from "./system-tools.ts";

/** The shares `citadel init` makes for a Shamir seal: any three of five unseal. */
export const SHAMIR = { shares: 5, threshold: 3 } as const;

export interface InitializeInput {
  layout: Layout;
  /** The installed binary, which runs `init`. */
  binary: string;
  seal: SealDecision;
  /** seal.key_file of the installed config. */
  keyFile: InstalledConfig["keyFile"];
  /** The credential name the unit loads. */
  credentialName: string;
  /** The service's user and group, whom init runs as; null: as this process (under another root). */
  runAs: RunAs | null;
}

export interface InitializeOutcome {
  items: ReportItem[];
  /** What init printed for the operator (the one-time password, the shares): shown once. */
  output: string[];
  warnings: string[];
}

export async function initializeOnce(tools: SystemTools, input: InitializeInput): Promise<InitializeOutcome> {
  const { layout, seal } = input;
  const database = join(layout.dataDir, "citadel.db");
  const keyFile = isAbsolute(input.keyFile) ? join(layout.root, input.keyFile) : join(layout.dataDir, input.keyFile);
  if (existsSync(database)) return { items: [{ status: "unchanged", what: database, detail: "initialized" }, existingKeyMaterial(input, database, keyFile)], output: [], warnings: [] };

  if (seal.method === "systemd_credential" && existsSync(layout.credentialFile)) {
    throw new Error(
      `${layout.credentialFile} exists but ${database} does not: that credential holds the root key of a database that is gone. Restore the database from a backup, or move the credential away to start afresh`,
    );
  }
  if (seal.method === "systemd_credential" && !layout.onHost) {
    // An image's config from an earlier install says so; a credential made here would decrypt only here.
    throw new Error(`${layout.configFile} says seal.method "systemd_credential", but under --root a credential would be sealed to this machine's TPM2 or host key, not the target's: move the config away to have a key-file one written`);
  }
  const init = [input.binary, "init", "--config", layout.configFile, "--data", layout.dataDir];
  if (seal.method === "shamir") return runInit(tools, input, [...init, "--shares", String(SHAMIR.shares), "--threshold", String(SHAMIR.threshold)], [database], { status: "created", what: "root key", detail: `${SHAMIR.shares} Shamir shares, any ${SHAMIR.threshold} unseal: printed below, once` });
  if (seal.method === "key_file") return initWithKeyFile(tools, input, init, database, keyFile);
  return initWithCredential(tools, input, init, database);
}

function existingKeyMaterial(input: InitializeInput, database: string, keyFile: string): ReportItem {
  const missing = (path: string) =>
    new Error(`${database} is initialized, but its root key ${path} is missing: restore it from your backup (a new key would not open the existing data)`);
  if (input.seal.method === "key_file") {
    // Put back as install asks (`sudo cp` of the backed-up key): the service's, as initWithKeyFile makes it.
    const existing = existingRegularKeyFile(keyFile);
    if (!existing) throw missing(keyFile);
    const given = input.runAs && giveToService(keyFile, existing, input.runAs);
    return given ? { status: "updated", what: keyFile, detail: given } : { status: "unchanged", what: keyFile };
  }
  if (input.seal.method === "systemd_credential") {
    if (!existsSync(input.layout.credentialFile)) throw missing(input.layout.credentialFile);
    return { status: "unchanged", what: input.layout.credentialFile };
  }
  return { status: "unchanged", what: "root key", detail: "Shamir shares, held by their keepers" };
}

/**
 * A key file there already is the operator's (a restored key): init uses it, it is reported as
 * it is, and a failed init never removes it. Only a regular file: the owner and mode of a link
 * are not those of what is read through it, a chown that followed one would hand its target,
 * wherever it is, to the service, and a dangling one init would write its new key through.
 */
function initWithKeyFile(tools: SystemTools, input: InitializeInput, init: string[], database: string, keyFile: string): Promise<InitializeOutcome> {
  const existing = existingRegularKeyFile(keyFile);
  if (!existing) return runInit(tools, input, init, [database, keyFile], { status: "created", what: keyFile, detail: "0600: keep a copy somewhere safe" });
  const given = input.runAs && giveToService(keyFile, existing, input.runAs);
  const detail = `there already: ${given ? `${given}; ` : ""}citadel init used it as the root key`;
  return runInit(tools, input, init, [database], { status: given ? "updated" : "unchanged", what: keyFile, detail });
}

/** The key file's own status (never a link's target's), null when there is none; refused unless a regular file. */
function existingRegularKeyFile(keyFile: string): Stats | null {
  const existing = lstatOrNull(keyFile);
  if (existing && !existing.isFile()) {
    const what = existing.isSymbolicLink() ? "is a symbolic link" : "is not a regular file";
    throw new Error(`${keyFile} ${what}: install uses an existing root key file only when it is a regular file; put the key itself there`);
  }
  return existing;
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/**
 * A key put back by `sudo cp` is root's, 0600: init, run as the service's user, could not read
 * it ("permission denied"), and neither could the service. It becomes the service's, its mode
 * kept. Returns what was done, null when it was the service's already.
 */
function giveToService(keyFile: string, existing: Stats, service: RunAs): string | null {
  if (existing.uid === service.uid && existing.gid === service.gid) return null;
  lchownSync(keyFile, service.uid, service.gid);
  const mode = (existing.mode & 0o777).toString(8).padStart(4, "0");
  return `given to the service's user and group (${service.uid}:${service.gid}, was ${existing.uid}:${existing.gid}), mode ${mode} kept`;
}

/** `made`: the database first, then what else init makes that a failure removes again. */
async function runInit(tools: SystemTools, input: InitializeInput, argv: string[], made: string[], keyItem: ReportItem): Promise<InitializeOutcome> {
  const result = await tools.run(argv, undefined, input.runAs ?? undefined);
  if (result.code !== 0) throw initFailed(result, made);
  return { items: [{ status: "created", what: made[0]!, detail: "initialized by citadel init" }, keyItem], output: lines(result.stdout), warnings: lines(result.stderr) };
}

/** Removes what a failed init may have committed; the error says so (any key or shares it printed open nothing now). */
function initFailed(result: { code: number; stderr: string }, made: string[]): Error {
  for (const path of made) removeDatabaseOrFile(path);
  return new Error(`citadel init failed (exit ${result.code}): ${result.stderr.trim()}\nWhat it made (${made.join(", ")}) was removed again, so running install again starts afresh`);
}

/** A database goes with its -wal and -shm files. */
function removeDatabaseOrFile(path: string): void {
  for (const suffix of ["", "-wal", "-shm"]) rmSync(`${path}${suffix}`, { force: true });
}

/**
 * `init --key-out -` prints the new root key on standard output and nothing else; it is handed
 * to `systemd-creds encrypt` on its standard input, so the plain key exists only in memory.
 * init commits before it prints, so a failure to store the credential would leave a database
 * whose key nobody has: systemd-creds is tried first, and the fresh database is removed if
 * the real encryption fails anyway.
 */
async function initWithCredential(tools: SystemTools, input: InitializeInput, init: string[], database: string): Promise<InitializeOutcome> {
  const credentialFile = input.layout.credentialFile;
  const encrypt = (output: string) => ["systemd-creds", "encrypt", `--with-key=${input.seal.credentialKey}`, `--name=${input.credentialName}`, "-", output];
  await tools.mustRun(encrypt("-"), Buffer.from("can systemd-creds encrypt here?"));

  const result = await tools.runForBytes([...init, "--key-out", "-"], undefined, input.runAs ?? undefined);
  if (result.code !== 0) {
    result.stdout.fill(0); // the key it may have printed opens nothing once its database is gone
    throw initFailed(result, [database]);
  }
  const temporary = `${credentialFile}.tmp-${process.pid}`;
  let stored;
  try {
    if (!/^[0-9a-f]{64}\n$/.test(Buffer.from(result.stdout).toString("latin1"))) {
      stored = { code: 1, stdout: "", stderr: "citadel init did not print a root key" };
    } else {
      stored = await tools.run(encrypt(temporary), result.stdout);
    }
  } finally {
    result.stdout.fill(0);
  }
  if (stored.code !== 0) {
    rmSync(temporary, { force: true });
    removeDatabaseOrFile(database);
    throw new Error(`could not store the root key with systemd-creds (${stored.stderr.trim()}); the new database was removed again, so running install again starts afresh`);
  }
  chmodSync(temporary, 0o600); // systemd-creds writes 0644; only systemd (root) reads it
  renameSync(temporary, credentialFile);
  return {
    items: [
      { status: "created", what: database, detail: "initialized by citadel init" },
      { status: "created", what: credentialFile, detail: `0600 root:root, systemd-creds --with-key=${input.seal.credentialKey}; the plain key was never written to disk` },
    ],
    output: lines(result.stderr), // with --key-out -, init writes its messages to standard error
    warnings: lines(stored.stderr),
  };
}

function lines(text: string): string[] {
  return text.split("\n").filter((line) => line.trim() !== "");
}
