/**
 * CLI on a node: `citadel mesh join` (enroll: the key pair is made here, the private key stays
 * here), `citadel mesh agent` (keep the interface equal to the signed config) and
 * `citadel mesh rotate` (start a key rotation the agent completes).
 */
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { pinGiven } from "../../src/cli/credentials.ts";
import { certificateSeen } from "../../src/cli/pin.ts";
import { UsageError } from "../../src/cli/command-line.ts";
import { integerOption } from "../../src/cli/output.ts";
import { normalizedServerUrl, serverUrlProblem } from "../../src/cli/server-url.ts";
import type { Command, CommandContext } from "../../src/plugin.ts";
import { Agent, describePlan } from "./agent.ts";
import type { ConfigDocument } from "./configs.ts";
import { interfaceExists } from "./device.ts";
import { EXIT_ROUTES } from "./exits.ts";
import { generateKeyPair, isWireGuardKey, publicKeyOfSync } from "./keys.ts";
import { nodeRequest, NodeRefusedError, type NodeConnection } from "./node-client.ts";
import { ApiError } from "../../src/cli/api-client.ts";
import { DEFAULT_STATE_DIR, MAX_EARLIER_NODES, OpenStateDirError, prepareStateDir, statePath, verifyDocument, writeState, writeStoredConfig, writeWgQuick, type NodeState } from "./node-state.ts";
import { renderWgQuick } from "./render.ts";
import { INTERFACE_NAME_RULE, isInterfaceName } from "./types.ts";

const STATE = { state: { type: "string", description: `The node's state directory (default ${DEFAULT_STATE_DIR})` } } as const;
const stateDir = (ctx: CommandContext) => (typeof ctx.options.state === "string" ? ctx.options.state : DEFAULT_STATE_DIR);

interface Enrolled {
  node: { id: string; name: string; network: string; ipv4: string; ipv6: string; fqdn: string | null };
  token: string;
  signing_key: string;
  document: string;
  signature: string;
}

/** This host's name as a node name: lower-case, DNS-label safe. */
function defaultName(): string {
  return (
    hostname()
      .split(".")[0]!
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 63) || "node"
  );
}

async function join(ctx: CommandContext): Promise<number> {
  const named = typeof ctx.options.server === "string" ? ctx.options.server : null;
  const key = typeof ctx.options.key === "string" ? ctx.options.key : (ctx.env.CITADEL_MESH_KEY ?? null);
  if (!named || !key) throw new UsageError("usage: citadel mesh join --server https://citadel.example:8443 --key citadel_meshkey_... [--fingerprint sha256//...]");
  // The server is kept in node.json and shown (the sovereignty report, errors): the shared rule refuses a password in it.
  const problem = serverUrlProblem(named);
  if (problem) throw new UsageError(`--server: ${problem}`);
  const server = normalizedServerUrl(named);
  if (ctx.options.qr === true && ctx.json) throw new UsageError("--qr with --json: a QR code is not JSON; give one");
  if (typeof ctx.options.interface === "string" && !isInterfaceName(ctx.options.interface)) throw new UsageError(`--interface: ${INTERFACE_NAME_RULE}`);
  const listenPort = integerOption(ctx, "listen-port", 1, 65_535);
  // A phone's config is shown, not written. Otherwise the state must be writable before the
  // node enrolls: once enrolled without it, the node is lost (its private key gone, the key spent).
  const dir = ctx.options.qr === true ? null : stateDir(ctx);
  const chosen = typeof ctx.options.interface === "string" ? ctx.options.interface : null;
  let old: OldNode | null = null;
  if (dir !== null) {
    old = checkNoNodeIn(ctx, dir);
    if (chosen !== null) await checkInterfaceFree(chosen, old, "--interface");
    prepareStateDirOrRefuse(dir);
  }
  const pin = typeof ctx.options.fingerprint === "string" ? await pinGiven(server, ctx.options.fingerprint) : null;
  const pair = await generateKeyPair();
  const tags = typeof ctx.options.tags === "string" && ctx.options.tags !== "" ? ctx.options.tags.split(",").map((t) => t.trim()) : undefined;
  const body = {
    key,
    name: typeof ctx.options.name === "string" ? ctx.options.name : defaultName(),
    public_key: pair.publicKey,
    ...(typeof ctx.options.endpoint === "string" ? { endpoint: ctx.options.endpoint } : {}),
    ...(listenPort !== undefined ? { listen_port: listenPort } : {}),
    ...(tags ? { tags } : {}),
    ...offeredRoutes(ctx, "advertise-routes"),
  };
  const enrolled = await enroll(ctx, { server, trust: pin }, body);
  // From here on the node is enrolled and the key spent: whatever fails says which node this
  // machine is and how to remove it.
  if (dir === null) return showEnrolledPhone(ctx, enrolled, pair.privateKey);
  return keepEnrolledNode(ctx, dir, { server, pin, enrolled, privateKey: pair.privateKey, interfaceName: chosen, old });
}

