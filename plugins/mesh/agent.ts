/**
 * `citadel mesh agent`: keeps this node's WireGuard interface equal to the config the control
 * plane signed for it.
 *
 * Each round: fetch the config (If-None-Match: an unchanged config is a 304), check its
 * signature, node and version, then apply it — the interface (created when missing: the kernel
 * module, else wireguard-go), `wg syncconf` (peers added, changed and removed without
 * disturbing the others' sessions; endpoint names resolved here first, so that one peer's
 * name cannot fail the whole file), addresses and MTU, the nftables table — and report the
 * applied version. The last applied config is kept, so after a reboot the node comes up with
 * its mesh before the control plane answers; a failure to reach the control plane keeps it
 * too. Only a definitive refusal of the node (its token no longer valid, the node disabled or
 * expired, its organization deleted) cuts the node off the mesh (see cutOff).
 *
 * Key rotation with overlap, from both ends:
 * - the rotating node (`citadel mesh rotate`) keeps its next key aside and announces it; peers
 *   get it as a second [Peer] without AllowedIPs, which lets them accept handshakes from it;
 *   once every peer has applied that (the document's `rotation.switch`), the node switches its
 *   private key, sends a packet to each peer so the handshakes happen now, and reports the new
 *   key, which completes the rotation (the key switched from is kept until then: should the
 *   rotation have ended on the control plane first, the node goes back to it, see report);
 * - a peer that holds both keys gives the AllowedIPs to whichever key handshook last (checked
 *   every second while a rotation is in its config), so traffic follows the switch at once.
 */
import { createSocket } from "node:dgram";
import { ApiError } from "../../src/cli/api-client.ts";
import { cidrWithin, formatIp, networkOf, parseCidr, type Cidr, type IpAddress } from "../../src/net/ip.ts";
import { readFileSync, writeFileSync } from "node:fs";
import { formerNftablesTableInterface, nftablesTableName, renderNftables, renderSetconf, renderWgQuick, retireNftablesTable } from "./render.ts";
import { certificateSeen, keyPinOf, proxyFor, storedTrust } from "../../src/cli/pin.ts";
import { withFileLock } from "../../src/file-lock.ts";
import * as device from "./device.ts";
import { ExitClaim } from "./exit-claim.ts";
import { applyExitRouting, ExitRoutingConflictError } from "./exit-routing.ts";
import { LOOKUP_TIMEOUT_MS, lookupHost, resolveEndpoints, type LookupHost, type UnresolvedEndpoint } from "./endpoints.ts";
import { publicKeyOf } from "./keys.ts";
import { OutsideTunnel } from "./outside-tunnel.ts";
import { fetchConfig, nodeRequest, NodeRefusedError, type ConfigFetch, type NodeConnection } from "./node-client.ts";
import { forgetConfig, plainHttpWarning, readState, readStoredConfig, statePath, verifyDocument, writeState, writeStoredConfig, writeWgQuick, StateError, type NodeState } from "./node-state.ts";
import type { ConfigDocument } from "./configs.ts";
import type { NodeConfig } from "./types.ts";

export interface AgentOptions {
  stateDir: string;
  dryRun: boolean;
  firewall: boolean;
  userspace?: string;
  err(text: string): void;
  /** Runs ip, wg and nft (default: the real tools; tests give a fake device). */
  run?: device.RunCommand;
  /** Resolves peers' endpoint names (default: the system's resolver). */
  lookupHost?: LookupHost;
  /** Where the claim on the host's exit routing is kept (default /run/citadel-mesh; see exit-claim.ts). */
  exitClaimDirectory?: string;
}

export interface RoundResult {
  /** True when the device was changed (or, in a dry run, would be). */
  changed: boolean;
  version: number | null;
  /** In a dry run: what applying would do. */
  plan?: DryRunPlan;
}

/** What applying a config would change on this node (--dry-run), as data for text or --json. */
export interface DryRunPlan {
  version: number;
  node: string;
  network: string;
  interface: string;
  /** The interface does not exist yet: applying creates it. */
  create: boolean;
  /** The WireGuard device's diff, one "+ …" / "- …" line per change, a changed peer's under its "  peer KEY (name)"; empty when equal. */
  wireguard: string[];
  addresses: string[];
  mtu: number;
  /** The nftables table to load; null with --no-firewall. `masquerade`: the routes whose traffic from the mesh it masquerades (empty: none). */
  firewall: { rules: number; deny_by_default: boolean; masquerade: string[] } | null;
  relay: boolean;
  rotation: "switch_next_round" | "waiting_for_peers" | null;
  /** The exit node it sends its internet traffic through; `via` null: the one it chose is not usable (blocked). Null: none. */
  exit?: { via: string | null } | null;
}

/** The plan as the agent's text output. */
export function describePlan(plan: DryRunPlan): string {
  const lines = [`config version ${plan.version} for ${plan.node} in ${plan.network} (interface ${plan.interface}${plan.create ? ", to be created" : ""}):`];
  lines.push(plan.wireguard.length === 0 ? "  WireGuard: no changes" : plan.wireguard.map((l) => `  ${l}`).join("\n"));
  lines.push(`  addresses: ${plan.addresses.join(", ")}, MTU ${plan.mtu}`);
  if (plan.firewall) lines.push(`  firewall: nftables table for ${plan.interface} (${plan.firewall.deny_by_default ? `${plan.firewall.rules} rule(s), deny by default` : "no ACL: accept all from the mesh"})`);
  if (plan.firewall && plan.firewall.masquerade.length > 0) lines.push(`  masquerade: what the mesh sends to ${plan.firewall.masquerade.join(", ")} leaves with this node's address there`);
  if (plan.relay) lines.push("  relay: IP forwarding on (this node is a hub)");
  if (plan.exit) lines.push(plan.exit.via === null ? "  exit node: the one chosen is not usable: internet traffic blocked" : `  exit node: internet traffic through ${plan.exit.via} (the tunnel's own packets and the control plane stay outside)`);
  if (plan.rotation) lines.push(`  key rotation: ${plan.rotation === "switch_next_round" ? "peers are ready, the next round switches" : "waiting for peers to accept the next key"}`);
  return lines.join("\n");
}

