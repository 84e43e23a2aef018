/**
 * `citadel doctor`: checks this machine's Citadel from its config and data directory — and
 * from the running server when it answers — and says for each thing ok, warn or fail, with
 * the command that fixes a problem. It changes nothing. Each check is a small function; a
 * check that cannot tell (no timedatectl, Citadel stopped) says "skip" and why.
 */
import type { Database } from "bun:sqlite";
import { X509Certificate } from "node:crypto";
import { accessSync, constants, readdirSync, readFileSync, statfsSync, statSync } from "node:fs";
import { createConnection } from "node:net";
import { basename, dirname, isAbsolute, join, relative } from "node:path";
import { verifyAuditChain } from "../../src/audit/verify.ts";
import { notAhead } from "../../src/backup-clock.ts";
import { backupMaker } from "../../src/backup-maker.ts";
import { ConfigError } from "../../src/config/error.ts";
import { dataPath } from "../../src/config/load.ts";
import { DEFAULT_TLS_CERT_FILE, DEFAULT_TLS_KEY_FILE, type Config } from "../../src/config/schema.ts";
import { leftoverKeyFileWarning, sealMethodMismatch } from "../../src/crypto/key-operations.ts";
import { Keyring } from "../../src/crypto/keyring.ts";
import { readRootKeyFile, verifies } from "../../src/crypto/root-key.ts";
import { readTls, validityProblem, type TlsFiles } from "../../src/http/tls.ts";
import { abandonedRestoreCopies } from "../../src/restore-marker.ts";
import { numberAt, sectionOf, stringAt, stringsAt } from "./config.ts";
import { parseHostPort, queryUdp } from "./dns-probe.ts";
import { keyAgesFromDatabase, keyAgesFromServer, type KeyAges } from "./key-ages.ts";
import { UNEXPECTED_KEYS_ANSWER, type ServerView } from "./local-server.ts";
import { closedDirectory, doesNotExist, humanBytes, keptRootKeyFiles, octal, pathInfo, walk } from "./on-disk.ts";
import { shellQuote } from "../../src/cli/next-command.ts";
import { probePort, whoHolds } from "./ports.ts";
import { anyHostedZone, databasePath, describeDatabaseProblem, rootKeys, type DatabaseProblem, type RootKeyRow } from "./store.ts";

export type CheckStatus = "ok" | "warn" | "fail" | "skip";

export interface Check {
  /** A stable name: data_dir, file_mode, root_key, tls_key, certificate, server, seal, keys, disk, clock, port, dns, audit, backup... */
  check: string;
  status: CheckStatus;
  message: string;
  /** The command (or the one step) that fixes it; null when there is nothing to fix. */
  fix: string | null;
}

export interface DoctorReport {
  ok: boolean;
  counts: Record<CheckStatus, number>;
  checks: Check[];
}

/** What ran a program and what it printed; null when the program is not installed. */
export type RunProgram = (argv: string[]) => { code: number; stdout: string; stderr: string } | null;

export interface DoctorInputs {
  config: Config;
  /** False when the plugins' sections are known from the file alone (see config.ts). */
  /** What the running server said (local-server.ts). */
  server: ServerView;
  /** The config file that was read (or would be): its modes are checked when it lies outside the data directory. */
  configPath?: string;
  /** The database, read-only, or null when there is none. */
  db: Database | null;
  /** Why db is null although the file is there (null or absent: it is not there). */
  databaseProblem?: DatabaseProblem | null;
  now: number;
  run: RunProgram;
  /** Disk space of a directory's filesystem (statfs); tests give their own. */
  diskSpace?: (path: string) => { available: number; total: number };
}

const DAY_MS = 86_400_000;
/** A certificate this close to its end is reported (Citadel renews its own at start-up from here). */
export const CERTIFICATE_WARN_DAYS = 30;
const BACKUP_NAME = /^citadel-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z\.backup$/;
/** A backup older than this is reported when no schedule says otherwise. */
const BACKUP_MAX_AGE_DAYS = 7;

/** Runs every check in order and counts the outcomes; `ok` is false as soon as one check fails. */
export async function runDoctor(inputs: DoctorInputs): Promise<DoctorReport> {
  const checks: Check[] = [];
  const add = (check: string, status: CheckStatus, message: string, fix: string | null = null) => checks.push({ check, status, message, fix });

  // Files that a check below looks at specifically: the sweep of the data directory leaves them to it.
  const covered = new Set<string>();
  checkDataDir(inputs, add);
  checkRootKey(inputs, add, covered);
  checkKeptRootKeys(inputs, add, covered);
  checkTls(inputs, add, covered);
  checkFileModes(inputs, add, covered);
  checkConfigFile(inputs, add);
  checkServer(inputs, add);
  checkKeys(inputs, add);
  checkDisk(inputs, add);
  checkClock(inputs, add);
  await checkPorts(inputs, add);
  await checkDns(inputs, add);
  checkAudit(inputs, add);
  checkAuditForwardFile(inputs, add);
  checkBackups(inputs, add);
  checkOthersBackups(inputs, add);
  checkBackupDir(inputs, add);
  checkRestoreCopies(inputs, add);

  const counts = { ok: 0, warn: 0, fail: 0, skip: 0 };
  for (const c of checks) counts[c.status]++;
  return { ok: counts.fail === 0, counts, checks };
}

type Add = (check: string, status: CheckStatus, message: string, fix?: string | null) => void;

/**
 * The data directory is the service user's, 0700: another user (an operator without sudo)
 * cannot look inside. What is in it is then unknown, never missing, and never fine.
 */
const cannotLook = (path: string) => `cannot look inside ${closedDirectory(path)} as this user`;
const AS_SERVICE_USER = "run citadel doctor as root or as the user Citadel runs as";

function checkDataDir(inputs: DoctorInputs, add: Add): void {
  const { config } = inputs;
  const dir = pathInfo(config.data_dir, { followLink: true });
  const q = shellQuote(config.data_dir);
  if (dir.kind === "unreadable") return add("data_dir", "warn", cannotLook(config.data_dir), AS_SERVICE_USER);
  if (dir.kind === "missing") return add("data_dir", "fail", `${config.data_dir} does not exist`, `citadel init --data ${q}`);
  if (dir.kind !== "directory") return add("data_dir", "fail", `${config.data_dir} is not a directory`, `move it aside, then: citadel init --data ${q}`);
  if ((dir.mode! & 0o077) !== 0) return add("data_dir", "fail", `${config.data_dir} is open to group or others (mode ${octal(dir.mode)}); Citadel refuses to start`, `chmod 700 ${q}`);
  add("data_dir", "ok", `${config.data_dir} (mode ${octal(dir.mode)})`);
  checkDatabase(inputs, add);
}

