/**
 * Webhooks: per workspace, told about every secret change their maker may know of (names,
 * versions, actor; never a value: see makerMayEnter). A change enqueues a delivery in the same
 * transaction as the change, so none is lost to a crash; a worker sends due deliveries, signed (see webhook-signature.ts), and retries
 * with doubling back-off. Citadel connects only to URLs under the operator's allowed prefixes.
 */
import type { Database } from "bun:sqlite";
import { DecryptionError } from "../../src/crypto/aead.ts";
import { KeyDestroyedError, type Keyring } from "../../src/crypto/keyring.ts";
import { ConflictError, ForbiddenError, InvalidError, NotFoundError } from "../../src/errors.ts";
import { newId } from "../../src/ids.ts";
import { underPrefix } from "../../src/net/url-prefix.ts";
import type { Stop } from "../../src/plugin.ts";
import { byWhom, ensureWorkspace, environmentFor, event, existingWorkspace, mayManageMembers, protectionLetsIn, requireLiveWorkspace, roleInWorkspace, type Caller, type SecretsKernel } from "./context.ts";
import * as sql from "./store.ts";
import { generateWebhookSecret, signWebhook } from "./webhook-signature.ts";

/** A webhook's deliveries the API shows, its newest: older finished ones are deleted. */
const DELIVERIES_KEPT = 100;
const FIRST_RETRY_MS = 5_000;
const LONGEST_RETRY_MS = 3_600_000;
/** Attempts in flight at once, across all webhooks (one per webhook at most). */
const MAX_IN_FLIGHT = 20;
/**
 * Attempts in flight at once for the webhooks of one organization: an organization's admin can
 * point many webhooks at receivers that hang until webhook_timeout_seconds, and without a share
 * would hold every slot, again and again, while the other organizations' deliveries wait.
 */
const MAX_IN_FLIGHT_PER_ORGANIZATION = 5;

/** Why a webhook's pending deliveries are given up unsent: the last error they show, and the server log's warning. */
const WORKSPACE_GONE = {
  error: "not sent: its workspace is deleted, or its organization's erasure was asked for",
  warning: "webhook deliveries dropped: their workspace or organization is gone",
};
/**
 * The webhooks the audit event of an encryption run names, the first of them; the rest are
 * counted, the log line names them all (found in review: thousands made one event of hundreds
 * of KB).
 */
const ENCRYPTED_WEBHOOKS_NAMED = 20;
const URL_NOT_ALLOWED = {
  error: "not sent: the URL is no longer allowed (secrets.webhook_allowed_urls)",
  warning: "webhook deliveries dropped: its URL is no longer allowed (secrets.webhook_allowed_urls)",
};

export interface ChangeEvent {
  type: string;
  workspace: string;
  environment: string;
  name: string;
  version: number;
  actor: string;
}

export class Webhooks {
  /** The attempt in flight of each webhook that has one, and the organization it counts against. */
  private readonly inFlight = new Map<string, { organization: string; attempt: Promise<void> }>();
  /** Aborted when the worker stops: the attempts in flight end at once, recording nothing. */
  private stopping = new AbortController();

  constructor(private readonly k: SecretsKernel) {}

  /**
   * Queues the change for every webhook of the workspace whose maker may enter its environment
   * now (see makerMayEnter) and whose URL the operator allows: the allowed prefixes are read at
   * start, so nothing queued for a webhook they leave out could be sent before a restart, and
   * its deliveries would pile up. Runs inside the change's transaction.
   */
  enqueue(tx: Database, workspaceId: string, change: ChangeEvent): void {
    const hooks = sql.webhooksOf(tx, workspaceId);
    if (hooks.length === 0) return;
    const ws = sql.workspaceRow(tx, workspaceId);
    const env = sql.environmentByName(tx, workspaceId, change.environment);
    if (!ws || !env) return;
    const now = this.k.clock.now();
    for (const hook of hooks.filter((h) => this.urlAllowed(h) && makerMayEnter(this.k, h, ws, env))) {
      const body = JSON.stringify({ id: newId("whe"), time: new Date(now).toISOString(), ...change });
      sql.enqueueDelivery(tx, hook.id, body, now);
    }
  }