/**
 * The agent changes no link it did not make (see Agent.ownInterface): a name already taken on
 * this host (its uplink eth0, someone's wg0) would leave the node without its mesh, the agent
 * refusing it at every round. The interface of the node this join replaces (--force over the
 * same state) is the one exception: the agent takes it over.
 */
async function checkInterfaceFree(name: string, old: OldNode | null, what: string): Promise<void> {
  if (old?.interface === name) return;
  if (await interfaceExists(name)) throw new UsageError(`${what}: an interface named ${name} already exists on this host, and the mesh agent changes no link it did not make: give another --interface`);
}

/** prepareStateDir, a directory others may enter refused as a usage error (exit 2): another --state is the fix. */
function prepareStateDirOrRefuse(dir: string): void {
  try {
    prepareStateDir(dir);
  } catch (error) {
    if (error instanceof OpenStateDirError) throw new UsageError(`--state: ${error.message}`);
    throw error;
  }
}

/**
 * POST /v1/mesh/enroll. An answer that never arrives whole (the connection cut after the
 * request went out, a body that is not an enrollment) may follow an enrollment the control
 * plane made: said so, since nothing else would tell of a node enrolled without its key.
 */
async function enroll(ctx: CommandContext, connection: NodeConnection, body: { name: string }): Promise<Enrolled> {
  let enrolled: Enrolled;
  try {
    enrolled = await nodeRequest<Enrolled>(connection, "POST", "/v1/mesh/enroll", body);
  } catch (error) {
    // An HTTP refusal (a status) enrolled nothing.
    if (!(error instanceof ApiError && error.status !== undefined)) ctx.err(lostEnrollment(body.name));
    throw error;
  }
  if (typeof enrolled?.node?.id !== "string" || typeof enrolled.token !== "string") {
    ctx.err(lostEnrollment(body.name));
    throw new Error("the control plane's answer to the enrollment is not one this citadel knows: update citadel on this node");
  }
  return enrolled;
}

function lostEnrollment(name: string): string {
  return (
    `citadel mesh join: the enrollment's answer was lost; if the control plane received the request, this machine may be enrolled as ${name} without its key. ` +
    "Have an operator look (citadel mesh nodes list <network>) and remove it if so, then join again (a single-use key may be spent)."
  );
}

/** A phone: its config checked, then shown (see showPhoneConfig); nothing is written here. */
async function showEnrolledPhone(ctx: CommandContext, enrolled: Enrolled, privateKey: string): Promise<number> {
  let config: string;
  try {
    const doc = verifyDocument({ signing_key: enrolled.signing_key, node_id: enrolled.node.id }, enrolled.document, enrolled.signature);
    config = renderWgQuick(doc.config, privateKey);
  } catch (error) {
    ctx.err(unsavedEnrollment(enrolled.node, null, error));
    return 1;
  }
  await showPhoneConfig(ctx, config, whereEnrolled(enrolled.node));
  return 0;
}

interface Enrollment {
  server: string;
  /** The server's public key pin, or null for a publicly trusted certificate. */
  pin: string | null;
  enrolled: Enrolled;
  privateKey: string;
  /** --interface, or null for the network's. */
  interfaceName: string | null;
  /** The node --force replaces in the state directory, if any. */
  old: OldNode | null;
}

/**
 * Keeps an enrolled node: node.json first, as soon as the answer arrives — the key pair and the
 * token are what cannot be had again — then the signed config checked, and the state, config
 * and wg-quick file written from it. Any failure prints the node's id and how to remove it.
 */