function checkDatabase({ config, databaseProblem }: DoctorInputs, add: Add): void {
  const path = databasePath(config);
  const q = shellQuote(config.data_dir);
  const db = pathInfo(path);
  if (db.kind === "unreadable") return add("database", "warn", cannotLook(path), AS_SERVICE_USER);
  if (databaseProblem === "unreadable") return add("database", "warn", `cannot open ${path} as this user`, AS_SERVICE_USER);
  if (databaseProblem === "not_a_database") return add("database", "fail", `${path} is not a readable SQLite database`, `restore a backup: citadel restore FILE --data ${q}`);
  if (db.kind !== "file") return add("database", "fail", `no database at ${path}: Citadel was never started here`, `citadel init --data ${q}`);
  add("database", "ok", `${path} (${humanBytes(db.bytes)})`);
}

/** Every file under the data directory 0600 (or stricter), every directory 0700, all of them the directory owner's (its user). */
function checkFileModes({ config }: DoctorInputs, add: Add, covered: Set<string>): void {
  if (pathInfo(config.data_dir, { followLink: true }).kind !== "directory") return;
  const service = ownerOf(config.data_dir);
  let files = 0;
  let problems = 0;
  let owners = 0;
  const { entries, unreadable } = walk(config.data_dir);
  for (const entry of entries) {
    if (covered.has(entry.path)) continue;
    if (entry.kind === "file") files++;
    const owner = ownerProblem(entry.path, entry, service);
    if (owner) {
      owners++;
      add("file_owner", "fail", owner.message, owner.fix);
    }
    if ((entry.mode & 0o077) === 0) continue;
    problems++;
    const wanted = entry.kind === "directory" ? "700" : "600";
    add("file_mode", "fail", `${entry.path} is open to group or others (mode ${octal(entry.mode)})`, `chmod ${wanted} ${shellQuote(entry.path)}`);
  }
  // Only what could be read is vouched for.
  if (unreadable.length > 0) return add("file_mode", "warn", cannotLook(unreadable[0]!), AS_SERVICE_USER);
  if (problems === 0) add("file_mode", "ok", `${files} files under ${config.data_dir}, all owner-only (0600 or stricter)`);
  if (owners === 0 && service) add("file_owner", "ok", `everything under ${config.data_dir} is owned by uid ${service.uid}, the data directory's owner, as whom Citadel runs (its files are owner-only: their group grants nothing)`);
}

/**
 * Citadel runs as the data directory's owner (the installed service's user), and a file in it
 * that someone else owns — root's, after a `sudo cp` of a restored key — it cannot read or
 * replace, whatever its mode: serve then stops with "permission denied". Judged by the owner,
 * not by who runs this doctor (root reads anything). By the user alone: the files are
 * owner-only (0600, checked apart), so their group grants nothing, and one the service's user
 * owns with another group (after `chown citadel FILE`) it reads and replaces all the same.
 */
function ownerProblem(path: string, file: { uid: number; gid: number }, service: { uid: number; gid: number } | null): { message: string; fix: string } | null {
  if (!service || file.uid === service.uid) return null;
  return {
    message: `${path} is owned by ${file.uid}:${file.gid}, not by ${service.uid}:${service.gid}, the data directory's owner, as whom Citadel runs: it cannot use it`,
    fix: `chown ${service.uid}:${service.gid} ${shellQuote(path)}`,
  };
}

/** How a lost key file is put back: the data directory owner's, 0600 (root's copy would be unreadable to Citadel). */
function restoreKeyFix(config: Config, path: string, what = "it"): string {
  const service = ownerOf(config.data_dir);
  const chown = service ? `chown ${service.uid}:${service.gid} ${shellQuote(path)} && ` : "";
  return `restore ${what} from your copy, then: ${chown}chmod 600 ${shellQuote(path)}`;
}

/**
 * The config file decides where Citadel listens, how it unseals, where backups and the audit
 * log go: whoever may write it (or replace it, by writing its directory) controls the next
 * start. In the data directory the sweep of file modes covers it; elsewhere (the installed
 * /etc/citadel/citadel.toml, root:citadel 0640 in a 0750 directory) it is checked here. Read
 * access for the group is how the installed service reads it, so only write access is judged.
 */
/** How a command names this instance: its config file when it lies outside the data directory (its [http] is there), else the data directory. */
function instanceFlag({ config, configPath }: Pick<DoctorInputs, "config" | "configPath">): string {
  return configPath && outsideOf(config.data_dir, configPath) ? `--config ${shellQuote(configPath)}` : `--data ${shellQuote(config.data_dir)}`;
}

function checkConfigFile({ config, configPath }: DoctorInputs, add: Add): void {
  if (!configPath || !outsideOf(config.data_dir, configPath)) return;
  const file = pathInfo(configPath, { followLink: true });
  if (file.kind === "missing") return;
  if (file.kind === "unreadable") return add("config_file", "warn", cannotLook(configPath), AS_SERVICE_USER);
  const dir = dirname(configPath);
  let problems = 0;
  for (const [path, mode, what] of [
    [configPath, file.mode, "the config file"],
    [dir, directoryMode(dir), "the config file's directory"],
  ] as const) {
    if (mode === null || (mode & 0o022) === 0) continue;
    problems++;
    add("config_file", "fail", `${what} ${path} is writable by group or others (mode ${octal(mode & 0o777)}): they could change how Citadel starts (listeners, seal, key file)`, `chmod go-w ${shellQuote(path)}`);
  }
  // Its owner may write it whatever the mode: only root or whoever runs Citadel may own it.
  const trusted = new Set([0, ownerOf(config.data_dir)?.uid ?? process.getuid?.() ?? 0]);
  for (const [path, what] of [
    [configPath, "the config file"],
    [dir, "the config file's directory"],
  ] as const) {
    const owner = ownerOf(path)?.uid;
    if (owner === undefined || trusted.has(owner)) continue;
    problems++;
    add("config_file", "fail", `${what} ${path} is owned by uid ${owner}, neither root nor the data directory's owner: that user could change how Citadel starts (listeners, seal, key file)`, `chown root ${shellQuote(path)}`);
  }
  if (problems === 0) add("config_file", "ok", `${configPath} (mode ${octal(file.mode)}) and its directory are writable by their owner only, root or Citadel's user`);
}

/** A directory's mode (null when it cannot be read); a sticky one (/tmp) lets nobody replace another's file, so its bits for others do not count. */
function directoryMode(dir: string): number | null {
  try {
    const { mode } = statSync(dir);
    return (mode & 0o1000) !== 0 ? mode & 0o7755 : mode & 0o777;
  } catch {
    return null;
  }
}

const outsideOf = (dir: string, path: string) => {
  const from = relative(dir, path);
  return from === ".." || from.startsWith("../") || isAbsolute(from);
};

/**
 * `citadel serve` starts only with the seal method of the active root key or of a pending one
 * (main.ts refuseOtherSealMethod); with another, it stops with this very message.
 */