  async create(caller: Caller, workspaceId: string, url: string) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const normalized = this.checkUrl(url);
    const id = newId("whk");
    const secret = generateWebhookSecret();
    await this.k.store.write((tx) => {
      // Deleted since it was read: the insert below would meet the foreign key (a 500), not an answer.
      if (!sql.workspaceRow(tx, workspaceId)) throw new ConflictError("The workspace was deleted meanwhile.");
      // Its organization's erasure asked for meanwhile keeps the row until the erasure: no new webhook joins it.
      requireLiveWorkspace(this.k, tx, workspaceId);
      const existing = sql.webhooksOf(tx, workspaceId);
      // Compared whole, decrypted: a workspace has a few webhooks (secrets.webhooks_per_workspace).
      // One that does not decrypt (logged) is no duplicate: it must not stop every new webhook.
      if (existing.some((h) => this.readableUrl(h) === normalized)) throw new ConflictError("This workspace has a webhook for that URL already.");
      const keyring = this.k.seal.keyring();
      this.checkRoomFor(existing.length);
      const sealed = keyring.encrypt(tx, webhookKeyOwner(id), "secret", secret);
      const url = keyring.encrypt(tx, webhookKeyOwner(id), "url", normalized);
      sql.insertWebhook(tx, { id, workspace_id: workspaceId, url: originOnly(normalized), url_encrypted: url, secret: sealed, created_at: this.k.clock.now(), created_by: this.makerOf(caller) });
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.webhook.create", resource: { type: "webhook", id }, reason: new URL(normalized).origin }));
    });
    return { ...view(sql.webhookById(this.k.store.db, id)!, normalized), secret };
  }

  /**
   * The workspace's webhooks. A URL can be a capability (a token in its path, as many receivers
   * use): whole for who may manage the workspace's members (operators included), otherwise its
   * origin only.
   */
  list(caller: Caller, workspaceId: string) {
    const ws = sql.workspaceRow(this.k.store.db, workspaceId);
    const whole = ws !== null && mayManageMembers(this.k, caller.principal, ws.organization_id, ws);
    return sql.webhooksOf(this.k.store.db, workspaceId).map((hook) => view(hook, (whole && this.readableUrl(hook)) || originOnly(hook.url)));
  }

  async delete(caller: Caller, workspaceId: string, id: string) {
    const ws = await ensureWorkspace(this.k, workspaceId);
    const hook = this.hookIn(workspaceId, id);
    await this.k.store.write((tx) => {
      // Another request may have deleted it since it was looked up: one deletion, one event.
      if (!sql.deleteWebhook(tx, hook.id, this.k.clock.now())) throw noSuchWebhook();
      this.k.seal.keyring().destroyOwner(tx, webhookKeyOwner(hook.id), this.k.clock.now());
      this.k.audit.record(tx, event(caller, ws, { action: "secrets.webhook.delete", resource: { type: "webhook", id } }));
    });
  }

  /**
   * The webhook's newest deliveries whose events the caller may know: of environments they may
   * enter now (an event names a secret, its version and who changed it). Who may read the log
   * (an admin) may still be left out of a `named` environment the webhook's maker was let in.
   */
  deliveries(caller: Caller, workspaceId: string, id: string) {
    const hook = this.hookIn(workspaceId, id);
    const mayEnter = this.environmentsOpenTo(caller, workspaceId);
    return sql.deliveriesOf(this.k.store.db, hook.id, DELIVERIES_KEPT)
      .map(deliveryView)
      .filter((d) => mayEnter(d.event.environment));
  }

  /** Whether the caller may enter an environment of the workspace (as a request for its secrets would), by name; one that is gone lets no one in. */
  private environmentsOpenTo(caller: Caller, workspaceId: string): (environment: string) => boolean {
    const ws = existingWorkspace(this.k, workspaceId);
    const known = new Map<string, boolean>();
    return (environment) => {
      let open = known.get(environment);
      if (open === undefined) known.set(environment, (open = ws !== null && this.mayEnter(caller, ws, environment)));
      return open;
    };
  }

  private mayEnter(caller: Caller, ws: sql.WorkspaceRow, environment: string): boolean {
    try {
      environmentFor(this.k, caller, ws, environment);
      return true;
    } catch (error) {
      if (error instanceof ForbiddenError || error instanceof NotFoundError) return false;
      throw error;
    }
  }

  /**
   * Sends what is due every `intervalMs`, and again as soon as an attempt ends, so a receiver
   * that answers quickly works through its backlog without waiting for the clock (not while
   * sealed: the signing secrets and URLs are encrypted). Once unsealed (now, or at the unseal of
   * an instance that starts sealed), encrypts the URLs an earlier version stored whole and names
   * the webhooks the allowed prefixes leave out.
   */
  start(intervalMs = 1_000): Stop {
    const unsealed = () => {
      this.warnOfWebhooksNotAllowed();
      void this.encryptStoredUrls().catch((error) => this.k.log.error("webhook URLs stored whole could not be encrypted", { error: String(error) }));
    };
    if (!this.k.seal.sealed) unsealed();
    const stopUnsealed = this.k.seal.onUnseal(unsealed);
    let stopped = false;
    const stopping = (this.stopping = new AbortController());
    const sendDue = () => {
      if (!stopped && !this.k.seal.sealed) this.startDue(sendDue);
    };
    const timer = setInterval(sendDue, intervalMs);
    timer.unref?.();
    return async () => {
      stopped = true;
      stopUnsealed();
      clearInterval(timer);
      // Waiting for a slow receiver (up to webhook_timeout_seconds) would overrun the deadline to
      // stop: its request is cut short, and its delivery, still pending, goes out again after the
      // restart (receivers dedupe on the event's id). What is left to wait for is local: the
      // attempts end without the network, before the store closes.
      stopping.abort();
      await Promise.all([...this.inFlight.values()].map((f) => f.attempt));
    };
  }

  /**
   * Names each webhook the allowed prefixes leave out (narrowed since it was made): nothing is
   * queued for it or sent to it until they allow it again. By its id and origin: its path can be
   * a token.
   */
  private warnOfWebhooksNotAllowed(): void {
    for (const hook of sql.liveWebhooks(this.k.store.db)) {
      const url = this.readableUrl(hook);
      if (url === null || this.allowed(url)) continue; // one that does not decrypt is named as such
      this.k.log.warn("webhook not allowed by secrets.webhook_allowed_urls: nothing is queued for it or sent to it", { webhook: hook.id, workspace: hook.workspace_id, origin: new URL(hook.url).origin });
    }
  }

  /**
   * Encrypts the URLs an earlier version stored whole, and leaves their origin in their place;
   * each once (idempotent). A run that encrypts any is audited once, naming the webhooks and
   * their workspaces (the first ENCRYPTED_WEBHOOKS_NAMED, and how many more), never a URL (found
   * in review: a change to stored security data with no event). Returns how many it encrypted.
   */
  async encryptStoredUrls(): Promise<number> {
    const keyring = this.k.seal.keyringIfUnsealed();
    if (!keyring) return 0;
    const ids = await this.k.store.write((tx) => {
      const hooks = sql.webhooksWithWholeUrls(tx);
      for (const hook of hooks) sql.setWebhookUrl(tx, hook.id, originOnly(hook.url), keyring.encrypt(tx, webhookKeyOwner(hook.id), "url", hook.url));
      if (hooks.length > 0) {
        const named = firstNamed(hooks.map((h) => `${h.id} in ${h.workspace_id}`), ENCRYPTED_WEBHOOKS_NAMED);
        const reason = `webhook URLs stored whole by an earlier version encrypted: ${hooks.length} (${named})`;
        this.k.audit.record(tx, { action: "secrets.webhook.encrypt", actor: { kind: "system" }, outcome: "success", resource: null, reason });
      }
      return hooks.map((h) => h.id);
    });
    if (ids.length > 0) this.k.log.info("webhook URLs stored whole by an earlier version are encrypted now", { webhooks: ids });
    return ids.length;
  }

  /** Starts the deliveries that are due, beside those in flight; resolves when each started has been tried once. */
  async deliverDue(): Promise<number> {
    const started = this.startDue();
    await Promise.all(started);
    return started.length;
  }

  /**
   * Starts, each on its own, the next due delivery of every webhook with none in flight, up to
   * MAX_IN_FLIGHT in all and MAX_IN_FLIGHT_PER_ORGANIZATION per organization: a receiver that
   * hangs keeps one attempt waiting (until webhook_timeout_seconds), never another webhook's, and
   * an organization at its share is passed over for the oldest due of one under it. `ended` runs
   * after each attempt.
   */
  private startDue(ended?: () => void): Promise<void>[] {
    const room = MAX_IN_FLIGHT - this.inFlight.size;
    if (room <= 0) return [];
    const due = sql.nextDueFairly(this.k.store.db, this.k.clock.now(), this.busy(), MAX_IN_FLIGHT_PER_ORGANIZATION, room);
    return due.map((delivery) => {
      const attempt = this.run(delivery, ended);
      this.inFlight.set(delivery.webhook_id, { organization: delivery.organization_id, attempt });
      return attempt;
    });
  }

  /** The webhooks with an attempt in flight, and how many attempts each organization has in flight. */
  private busy(): { webhooks: string[]; organizations: Record<string, number> } {
    const organizations: Record<string, number> = {};
    for (const { organization } of this.inFlight.values()) organizations[organization] = (organizations[organization] ?? 0) + 1;
    return { webhooks: [...this.inFlight.keys()], organizations };
  }

  private async run(delivery: sql.DeliveryRow, ended?: () => void): Promise<void> {
    let recorded = false;
    try {
      await this.attemptOrGiveUp(delivery);
      recorded = true;
    } catch (error) {
      this.k.log.error("webhook delivery failed", { delivery: delivery.id, error: String(error) });
    } finally {
      this.inFlight.delete(delivery.webhook_id);
    }
    // An outcome not recorded (the store failing) waits for the next tick: at once, it would be sent again and again.
    if (recorded) ended?.();
  }

  private async attemptOrGiveUp(delivery: sql.DeliveryRow): Promise<void> {
    try {
      await this.attempt(delivery);
    } catch (error) {
      // Not the receiver's fault (a key that cannot be read): give up on it rather than retry every second.
      this.k.log.error("webhook delivery could not be prepared", { delivery: delivery.id, error: String(error) });
      const now = this.k.clock.now();
      await this.record(delivery, { state: "failed", status: null, error: "could not be prepared (see the server log)", nextAttemptAt: now, at: now });
    }
  }

  private async attempt(delivery: sql.DeliveryRow): Promise<void> {
    const hook = sql.webhookById(this.k.store.db, delivery.webhook_id);
    if (!hook) return; // deleted since the delivery was picked, and its deliveries with it
    if (!this.workspaceLive(hook.workspace_id)) return this.giveUpDeliveriesOf(hook, WORKSPACE_GONE);
    const url = webhookUrl(this.k.seal.keyring(), hook);
    // Narrowed since it was made: no attempt can succeed before a restart, so none is retried.
    if (!this.allowed(url)) return this.giveUpDeliveriesOf(hook, URL_NOT_ALLOWED);
    const secretBytes = this.k.seal.keyring().decrypt(webhookKeyOwner(hook.id), "secret", hook.secret);
    const headers = { "content-type": "application/json", "user-agent": "citadel-webhook/1", ...signWebhook(secretBytes.toString("utf8"), delivery.event, Math.floor(this.k.clock.now() / 1000)) };
    secretBytes.fill(0);
    const stopping = this.stopping.signal;
    let status: number | null = null;
    let error: string | null = null;
    try {
      const timeout = AbortSignal.timeout(this.k.settings.webhook_timeout_seconds * 1000);
      // Redirects are not followed: they could lead outside the allowed prefixes.
      const res = await fetch(url, { method: "POST", body: delivery.event, headers, redirect: "manual", signal: AbortSignal.any([timeout, stopping]) });
      status = res.status;
      await res.body?.cancel();
      if (status < 200 || status > 299) error = `the receiver answered ${status}`;
    } catch (e) {
      if (stopping.aborted) return; // cut short by the stop: not the receiver's attempt, still pending
      error = e instanceof Error && e.name === "TimeoutError" ? "timed out" : "could not connect";
    }
    const attempts = delivery.attempts + 1;
    const now = this.k.clock.now();
    const state = error === null ? "delivered" : attempts >= this.k.settings.webhook_max_attempts ? "failed" : "pending";
    const nextAttemptAt = now + Math.min(LONGEST_RETRY_MS, FIRST_RETRY_MS * 2 ** (attempts - 1));
    await this.record(delivery, { state, status, error, nextAttemptAt, at: now });
  }

  /** Whether iam still has the workspace, and its organization: not deleted, no erasure asked for. */
  private workspaceLive(workspaceId: string): boolean {
    const provider = this.k.identity.provider;
    return provider === null || provider.workspace(workspaceId) !== null;
  }

  /**
   * Gives up, unsent, every pending delivery of a webhook none can reach: one whose workspace iam
   * no longer has, or whose URL the operator no longer allows. A deleted workspace takes its
   * webhooks along; an organization whose erasure is asked for keeps them (soft-deleted) until
   * the grace period ends, and their retries went out meanwhile (found in review): nothing more
   * is told about an organization on its way out. A URL left out stays so until a restart, and
   * each delivery went through all its attempts, one after the other (found in review).
   */
  private async giveUpDeliveriesOf(hook: sql.WebhookRow, why: { error: string; warning: string }): Promise<void> {
    const now = this.k.clock.now();
    const dropped = await this.k.store.write((tx) => {
      const given = sql.giveUpPendingDeliveries(tx, hook.id, why.error, now);
      sql.pruneDeliveries(tx, hook.id, DELIVERIES_KEPT);
      return given;
    });
    this.k.log.warn(why.warning, { webhook: hook.id, workspace: hook.workspace_id, deliveries: dropped });
  }

  /** An attempt's outcome; and the webhook's log is kept to what the API shows. */
  private async record(delivery: sql.DeliveryRow, outcome: sql.AttemptOutcome): Promise<void> {
    await this.k.store.write((tx) => {
      sql.recordAttempt(tx, delivery.id, outcome);
      sql.pruneDeliveries(tx, delivery.webhook_id, DELIVERIES_KEPT);
    });
  }

  /**
   * Every change writes one delivery per webhook of its workspace, inside the change's own
   * transaction: without a cap, many webhooks times a large import blocked the server for seconds.
   */
  private checkRoomFor(webhooks: number): void {
    const most = this.k.settings.webhooks_per_workspace;
    if (webhooks >= most) throw new ConflictError(`This workspace has ${webhooks} webhooks, and secrets.webhooks_per_workspace allows ${most}: delete one first.`);
  }

  private hookIn(workspaceId: string, id: string): sql.WebhookRow {
    const hook = sql.webhookById(this.k.store.db, id);
    if (!hook || hook.workspace_id !== workspaceId) throw noSuchWebhook();
    return hook;
  }

  /** Whether the webhook's URL is under one of the operator's allowed prefixes (one that does not decrypt is not). */
  private urlAllowed(hook: sql.WebhookRow): boolean {
    const url = this.readableUrl(hook);
    return url !== null && this.allowed(url);
  }

  /** The webhook's whole URL; null, logged, when it does not decrypt (damaged): nothing can be sent to it. */
  private readableUrl(hook: sql.WebhookRow): string | null {
    try {
      return webhookUrl(this.k.seal.keyring(), hook);
    } catch (error) {
      if (!(error instanceof DecryptionError || error instanceof KeyDestroyedError)) throw error;
      this.k.log.error("webhook URL does not decrypt: nothing is queued for it or sent to it; delete it and make it again", { webhook: hook.id, workspace: hook.workspace_id, error: String(error) });
      return null;
    }
  }

  /** Whether the URL is under one of the operator's allowed prefixes (read at start). */
  private allowed(url: string): boolean {
    try {
      this.checkUrl(url);
      return true;
    } catch (error) {
      if (error instanceof InvalidError) return false;
      throw error;
    }
  }

  /**
   * Who a webhook is made by, as makerMayEnter judges it: a user, or the credential that stands:
   * for a token exchanged from a key, that key (found in review: the token's own row, purged 90
   * days after its hour ended, silenced the webhook of a key still in use).
   */
  private makerOf(caller: Caller): string {
    const by = byWhom(caller.principal);
    if (by.startsWith("usr_")) return by;
    return this.k.identity.provider?.credentialStanding(by, this.k.clock.now())?.id ?? by;
  }

  /** An absolute http(s) URL under one of the operator's allowed prefixes; deny by default. */
  private checkUrl(url: string): string {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new InvalidError("an absolute http or https URL", "url");
    }
    if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new InvalidError("an absolute http or https URL", "url");
    if (parsed.username || parsed.password) throw new InvalidError("no credentials in the URL: the signature authenticates Citadel", "url");
    const allowed = this.k.settings.webhook_allowed_urls;
    if (!allowed.some((prefix) => underPrefix(parsed, prefix))) {
      throw new InvalidError(allowed.length === 0 ? "webhooks are off: the operator allows none (secrets.webhook_allowed_urls)" : "this URL is not under a prefix the operator allows (secrets.webhook_allowed_urls)", "url");
    }
    return parsed.href;
  }
}