async function keepEnrolledNode(ctx: CommandContext, dir: string, enrollment: Enrollment): Promise<number> {
  const { enrolled } = enrollment;
  let kept = false;
  let confPath: string;
  try {
    const provisional = stateOf(enrollment, unverifiedFacts(enrolled.document));
    writeState(dir, provisional);
    kept = true;
    const doc = verifyDocument(provisional, enrolled.document, enrolled.signature);
    const state = stateOf(enrollment, { network: doc.network, interfaceName: doc.config.network.interfaceName });
    if (enrollment.interfaceName === null) await checkInterfaceFree(state.interface, enrollment.old, `the network's interface name`);
    writeState(dir, state);
    writeStoredConfig(dir, { body: enrolled.document, signature: enrolled.signature });
    confPath = writeWgQuick(dir, state.interface, renderWgQuick(doc.config, enrollment.privateKey));
  } catch (error) {
    ctx.err(unsavedEnrollment(enrolled.node, dir, error, kept));
    return error instanceof UsageError ? 2 : 1;
  }
  const result = { node: enrolled.node, state: dir, wg_quick: confPath };
  ctx.out(ctx.json ? JSON.stringify(result, null, 2) : `Enrolled ${whereEnrolled(enrolled.node)}${enrolled.node.fqdn ? `, named ${enrolled.node.fqdn}` : ""}.\nState in ${dir}; wg-quick config ${confPath}.\nApply it with: citadel mesh agent --state ${dir}`);
  return 0;
}

function stateOf(enrollment: Enrollment, facts: { network: string; interfaceName: string }): NodeState {
  const { enrolled, old } = enrollment;
  // The network suggests a name; the node may choose its own (names are per host).
  const interfaceName = enrollment.interfaceName ?? facts.interfaceName;
  return {
    server: enrollment.server,
    // The certificate join pinned, kept with its key pin: the agent pins it at once, without a look at the server.
    certificate: enrollment.pin === null ? null : (certificateSeen(enrollment.server, enrollment.pin) ?? null),
    pin: enrollment.pin,
    node_id: enrolled.node.id,
    network_id: facts.network,
    network: enrolled.node.network,
    name: enrolled.node.name,
    interface: interfaceName,
    token: enrolled.token,
    signing_key: enrolled.signing_key,
    private_key: enrollment.privateKey,
    next_private_key: null,
    applied_version: 0,
    former_node: old !== null && old.interface === interfaceName ? { id: old.node_id, public_key: old.public_key } : null,
    earlier_nodes: old !== null && old.interface === interfaceName ? old.replaced.slice(0, MAX_EARLIER_NODES) : [],
  };
}

/**
 * The network and interface name of a document not verified yet, for the node.json written
 * before it is: only names (the agent believes no config it has not verified), each replaced by
 * a placeholder when it is not one.
 */
function unverifiedFacts(body: string): { network: string; interfaceName: string } {
  let doc: Partial<ConfigDocument> | null = null;
  try {
    doc = JSON.parse(body) as Partial<ConfigDocument>;
  } catch {
    // a body that is not JSON: the placeholders
  }
  const interfaceName = doc?.config?.network?.interfaceName;
  return { network: typeof doc?.network === "string" ? doc.network : "", interfaceName: typeof interfaceName === "string" && isInterfaceName(interfaceName) ? interfaceName : "wg-citadel" };
}

function whereEnrolled(node: Enrolled["node"]): string {
  return `${node.name} (${node.ipv4}, ${node.ipv6}) in ${node.network}`;
}

/**
 * QR versions above this (117 modules a side, 119 columns with the border) are wider than most
 * terminal windows and too dense for many phone cameras to read off a screen.
 */
const LARGE_QR_VERSION = 25;

/**
 * A phone: the key pair was made on this machine for it and nothing is written here, so this
 * is the only copy of its private key. A config too long for any QR code (some 17 peers) is
 * printed as text instead: failing now, with the node enrolled and the key spent, would lose it.
 */