function otherSealMethod(configured: string, roots: RootKeyRow[]): { message: string; fix: string } | null {
  const stored = [...roots.filter((r) => r.state === "active"), ...roots.filter((r) => r.state === "pending")].map((r) => r.method);
  const mismatch = sealMethodMismatch(stored, configured, "the config file");
  return mismatch && { message: `seal.method: ${mismatch.problem}: Citadel refuses to start`, fix: mismatch.remedy };
}

/** What the configured seal method reads at start-up: the key file, the systemd credential, or nothing (Shamir). */
function checkRootKey(inputs: DoctorInputs, add: Add, covered: Set<string>): void {
  const mismatch = inputs.db ? otherSealMethod(inputs.config.seal.method, rootKeys(inputs.db)) : null;
  if (mismatch) return add("root_key", "fail", mismatch.message, mismatch.fix);
  const { method } = inputs.config.seal;
  if (method === "key_file") return checkKeyFile(inputs, add, covered);
  if (method === "systemd_credential") checkCredential(inputs, add);
  else if (pathInfo(dataPath(inputs.config, inputs.config.seal.key_file)).kind === "missing") add("root_key", "ok", "seal method shamir: the key shares are with their keepers; nothing on disk");
  else add("root_key", "ok", "seal method shamir: the key shares are with their keepers");
  checkLeftoverKeyFile(inputs, add);
}

function checkCredential({ config }: DoctorInputs, add: Add): void {
  const name = config.seal.credential;
  // Where `citadel install` puts it (the unit loads it from there), then systemd's own credstores.
  const places = ["/etc/citadel/root-key.cred", ...["/etc/credstore.encrypted", "/etc/credstore"].map((d) => join(d, name))];
  const looked = places.map((place) => pathInfo(place));
  const found = looked.find((p) => p.kind === "file");
  const encrypt = `systemd-creds encrypt --name=${name} ROOT_KEY_FILE /etc/credstore.encrypted/${name}`;
  const hidden = looked.find((p) => p.kind === "unreadable");
  if (!found && hidden) return add("root_key", "warn", `seal method systemd_credential: ${cannotLook(hidden.path)}`, AS_SERVICE_USER);
  if (!found) return add("root_key", "warn", `seal method systemd_credential: no credential ${name} in ${places.join(" or ")} (systemd hands it to the service; a unit with LoadCredentialEncrypted= from elsewhere is fine)`, encrypt);
  if ((found.mode! & 0o077) !== 0 && found.path.startsWith("/etc/credstore/")) return add("root_key", "fail", `${found.path} holds the root key in the clear and is open to group or others (mode ${octal(found.mode)})`, `chmod 600 ${shellQuote(found.path)}`);
  add("root_key", "ok", `seal method systemd_credential: ${found.path} (mode ${octal(found.mode)})`);
}

/**
 * A key file where seal.key_file points, though the seal method is another: what the server
 * warns of at every start (leftoverKeyFileWarning), in its words. Most often the old key of a
 * migration, which belongs with the backups made under it; during a migration to a key file,
 * the new key, which must stay.
 */
function checkLeftoverKeyFile({ config, db, databaseProblem }: DoctorInputs, add: Add): void {
  const path = dataPath(config, config.seal.key_file);
  const file = pathInfo(path);
  if (file.kind === "missing") return;
  if (file.kind === "unreadable") return add("root_key", "warn", `seal method ${config.seal.method}: ${cannotLook(path)}, where a key file may be left`, AS_SERVICE_USER);
  if (!db) return add("root_key", "skip", `seal method ${config.seal.method}, but a key file is at ${path}; whose key it holds is unknown: ${databaseProblem ? describeDatabaseProblem(databaseProblem) : "no database"}`);
  const warning = leftoverKeyFileWarning({ method: config.seal.method, keyFile: path, credential: config.seal.credential, credentialsDirectory: undefined }, db);
  if (!warning) return;
  const migratingToKeyFile = rootKeys(db).some((r) => r.state === "pending" && r.method === "key_file");
  add("root_key", "warn", warning, migratingToKeyFile ? 'set seal.method = "key_file" in the config file, then systemctl restart citadel' : "move it off this host, next to the backups made under it");
}

function checkKeyFile({ config, db, databaseProblem }: DoctorInputs, add: Add, covered: Set<string>): void {
  const path = dataPath(config, config.seal.key_file);
  covered.add(path);
  const file = pathInfo(path);
  const q = shellQuote(path);
  if (file.kind === "unreadable") return add("root_key", "warn", cannotLook(path), AS_SERVICE_USER);
  if (file.kind === "missing") return add("root_key", "fail", `the root key file ${path} is missing: Citadel cannot unseal`, restoreKeyFix(config, path));
  if (file.kind !== "file") return add("root_key", "fail", `${path} is not a file`, null);
  if ((file.mode! & 0o077) !== 0) return add("root_key", "fail", `the root key file ${path} is readable by group or others (mode ${octal(file.mode)}); Citadel refuses it`, `chmod 600 ${q}`);
  const owner = ownerProblem(path, statSync(path), ownerOf(config.data_dir));
  if (owner) return add("root_key", "fail", `the root key file ${owner.message}`, owner.fix);
  let key: Buffer;
  try {
    key = readRootKeyFile(path);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return add("root_key", /permission denied/.test(message) ? "warn" : "fail", message, /permission denied/.test(message) ? AS_SERVICE_USER : restoreKeyFix(config, path));
  }
  if (databaseProblem) return add("root_key", "skip", `${path} (mode ${octal(file.mode)}) holds a root key; whether it opens the database is unknown: ${describeDatabaseProblem(databaseProblem)}`);
  const roots = db ? rootKeys(db) : [];
  const match = roots.find((r) => verifies(key, r.verifier));
  if (roots.length === 0) return add("root_key", "ok", `${path} (mode ${octal(file.mode)}); the database has no root key yet`);
  if (!match) return add("root_key", "fail", `${path} does not unseal this database (root key ${roots.find((r) => r.state === "active")?.id ?? "?"})`, restoreKeyFix(config, path, "the matching key"));
  // The key is right, and still the start stops (exit 1) when the active KEK does not open with it.
  const kekProblem = db && activeKekProblem(db, key);
  if (kekProblem) return add("root_key", "fail", `${path} is root key ${match.id}, but ${kekProblem}: Citadel cannot unseal`, "restore a backup made before the damage (citadel restore FILE; docs/backup.md)");
  add("root_key", "ok", `${path} (mode ${octal(file.mode)}) is root key ${match.id}${match.state === "pending" ? " (pending: it becomes the root key at the next unseal)" : ""}`);
}

/** Why the active KEK does not serve `key` (damaged, or no wrap for it), or null; the key's copy in the keyring is wiped after. */
function activeKekProblem(db: Database, key: Buffer): string | null {
  const keyring = new Keyring(db, Buffer.from(key));
  try {
    return keyring.activeKekProblem();
  } finally {
    keyring.wipe();
  }
}