/**
 * Whether the environment's protection lets the webhook's maker in now, as environmentFor lets in
 * a caller: a webhook is told what its maker may know — nothing once they left the workspace's
 * organization. A webhook made by a service key (`created_by` its token id) is judged as the
 * key's maker — but never let into a named environment, which no key enters — and hears
 * nothing once the key is revoked or expired (found in review: one kept
 * hearing of `admins` environments, then of every environment, after the key's maker was demoted
 * or removed, or the key revoked). A key made before makers were recorded hears only of
 * environments open to members, as it is never taken for an admin.
 */
function makerMayEnter(k: SecretsKernel, hook: sql.WebhookRow, ws: sql.WorkspaceRow, env: sql.EnvironmentRow): boolean {
  let user = hook.created_by.startsWith("usr_") ? hook.created_by : null;
  if (user === null) {
    // A named environment lets in no service key, whoever made it (environmentFor).
    if (env.protection === "named") return false;
    const provider = k.identity.provider;
    if (!provider) return env.protection === "members"; // no identity service in this build: no one to ask
    const key = provider.credentialStanding(hook.created_by, k.clock.now());
    // A key gone (purged after it ended, erased with its maker) is no key (found in review: its
    // webhook heard every members environment again).
    if (key === null || !key.usable) return false;
    if (key.actsFor === null) return env.protection === "members";
    user = key.actsFor;
  }
  // Unlike a caller, a maker who left the organization is told nothing, of any environment.
  const role = roleInWorkspace(k, { userId: user }, ws);
  return role !== null && protectionLetsIn(env, { role: () => role, userId: user, unboundKey: false });
}