export class Agent {
  private state: NodeState;
  private etag: string | null = null;
  private current: ConfigDocument | null = null;
  private readonly run: device.RunCommand;
  private readonly lookupHost: LookupHost;
  /** What an exit node's tunnel leaves out for the control plane to stay reachable. */
  private readonly outside: OutsideTunnel;
  /** The stored config while applying it at start failed and no config has been fetched since. */
  private unappliedStored: ConfigDocument | null = null;
  /** Peers' endpoints the device was last given without an address, as unresolvable ("public key, endpoint"); warned about once. */
  private warnedUnresolved = new Set<string>();
  /** Subnet routes left to what routes them already ("route reason"); warned about once while they stay so. */
  private warnedRoutes = new Set<string>();
  /** When the firewall, addresses and device were last made so whole (apply or repair). */
  private repairedAt = 0;
  /** "blocked": it said the exit node chosen is not usable (said once while it stays so). */
  private warnedExit: "blocked" | null = null;
  /** Held while this agent's exit routing is on the host: one agent of a host routes through an exit node. */
  private readonly exitClaim: ExitClaim;
  /** Why the exit node this node chose is not routed through on this host (another agent is); null when it is, or none is chosen. */
  private exitRefused: string | null = null;
  /** What the control plane last heard of it (see report); undefined before the first report. */
  private reportedExitRefused: string | null | undefined = undefined;

  constructor(private readonly options: AgentOptions) {
    this.state = readState(options.stateDir);
    const inTheClear = plainHttpWarning(options.stateDir, this.state);
    if (inTheClear) options.err(inTheClear);
    this.run = options.run ?? device.runCommand;
    this.lookupHost = options.lookupHost ?? lookupHost;
    this.outside = new OutsideTunnel({ stateDir: options.stateDir, lookupHost: this.lookupHost, err: options.err });
    this.exitClaim = new ExitClaim({ directory: options.exitClaimDirectory, run: this.run, err: options.err });
  }

  private get connection(): NodeConnection {
    const { server, pin, certificate, token } = this.state;
    const trust = storedTrust(pin, certificate) ?? null;
    if (trust === null) return { server, trust, token };
    return { server, trust, token, answeredOverPin: () => this.keepCertificateSeen(trust) };
  }

  /**
   * Keeps, with the pin, the certificate over the pinned key the control plane answered over,
   * once it renewed it (or, for a node that pinned a certificate before pins named the key, the
   * key pin too): the next start pins it at once, with no look at the server first (found in
   * review: the look, routed apart from fetch, left nodes out that worked). Written only when it
   * changed; best effort: the certificate kept before, trusted by its key, still works.
   */
  private keepCertificateSeen(trust: string): void {
    const certificate = certificateSeen(this.state.server, trust);
    if (certificate === undefined || (certificate === this.state.certificate && this.state.pin)) return;
    try {
      this.updateState((state) => {
        if (storedTrust(state.pin, state.certificate) !== trust) return; // re-joined meanwhile
        state.pin = keyPinOf(trust);
        state.certificate = certificate;
      });
    } catch (error) {
      this.options.err(`mesh agent: could not keep the control plane's certificate in ${statePath(this.options.stateDir)} (${error instanceof Error ? error.message : String(error)}); the one kept before, trusted by its key, still works`);
    }
  }

  /** After a reboot: the stored config, applied before the control plane is asked. */
  async applyStored(): Promise<boolean> {
    const stored = readStoredConfig(this.options.stateDir, this.state);
    if (!stored) return false;
    this.current = stored;
    this.unappliedStored = stored;
    await this.apply(stored);
    this.unappliedStored = null;
    return true;
  }

  /**
   * A stored config that failed at start (nft not ready at boot) is tried again at each round
   * the control plane cannot answer: else the interface would stay down for as long as it is
   * unreachable, which is when the stored config matters.
   */
  private async applyStoredAgain(): Promise<void> {
    const stored = this.unappliedStored;
    if (!stored || this.options.dryRun) return;
    try {
      await this.apply(stored);
      this.unappliedStored = null;
      this.options.err("mesh agent: applied the stored config");
    } catch (error) {
      this.options.err(`mesh agent: the stored config was not applied: ${error instanceof Error ? error.message : String(error)} (retrying at the next round)`);
    }
  }

  /**
   * Changes the state file from its current content: `citadel mesh rotate` (another process)
   * may have written the next key since this agent last read it. The read and the write are
   * made under the state file's lock, so that two processes changing it at the same moment
   * take turns instead of one erasing the other's change (a new next key lost would leave the
   * node switching to a key no peer lists).
   */
  private updateState(change: (state: NodeState) => void): void {
    this.state = withFileLock(statePath(this.options.stateDir), () => {
      const fresh = readState(this.options.stateDir);
      change(fresh);
      writeState(this.options.stateDir, fresh);
      return fresh;
    });
  }