async function showPhoneConfig(ctx: CommandContext, config: string, where: string): Promise<void> {
  const { renderUnicodeCompact } = await import("uqr");
  let version = 0;
  let code: string | null = null;
  try {
    code = renderUnicodeCompact(config, { onEncoded: (qr) => (version = qr.version) });
  } catch (error) {
    if (!(error instanceof RangeError)) throw error; // uqr's "Data too long"
  }
  if (code === null) {
    ctx.out(config);
    ctx.err(`Enrolled ${where}. The config is too long for a QR code: printed as text instead. Bring it to the phone as a file (the WireGuard app imports a .conf); it holds the phone's private key, so delete every copy once imported.`);
  } else {
    ctx.out(code);
    ctx.err(`Enrolled ${where}. Scan the code with the WireGuard app; this config (its private key included) is shown once and kept nowhere.`);
    if (version > LARGE_QR_VERSION) ctx.err(`The code is large (version ${version}) and may be hard to scan: make the window wider or the font smaller until the whole code shows, and hold the phone steady.`);
  }
  ctx.err("A phone has no agent: after changes to the network, enroll it again.");
}

/**
 * The node enrolled, but this machine cannot use it: who it is, and how to undo it. `dir` null:
 * a phone's config, never written; `kept`: node.json (its key pair and token) was written.
 */
function unsavedEnrollment(node: Enrolled["node"], dir: string | null, error: unknown, kept = false): string {
  const reason = error instanceof Error ? error.message : String(error);
  const what = dir === null ? `but its config cannot be shown: ${reason}` : kept ? `and its key pair and token are in ${statePath(dir)}, but joining failed: ${reason}` : `but its state could not be written to ${dir}: ${reason}`;
  return (
    `citadel mesh join: this machine is enrolled as ${node.id} (${node.name} in ${node.network}), ${what}.\n` +
    `The node cannot be used this way: have an operator remove it: ${removeNodeCommand(node)}\n` +
    `then join again with a new pre-auth key${kept ? " (--force: the state holds this node)" : ""}.`
  );
}

/**
 * A state directory that already holds a node: joining again would destroy that node's private
 * key and token while it stays enrolled, in every peer's config, its interface left to no one.
 * Refused unless --force; said either way, with the command that removes the old node.
 */
function checkNoNodeIn(ctx: CommandContext, dir: string): OldNode | null {
  if (!existsSync(statePath(dir))) return null;
  const old = readOldNode(dir);
  const which = old ? `the node ${old.node_id} (${old.name} in ${old.network}, interface ${old.interface})` : "a node (its node.json cannot be read)";
  const removal = old ? removeNodeCommand({ id: old.node_id, network: old.network }) : "citadel mesh nodes delete <network> <node>";
  if (ctx.options.force !== true) {
    throw new UsageError(
      `${dir} already holds ${which}: joining again would destroy its private key and token while it stays enrolled. ` +
        `Remove it first — ${removal}, then delete ${statePath(dir)}${old ? ` and the interface (ip link del ${old.interface})` : ""} — or give another --state, or add --force.`,
    );
  }
  ctx.err(`citadel mesh join --force: replacing ${which} in ${dir}; it stays enrolled until removed: ${removal}`);
  return old;
}

type OldNode = Pick<NodeState, "node_id" | "name" | "network" | "interface"> & { public_key: string | null; replaced: Array<{ id: string; public_key: string | null }> };

/** The node a state directory holds, as far as its file can be read. */
function readOldNode(dir: string): OldNode | null {
  try {
    const old = JSON.parse(readFileSync(statePath(dir), "utf8")) as Partial<NodeState>;
    if (typeof old.node_id !== "string" || typeof old.network !== "string") return null;
    const publicKey = typeof old.private_key === "string" && isWireGuardKey(old.private_key) ? publicKeyOfSync(old.private_key) : null;
    // The nodes it replaced itself, on its interface: the link may still carry one of their marks.
    // Their keys too: a link from before the marks carries a key, no alias (found in review).
    const replaced = [old.former_node, ...(Array.isArray(old.earlier_nodes) ? old.earlier_nodes : [])]
      .filter((n): n is { id: string; public_key: string | null } => typeof n?.id === "string")
      .map((n) => ({ id: n.id, public_key: typeof n.public_key === "string" ? n.public_key : null }));
    return { node_id: old.node_id, name: String(old.name), network: old.network, interface: String(old.interface), public_key: publicKey, replaced };
  } catch {
    return null;
  }
}

/** The operator's command that removes a node (run where the operator's CLI is logged in). */
function removeNodeCommand(node: Pick<Enrolled["node"], "id" | "network">): string {
  return `citadel mesh nodes delete ${node.network} ${node.id} (add --org ORG if you are in several organizations)`;
}