const noSuchWebhook = () => new NotFoundError("No such webhook in this workspace.");

/** The keyring owner of a webhook's signing secret and URL: destroyed with the webhook. */
export const webhookKeyOwner = (webhookId: string) => `webhook:${webhookId}`;

/**
 * The webhook's whole URL: decrypted, or as an earlier version stored it (until
 * encryptStoredUrls encrypts it). Throws KeyDestroyedError or DecryptionError when it is gone.
 */
export function webhookUrl(keyring: Keyring, hook: Pick<sql.WebhookRow, "id" | "url" | "url_encrypted">): string {
  if (hook.url_encrypted === null) return hook.url;
  return keyring.decrypt(webhookKeyOwner(hook.id), "url", hook.url_encrypted).toString("utf8");
}

function originOnly(url: string): string {
  try {
    return `${new URL(url).origin}/…`;
  } catch {
    return "…";
  }
}

/** The first `most` names, and how many more there are (as src/crypto/key-operations.ts names a damaged KEK's owners). */
function firstNamed(names: readonly string[], most: number): string {
  const more = names.length - most;
  return more > 0 ? `${names.slice(0, most).join(", ")}, and ${more} more` : names.join(", ");
}

function deliveryView(d: sql.DeliveryRow) {
  return {
    id: d.id,
    event: JSON.parse(d.event) as ChangeEvent & { id: string },
    state: d.state,
    attempts: d.attempts,
    next_attempt_at: d.state === "pending" ? new Date(d.next_attempt_at).toISOString() : null,
    last_status: d.last_status,
    last_error: d.last_error,
    created_at: new Date(d.created_at).toISOString(),
    delivered_at: d.delivered_at === null ? null : new Date(d.delivered_at).toISOString(),
  };
}

/** A webhook as the API shows it, with `url` (whole, or its origin only). */
function view(hook: sql.WebhookRow, url: string) {
  return { id: hook.id, url, created_at: new Date(hook.created_at).toISOString(), created_by: hook.created_by };
}