  /** One round: fetch, verify, apply (or show the diff). */
  async round(): Promise<RoundResult> {
    this.state = readState(this.options.stateDir);
    const fetched = await this.fetch().catch(async (error: unknown) => {
      await this.applyStoredAgain();
      throw error;
    });
    if (fetched.status === 304) {
      if (!this.current) return { changed: false, version: null };
      // During a rotation this runs every second: only the device follows then (a peer's
      // AllowedIPs move to the key that handshook last); reloading every peer's nftables table
      // every second, for as long as the rotation lasts, is left to the usual pace below.
      if (this.overlapInProgress() && !this.repairDue()) return { changed: await this.followHandshakes(this.current), version: this.current.version };
      // The config is unchanged, but the node may not be: an nftables reload flushes every
      // table, `ip link del` takes the interface, `wg set` removes or changes a peer. What
      // differs is made so again at once, so that neither an ACL nor a tunnel stays off until
      // the config next changes.
      const changed = await this.repair(this.current);
      await this.reportExitIfChanged(this.current);
      return { changed, version: this.current.version };
    }
    const doc = verifyDocument(this.state, fetched.body, fetched.signature);
    this.unappliedStored = null; // a fetched config replaces it
    if (doc.version < this.state.applied_version) throw new StateError(`the control plane sent version ${doc.version}, older than the applied ${this.state.applied_version}: refusing it (a replay?)`);
    if (this.options.dryRun) {
      const plan = await this.plan(doc);
      return { changed: plan.create || plan.wireguard.length > 0, version: doc.version, plan };
    }

    const switched = await this.switchKeyIfDue(doc);
    const changed = await this.apply(doc);
    this.current = doc;
    writeStoredConfig(this.options.stateDir, { body: fetched.body, signature: fetched.signature! });
    writeWgQuick(this.options.stateDir, this.state.interface, renderWgQuick(doc.config, this.state.private_key));
    this.updateState((state) => (state.applied_version = doc.version));
    if (switched) await nudgePeers(doc);
    await this.report(doc);
    // Only once the control plane knows: a report that failed is made again next round (the
    // config is fetched whole again), else rotations would wait on a report never sent. After a
    // key switch the completed rotation changes the config: it is fetched whole next round too.
    this.etag = switched ? null : fetched.etag;
    return { changed: changed || switched, version: doc.version };
  }

  /** The config; when the control plane refuses this node for good, the node is cut off first (see cutOff). */
  private async fetch(): Promise<ConfigFetch> {
    try {
      return await fetchConfig(this.connection, this.options.dryRun ? null : this.etag);
    } catch (error) {
      if (!(error instanceof NodeRefusedError) || this.options.dryRun) throw error;
      // Whatever of the cut-off fails, the refusal is what the operator must read (it is tried
      // again at the next round): a device error thrown instead read "keeping the applied config".
      const done = await this.cutOff().then(
        () => `Every peer was removed from ${this.state.interface}${this.options.firewall ? " and its firewall drops all mesh traffic" : ""}, and the stored config is forgotten.`,
        (failure: unknown) => `The stored config is forgotten, but cutting ${this.state.interface} off failed (tried again at the next round): ${failure instanceof Error ? failure.message : String(failure)}.`,
      );
      throw new NodeRefusedError(
        `the control plane refuses this node: ${error.message}. ${done} ` +
          "If this node should be a member, enable it again, or enroll it again (citadel mesh join); this agent keeps asking and applies its config once it is accepted.",
        error.status,
        error.code,
      );
    }
  }

  /**
   * Takes a node the control plane no longer takes (removed, disabled, expired, its network or
   * organization deleted) out of the mesh, as a logged-out client drops its peers: when the
   * agent manages the firewall, a table that drops all mesh traffic — first, failing closed as
   * apply does — then every peer removed through `wg syncconf` with an empty peer list (the key,
   * port and addresses stay: nothing reaches the node without a peer). The stored config and
   * the wg-quick file (which holds the peers and the private key) are deleted first, so that
   * neither a restart while the control plane still refuses (or cannot be reached) nor wg-quick
   * at boot brings the mesh back; a config it sends again is applied whole.
   */
  private async cutOff(): Promise<void> {
    // The exit table's number, while the applied config still says it (an exit node's rules go with the peers).
    const exitTable = this.current?.config.listenPort ?? this.unappliedStored?.config.listenPort;
    forgetConfig(this.options.stateDir, this.state.interface);
    this.current = null;
    this.unappliedStored = null;
    this.etag = null;
    const name = this.state.interface;
    const exists = await this.ownInterface(name);
    try {
      if (this.options.firewall) await device.applyFirewall(await this.firewallScript(cutOffConfig(this.state), false, name), this.run);
    } finally {
      // Even when the table cannot be loaded: without peers nothing reaches the node.
      if (exists) await this.removePeers(name);
    }
    // No exit node either: the machine's own default route is its way out again.
    await applyExitRouting(name, null, this.run, exitTable === undefined ? [] : [exitTable]);
    this.exitClaim.release();
    this.exitRefused = null;
  }

  private async removePeers(name: string): Promise<void> {
    if ((await device.readDevice(name, this.run)).peers.length === 0) return;
    await this.sync(name, { privateKey: this.state.private_key, listenPort: null, fwmark: null, comments: [], peers: [] });
  }

  /** Tells the control plane every subnet route this node offers (replacing them): each waits for an operator's approval. */
  async advertiseRoutes(routes: string[]): Promise<{ advertised_routes: string[]; approved_routes: string[]; pending_routes: string[] }> {
    return nodeRequest(this.connection, "POST", "/v1/mesh/node/routes", { routes });
  }

  /** Chooses the exit node this node sends its internet traffic through (null: none); the control plane checks it may. */
  async chooseExitNode(node: string | null): Promise<{ exit_node: string | null }> {
    return nodeRequest(this.connection, "POST", "/v1/mesh/node/exit-node", { exit_node: node });
  }

  /**
   * Starts a key rotation: the next key is kept aside (written before it is announced, so that
   * the agent can switch to it as soon as the control plane says so). An announcement that
   * fails takes it back out: no peer lists it, and nothing would ever switch to it.
   */
  async rotate(): Promise<string> {
    const { generateKeyPair } = await import("./keys.ts");
    const next = await generateKeyPair();
    this.updateState((state) => (state.next_private_key = next.privateKey));
    try {
      await nodeRequest(this.connection, "POST", "/v1/mesh/node/rotate", { public_key: next.publicKey });
    } catch (error) {
      // Only if it is still ours: `citadel mesh rotate` run again meanwhile wrote its own.
      this.updateState((state) => {
        if (state.next_private_key === next.privateKey) state.next_private_key = null;
      });
      throw error;
    }
    return next.publicKey;
  }