/**
 * Earlier root keys a key file rekey kept beside the key file (`root.key.<id>`): each opens the
 * backups made under it, so they belong with those backups, off this host.
 */
function checkKeptRootKeys({ config }: DoctorInputs, add: Add, covered: Set<string>): void {
  const keyFile = dataPath(config, config.seal.key_file);
  const kept = keptRootKeyFiles(keyFile);
  if (kept.length === 0) return;
  for (const path of kept) covered.add(path);
  add("root_key", "warn", `earlier root keys kept by rekeys in ${dirname(keyFile)}: ${kept.map((path) => basename(path)).join(", ")}; each opens the backups made under it`, "move them off this host, next to those backups");
}

function checkTls({ config, now }: DoctorInputs, add: Add, covered: Set<string>): void {
  const { tls } = config.http;
  if (!tls.enabled) return add("tls", "ok", `TLS is off: plain HTTP on ${config.http.address} (loopback, for a reverse proxy that terminates TLS)`);
  const files: TlsFiles = {
    certPath: dataPath(config, tls.cert_file),
    keyPath: dataPath(config, tls.key_file),
    managed: tls.cert_file === DEFAULT_TLS_CERT_FILE && tls.key_file === DEFAULT_TLS_KEY_FILE,
    listenAddress: config.http.address,
  };
  covered.add(files.keyPath);
  const keyThere = checkTlsKeyFile(files, ownerOf(config.data_dir), add);
  const cert = readCertificate(files, add);
  if (keyThere && cert) checkTlsPair(files, add);
  else if (keyThere) add("tls_key", "ok", `${files.keyPath} (mode ${octal(pathInfo(files.keyPath).mode)})`);
  if (cert) checkCertificateDates(files, cert, now, add);
}

/** The key file's presence, mode and readability; true when nothing was found wrong (and nothing reported). */
function checkTlsKeyFile({ keyPath, certPath, managed }: TlsFiles, service: { uid: number; gid: number } | null, add: Add): boolean {
  const key = pathInfo(keyPath);
  const owner = key.kind === "file" ? ownerProblem(keyPath, statSync(keyPath), service) : null;
  if (key.kind === "unreadable") add("tls_key", "warn", cannotLook(keyPath), AS_SERVICE_USER);
  else if (key.kind !== "file") add("tls_key", "fail", `the TLS key ${keyPath} is missing`, managed ? "start Citadel once (it makes its certificate and key)" : `put the key for ${certPath} at ${shellQuote(keyPath)}`);
  else if ((key.mode! & 0o077) !== 0) add("tls_key", "fail", `the TLS key ${keyPath} is open to group or others (mode ${octal(key.mode)})`, `chmod 600 ${shellQuote(keyPath)}`);
  // Citadel's own pair it replaces with a new one when it cannot read it; another it cannot start with.
  else if (owner) add("tls_key", managed ? "warn" : "fail", `the TLS key ${owner.message}${managed ? ": it makes a new self-signed certificate at its next start, and clients must pin its new public key" : ""}`, owner.fix);
  else if (!readable(keyPath)) add("tls_key", "warn", `cannot read the TLS key ${keyPath} as this user`, AS_SERVICE_USER);
  else return true;
  return false;
}

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function readCertificate({ certPath, keyPath, managed }: TlsFiles, add: Add): X509Certificate | null {
  let pem: string;
  try {
    pem = readFileSync(certPath, "utf8");
  } catch (error) {
    if (!doesNotExist(error)) add("certificate", "warn", `cannot read the TLS certificate ${certPath} as this user (${(error as NodeJS.ErrnoException).code})`, AS_SERVICE_USER);
    else add("certificate", "fail", `cannot read the TLS certificate ${certPath}`, managed ? "start Citadel once (it makes its certificate)" : `put the certificate at ${shellQuote(certPath)}`);
    return null;
  }
  try {
    return new X509Certificate(pem);
  } catch {
    add("certificate", "fail", `${certPath} is not a PEM certificate`, managed ? `remove ${shellQuote(certPath)} and ${shellQuote(keyPath)}, then restart Citadel (it makes new ones)` : `put a valid certificate at ${shellQuote(certPath)}`);
    return null;
  }
}

/**
 * The pair as serve reads it at start (readTls, the one implementation): a key that is not the
 * certificate's stops serve — unless the files are Citadel's own self-signed ones, which it
 * then replaces by new ones.
 */
function checkTlsPair(files: TlsFiles, add: Add): void {
  try {
    readTls(files);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    if (files.managed) return add("tls_key", "warn", `${error.message}: Citadel replaces both with a new self-signed certificate at its next start, and clients must pin its new public key`, "systemctl restart citadel");
    return add("tls_key", "fail", `${error.message}: Citadel refuses to start`, `put the key of ${files.certPath} at ${shellQuote(files.keyPath)} (or the certificate of that key at ${shellQuote(files.certPath)})`);
  }
  add("tls_key", "ok", `${files.keyPath} (mode ${octal(pathInfo(files.keyPath).mode)}), the private key of ${files.certPath}`);
}

function checkCertificateDates({ certPath, managed }: TlsFiles, cert: X509Certificate, now: number, add: Add): void {
  const ends = Date.parse(cert.validTo);
  const days = Math.floor((ends - now) / DAY_MS);
  const what = `${describeCertificateKey(cert)}, valid until ${new Date(ends).toISOString().slice(0, 10)}`;
  const renew = managed ? "systemctl restart citadel (Citadel renews its own certificate at start-up when fewer than 30 days remain)" : `install a renewed certificate at ${shellQuote(certPath)}, then: systemctl restart citadel`;
  const problem = validityProblem({ notBefore: new Date(cert.validFrom), notAfter: new Date(ends) }, certPath, new Date(now));
  if (ends <= now) add("certificate", "fail", `the TLS certificate ${certPath} has expired (${what})`, renew);
  else if (problem) add("certificate", "fail", `${problem}: clients refuse it until then, and a reload (SIGHUP) refuses it (${what})`, `check the clock (timedatectl), or install a certificate valid now at ${shellQuote(certPath)}`);
  else if (days < CERTIFICATE_WARN_DAYS) add("certificate", "warn", `the TLS certificate ${certPath} expires in ${days} days (${what})`, renew);
  else add("certificate", "ok", `${certPath}: ${what} (${days} days left)`);
}

/** "ECDSA P-256", "RSA 3072", "Ed25519". */
export function describeCertificateKey(cert: X509Certificate): string {
  const key = cert.publicKey;
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case "ec": {
      const curve = details.namedCurve ?? "";
      return `ECDSA ${{ prime256v1: "P-256", secp384r1: "P-384", secp521r1: "P-521" }[curve] ?? curve}`;
    }
    case "rsa":
      return `RSA ${details.modulusLength ?? ""}`.trim();
    case "ed25519":
      return "Ed25519";
    default:
      return key.asymmetricKeyType ?? "unknown key type";
  }
}

