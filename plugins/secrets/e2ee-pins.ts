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
 *   itself to the member's public key, to read what is encrypted with it — is refused.
 *
 * What it cannot catch: a server that lies from the start, to a machine that never saw the
 * workspace, or hands a key of its own as a new version (docs/secrets.md, "What end-to-end
 * encryption protects against"). Kept in <config home>/citadel/e2ee-pins.json, mode 0600, by
 * server URL and workspace; it holds fingerprints, never keys.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../../src/files.ts";

interface PinFile {
  servers: Record<string, Record<string, { keys: Record<string, string> }>>;
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
    if (this.read().servers[server]?.[workspace] === undefined) return;
    throw new E2eePinError(
      `the server says workspace ${workspace} is not end-to-end encrypted, but this machine has used it encrypted: refusing to send or read its values in the clear. ` +
        `If its encryption was turned off on purpose (possible only while it holds no secrets), run: citadel secrets e2ee forget -w ${workspace}`,
    );
  }

  /** Remembers that `workspace` is encrypted (and, with a key, that key for `version`); throws when a different key was seen for that version. */
  pin(server: string, workspace: string, version?: number, key?: Uint8Array): void {
    const file = this.read();
    const workspaces = (file.servers[server] ??= {});
    let changed = workspaces[workspace] === undefined;
    const pinned = (workspaces[workspace] ??= { keys: {} });
    if (version !== undefined && key !== undefined) {
      const fingerprint = createHash("sha256").update(key).digest("hex");
      const known = pinned.keys[String(version)];
      if (known !== undefined && known !== fingerprint) {
        throw new E2eePinError(
          `the server handed a different key for version ${version} of workspace ${workspace} than it did before: refusing to use it (a server that substitutes keys could read what is encrypted with them). Tell your administrator.`,
        );
      }
      if (known === undefined) {
        pinned.keys[String(version)] = fingerprint;
        changed = true;
      }
    }
    if (changed) this.write(file);
  }

  /** Forgets `workspace` (its encryption was turned off on purpose); true when it was known. */
  forget(server: string, workspace: string): boolean {
    const file = this.read();
    if (file.servers[server]?.[workspace] === undefined) return false;
    delete file.servers[server]![workspace];
    this.write(file);
    return true;
  }

  private read(): PinFile {
    if (!existsSync(this.path)) return { servers: {} };
    try {
      const parsed = JSON.parse(readFileSync(this.path, "utf8")) as PinFile;
      if (typeof parsed?.servers !== "object" || parsed.servers === null) throw new Error("no servers");
      return parsed;
    } catch {
      // Not silently treated as empty: that would forget every pin.
      throw new E2eePinError(`${this.path} is not a valid pin file: fix or remove it (removing it forgets which workspaces this machine saw encrypted)`);
    }
  }

  private write(file: PinFile): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    writeFileAtomic(this.path, `${JSON.stringify(file, null, 2)}\n`, 0o600);
  }
}