  /** Switches to the next private key when the control plane says every peer accepts it. */
  private async switchKeyIfDue(doc: ConfigDocument): Promise<boolean> {
    const next = this.state.next_private_key;
    if (!next || !doc.rotation?.switch) return false;
    if ((await publicKeyOf(next)) !== doc.rotation.next_public_key) return false; // announced by another run: wait for ours
    let switched = false;
    this.updateState((state) => {
      // Compared on the file as it is now: `citadel mesh rotate` (another process) may have
      // written a newer next key since this round read it, and erasing that one would leave the
      // node on a key no peer lists once the control plane announces it.
      if (state.next_private_key !== next) return;
      state.previous_private_key = state.private_key;
      state.private_key = next;
      state.next_private_key = null;
      switched = true;
    });
    if (!switched) return false;
    this.options.err("switched to the next key: peers accept it; the old key is dropped once the control plane hears of it");
    return true;
  }

  /**
   * Reports the applied version and the key the device runs with. After a switch the previous
   * key is kept until the control plane answers that it knows the new one (the rotation
   * completed, or the key is the node's already): should the rotation have ended there first —
   * cancelled, given up, the node disabled — it answers 409 key_mismatch, no peer lists the new
   * key, and the node goes back to the previous one (see switchBack) instead of staying cut off.
   */
  private async report(doc: ConfigDocument): Promise<void> {
    const previous = this.state.previous_private_key ?? null;
    let answer: { rotation: "completed" | "pending" | null };
    try {
      answer = await this.sendApplied(doc);
    } catch (error) {
      if (previous === null || !(error instanceof ApiError && error.status === 409 && error.code === "key_mismatch")) throw error;
      await this.switchBack(doc, previous);
      return;
    }
    // "pending": the key is the next one still (the completion lost a race): kept until it is the node's.
    if (previous !== null && answer.rotation !== "pending") {
      this.updateState((state) => {
        if (state.previous_private_key === previous) state.previous_private_key = null;
      });
    }
  }

  /**
   * The report, with why the exit node this node chose is not routed through on this host
   * (`exit_refused`) — sent while it is so, and once more (null) when it no longer is. A control
   * plane older than that field refuses a body with it (422, unknown field): the report is made
   * again without it, so that the applied version (which rotations wait on) still arrives, and
   * the field is tried again at every round (two small requests a round while this node is refused).
   */
  private async sendApplied(doc: ConfigDocument): Promise<{ rotation: "completed" | "pending" | null }> {
    const publicKey = await publicKeyOf(this.state.private_key);
    const exitRefused = this.exitRefused;
    const report = { version: doc.version, public_key: publicKey };
    const send = (body: object) => nodeRequest<{ rotation: "completed" | "pending" | null }>(this.connection, "POST", "/v1/mesh/node/applied", body);
    if (exitRefused === null && (this.reportedExitRefused ?? null) === null) return send(report);
    let heard = true;
    const answer = await send({ ...report, exit_refused: exitRefused }).catch((error: unknown) => {
      if (!(error instanceof ApiError && error.status === 422)) throw error;
      heard = false;
      return send(report);
    });
    // Made without the field, the refusal was not heard: reported again at the next round, so
    // that the control plane, once upgraded, shows it (found in review: it was taken as heard).
    if (heard) this.reportedExitRefused = exitRefused;
    return answer;
  }

  /**
   * A round whose config did not change still reports when the exit part's refusal came or went
   * (the other agent let the exit routing go, or took it): the control plane shows it. A report
   * that fails is made again at the next round.
   */
  private async reportExitIfChanged(doc: ConfigDocument): Promise<void> {
    if (this.exitRefused === (this.reportedExitRefused ?? null) || this.options.dryRun) return;
    try {
      await this.sendApplied(doc);
    } catch (error) {
      this.options.err(`mesh agent: could not tell the control plane about this node's exit node (${error instanceof Error ? error.message : String(error)}): tried again at the next round`);
    }
  }

  /** Back on the key switched from (see report): the device, the wg-quick file, the peers nudged, and the report made again. */
  private async switchBack(doc: ConfigDocument, previous: string): Promise<void> {
    const switchedTo = this.state.private_key;
    this.updateState((state) => {
      if (state.private_key !== switchedTo) return;
      state.private_key = previous;
      state.previous_private_key = null;
    });
    this.options.err(
      "mesh agent: warning: the control plane no longer expects the key this node switched to (its rotation was cancelled, given up or ended by a disable before the switch was reported): " +
        "back on the previous key, which the peers list; rotate again with citadel mesh rotate",
    );
    await this.syncDevice(doc, this.state.interface, {});
    writeWgQuick(this.options.stateDir, this.state.interface, renderWgQuick(doc.config, this.state.private_key));
    await nudgePeers(doc);
    await this.sendApplied(doc);
  }

  /**
   * The device as the config wants it now: a rotating peer's AllowedIPs on the key that
   * handshook last. Endpoints are still as the config names them (see `resolved`).
   */
  private async desired(doc: ConfigDocument, name: string): Promise<device.ParsedSetconf> {
    const parsed = device.parseSetconf(renderSetconf(doc.config, this.state.private_key));
    if (!hasOverlap(doc)) return parsed;
    const pairs = doc.config.peers.filter((p) => p.nextPublicKey !== null).map((p) => ({ current: p.publicKey, next: p.nextPublicKey! }));
    const state = (await device.interfaceExists(name, this.run)) ? await device.readDevice(name, this.run) : null;
    return device.preferHandshakenKeys(parsed, state, pairs);
  }

  /**
   * `desired` with its named endpoints resolved here, not by wg (see endpoints.ts), as the file
   * wg reads will have them. `resolvedAgain`: a name that did not resolve before does now (or
   * its peer is gone): the device lacks that endpoint, whatever the comparisons say. `unresolved`
   * becomes the agent's list once the device has the file (see `synced`): a sync that fails must
   * leave the names to be tried again.
   */
  private async resolved(doc: ConfigDocument, desired: device.ParsedSetconf): Promise<{ setconf: device.ParsedSetconf; resolvedAgain: boolean; unresolved: Set<string> }> {
    const found = await resolveEndpoints(desired, this.lookupHost, LOOKUP_TIMEOUT_MS, meshPrefixes(doc));
    const unresolved = new Set(found.unresolved.map(unresolvedKey));
    // Once per peer and name while it stays unresolvable: during a rotation the config is applied every second.
    for (const u of found.unresolved) {
      if (this.warnedUnresolved.has(unresolvedKey(u))) continue;
      this.options.err(`mesh agent: peer ${peerName(doc, u.publicKey)} has the endpoint ${u.endpoint}, which does not resolve (${u.reason}): written without an endpoint; WireGuard learns it when that peer connects`);
    }
    return { setconf: found.setconf, resolvedAgain: [...this.warnedUnresolved].some((key) => !unresolved.has(key)), unresolved };
  }

