/**
 * What a node keeps between runs, in its state directory (mode 0700, files 0600):
 *
 *   node.json      who it is: server, its public key pin and certificate, node token, the control plane's
 *                  signing key, its WireGuard private key (and the next one while rotating)
 *   node.json.lock the lock the agent and `citadel mesh rotate` take turns on to change node.json
 *   config.json    the last config document it applied, with its signature (checked again on
 *                  load, so a file edited on disk is not applied after a reboot)
 *   <if>.conf      the same config for wg-quick, private key included (for operators who
 *                  prefer wg-quick to the agent)
 *   control-plane-addresses.json
 *                  the addresses the control plane's name (or its proxy's) last resolved to, kept
 *                  outside an exit node's tunnel while it does not resolve (outside-tunnel.ts)
 *
 * The private key is generated here and never sent anywhere.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../../src/files.ts";
import { isLoopbackHost } from "../../src/net/ip.ts";
import { CONFIG_FORMAT, type ConfigDocument } from "./configs.ts";
import { verifySignature } from "./signing.ts";

export const DEFAULT_STATE_DIR = "/var/lib/citadel-mesh";

export interface NodeState {
  server: string;
  /**
   * The server's certificate (PEM) last seen over the pinned key (`pin`): pinned as it is at
   * once, with no look at what the server presents first (see src/cli/pin.ts,
   * withPinnedCertificate); the agent keeps the one the server renewed it with once it answered
   * over it. Null for a publicly trusted server, or none seen yet. Join pinned a certificate so,
   * alone, before pins named the key: it is trusted by its key, and the agent adds `pin`.
   */
  certificate: string | null;
  /** The server's public key pin (sha256//..., see src/cli/pin.ts) taken at join; absent or null for a publicly trusted one. */
  pin?: string | null;
  node_id: string;
  network_id: string;
  network: string;
  name: string;
  /** The WireGuard interface here: the network's suggestion unless join was given --interface. */
  interface: string;
  token: string;
  /** The control plane's Ed25519 public key: only configs it signed are applied. */
  signing_key: string;
  private_key: string;
  /** While rotating: the key the node switches to once the control plane says so. */
  next_private_key: string | null;
  /**
   * After a switch, until the control plane answers that it knows of it: the key switched from,
   * gone back to should the rotation have ended there first (see Agent.report). Absent in older files.
   */
  previous_private_key?: string | null;
  /** The newest config version applied; an older one is refused (a replay). */
  applied_version: number;
  /**
   * The node this one replaced in this state directory (`join --force`) when it had the same
   * interface: the agent takes that link over (see Agent.ownInterface). Absent in older files.
   */
  former_node?: { id: string; public_key: string | null } | null;
  /**
   * The nodes replaced before that one, newest first, on the same interface: a `join --force`
   * whose agent never ran left the link marked as one of them (found in review: a second
   * `--force` in a row refused the link as foreign). At most MAX_EARLIER_NODES. Absent in older files.
   */
  earlier_nodes?: Array<{ id: string; public_key: string | null }>;
}

export const MAX_EARLIER_NODES = 8;

export interface StoredConfig {
  body: string;
  signature: string;
}

export class StateError extends Error {
  override readonly name = "StateError";
}

/**
 * Makes the state directory, owner-only (0700), when it does not exist. One that exists is left
 * as it is: its mode is the operator's (join refuses one others may enter, see prepareStateDir),
 * and a failed join must not leave a shared directory changed.
 */
export function ensureStateDir(dir: string): void {
  if (mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dir, 0o700);
}

/** A directory that exists and that others than its owner may enter or read: not for a private key. */
export class OpenStateDirError extends StateError {}

/**
 * Makes the state directory and proves it writable (a probe file written and removed): `join`
 * calls it before it enrolls, since a node enrolled without its state is lost — its private key
 * gone, the single-use key spent, its name taken. An existing directory others may enter is
 * refused, not made private: it may be shared, and it is to hold the node's private key.
 */
export function prepareStateDir(dir: string): void {
  const found = existsSync(dir) ? statSync(dir) : null;
  const mode = found?.isDirectory() ? found.mode & 0o777 : null;
  if (mode !== null && (mode & 0o077) !== 0) {
    throw new OpenStateDirError(`the state directory ${dir} exists and others may enter it (mode ${mode.toString(8)}): it is to hold the node's private key. Give a new directory (--state), or make this one owner-only (chmod 700 ${dir})`);
  }
  const probe = join(dir, `.probe-${process.pid}-${Buffer.from(crypto.getRandomValues(new Uint8Array(6))).toString("hex")}`);
  try {
    ensureStateDir(dir);
    writeFileSync(probe, "", { mode: 0o600, flag: "wx" });
    rmSync(probe);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error instanceof Error ? error.message : String(error));
    throw new StateError(`cannot write the state directory ${dir} (${reason}): run as root, or give another --state`);
  }
}