function checkServer({ server }: DoctorInputs, add: Add): void {
  if (server.listener !== "citadel") {
    add("server", "warn", `server not reachable${server.url ? ` at ${server.url}` : ""}: ${server.error ?? "no answer"}`, "systemctl start citadel (or: citadel serve)");
    add("seal", "skip", "seal state unknown: the server is not reachable");
    return;
  }
  if (server.ready?.ok) add("server", "ok", `Citadel answers at ${server.url} and is ready`);
  else add("server", "warn", `Citadel answers at ${server.url} but is not ready: ${server.ready?.detail ?? "no answer from /readyz"}`, server.seal?.sealed ? unsealFix(server.seal.method) : "journalctl -u citadel -n 50 (see why)");
  const seal = server.seal;
  if (!seal) add("seal", "warn", "the server did not say whether it is sealed", null);
  else if (!seal.initialized) add("seal", "fail", "not initialized", "citadel init");
  else if (seal.sealed) add("seal", "warn", `sealed (seal method ${seal.method}${seal.threshold ? `, ${seal.progress} of ${seal.threshold} shares given` : ""}): nothing can be read or written`, unsealFix(seal.method));
  else add("seal", "ok", `unsealed (seal method ${seal.method}, root key ${seal.key_id})`);
}

/**
 * How a sealed Citadel is unsealed: key shares are given with `citadel unseal`; a key file or a
 * systemd credential is read only when the service starts (unseal refuses and says so).
 */
function unsealFix(method: string | null): string {
  if (method === "shamir") return "citadel unseal";
  return `systemctl restart citadel (it reads its ${method === "systemd_credential" ? "systemd credential" : "key file"} when it starts)`;
}

/**
 * How a pending root key (a rekey) becomes the root key: first used to unseal — for a seal
 * migration, by a start configured for its method (a restart on the old one keeps the old key).
 * The config may already name the new method (the running server started before the change):
 * then only the restart is left to do.
 */
function promoteFix(configured: string, rootMethod: string, pendingMethod: string): string {
  const switchTo = pendingMethod === configured ? "" : `set seal.method = "${pendingMethod}" in the config file, then `;
  const restart = switchTo !== "" || pendingMethod !== rootMethod;
  if (pendingMethod === "shamir") return `${switchTo}${restart ? "systemctl restart citadel, then " : ""}citadel unseal (with the new shares)`;
  if (pendingMethod === "systemd_credential") return `store the new key as the systemd credential (systemd-creds encrypt), ${switchTo || "then: "}systemctl restart citadel`;
  return `${switchTo}${unsealFix(pendingMethod)}`;
}

/** The key ages a check or report shows: the server's when it answers an operator, else the database's. */
export function keyAges(inputs: Pick<DoctorInputs, "server" | "db" | "databaseProblem" | "config" | "now">): { ages: KeyAges | null; note: string | null } {
  if (inputs.server.keys) return { ages: keyAgesFromServer(inputs.server.keys), note: null };
  if (!inputs.db) return { ages: null, note: inputs.databaseProblem ? describeDatabaseProblem(inputs.databaseProblem) : "no database" };
  const note = inputs.server.listener === "citadel" ? inputs.server.keysProblem : null;
  return { ages: keyAgesFromDatabase(inputs.db, inputs.config.keys.rotation_days, inputs.now), note };
}

function checkKeys(inputs: DoctorInputs, add: Add): void {
  // Said on its own: the ages below (from the database file) would otherwise read as all there is to it.
  if (inputs.server.keysProblem === UNEXPECTED_KEYS_ANSWER) {
    add("keys", "warn", `${UNEXPECTED_KEYS_ANSWER} at ${inputs.server.url}: not the key status this citadel reads (another version of Citadel, or not Citadel)`, `check what listens at ${inputs.server.url}, and run the citadel binary the service runs`);
  }
  const { ages, note } = keyAges(inputs);
  if (!ages?.root || !ages.active_kek) return add("keys", "skip", `key ages unknown: ${note ?? "not initialized"}`);
  const from = ages.source === "server" ? "" : ` (from the database file${note ? `; ${note}` : ""})`;
  const summary = `root key ${ages.root.id} (${ages.root.method}) ${ages.root.age_days} days old; KEK v${ages.active_kek.version} ${ages.active_kek.age_days} days old, rotation every ${ages.rotation_days || "— (manual only)"} days${from}`;
  // While a rekey is pending a rotation answers 409 (its new root key wraps the KEKs there were): that rekey comes first.
  const rotate = ages.pending_root ? `finish the pending rekey of root key ${ages.pending_root} (its line below) or cancel it (citadel keys rekey --cancel ${instanceFlag(inputs)}), then citadel keys rotate` : "citadel keys rotate";
  if (ages.rotation_due) add("keys", "warn", `${summary}: rotation is due${ages.pending_root ? ", and waits for the pending rekey" : ""}`, rotate);
  else if (ages.deks_to_rewrap > 0) add("keys", "warn", `${summary}: ${ages.deks_to_rewrap} data keys still under an older KEK`, rotate);
  else add("keys", "ok", summary);
  // Not "rotate": no rotation moves a data key that does not unwrap (found in review).
  if (ages.deks_damaged) add("keys", "fail", `${ages.deks_damaged} data keys do not unwrap (damaged or altered): what they encrypt cannot be read, and no rotation moves them`, `citadel audit list --action keys.kek.rotate --outcome failure ${instanceFlag(inputs)} (their owners); restore a backup made before the damage, or destroy those owners' data (the appliance's own keys — audit/, mesh/, dns/ — only a restore mends; docs/keys.md)`);
  if (ages.pending_root) {
    const pendingMethod = ages.pending_method ?? ages.root.method;
    const migration = pendingMethod === ages.root.method ? "" : ` (a seal migration from ${ages.root.method} to ${pendingMethod})`;
    add("keys", "warn", `root key ${ages.pending_root} is pending${migration}: it replaces ${ages.root.id} when it is first used to unseal`, promoteFix(inputs.config.seal.method, ages.root.method, pendingMethod));
  }
}

/** warn under 10 % free, fail under 2 %. */
export function diskStatus(available: number, total: number): CheckStatus {
  const free = total > 0 ? available / total : 0;
  return free < 0.02 ? "fail" : free < 0.1 ? "warn" : "ok";
}