  /**
   * `wg syncconf` with every peer's preshared key and keepalive written out (see
   * renderParsedSetconf), so that turning one off reaches the device.
   */
  private async sync(name: string, setconf: device.ParsedSetconf): Promise<void> {
    await device.syncConfig(name, device.renderParsedSetconf(setconf, { explicit: true }), this.options.stateDir, this.run);
  }

  /**
   * The node's nftables script, retiring the table an older Citadel kept this interface's
   * policy in — only when that table filters this interface: under today's names it may be
   * another interface's own (wgc_a's, when this is wgc-a), loaded before its device exists.
   */
  private async firewallScript(config: NodeConfig, relay: boolean, name: string): Promise<string> {
    const script = renderNftables(config, name, { relay });
    const former = formerNftablesTableInterface(name);
    if (former === null || !(await device.firewallTableFilters(nftablesTableName(former), name, this.run))) return script;
    return retireNftablesTable(nftablesTableName(former)) + script;
  }

  /**
   * Makes the node so again: a missing interface (then everything), the firewall table
   * (reloaded whole, atomically: a flushed chain is as bad as a missing table), the addresses,
   * forwarding, and the WireGuard device when its key, port or peers (keys, AllowedIPs,
   * preshared keys, keepalive) differ from the config — not for endpoints alone, which peers
   * learn by roaming — unless a peer's name that did not resolve does now: names that did not
   * resolve are asked again at every round until they do (a resolver down for a moment must
   * not leave a peer without its endpoint until the config next changes). True when the
   * interface or the device had to be changed.
   */
  private async repair(doc: ConfigDocument): Promise<boolean> {
    const name = this.state.interface;
    if (!(await this.ownInterface(name))) return this.apply(doc);
    this.repairedAt = Date.now();
    if (this.options.firewall) await device.applyFirewall(await this.firewallScript(doc.config, doc.relay, name), this.run);
    const desired = await this.desired(doc, name);
    const current = await device.readDevice(name, this.run);
    // The private key is compared too, by its public half (see describeDevice).
    const drifted = device.describeDevice(current, { endpoints: false }) !== device.describeDesired(desired, { endpoints: false });
    let changed = false;
    if (drifted || this.warnedUnresolved.size > 0) {
      const { setconf, resolvedAgain, unresolved } = await this.resolved(doc, desired);
      if (drifted) this.options.err(`mesh agent: ${name} differs from config version ${doc.version} (changed by hand?): applying it again`);
      changed = drifted || resolvedAgain;
      if (changed) await this.sync(name, setconf);
      this.warnedUnresolved = unresolved;
    }
    await device.applyAddresses(name, doc.config.addresses, doc.config.mtu, this.run);
    await this.applyRoutes(doc, name);
    await this.applyExit(doc, name);
    this.setForwarding(doc);
    return changed;
  }

  /** Makes the node match `doc` — firewall, device, addresses, forwarding; true when the device changed. */
  private async apply(doc: ConfigDocument): Promise<boolean> {
    const name = this.state.interface;
    this.repairedAt = Date.now();
    // Before anything is loaded: a link of that name that is not this node's is left alone.
    const exists = await this.ownInterface(name);
    // The firewall first, and fail closed: a policy that cannot be loaded leaves the tunnel as it was.
    if (this.options.firewall) await device.applyFirewall(await this.firewallScript(doc.config, doc.relay, name), this.run);
    const created = !exists;
    if (created) await device.createInterface(name, this.options.userspace, this.run, device.ownLinkAlias(this.state.node_id));
    const changed = await this.syncDevice(doc, name, {}, created);
    await device.applyAddresses(name, doc.config.addresses, doc.config.mtu, this.run);
    await this.applyRoutes(doc, name);
    await this.applyExit(doc, name);
    this.setForwarding(doc);
    return changed;
  }

  /**
   * The WireGuard device made equal to `doc` (its peers' AllowedIPs on the keys that handshook
   * last), synced only when it differs — or `always`; true when synced. `endpoints: false`
   * leaves endpoints out of the comparison, but for a name that resolves again.
   */
  private async syncDevice(doc: ConfigDocument, name: string, compare: device.DescribeOptions, always = false): Promise<boolean> {
    const { setconf: desired, resolvedAgain, unresolved } = await this.resolved(doc, await this.desired(doc, name));
    const current = await device.readDevice(name, this.run);
    // A switched key differs too: the descriptions show the private key by its public half.
    const changed = always || resolvedAgain || device.describeDevice(current, compare) !== device.describeDesired(desired, compare);
    if (changed) await this.sync(name, desired);
    this.warnedUnresolved = unresolved;
    return changed;
  }

  /**
   * A round of a rotation (every second): the device alone, endpoints left out of the
   * comparison (as repair does: a peer that roamed, or whose name does not resolve, is not
   * synced again every second). A missing interface is made again whole.
   */
  private async followHandshakes(doc: ConfigDocument): Promise<boolean> {
    const name = this.state.interface;
    if (!(await this.ownInterface(name))) return this.apply(doc);
    return this.syncDevice(doc, name, { endpoints: false });
  }