async function agent(ctx: CommandContext): Promise<number> {
  const dryRun = ctx.options["dry-run"] === true;
  const interval = integerOption(ctx, "interval", 1);
  const a = new Agent({
    stateDir: stateDir(ctx),
    dryRun,
    firewall: ctx.options["no-firewall"] !== true,
    userspace: typeof ctx.options.userspace === "string" ? ctx.options.userspace : ctx.env.WG_QUICK_USERSPACE_IMPLEMENTATION,
    err: ctx.err,
  });
  if (dryRun) {
    const { plan } = await a.round();
    if (plan) ctx.out(ctx.json ? JSON.stringify(plan, null, 2) : describePlan(plan));
    return 0;
  }
  await applyStored(a, ctx);
  let stop = false;
  const onSignal = () => (stop = true);
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  try {
    return await pollLoop(a, { interval, once: ctx.options.once === true, err: ctx.err, stopped: () => stop });
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}

export interface PollLoopOptions {
  /** --interval; undefined: the pace the control plane asks for (the applied document's poll_seconds). */
  interval: number | undefined;
  once: boolean;
  err(text: string): void;
  /** True once the agent is to stop (SIGTERM, SIGINT): checked between rounds and while waiting. */
  stopped(): boolean;
  /** Waits one tick of TICK_MS (tests count ticks instead of waiting). */
  tick?: () => Promise<void>;
  /** 0 ≤ n < 1 for the back-off's jitter (tests give a fixed one). */
  random?: () => number;
}

/** The agent waits in ticks of this length, so that a signal ends the wait at once. */
const TICK_MS = 100;
/** The pace before any config is applied, as [mesh] poll_seconds' default. */
const DEFAULT_POLL_SECONDS = 30;
/** The longest a Retry-After is followed: a date far off (a clock wrong) must not stop the agent. */
const MAX_RETRY_AFTER_SECONDS = 3600;

/** The agent's rounds until stopped: a failed round keeps the applied config and is tried again. */
export async function pollLoop(a: Agent, options: PollLoopOptions): Promise<number> {
  const tick = options.tick ?? (() => Bun.sleep(TICK_MS));
  const random = options.random ?? Math.random;
  // Said once, not at every poll: the node stays cut off until the control plane takes it again.
  let refusal: string | null = null;
  const failureLog = new FailureLog(options.err);
  let failures = 0;
  for (;;) {
    let retryAfter: number | undefined;
    try {
      const r = await a.round();
      refusal = null;
      failures = 0;
      failureLog.ended();
      if (r.changed) options.err(`applied config version ${r.version}`);
    } catch (error) {
      if (options.once) throw error;
      failures++;
      retryAfter = error instanceof ApiError ? error.facts.retryAfterSeconds : undefined;
      if (!(error instanceof NodeRefusedError)) {
        failureLog.failed(`mesh agent: ${error instanceof Error ? error.message : String(error)} (keeping the applied config; retrying)`);
      } else if (error.message !== refusal) {
        options.err(`mesh agent: ${error.message}`);
        refusal = error.message;
      }
    }
    if (options.once) return 0;
    const seconds = failures === 0 ? pollWaitSeconds(a, options.interval) : retryWaitSeconds(a, options.interval, failures, retryAfter, random);
    const ticks = Math.max(1, Math.round((seconds * 1000) / TICK_MS));
    for (let waited = 0; waited < ticks && !options.stopped(); waited++) await tick();
    if (options.stopped()) return 0;
  }
}

/**
 * Seconds until the next round: every second during a rotation (a peer's switch is followed at
 * once), else --interval, else what the applied document asks ([mesh] poll_seconds).
 */
function pollWaitSeconds(a: Agent, interval: number | undefined): number {
  if (a.overlapInProgress()) return 1;
  return usualPaceSeconds(a, interval);
}

function usualPaceSeconds(a: Agent, interval: number | undefined): number {
  return interval ?? a.pollSeconds() ?? DEFAULT_POLL_SECONDS;
}

/**
 * Seconds until the next round after `failures` failed ones in a row: the pace doubled at each,
 * up to the usual one (a rotation's every second would otherwise ask an unreachable control
 * plane 86,400 times a day, and every agent at once when it comes back), each wait between half
 * and all of that (jitter: agents that failed together do not come back together), and never
 * shorter than a Retry-After the control plane sent.
 */
function retryWaitSeconds(a: Agent, interval: number | undefined, failures: number, retryAfter: number | undefined, random: () => number): number {
  const cap = usualPaceSeconds(a, interval);
  const backoff = Math.min(cap, pollWaitSeconds(a, interval) * 2 ** Math.min(failures - 1, 30));
  const jittered = backoff * (0.5 + random() / 2);
  return Math.max(jittered, Math.min(retryAfter ?? 0, MAX_RETRY_AFTER_SECONDS));
}

/**
 * A round's failure, said once while the same one repeats (an unreachable control plane would
 * otherwise write a line at every round): then how many times it came again, when another
 * failure comes, when rounds succeed again, and every REMINDER_EVERY repeats meanwhile.
 */
class FailureLog {
  private last: string | null = null;
  private repeats = 0;

  constructor(private readonly err: (text: string) => void) {}

  failed(text: string): void {
    if (text !== this.last) {
      this.summarize();
      this.err(text);
      this.last = text;
      return;
    }
    this.repeats++;
    if (this.repeats % REMINDER_EVERY === 0) this.err(`mesh agent: still failing as said above (${this.repeats} more times so far)`);
  }

  ended(): void {
    this.summarize();
    this.last = null;
  }

  private summarize(): void {
    if (this.repeats > 0) this.err(`mesh agent: the failure above came ${this.repeats} more time(s)${this.repeats >= REMINDER_EVERY ? " in all" : ""}`);
    this.repeats = 0;
  }
}

const REMINDER_EVERY = 100;

/**
 * After a reboot the mesh comes up from the last signed config, before the server answers. A
 * failure (a damaged file, nft or a resolver not ready at boot) does not stop the agent: it
 * would exit, be restarted into the same failure for ever, and never ask the control plane for
 * the config that fixes it.
 */
async function applyStored(a: Agent, ctx: CommandContext): Promise<void> {
  try {
    if (await a.applyStored()) ctx.err("applied the stored config");
  } catch (error) {
    ctx.err(`mesh agent: the stored config was not applied: ${error instanceof Error ? error.message : String(error)} (keeping the device as it is; asking the control plane for a newer config)`);
  }
}

/** A comma-separated list of prefixes; empty: none. */
function routeList(text: string): string[] {
  return text.split(",").map((route) => route.trim()).filter(Boolean);
}

/** The routes `--<option>` names, with an exit node's default routes when --advertise-exit-node (as `advertise_routes`); nothing when neither is given. */
function offeredRoutes(ctx: CommandContext, option: string): { advertise_routes?: string[] } {
  const listed = typeof ctx.options[option] === "string" ? routeList(ctx.options[option]) : null;
  if (ctx.options["advertise-exit-node"] !== true) return listed === null ? {} : { advertise_routes: listed };
  return { advertise_routes: [...new Set([...(listed ?? []), ...EXIT_ROUTES])] };
}

async function routes(ctx: CommandContext): Promise<number> {
  if (typeof ctx.options.advertise !== "string") {
    throw new UsageError('usage: citadel mesh routes --advertise 192.168.1.0/24,fd00:1::/64 [--advertise-exit-node] (every route this node offers; "" withdraws them)');
  }
  const a = new Agent({ stateDir: stateDir(ctx), dryRun: false, firewall: false, err: ctx.err });
  const answer = await a.advertiseRoutes(offeredRoutes(ctx, "advertise").advertise_routes!);
  const pending = answer.pending_routes.length > 0 ? `\nWaiting for an operator's approval: ${answer.pending_routes.join(", ")} (citadel mesh nodes set <network> <node> --approved-routes ...).` : "";
  ctx.out(ctx.json ? JSON.stringify(answer) : `Advertised: ${answer.advertised_routes.join(", ") || "none"}.${pending}`);
  return 0;
}

async function exitNode(ctx: CommandContext): Promise<number> {
  const none = ctx.options.none === true;
  if (none === (ctx.args.length === 1)) throw new UsageError("usage: citadel mesh exit-node <node> (send this node's internet traffic through it), or --none");
  const a = new Agent({ stateDir: stateDir(ctx), dryRun: false, firewall: false, err: ctx.err });
  const answer = await a.chooseExitNode(none ? null : ctx.args[0]!);
  const text = answer.exit_node === null ? "No exit node: internet traffic goes out directly (once the agent applies the new config)." : `Exit node: ${answer.exit_node}. The agent routes internet traffic through it once it applies the new config.`;
  ctx.out(ctx.json ? JSON.stringify(answer) : text);
  return 0;
}

async function rotate(ctx: CommandContext): Promise<number> {
  const a = new Agent({ stateDir: stateDir(ctx), dryRun: false, firewall: false, err: ctx.err });
  const publicKey = await a.rotate();
  ctx.out(ctx.json ? JSON.stringify({ next_public_key: publicKey }) : `Rotation started: next key ${publicKey}.\nThe agent switches to it once every peer accepts it; the old key is dropped then.`);
  return 0;
}

export const nodeCommands: Command[] = [
  {
    words: ["mesh", "join"],
    summary: "Enroll this machine as a node (its key pair is made here; the private key never leaves it)",
    options: {
      ...STATE,
      server: { type: "string", description: "The control plane's URL (https://host:8443)" },
      key: { type: "string", description: "The pre-auth key (or CITADEL_MESH_KEY)" },
      fingerprint: { type: "string", description: "The server's public key pin (sha256//..., as citadel serve prints it), to pin a self-signed certificate; 64 hex digits (colons allowed) are taken as its certificate's SHA-256 fingerprint" },
      name: { type: "string", description: "The node's name (default: the host name)" },
      tags: { type: "string", description: "Tags to take, among those the key grants (default: all of them)" },
      endpoint: { type: "string", description: "host:port other nodes reach this one at (default: none, it dials out)" },
      "listen-port": { type: "string", description: "The UDP port to listen on (default: the endpoint's, else the network's): behind a port forward from another port, or a second network on this host" },
      interface: { type: "string", description: "The WireGuard interface on this node (default: the network's)" },
      "advertise-routes": { type: "string", description: "Subnet routes this node offers, comma-separated (192.168.1.0/24,fd00:1::/64): in effect once an operator approves them" },
      "advertise-exit-node": { type: "boolean", description: "Offer to be an exit node (0.0.0.0/0 and ::/0): in effect once an operator approves them" },
      force: { type: "boolean", description: "Join even though --state already holds a node (that node stays enrolled until an operator removes it)" },
      qr: { type: "boolean", description: "For a phone: print the whole config as a QR code (as text when too long for one) and write nothing" },
    },
    run: join,
  },
  {
    words: ["mesh", "agent"],
    summary: "Keep this node's WireGuard interface equal to its signed config (wg syncconf, addresses, nftables)",
    options: {
      ...STATE,
      once: { type: "boolean", description: "One round, then exit" },
      "dry-run": { type: "boolean", description: "Show what would change, change nothing" },
      interval: { type: "string", description: "Seconds between polls (default: the control plane's [mesh] poll_seconds, 30 until a config is applied)" },
      "no-firewall": { type: "boolean", description: "Do not load the nftables rules" },
      userspace: { type: "string", description: "Userspace WireGuard when the kernel has none (default wireguard-go)" },
    },
    run: agent,
  },
  {
    words: ["mesh", "routes"],
    summary: "Advertise the subnet routes this node offers (replaces them; an operator approves each)",
    options: {
      ...STATE,
      advertise: { type: "string", description: 'Every route offered, comma-separated ("": none; 0.0.0.0/0,::/0: an exit node)' },
      "advertise-exit-node": { type: "boolean", description: "Offer to be an exit node too (adds 0.0.0.0/0 and ::/0)" },
    },
    run: routes,
  },
  {
    words: ["mesh", "exit-node"],
    summary: "Send this node's internet traffic through an exit node of its network (as the ACL allows: autogroup:internet), or --none",
    args: "[<node>]",
    maxArgs: 1,
    options: { ...STATE, none: { type: "boolean", description: "Use no exit node: internet traffic goes out directly" } },
    run: exitNode,
  },
  {
    words: ["mesh", "rotate"],
    summary: "Start rotating this node's WireGuard key (peers accept the new key before the old one is dropped)",
    options: STATE,
    run: rotate,
  },
];