function checkDisk({ config, diskSpace }: DoctorInputs, add: Add): void {
  let space;
  try {
    space =
      diskSpace?.(config.data_dir) ??
      (() => {
        const s = statfsSync(config.data_dir);
        return { available: s.bavail * s.bsize, total: s.blocks * s.bsize };
      })();
  } catch {
    return add("disk", "skip", `cannot read the free space of ${config.data_dir}'s filesystem`);
  }
  const status = diskStatus(space.available, space.total);
  const percent = space.total > 0 ? ((space.available / space.total) * 100).toFixed(1) : "0";
  const message = `${percent}% free on the filesystem of ${config.data_dir} (${(space.available / 2 ** 30).toFixed(1)} of ${(space.total / 2 ** 30).toFixed(1)} GiB)`;
  add("disk", status, status === "ok" ? message : `${message}: SQLite stops accepting writes when it is full`, status === "ok" ? null : `free space: du -sh ${shellQuote(config.data_dir)}/* (old backups, the query log) and df -h ${shellQuote(config.data_dir)}`);
}

function checkClock({ run }: DoctorInputs, add: Add): void {
  const result = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"]);
  if (result === null) return add("clock", "skip", "timedatectl is not installed: clock synchronization not checked (TOTP and token expiry need a right clock)");
  if (result.code !== 0) return add("clock", "skip", `timedatectl could not tell (${(result.stderr || result.stdout).trim().split("\n")[0] || `exit code ${result.code}`}): clock synchronization not checked`);
  if (result.stdout.trim() === "yes") return add("clock", "ok", "the system clock is synchronized (NTP)");
  add("clock", "warn", "the system clock is not NTP-synchronized: TOTP codes, token expiry and audit times depend on it", "timedatectl set-ntp true");
}

interface Listener {
  what: string;
  protocol: "tcp" | "udp";
  address: string;
}

/** The addresses Citadel listens on, as configured. */
function listeners(config: Config): Listener[] {
  const out: Listener[] = [];
  if (config.http.port !== 0) {
    const host = config.http.address.includes(":") ? `[${config.http.address}]` : config.http.address;
    out.push({ what: "HTTP API", protocol: "tcp", address: `${host}:${config.http.port}` });
  }
  const dns = sectionOf(config, "dns");
  for (const [key, protocol, what] of [
    ["udp", "udp", "DNS"],
    ["tcp", "tcp", "DNS"],
    ["resolver_udp", "udp", "DNS resolver"],
    ["resolver_tcp", "tcp", "DNS resolver"],
  ] as const) {
    for (const address of stringsAt(dns, key) ?? []) out.push({ what, protocol, address });
  }
  return out;
}

async function checkPorts({ config, server }: DoctorInputs, add: Add): Promise<void> {
  for (const l of listeners(config)) {
    const target = parseHostPort(l.address);
    const name = `${l.what} ${l.address}/${l.protocol}`;
    if (!target) {
      add("port", "fail", `${name}: not an address:port`, null);
      continue;
    }
    if (target.port === 0) {
      add("port", "skip", `${name}: port 0 (a random one each start)`);
      continue;
    }
    if (server.listener === "citadel") {
      // Citadel runs: the HTTP port answered as Citadel; a DNS UDP port is asked a real question below.
      if (l.what === "HTTP API") add("port", "ok", `${name}: held by this Citadel`);
      else if (l.protocol === "tcp") {
        const open = await tcpConnects(target.host, target.port);
        if (open) add("port", "ok", `${name}: listening`);
        else add("port", "fail", `${name}: nothing listens, though Citadel runs`, "journalctl -u citadel -n 50 (the listener's error is logged at start)");
      }
      continue;
    }
    if (server.listener === "other" && l.what === "HTTP API") {
      add("port", "fail", `${name}: ${server.error}`, whoHolds("tcp", target.port));
      continue;
    }
    const probe = await probePort(l.protocol, target.host, target.port);
    if (probe.state === "free") add("port", "ok", `${name}: free (Citadel is stopped)`);
    // Whether the server that answers is this Citadel could not be told (its certificate not
    // readable as this user): the port may be held by it, not by another program.
    else if (probe.state === "in_use" && server.listener === "unknown") add("port", "warn", `${name}: in use (by this Citadel, or another program: what answers could not be checked as this user)`, whoHolds(l.protocol, target.port));
    else if (probe.state === "in_use") add("port", "fail", `${name}: in use by another program, so Citadel cannot start`, whoHolds(l.protocol, target.port));
    else add("port", "warn", `${name}: ${probe.detail}`, probe.state === "denied" ? "setcap cap_net_bind_service=+ep $(command -v citadel) (or AmbientCapabilities=CAP_NET_BIND_SERVICE in the unit)" : null);
  }
}