  /**
   * Whether the interface exists, once it is known to be this node's: a link the agent made
   * (marked with ownLinkAlias), or one it takes over and marks (see claimOf). Any other link of
   * that name — the host's uplink, someone else's WireGuard — is refused before anything is
   * loaded or synced (ForeignInterfaceError): its firewall, key and peers are not the agent's.
   * `takeOver: false` (a dry run) marks nothing.
   */
  private async ownInterface(name: string, { takeOver = true } = {}): Promise<boolean> {
    const link = await device.readLink(name, this.run);
    if (link === null) return false;
    const mark = device.ownLinkAlias(this.state.node_id);
    if (link.alias === mark) return true;
    const claim = await this.claimOf(name, link.alias);
    if ("foreign" in claim) {
      throw new ForeignInterfaceError(
        `${name} exists and is not this node's interface (${claim.foreign}): the agent changes no link it did not make, so nothing was applied. ` +
          `Give this node another interface (join again with --interface), or, if ${name} is a WireGuard interface this node is to take over, mark it: ip link set dev ${name} alias ${mark}`,
      );
    }
    if (takeOver) {
      await device.setLinkAlias(name, mark, this.run);
      this.options.err(`mesh agent: took over ${name} (${claim.ours}): marked it as this node's (alias ${mark})`);
    }
    return true;
  }

  /**
   * Whose a link not marked as this node's is. This node's: the link of the node it replaced in
   * this state directory (join --force), or a WireGuard link an agent from before the marks
   * made, whose key is this node's (or the replaced node's).
   */
  private async claimOf(name: string, alias: string | null): Promise<{ ours: string } | { foreign: string }> {
    const former = this.state.former_node ?? null;
    if (former !== null && alias === device.ownLinkAlias(former.id)) return { ours: `the interface of the node ${former.id}, which this one replaced` };
    const earlierNodes = this.state.earlier_nodes ?? [];
    const earlier = earlierNodes.find((n) => alias === device.ownLinkAlias(n.id));
    if (earlier !== undefined) return { ours: `the interface of the node ${earlier.id}, which a node this one replaced had replaced` };
    if (alias !== null) return { foreign: `its alias is ${JSON.stringify(alias)}` };
    // wg cannot read a link that is not WireGuard.
    const key = await device.readDevice(name, this.run).then((found) => found.publicKey, () => undefined);
    if (key === undefined) return { foreign: "not a WireGuard interface" };
    if (key !== null && key === (await publicKeyOf(this.state.private_key))) return { ours: "made by an earlier agent, with this node's key" };
    if (key !== null && key === former?.public_key) return { ours: `made by an earlier agent, with the key of the node ${former.id}, which this one replaced` };
    const keyed = key === null ? undefined : earlierNodes.find((n) => n.public_key === key);
    if (keyed !== undefined) return { ours: `made by an earlier agent, with the key of the node ${keyed.id}, which a node this one replaced had replaced` };
    return { foreign: key === null ? "a WireGuard interface without a key" : "a WireGuard interface with another key" };
  }

  /** How often the control plane asks this agent to poll ([mesh] poll_seconds); null before any config is applied. */
  pollSeconds(): number | null {
    return this.current?.poll_seconds ?? null;
  }

  /** Whether the whole node is due to be made so again: at the pace the control plane asks agents to poll. */
  private repairDue(): boolean {
    return this.current === null || Date.now() - this.repairedAt >= this.current.poll_seconds * 1000;
  }

  /** --dry-run: what applying would change, as a diff of the device's state; nothing is touched. */
  private async plan(doc: ConfigDocument): Promise<DryRunPlan> {
    const name = this.state.interface;
    const exists = await this.ownInterface(name, { takeOver: false });
    const before = exists ? device.describeDevice(await device.readDevice(name, this.run)) : "";
    // What would be applied: endpoints as the agent resolves them.
    const after = device.describeDesired((await this.resolved(doc, await this.desired(doc, name))).setconf);
    const firewall = doc.config.firewall;
    return {
      version: doc.version,
      node: this.state.name,
      network: this.state.network,
      interface: name,
      create: !exists,
      wireguard: device.diffDescriptions(before, after, (key) => peerNameIfKnown(doc, key)),
      addresses: doc.config.addresses,
      mtu: doc.config.mtu,
      firewall: this.options.firewall
        ? { rules: firewall ? firewall.input.length + (firewall.forward?.length ?? 0) : 0, deny_by_default: firewall !== null, masquerade: doc.config.masquerade ? (doc.config.routes ?? []) : [] }
        : null,
      relay: doc.relay,
      rotation: doc.rotation ? (doc.rotation.switch ? "switch_next_round" : "waiting_for_peers") : null,
      exit: doc.config.exit ?? null,
    };
  }

  /**
   * The subnet routes into the interface, but those the machine routes otherwise (device.applyRoutes):
   * each is warned about once while it stays so, since this runs at every repair.
   */
  private async applyRoutes(doc: ConfigDocument, name: string): Promise<void> {
    const skipped = await device.applyRoutes(name, subnetRoutes(doc), this.run);
    const keys = new Set(skipped.map(({ route, reason }) => `${route} ${reason}`));
    for (const { route, reason } of skipped) {
      if (this.warnedRoutes.has(`${route} ${reason}`)) continue;
      this.options.err(`mesh agent: the subnet route ${route} is not routed into ${name}: ${reason}; the agent never takes over a route it did not add`);
    }
    this.warnedRoutes = keys;
  }

