/**
 * What this machine's CLI has seen of end-to-end-encrypted workspaces, so that a server that
 * later lies about them is caught instead of obeyed (trust on first use, like SSH's
 * known_hosts):
 *
 * - a workspace once used encrypted stays encrypted here: when the server says it is not, the
 *   CLI refuses to send or read values in the clear, since that is how a malicious or
 *   compromised server would read them (`citadel secrets e2ee forget` accepts a workspace
 *   whose encryption was really turned off, which is only possible while it holds no secrets);
 * - each workspace key version, once unwrapped here (or made here), is remembered by its
 *   SHA-256: a server handing a different key for a version it handed before — one it wrapped
 *   itself to the member's public key, to read what is encrypted with it — is refused;
 * - the newest key version seen is remembered too: a server calling an older key current
 *   again (one a removed member still holds) is refused, under its old number or a new one;
 * - each member's public key, once a workspace key was sent wrapped to it (grant, rotate), is
 *   remembered: a server handing another public key for that member later — its own, to read
 *   the workspace key wrapped to it — is refused (`citadel secrets e2ee forget --user` forgets
 *   it when the member really made a new key pair).
 *
 * A member never seen here is not taken on the server's word: the commands ask for the
 * fingerprint checked with them (commands.ts, requireCheckedKeys). What this cannot catch: a
 * server that lies from the start to a machine that never saw the workspace, or hands a key
 * of its own as a new version (docs/secrets.md, "What end-to-end encryption protects against"). Kept in <config home>/citadel/e2ee-pins.json, mode 0600, by server origin and
 * workspace (members by server origin and user id); it holds fingerprints and public keys,
 * never a secret one. Concurrent CLI runs take turns (src/file-lock.ts), so none loses
 * another's pins.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { FileLockTimeout, withFileLock, type NotAPromise } from "../../src/file-lock.ts";
import { writeFileAtomic } from "../../src/files.ts";
import { publicKeyFingerprint } from "./e2ee.ts";

interface WorkspacePins {
  /** SHA-256 (hex) of each key version seen, by version. */
  keys: Record<string, string>;
  /** The newest key version the server called current. */
  newest?: number;
  /** The public key (base64url) of each member this machine sent the workspace's key to, by user id. */
  members?: Record<string, string>;
}

interface PinFile {
  servers: Record<string, Record<string, WorkspacePins>>;
}

export class E2eePinError extends Error {
  override readonly name = "E2eePinError";
}

export class E2eePins {
  constructor(private readonly path: string) {}

  static forCli(configHome: string): E2eePins {
    return new E2eePins(join(configHome, "citadel", "e2ee-pins.json"));
  }

  /** Throws unless the server's word that `workspace` is not encrypted agrees with what this machine saw. */
  checkNotEncrypted(server: string, workspace: string): void {
    checkId(workspace);
    if (own(own(this.read().servers, originOf(server)), workspace) === undefined) return;
    throw new E2eePinError(
      `the server says workspace ${workspace} is not end-to-end encrypted, but this machine has used it encrypted: refusing to send or read its values in the clear. ` +
        `If its encryption was turned off on purpose (possible only while it holds no secrets), run: citadel secrets e2ee forget -w ${workspace}`,
    );
  }

  /** Remembers that `workspace` is encrypted. */
  pin(server: string, workspace: string): void {
    this.update(server, workspace, () => false);
  }