/** The node's state file: its keys, token and the control plane it enrolled with. */
export function statePath(dir: string): string {
  return join(dir, "node.json");
}

export function readState(dir: string): NodeState {
  const path = statePath(dir);
  if (!existsSync(path)) throw new StateError(`${path} does not exist: enroll this node first (citadel mesh join --server URL --key KEY --state ${dir})`);
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) throw new StateError(`${path} is readable by others (mode ${mode.toString(8)}): it holds the node's private key and token. Run: chmod 600 ${path}, and if anyone may have read it, have the node removed (citadel mesh nodes delete <network> <node>) and enroll it again: a key rotation keeps the token`);
  try {
    return JSON.parse(readFileSync(path, "utf8")) as NodeState;
  } catch {
    throw new StateError(`${path} is not valid JSON`);
  }
}

/**
 * What to tell of a node enrolled over http:// with another machine, before join refused such
 * a server: it polls with its token in the clear. Told, not refused: stopping the agent would
 * cut the node off the mesh. Null for a node that talks HTTPS (or plain HTTP on loopback).
 */
export function plainHttpWarning(dir: string, state: NodeState): string | null {
  const server = URL.parse(String(state.server));
  if (server === null || server.protocol !== "http:" || isLoopbackHost(server.hostname)) return null;
  return `mesh: warning: this node talks to its control plane ${server.origin} over plain HTTP (it enrolled so before join refused it): its node token crosses the network in the clear at every poll, and anyone on the way may use it as this node's (the configs are signed: they cannot be changed on the way, but can be read). Kept running, as stopping would cut the node off the mesh. Enroll it again over HTTPS: citadel mesh join --server https://${server.hostname}:PORT --key KEY --state ${dir} --force, then remove the old node (citadel mesh nodes delete <network> <node>)`;
}

export function writeState(dir: string, state: NodeState): void {
  ensureStateDir(dir);
  writeFileAtomic(statePath(dir), `${JSON.stringify(state, null, 2)}\n`, 0o600);
}

/** The last applied config, if its signature still checks out; null when there is none. */
export function readStoredConfig(dir: string, state: NodeState): ConfigDocument | null {
  const path = join(dir, "config.json");
  if (!existsSync(path)) return null;
  const stored = JSON.parse(readFileSync(path, "utf8")) as StoredConfig;
  return verifyDocument(state, stored.body, stored.signature);
}

export function writeStoredConfig(dir: string, stored: StoredConfig): void {
  writeFileAtomic(join(dir, "config.json"), `${JSON.stringify(stored)}\n`, 0o600);
}

export function writeWgQuick(dir: string, interfaceName: string, text: string): string {
  const path = join(dir, `${interfaceName}.conf`);
  writeFileAtomic(path, text, 0o600);
  return path;
}

/**
 * Deletes the stored config and the wg-quick file (a node cut off): neither the agent at its
 * next start nor wg-quick at boot brings the mesh back. The wg-quick file goes, not only its
 * peers: it also holds the private key.
 */
export function forgetConfig(dir: string, interfaceName: string): void {
  rmSync(join(dir, "config.json"), { force: true });
  rmSync(join(dir, `${interfaceName}.conf`), { force: true });
}

/**
 * Checks a document before anything in it is believed: signed by the control plane this node
 * enrolled with, for this node, in the format this agent knows.
 */
export function verifyDocument(state: Pick<NodeState, "signing_key" | "node_id">, body: string, signature: string | null): ConfigDocument {
  if (!signature || !verifySignature(state.signing_key, body, signature)) throw new StateError("the config is not signed by the control plane this node enrolled with: refusing it");
  const doc = JSON.parse(body) as ConfigDocument;
  if (doc.format !== CONFIG_FORMAT) throw new StateError(`the config's format ${JSON.stringify(doc.format)} is not ${CONFIG_FORMAT}: update citadel on this node`);
  if (doc.node !== state.node_id) throw new StateError("the config is signed but for another node: refusing it");
  return doc;
}