  /**
   * Through the exit node this node chose (config `exit`), as wg-quick routes an AllowedIPs of
   * 0.0.0.0/0 (exit-routing.ts), or back to the machine's own default route once it uses none.
   * The control plane's address (its proxy's, when the agent reaches it through one) stays
   * outside the tunnel, resolved again at each round (the last addresses kept when it does not
   * resolve), and so do the resolvers when it is a name. Said once when the exit node is not usable.
   */
  private async applyExit(doc: ConfigDocument, name: string): Promise<void> {
    const exit = doc.config.exit;
    // Its listen port is the table it would use: rules of another interface's are never its own.
    const mine = [doc.config.listenPort];
    if (exit === undefined) {
      this.warnedExit = null;
      await applyExitRouting(name, null, this.run, mine);
      // Only once its rules are gone: another agent taking the claim would take them for a dead one's.
      this.exitClaim.release();
      this.exitRefused = null;
      return;
    }
    // One agent of a host routes through an exit node: the one that holds the claim. Refused,
    // only this part of the config waits (the rest is applied and reported), tried at every round.
    const refused = await this.claimExit(doc, name);
    if (refused !== null) {
      await applyExitRouting(name, null, this.run, mine); // none of its own (the holder's are the host's)
      this.noteExitRefused(name, refused);
      return;
    }
    if (exit.via === null && this.warnedExit !== "blocked") {
      this.options.err("mesh agent: the exit node this node chose is not usable now (not approved or enabled, gone, or the ACL does not let this node reach autogroup:internet): its internet traffic is blocked, not sent out directly; choose another, or none, with citadel mesh exit-node");
    }
    this.warnedExit = exit.via === null ? "blocked" : null;
    turnOn(SRC_VALID_MARK, (error) => this.options.err(`mesh agent: cannot turn on ${SRC_VALID_MARK} (${error}): with strict reverse-path filtering, the tunnel's replies may be dropped`));
    const want = { table: doc.config.listenPort, through: exit.via !== null, keptOff: await this.controlPlaneAddresses() };
    try {
      // Holding the claim, another interface's exit rules are a dead agent's: removed. Without
      // one (no flock here), they may be a running agent's: refused.
      await applyExitRouting(name, want, this.run, mine, this.exitClaim.held ? "remove" : "refuse");
    } catch (error) {
      if (!(error instanceof ExitRoutingConflictError)) throw error;
      this.noteExitRefused(name, error.message);
      return;
    }
    this.noteExitRefused(name, null);
  }

  /**
   * Takes (or keeps) the host's exit claim (exit-claim.ts); the refusal's reason when another
   * running agent holds it, or when no claim can be taken here (its directory unfit: not root's,
   * writable by others, on a read-only file system), null when it is held. The latter fails
   * closed: an agent that routed without the claim could not tell a running holder's rules from
   * none (two starting at once would both route), and the holder, taking its rules for a dead
   * agent's, would delete them while it runs (found in review). Only where there is no flock to
   * ask at all (no C library) is the answer null too: no agent of the host can hold a claim then,
   * and each looks at the host's rules instead, as before claims.
   */
  private async claimExit(doc: ConfigDocument, name: string): Promise<string | null> {
    const retried = `this agent tries again at every round, every ${doc.poll_seconds} s`;
    let answer: Awaited<ReturnType<ExitClaim["take"]>>;
    try {
      answer = await this.exitClaim.take({ pid: process.pid, interface: name, network: this.state.network, node: this.state.name });
    } catch (error) {
      const why = (error instanceof Error ? error.message : String(error)).replace(/\.$/, "");
      return (
        `cannot take the host's exit claim: ${why}; ${name} uses no exit node until it can (${retried}). ` +
        `fix: ${this.exitClaim.directory} must be a directory of root's, writable by no one else, on a writable file system ` +
        "(the agent's systemd unit makes it with RuntimeDirectory=citadel-mesh: a unit copied from an older Citadel lacks that line)"
      );
    }
    if (answer.held !== false) return null;
    return (
      `${answer.holder} routes this host's internet through an exit node, and a host sends its internet through one: ` +
      `${name} uses none until that agent lets it go (${retried}); ` +
      "until then this host's internet, this node's included, goes through that agent's exit node (blocked while that one is not usable). " +
      "Choose no exit node on one of the two (citadel mesh exit-node --none)"
    );
  }

  /** Keeps (and says, when it changes) why the exit node chosen is not routed through here; reported to the control plane. */
  private noteExitRefused(name: string, reason: string | null): void {
    if (reason === this.exitRefused) return;
    if (reason !== null) this.options.err(`mesh agent: ${reason}`);
    else if (this.exitRefused !== null) this.options.err(`mesh agent: ${name} now routes this host's internet through its exit node (refused until now)`);
    this.exitRefused = reason;
  }

  /**
   * What stays outside an exit node's tunnel to reach the control plane (or the proxy the agent
   * reaches it through): its addresses, those last resolved while its name does not resolve,
   * and the resolvers asked for it (see outside-tunnel.ts).
   */
  private async controlPlaneAddresses(): Promise<IpAddress[]> {
    const server = new URL(this.state.server);
    const proxy = proxyFor(server);
    return this.outside.addresses(proxy ?? server, proxy ? "the control plane's proxy" : "the control plane");
  }

  /**
   * A hub forwards between spokes, and a subnet router from the mesh to its routes, the
   * nftables forward chain deciding what may pass. It turns forwarding on only with that
   * firewall loaded, only for the families it forwards (forwardingSwitches), and never off: the
   * host may need it for other things (Docker), and every node's table drops whatever arrives on
   * the mesh for anywhere but this node, the mesh or the routes it serves, hub or not.
   */
  private setForwarding(doc: ConfigDocument): void {
    const routes = doc.config.routes ?? [];
    const switches = forwardingSwitches(doc);
    if (switches.length === 0) return;
    const role = doc.relay ? "a hub" : doc.config.firewall?.exit ? "an exit node" : `the router of ${routes.join(", ")}`;
    if (!this.options.firewall) {
      this.options.err(`mesh agent: this node is ${role}, but without its firewall (--no-firewall) it would forward anything a peer sends: it forwards nothing`);
      return;
    }
    for (const path of switches) turnOn(path, (error) => this.options.err(`mesh agent: cannot turn on forwarding (${path}): ${error}; this node (${role}) forwards nothing`));
  }

  /**
   * Whether the applied document shows a rotation — a peer's next key, or this node's own — so
   * that the agent polls every second. The document only: a next key left in the state file
   * (an announcement that never arrived) must not keep the agent polling every second for ever,
   * and the control plane gives up a rotation never completed.
   */
  overlapInProgress(): boolean {
    return this.current !== null && (hasOverlap(this.current) || this.current.rotation !== null);
  }
}

/** The interface the state names is a link the agent did not make (see Agent.ownInterface). */
export class ForeignInterfaceError extends Error {
  override readonly name = "ForeignInterfaceError";
}

/**
 * A refused node's config, for its firewall: no peers, no addresses (so nothing counts as the
 * mesh's), and an ACL without rules: every chain drops what arrives on the mesh interface.
 */