  /** Remembers `key` as version `version`'s; throws when another key was seen for that version. */
  pinKey(server: string, workspace: string, version: number, key: Uint8Array): void {
    checkVersion(version);
    const fingerprint = createHash("sha256").update(key).digest("hex");
    this.update(server, workspace, (pins) => {
      const known = pins.keys[String(version)];
      if (known === fingerprint) return false;
      if (known !== undefined) {
        throw new E2eePinError(
          `the server handed a different key for version ${version} of workspace ${workspace} than it did before: refusing to use it (a server that substitutes keys could read what is encrypted with them). Tell your administrator.`,
        );
      }
      // A wrapped key does not name its version: an old key (which a removed member holds)
      // handed as a new version is caught by its fingerprint.
      const earlier = Object.entries(pins.keys).find(([, seen]) => seen === fingerprint)?.[0];
      if (earlier !== undefined) {
        throw new E2eePinError(`the server handed version ${earlier} of workspace ${workspace}'s key as version ${version}: refusing to encrypt with an old key (members removed since may hold it). Tell your administrator.`);
      }
      pins.keys[String(version)] = fingerprint;
      return true;
    });
  }

  /** Checks the version the server calls current against the newest seen (it never goes back), and remembers it. */
  checkCurrent(server: string, workspace: string, version: number): void {
    checkVersion(version);
    this.update(server, workspace, (pins) => {
      if (pins.newest !== undefined && version < pins.newest) {
        throw new E2eePinError(
          `the server calls version ${version} of workspace ${workspace}'s key current, but this machine has seen version ${pins.newest}: refusing to encrypt with an older key (members removed since may hold it). Tell your administrator.`,
        );
      }
      if (pins.newest === version) return false;
      pins.newest = version;
      return true;
    });
  }

  /** A key made on this machine as the workspace's new current version: the server cannot swap it later, nor call an older one current. */
  pinNewKey(server: string, workspace: string, version: number, key: Uint8Array): void {
    this.pinKey(server, workspace, version, key);
    this.checkCurrent(server, workspace, version);
  }

  /**
   * What this machine knows of the public key the server hands for `user` in `workspace`:
   * "checked" when this machine sent the workspace's key to that very key before, "unchecked"
   * when it never sent it to them (the fingerprint must then be checked with the member).
   * Throws when it sent it to another key of theirs: a substitution. Remembers nothing.
   */
  memberKey(server: string, workspace: string, user: string, publicKey: string): "checked" | "unchecked" {
    checkId(workspace);
    checkId(user);
    const pins = own(own(this.read().servers, originOf(server)), workspace);
    return checkedAgainst(own(pins?.members, user), user, publicKey);
  }

  /**
   * Remembers the public keys the workspace's key was just sent to, and forgets `removed` (a
   * member left out of a rotation is a stranger again: never re-added on the server's word).
   * A different key another process pinned meanwhile is refused.
   */
  pinMembers(server: string, workspace: string, keys: ReadonlyArray<{ user: string; publicKey: string }>, removed: readonly string[] = []): void {
    checkId(workspace);
    for (const id of [...keys.map((k) => k.user), ...removed]) checkId(id);
    this.update(server, workspace, (pins) => {
      const members = (pins.members ??= {});
      let changed = false;
      for (const user of removed) changed = delete members[user] || changed;
      for (const { user, publicKey } of keys) {
        if (checkedAgainst(own(members, user), user, publicKey) === "checked") continue;
        members[user] = publicKey;
        changed = true;
      }
      return changed;
    });
  }

  /** Forgets the public keys seen for `user` in every workspace of this server (they made a new key pair); true when one was known. */
  forgetMember(server: string, user: string): boolean {
    checkId(user);
    return this.locked(() => {
      const file = this.read();
      let forgotten = false;
      for (const pins of Object.values(own(file.servers, originOf(server)) ?? {})) {
        if (own(pins.members, user) !== undefined) forgotten = delete pins.members![user];
      }
      if (forgotten) this.write(file);
      return forgotten;
    });
  }

  /** Forgets `workspace` (its encryption was turned off on purpose); true when it was known. */
  forget(server: string, workspace: string): boolean {
    checkId(workspace);
    return this.locked(() => {
      const file = this.read();
      const workspaces = own(file.servers, originOf(server));
      if (workspaces === undefined || own(workspaces, workspace) === undefined) return false;
      delete workspaces[workspace];
      this.write(file);
      return true;
    });
  }