function tcpConnects(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  const target = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
  return new Promise((resolve) => {
    const socket = createConnection({ host: target, port });
    const done = (result: boolean) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

async function checkDns({ config, server, db }: DoctorInputs, add: Add): Promise<void> {
  const addresses = stringsAt(sectionOf(config, "dns"), "udp") ?? [];
  if (addresses.length === 0) return;
  const address = addresses[0]!;
  if (server.listener !== "citadel") return add("dns", "skip", `DNS on ${address}/udp not asked: Citadel is not running`);
  const target = parseHostPort(address);
  if (!target || target.port === 0) return;
  const zone = db ? anyHostedZone(db) : null;
  const name = zone ?? "doctor.citadel.invalid.";
  let answer;
  try {
    answer = await queryUdp(target, name);
  } catch (error) {
    return add("dns", "warn", `could not ask ${address}/udp: ${error instanceof Error ? error.message : String(error)}`, null);
  }
  if (!answer) return add("dns", "fail", `no answer from ${address}/udp to ${name} SOA within 2 s`, "journalctl -u citadel -n 50 (and: citadel intel decisions, if the shield drops loopback)");
  const got = `${answer.rcode}${answer.authoritative ? " (authoritative)" : ""} in ${answer.ms} ms`;
  if (zone) {
    if (answer.rcode === "NOERROR" && answer.authoritative && answer.answers > 0) add("dns", "ok", `${address}/udp answers ${zone} SOA: ${got}`);
    else add("dns", "warn", `${address}/udp answered ${zone} SOA with ${got}, not an authoritative SOA`, `citadel dns zone show ${zone}`);
  } else if (answer.rcode === "REFUSED") add("dns", "ok", `${address}/udp answers: REFUSED for a name it does not serve, as it should (no zone hosted to ask for)`);
  else add("dns", "warn", `${address}/udp answered ${name} with ${got}; expected REFUSED`, null);
}

function checkAudit({ db, databaseProblem, config }: DoctorInputs, add: Add): void {
  if (!db) return add("audit", "skip", `${databaseProblem ? describeDatabaseProblem(databaseProblem) : "no database"}: no audit log to verify`);
  let report;
  try {
    report = verifyAuditChain(db);
  } catch (error) {
    return add("audit", "fail", `the audit log could not be read: ${error instanceof Error ? error.message : String(error)}`, `citadel audit verify --data ${shellQuote(config.data_dir)}`);
  }
  if (!report.ok) {
    const p = report.first_problem!;
    return add("audit", "fail", `the audit chain does not verify: event ${p.seq}${p.id ? ` (${p.id})` : ""}: ${p.problem}`, "compare with a checkpoint kept elsewhere (citadel audit verify --checkpoint FILE), then restore a backup from before the damage (citadel restore)");
  }
  const head = report.head ? `head ${report.head.seq} ${report.head.hash.slice(0, 16)}…` : "empty";
  add("audit", "ok", `${report.events} events verify, ${head}; ${report.checkpoints.verified} signed checkpoints (latest at ${report.checkpoints.latest_seq ?? "—"}), ${report.unsigned_tail} events after it`);
}

/**
 * `[audit.forward] to = "file"`: the forwarder makes the file in its directory, so that must be
 * there and writable, else nothing is forwarded (the log says so once a minute); a file already
 * there must be a regular file (through a link, as the forwarder opens it) it may append to.
 * Only this user's access can be tried; and outside the data directory the installed unit
 * (ProtectSystem=strict) lets Citadel write only where a ReadWritePaths= drop-in says.
 */
function checkAuditForwardFile({ config }: DoctorInputs, add: Add): void {
  if (config.audit.forward.to !== "file") return;
  const path = dataPath(config, config.audit.forward.file);
  const dir = dirname(path);
  const q = shellQuote(dir);
  const fromDataDir = relative(config.data_dir, dir);
  const outside = fromDataDir === ".." || fromDataDir.startsWith("../");
  const dropIn = outside ? `; under the installed unit, also: systemctl edit citadel, [Service] ReadWritePaths=${dir}` : "";
  const where = kindOf(dir); // not pathInfo, which adds up everything under it: / for file = "/"
  // Judged for the user Citadel runs as — the data directory's owner — by the modes, not for
  // whoever runs this doctor: root may write anywhere, which says nothing of the service.
  const service = ownerOf(config.data_dir);
  if (where === "unreadable" || !service) return add("audit_forward", "warn", `audit.forward.file ${path}: ${cannotLook(where === "unreadable" ? dir : config.data_dir)}`, AS_SERVICE_USER);
  if (where === "missing") return add("audit_forward", "warn", `audit.forward.file ${path}: the directory ${dir} does not exist, so nothing is forwarded`, `install -d -o citadel -m 750 ${q} (owned by the user Citadel runs as)${dropIn}`);
  if (where !== "directory") return add("audit_forward", "warn", `audit.forward.file ${path}: ${dir} is not a directory, so nothing is forwarded`, `set [audit.forward] file to a path in a directory`);
  const runsAs = `the user Citadel runs as (uid ${service.uid}, the owner of ${config.data_dir})`;
  if (!writableBy(dir, service)) return add("audit_forward", "warn", `audit.forward.file ${path}: ${dir} is not writable by ${runsAs}, so nothing is forwarded`, `chown ${service.uid} ${q}${dropIn}`);
  const file = kindOf(path);
  if (file === "unreadable") return add("audit_forward", "warn", `audit.forward.file ${path}: ${cannotLook(path)}`, AS_SERVICE_USER);
  if (file === "directory" || file === "other") {
    return add("audit_forward", "warn", `audit.forward.file ${path} is ${file === "directory" ? "a directory" : "not a regular file"}, so nothing is forwarded`, "set [audit.forward] file to the path of a file (made on the first event)");
  }
  if (file === "file" && !fileWritableBy(path, service)) {
    return add("audit_forward", "warn", `audit.forward.file ${path} (mode ${octal(statSync(path).mode & 0o777)}) is not writable by ${runsAs}, so nothing is forwarded`, `chown ${service.uid} ${shellQuote(path)}; chmod u+w ${shellQuote(path)}`);
  }
  const unit = outside ? `; under the installed unit (ProtectSystem=strict) Citadel writes there only with a drop-in: systemctl edit citadel, [Service] ReadWritePaths=${dir}` : "";
  const writable = file === "file" ? `the file and ${dir} are writable` : `${dir} is writable`;
  add("audit_forward", "ok", `audit.forward.file ${path}: ${writable} by ${runsAs}${unit}`);
}

/** What is at `path`, through a symbolic link (as the forwarder opens it). */
function kindOf(path: string): "file" | "directory" | "other" | "missing" | "unreadable" {
  try {
    const stat = statSync(path);
    return stat.isFile() ? "file" : stat.isDirectory() ? "directory" : "other";
  } catch (error) {
    return doesNotExist(error) ? "missing" : "unreadable";
  }
}

function ownerOf(path: string): { uid: number; gid: number } | null {
  try {
    const { uid, gid } = statSync(path);
    return { uid, gid };
  } catch {
    return null;
  }
}

/** Whether the modes of `dir` let `user` create files in it (its other groups are not known here). */
function writableBy(dir: string, user: { uid: number; gid: number }): boolean {
  return modesGrant(dir, user, 0o3);
}

/** Whether the modes of `file` let `user` write it (its other groups are not known here). */
function fileWritableBy(file: string, user: { uid: number; gid: number }): boolean {
  return modesGrant(file, user, 0o2);
}

/** Whether the owner's, the group's or the others' bits of `path`, whichever apply to `user`, hold all of `bits` (rwx = 7). */
function modesGrant(path: string, user: { uid: number; gid: number }, bits: number): boolean {
  const { uid, gid, mode } = statSync(path);
  const allows = (shift: number) => ((mode >> shift) & bits) === bits;
  return user.uid === 0 || (uid === user.uid ? allows(6) : gid === user.gid ? allows(3) : allows(0));
}

/** The backup directory: [backup] dir, relative to the data directory, else "backups" there. */
export function backupDir(config: Config): string {
  const dir = stringAt(sectionOf(config, "backup"), "dir") ?? "backups";
  return isAbsolute(dir) ? dir : join(config.data_dir, dir);
}

/**
 * The backups in `dir` by the time in their names (not their mtimes, which a copy changes):
 * the newest not dated ahead of `now` by more than the backup plugin's skew allowance — as its
 * schedule and the metrics take it — and those that are (named while the clock was ahead).
 * Throws when `dir` cannot be read.
 */
export function newestBackup(dir: string, now: number): { newest: { name: string; at: number } | null; count: number; ahead: string[] } {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    if (doesNotExist(error)) return { newest: null, count: 0, ahead: [] };
    throw error;
  }
  let newest: { name: string; at: number } | null = null;
  let count = 0;
  const ahead: string[] = [];
  for (const name of names) {
    const m = name.match(BACKUP_NAME);
    if (!m) continue;
    count++;
    const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
    const at = Date.UTC(y, mo - 1, d, h, mi, s);
    if (!notAhead(at, now)) ahead.push(name);
    else if (!newest || at > newest.at) newest = { name, at };
  }
  return { newest, count, ahead: ahead.sort() };
}

function checkBackups({ config, now }: DoctorInputs, add: Add): void {
  const backup = sectionOf(config, "backup");
  const dir = backupDir(config);
  const scheduled = backup.enabled === true;
  const interval = numberAt(backup, "interval_hours");
  const maxAgeHours = scheduled && interval ? 2 * interval : BACKUP_MAX_AGE_DAYS * 24;
  const schedule = scheduled ? "" : " ([backup] enabled = true makes one every interval_hours)";
  let found;
  try {
    found = newestBackup(dir, now);
  } catch {
    return add("backup", "warn", `${cannotLook(dir)}: backups not checked`, AS_SERVICE_USER);
  }
  const { newest, count, ahead } = found;
  // Reported besides the newest real backup's age, which they must not hide.
  if (ahead.length > 0) {
    add("backup", "warn", `${ahead.length} backup(s) dated in the future (${ahead.at(-1)}${ahead.length > 1 ? ", ..." : ""}): the clock was ahead when they were made, or is behind now; they do not count as the newest (scheduled backups go by the newest one not ahead of the clock)`, "check the clock (timedatectl)");
  }
  if (!newest) return add("backup", "warn", `no backup in ${dir}${ahead.length > 0 ? " not dated in the future" : ""}${schedule}`, "citadel backup (on the running server)");
  const hours = Math.max(0, now - newest.at) / 3_600_000; // (a backup within the skew allowance is "0.0 hours" old)
  const age = hours < 48 ? `${hours.toFixed(1)} hours` : `${(hours / 24).toFixed(1)} days`;
  const message = `newest backup ${newest.name} is ${age} old (${count} in ${dir})`;
  if (hours > maxAgeHours) add("backup", "warn", `${message}: older than ${maxAgeHours >= 48 ? `${maxAgeHours / 24} days` : `${maxAgeHours} hours`}${schedule}`, "citadel backup (on the running server)");
  else add("backup", "ok", message);
}

/**
 * Backups in the backup directory that another Citadel made: two instances given one [backup]
 * dir. Each lists, prunes, schedules by and reports in its metrics its own only (whose a backup
 * is, its manifest says: src/backup-maker.ts), but the names do not tell: the newest backup
 * above, which goes by names, counts the other's too, and a restore could take the wrong one.
 * Said only when there are any; the instance's id is read from the database (none: not checked).
 */
function checkOthersBackups({ config, db }: DoctorInputs, add: Add): void {
  const own = db ? instanceIdOf(db) : undefined;
  if (own === undefined) return;
  const dir = backupDir(config);
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => BACKUP_NAME.test(name));
  } catch {
    return; // the backup check above said why
  }
  const others = new Map<string, string[]>();
  for (const name of names) {
    const maker = backupMaker(join(dir, name));
    if (maker === undefined || maker === own) continue;
    others.set(maker ?? "unknown", [...(others.get(maker ?? "unknown") ?? []), name]);
  }
  if (others.size === 0) return;
  const count = [...others.values()].reduce((sum, list) => sum + list.length, 0);
  add(
    "backup_foreign",
    "warn",
    `${count} backup(s) in ${dir} are another Citadel's (instance ${[...others.keys()].join(", ")}): this one neither lists, prunes, schedules by nor counts them in its metrics, but the newest backup above goes by file names and counts them too`,
    "give each Citadel its own [backup] dir",
  );
}