function cutOffConfig(state: NodeState): NodeConfig {
  return {
    network: { id: state.network_id, name: state.network, interfaceName: state.interface },
    node: { id: state.node_id, name: state.name },
    addresses: [],
    listenPort: 0,
    mtu: 1280,
    dns: [],
    searchDomain: null,
    peers: [],
    firewall: { input: [], forward: [] },
  };
}

/** Writes 1 to a kernel switch (/proc/sys) unless it is on already; `failed` hears why it could not. */
function turnOn(path: string, failed: (error: string) => void): void {
  try {
    if (readFileSync(path, "utf8").trim() !== "1") writeFileSync(path, "1");
  } catch (error) {
    failed(error instanceof Error ? error.message : String(error));
  }
}

/** wg-quick turns it on with a default route through the tunnel: reverse-path filtering then takes the fwmark into account. */
const SRC_VALID_MARK = "/proc/sys/net/ipv4/conf/all/src_valid_mark";

/** Where the kernel keeps IP forwarding on or off, per family. */
const FORWARDING = { 4: "/proc/sys/net/ipv4/ip_forward", 6: "/proc/sys/net/ipv6/conf/all/forwarding" } as const;

/**
 * The forwarding switches a node needs: both for a hub (it relays the mesh's IPv4 and IPv6) and an
 * exit node (the internet of both families), for
 * a subnet router only its routes' families. IPv6 forwarding has a cost where nothing needs it:
 * Linux stops taking router advertisements on interfaces with accept_ra=1.
 */
export function forwardingSwitches(doc: Pick<ConfigDocument, "relay" | "config">): string[] {
  if (doc.relay || doc.config.firewall?.exit) return [FORWARDING[4], FORWARDING[6]];
  const families = new Set((doc.config.routes ?? []).map((route) => parseCidr(route)?.family));
  return ([4, 6] as const).filter((family) => families.has(family)).map((family) => FORWARDING[family]);
}

/** The mesh's own prefixes (its pools), from this node's addresses in them: no peer's endpoint can be inside. */
function meshPrefixes(doc: ConfigDocument): Cidr[] {
  return doc.config.addresses.map((address) => networkOf(address)).filter((prefix) => prefix !== null);
}

/**
 * The subnet routes on peers' AllowedIPs (outside the mesh's own prefixes, which the interface's
 * addresses route, nor an exit node's default routes), which the kernel must route into the
 * interface: wg-quick adds a route for each AllowedIPs, the agent only for these.
 */
export function subnetRoutes(doc: ConfigDocument): string[] {
  const mesh = meshPrefixes(doc);
  const routes = doc.config.peers.flatMap((peer) => peer.allowedIps).filter((route) => {
    const cidr = parseCidr(route);
    // An exit node's default routes go through a table of their own (applyExit), not the main table.
    return cidr !== null && cidr.prefix > 0 && !mesh.some((prefix) => cidrWithin(cidr, prefix));
  });
  return [...new Set(routes)];
}

/** The peer's name for messages: its key may be its next one (a second [Peer] during its rotation). */
function peerName(doc: ConfigDocument, publicKey: string): string {
  const peer = doc.config.peers.find((p) => p.publicKey === publicKey || p.nextPublicKey === publicKey);
  if (!peer) return publicKey;
  return peer.publicKey === publicKey ? peer.name : `${peer.name} (next key)`;
}

function peerNameIfKnown(doc: ConfigDocument, publicKey: string): string | null {
  const name = peerName(doc, publicKey);
  return name === publicKey ? null : name;
}

function hasOverlap(doc: ConfigDocument): boolean {
  return doc.config.peers.some((p) => p.nextPublicKey !== null);
}

/** One datagram to each peer (see nudgeTargets): WireGuard handshakes with it at once (with the new key). */
async function nudgePeers(doc: ConfigDocument): Promise<void> {
  const socket = createSocket("udp4");
  await Promise.all(nudgeTargets(doc).map((address) => new Promise<void>((resolve) => socket.send(Buffer.from([0]), 9, address, () => resolve()))));
  socket.close();
}

/**
 * An IPv4 address WireGuard routes to each peer: its own /32, or — a relay hub routing the
 * network's whole prefix to a spoke — an address of that route that is neither this node's
 * nor another peer's /32 (which would win by longest prefix and send the datagram elsewhere).
 * Without one for the hub, it would keep the old key until the spoke sent something: with
 * keepalive off, never.
 */
export function nudgeTargets(doc: ConfigDocument): string[] {
  const own = new Set(doc.config.addresses.map((a) => a.split("/")[0]!));
  const hosts = doc.config.peers.flatMap((p) => p.allowedIps.filter((a) => a.endsWith("/32")).map((a) => a.slice(0, -3)));
  const taken = new Set([...own, ...hosts]);
  return doc.config.peers.flatMap((peer) => {
    const host = peer.allowedIps.find((a) => a.endsWith("/32"));
    if (host) return [host.slice(0, -3)];
    const route = peer.allowedIps.map((a) => parseCidr(a)).find((cidr) => cidr?.family === 4);
    const free = route ? addressesIn(route, NUDGE_CANDIDATES).find((address) => !taken.has(address)) : undefined;
    return free === undefined ? [] : [free];
  });
}

/** How many of a route's first addresses nudgeTargets tries (this node and other hubs hold a few). */
const NUDGE_CANDIDATES = 64;

/** Up to `count` host addresses of an IPv4 route, from its first (a /32 is its own address). */
function addressesIn(route: Cidr, count: number): string[] {
  const base = route.bytes.reduce((n, byte) => n * 256 + byte, 0);
  const size = 2 ** (32 - route.prefix);
  const first = size > 2 ? 1 : 0; // not the network address of a prefix with hosts
  const out: string[] = [];
  for (let h = first; h < Math.min(size, first + count); h++) {
    const n = base + h;
    out.push(formatIp({ family: 4, bytes: Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255) }));
  }
  return out;
}

/** A peer's unresolved endpoint, as the agent remembers it. */
const unresolvedKey = (u: UnresolvedEndpoint) => `${u.publicKey} ${u.endpoint}`;