  /** Applies `change` to the workspace's pins (made when new), writing only what changed. */
  private update(server: string, workspace: string, change: (pins: WorkspacePins) => boolean): void {
    checkId(workspace);
    this.locked(() => {
      const file = this.read();
      const workspaces = (file.servers[originOf(server)] ??= {});
      const isNew = workspaces[workspace] === undefined;
      const changed = change((workspaces[workspace] ??= { keys: {} }));
      if (isNew || changed) this.write(file);
    });
  }

  private locked<T>(fn: () => NotAPromise<T>): T {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    try {
      return withFileLock(this.path, fn);
    } catch (error) {
      if (error instanceof FileLockTimeout) throw new E2eePinError(error.message);
      throw error;
    }
  }

  private read(): PinFile {
    if (!existsSync(this.path)) return { servers: {} };
    try {
      const parsed = JSON.parse(readFileSync(this.path, "utf8")) as PinFile;
      if (typeof parsed?.servers !== "object" || parsed.servers === null) throw new Error("no servers");
      if (!membersAreKeys(parsed)) throw new Error("a member's entry is not a public key");
      return parsed;
    } catch {
      // Not silently treated as empty: that would forget every pin.
      throw new E2eePinError(`${this.path} is not a valid pin file: fix or remove it (removing it forgets which workspaces this machine saw encrypted)`);
    }
  }

  private write(file: PinFile): void {
    writeFileAtomic(this.path, `${JSON.stringify(file, null, 2)}\n`, 0o600);
  }
}

function checkedAgainst(known: string | undefined, user: string, publicKey: string): "checked" | "unchecked" {
  if (known === undefined) return "unchecked";
  if (known === publicKey) return "checked";
  throw new E2eePinError(
    `the server hands a different public key for ${user} (fingerprint ${publicKeyFingerprint(publicKey)}) than the one this machine wrapped keys to before (${publicKeyFingerprint(known)}): refusing to wrap the workspace key to it (a server that substitutes public keys could read the workspace). ` +
      `If ${user} made a new key pair, run: citadel secrets e2ee forget --user ${user}, then grant again with the fingerprint they read out (citadel secrets e2ee fingerprint).`,
  );
}

function membersAreKeys(file: PinFile): boolean {
  return Object.values(file.servers).every(
    (workspaces) =>
      typeof workspaces === "object" &&
      workspaces !== null &&
      Object.values(workspaces).every((pins) => pins?.members === undefined || (typeof pins.members === "object" && pins.members !== null && Object.values(pins.members).every((key) => typeof key === "string" && /^[A-Za-z0-9_-]{43}$/.test(key)))),
  );
}

/** An own property only: an id such as `__proto__` must never reach Object.prototype. */
function own<T>(record: Record<string, T> | undefined, key: string): T | undefined {
  return record !== undefined && Object.hasOwn(record, key) ? record[key] : undefined;
}

/** Workspace and user ids as Citadel makes them (a prefix, `_`, letters and digits): nothing a JSON object would treat specially. */
function checkId(id: string): void {
  if (!/^[a-z]+_[A-Za-z0-9_]+$/.test(id)) throw new E2eePinError(`${JSON.stringify(id)} is not a workspace or user id`);
}

/** A fingerprint as a person typed it: spaces around it, or without `SHA256:`, or with base64 padding. */
export function normalizeFingerprint(text: string): string {
  const body = text.trim().replace(/^SHA256:/i, "").replace(/=+$/, "");
  return `SHA256:${body}`;
}

/** One server however its URL is written (case of the host, a trailing slash, a path). */
function originOf(server: string): string {
  return new URL(server).origin;
}

function checkVersion(version: number): void {
  if (!Number.isSafeInteger(version) || version < 1) throw new E2eePinError(`the server named key version ${JSON.stringify(version)}, which is not one`);
}