/** This instance's id (the instance table); undefined when the database has none to tell. */
function instanceIdOf(db: Database): string | undefined {
  try {
    return db.query<{ id: string }, []>("SELECT id FROM instance").get()?.id;
  } catch {
    return undefined;
  }
}

/**
 * The backup directory must take the backups the server writes there: made by the user Citadel
 * runs as (the data directory's owner), so judged for that user by the modes — root running
 * this doctor may write anywhere, which says nothing of the service. Checked when backups are
 * scheduled (a failure then fails every one) or the directory is set; the default, in the data
 * directory, is made by the first backup. A directory not there yet is made by the first
 * backup, so the nearest one that is there must take it.
 */
function checkBackupDir({ config }: DoctorInputs, add: Add): void {
  const backup = sectionOf(config, "backup");
  const scheduled = backup.enabled === true;
  if (!scheduled && (stringAt(backup, "dir") ?? "backups") === "backups") return;
  const dir = backupDir(config);
  const q = shellQuote(dir);
  const service = ownerOf(config.data_dir);
  const existing = nearestExisting(dir);
  if (!service || existing === null) return add("backup_dir", "warn", `backup directory ${dir}: ${cannotLook(existing === null ? dir : config.data_dir)}`, AS_SERVICE_USER);
  const status = scheduled ? "fail" : "warn";
  const runsAs = `the user Citadel runs as (uid ${service.uid}, the owner of ${config.data_dir})`;
  if (!existing.directory) return add("backup_dir", status, `backup directory ${dir}: ${existing.path} is not a directory, so no backup can be made`, "set [backup] dir to a directory");
  const fromDataDir = relative(config.data_dir, dir);
  const outside = fromDataDir === ".." || fromDataDir.startsWith("../");
  const dropIn = outside ? `; under the installed unit, also: systemctl edit citadel, [Service] ReadWritePaths=${dir}` : "";
  if (!writableBy(existing.path, service)) {
    const made = existing.path === dir ? "" : ` (it does not exist; ${existing.path}, where it would be made, is not writable)`;
    return add("backup_dir", status, `backup directory ${dir} is not writable by ${runsAs}${made}, so no backup can be made`, `install -d -o ${service.uid} -m 700 ${q}${dropIn}`);
  }
  add("backup_dir", "ok", `backup directory ${dir} is writable by ${runsAs}${outside ? "; under the installed unit Citadel writes there only with a ReadWritePaths= drop-in" : ""}`);
}

/**
 * A decrypted copy of a backup that a restore killed before its swap left in the data
 * directory (src/restore-marker.ts): the whole database in clear, out of reach of any erasure.
 * Citadel's next start removes it; said only when there is one.
 */
function checkRestoreCopies({ config }: DoctorInputs, add: Add): void {
  const copies = abandonedRestoreCopies(config.data_dir);
  if (copies.length === 0) return;
  add(
    "restore_copy",
    "warn",
    `${copies.join(", ")} in ${config.data_dir}: a decrypted copy of a backup (emails, password hashes, personal data in clear, out of reach of any erasure) left by a restore that did not finish`,
    `rm ${copies.map((name) => shellQuote(join(config.data_dir, name))).join(" ")}  (or start Citadel: its start removes it)`,
  );
}

/** `path` or its nearest ancestor that exists, and whether that is a directory; null when this user cannot look. */
function nearestExisting(path: string): { path: string; directory: boolean } | null {
  for (let at = path; ; at = dirname(at)) {
    try {
      return { path: at, directory: statSync(at).isDirectory() };
    } catch (error) {
      if (!doesNotExist(error)) return null;
      if (dirname(at) === at) return null;
    }
  }
}
