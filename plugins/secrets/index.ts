/**
 * The `secrets` plugin: environments, secrets with versions, bulk import and export, rotation,
 * one-time share links, end-to-end-encrypted workspaces and webhooks. Workspaces belong to iam;
 * the guard checks the caller's role in them before a handler runs, and the handlers add the
 * environment's protection (see context.ts).
 */
import { Elysia } from "elysia";
import { ForbiddenError, InvalidError } from "../../src/errors.ts";
import { access } from "../../src/http/access.ts";
import { pageWithoutTrailingSlash } from "../../src/http/public-url.ts";
import { auditRequest } from "../../src/http/audit-request.ts";
import { principalOf, worksLong } from "../../src/http/request-meta.ts";
import { subjectsOf } from "../../src/subjects.ts";
import { organizationDeletionsOf, workspaceDeletionsOf } from "../../src/workspace-deletions.ts";
import { secretsOrganizationDeletion, secretsSubjects, secretsWorkspaceDeletion } from "./subject.ts";
import { definePlugin, type Kernel } from "../../src/plugin.ts";
import { secretsCommands } from "./commands.ts";
import type { Caller } from "./context.ts";
import { E2eeKeys } from "./e2ee-keys.ts";
import { secretsMigrations } from "./migrations.ts";
import * as m from "./model.ts";
import { SecretsService, type IfMatch } from "./service.ts";
import { SecretsSettings } from "./settings.ts";
import { SHARE_PAGE_CSP, SHARE_PAGE_HTML, SHARE_PAGE_JS } from "./share-page.ts";
import { Shares } from "./shares.ts";
import { carryOverShares } from "./restore.ts";
import { Webhooks } from "./webhooks.ts";

const ACTIONS = [
  ["secrets.workspace.update", "A workspace's end-to-end encryption was turned on or off (while it held no secrets)."],
  ["secrets.environment.create", "An environment was added to a workspace."],
  ["secrets.environment.update", "An environment's protection changed."],
  ["secrets.environment.delete", "An empty environment was removed."],
  ["secrets.secret.create", "A secret was made (its first version)."],
  ["secrets.secret.update", "A secret got a new version (or its metadata changed)."],
  ["secrets.secret.read", "A secret's value was read (audited before it was returned)."],
  ["secrets.secret.rollback", "A secret got a new version holding an older version's value."],
  ["secrets.secret.rotate", "A secret got a new version made by a generator."],
  ["secrets.secret.delete", "A secret was soft-deleted (restorable)."],
  ["secrets.secret.restore", "A soft-deleted secret was restored."],
  ["secrets.secret.purge", "A secret and all its versions were removed for good."],
  ["secrets.key.rotate", "A workspace got a new data key; its values are re-encrypted with it."],
  ["secrets.share.create", "A share link was made."],
  ["secrets.share.view", "A share link was opened (failure: wrong link, wrong passphrase, used up, expired or revoked)."],
  ["secrets.share.revoke", "A share link was revoked: by a person, or with the secret it carries (purged or deleted), by the system with its workspace's deletion or at start (its secret found gone), or burned by too many wrong passphrases."],
  ["secrets.restore.shares", "At the first start after a restore: share links viewed, revoked or burned after the backup were carried over (without the previous database, every link still open was revoked)."],
  ["secrets.e2ee.keypair", "A user registered (or replaced) their end-to-end encryption key pair."],
  ["secrets.e2ee.grant", "A member's client wrapped a workspace key for another member."],
  ["secrets.e2ee.revoke", "A member's wrapped workspace keys were removed."],
  ["secrets.e2ee.rotate", "An end-to-end-encrypted workspace got a new key; its values were re-encrypted by a member's client."],
  ["secrets.webhook.create", "A webhook was added to a workspace."],
  ["secrets.webhook.delete", "A webhook was removed."],
  ["secrets.webhook.encrypt", "Webhook URLs an earlier version stored whole were encrypted, at the first start or unseal that had the keys (how many, and which webhooks in which workspaces; never a URL)."],
] as const;

const caller = (request: Request): Caller => ({ principal: principalOf(request), request: auditRequest(request) });

/**
 * The caller, for what belongs to the whole account: a key pair opens the user's workspace keys
 * in every organization, and replacing it drops them all, so a token restricted to one
 * organization or workspace must not replace it.
 */
function accountWide(c: Caller): Caller {
  if (c.principal.organizationId !== null || c.principal.workspaceId !== null) {
    throw new ForbiddenError("a token restricted to an organization or a workspace cannot replace your key pair, which serves all of them: use your login (citadel login) or an unrestricted token");
  }
  return c;
}
const items = <T>(list: T[]) => ({ items: list });

/** Services made per kernel; the routes, the start hook (and tests) share one. */
const services = new WeakMap<object, { secrets: SecretsService; shares: Shares; keys: E2eeKeys; webhooks: Webhooks }>();
export function servicesOf(k: Kernel<SecretsSettings>) {
  let s = services.get(k.store);
  if (!s) {
    const webhooks = new Webhooks(k);
    s = { secrets: new SecretsService(k, webhooks), shares: new Shares(k), keys: new E2eeKeys(k), webhooks };
    services.set(k.store, s);
  }
  return s;
}

/**
 * `If-Match: "3"` (or 3): change the secret only if it is still at version 3. A weak tag
 * (W/"3") is well formed, and never matches (the service answers 412).
 */
function ifMatchOf(request: Request): IfMatch | undefined {
  const header = request.headers.get("if-match");
  if (header === null) return undefined;
  const match = /^\s*(W\/)?"?(\d{1,9})"?\s*$/.exec(header);
  if (!match) throw new InvalidError('If-Match: the version to replace, such as "3" (0: only if it does not exist)', "if-match");
  return { version: Number(match[2]), weak: match[1] !== undefined };
}

const W = "/workspaces/:workspace";
const E = `${W}/environments/:environment`;
const S = `${E}/secrets/:name`;
const tags = ["secrets"];
const READ = { scope: "secrets:read", workspace: "workspace" } as const;
const WRITE = { scope: "secrets:write", workspace: "workspace" } as const;
const ADMIN = { scope: "secrets:admin", workspace: "workspace", permission: "manage_members" } as const;

export const secretsPlugin = definePlugin<SecretsSettings>({
  name: "secrets",
  service: "secrets",
  settings: SecretsSettings,
  scopes: ["secrets:read", "secrets:write", "secrets:admin"],
  actions: ACTIONS.map(([type, description]) => ({ type, description })),
  migrations: secretsMigrations,

  async start(k) {
    const { secrets, shares, webhooks } = servicesOf(k);
    // Before any link is served: one used up after the backup must not open again.
    const carried = await carryOverShares(k, k.config.data_dir);
    if (carried) k.log.warn("secrets: after a restore, share links used after the backup were carried over", { ...carried });
    // Before any link is served too: one whose secret went before purges and deletes revoked its links must not open.
    const orphaned = await shares.revokeLinksToSecretsGone();
    if (orphaned > 0) k.log.warn("secrets: share links whose secret is gone were revoked", { revoked: orphaned });
    const resume = async () => {
      const done = await secrets.resumeReencryption();
      if (done > 0) k.log.info("finished an interrupted data key rotation", { reencrypted: done });
    };
    if (!k.seal.sealed) await resume();
    // An instance that starts sealed (key shares) finishes it once unsealed, in the background.
    const stopResuming = k.seal.onUnseal(() => void resume().catch((error) => k.log.error("could not finish an interrupted data key rotation", { error: String(error) })));
    const stopDeliveries = webhooks.start();
    const sweeper = setInterval(() => void shares.sweep().catch((error) => k.log.error("share link sweep failed", { error: String(error) })), 60_000);
    sweeper.unref?.();
    const unregister = subjectsOf(k.store).register(secretsSubjects(k.store, () => k.seal.keyring(), k.audit));
    const unregisterDeletion = workspaceDeletionsOf(k.store).register(secretsWorkspaceDeletion(() => k.seal.keyring(), k.audit));
    const unregisterOrganizationDeletion = organizationDeletionsOf(k.store).register(secretsOrganizationDeletion(() => k.seal.keyring()));
    return async () => {
      stopResuming();
      unregister();
      unregisterDeletion();
      unregisterOrganizationDeletion();
      clearInterval(sweeper);
      await stopDeliveries();
    };
  },

  routes: (k) => {
    const { secrets, shares, keys, webhooks } = servicesOf(k);
    return (
      new Elysia({ name: "secrets" })
        // --- workspace settings and environments ------------------------------------------
        .get(`${W}/settings`, ({ params }) => secrets.settings(params.workspace), {
          response: m.WorkspaceSettings,
          detail: { summary: "The workspace's secrets settings: end-to-end encryption, data key, environments", tags, ...access(READ) },
        })
        .patch(`${W}/settings`, ({ params, body, request }) => secrets.setE2ee(caller(request), params.workspace, body.e2ee), {
          body: m.WorkspaceSettingsChange,
          response: m.WorkspaceSettings,
          detail: { summary: "Turn end-to-end encryption on or off (only while the workspace holds no secrets)", tags, ...access(ADMIN) },
        })
        .get(`${W}/environments`, async ({ params }) => items((await secrets.settings(params.workspace)).environments), {
          response: m.EnvironmentList,
          detail: { summary: "The workspace's environments", tags, ...access(READ) },
        })
        .post(`${W}/environments`, ({ params, body, request }) => secrets.createEnvironment(caller(request), params.workspace, body), {
          body: m.NewEnvironment,
          response: m.Environment,
          detail: { summary: "Add an environment", tags, ...access(ADMIN) },
        })
        .put(E, ({ params, body, request }) => secrets.protectEnvironment(caller(request), params.workspace, params.environment, body), {
          body: m.EnvironmentProtection,
          response: m.Environment,
          detail: { summary: "Set who may use an environment (production: admins, or named members)", tags, ...access(ADMIN) },
        })
        .delete(
          E,
          async ({ params, request }) => {
            await secrets.deleteEnvironment(caller(request), params.workspace, params.environment);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Remove an empty environment (asks for confirmation)", tags, ...access({ ...ADMIN, permission: "delete", confirm: true }) } },
        )
        // --- secrets -----------------------------------------------------------------------
        .get(`${E}/secrets`, ({ params, query, request }) => secrets.list(caller(request), params.workspace, params.environment, query), {
          query: m.ListQuery,
          response: m.SecretList,
          detail: { summary: "The environment's secrets: names and metadata, values only with ?values=true (audited)", tags, ...access(READ) },
        })
        .get(
          `${E}/export`,
          async ({ params, query, request }) =>
            new Response(await secrets.export(caller(request), params.workspace, params.environment, query.format ?? "dotenv"), {
              headers: { "content-type": query.format === "json" ? "application/json" : "text/plain; charset=utf-8", "cache-control": "no-store" },
            }),
          {
            query: m.ExportQuery,
            detail: { summary: "The environment's values as a .env file or JSON (every read audited)", tags, responses: { 200: EXPORT_RESPONSE }, ...access(READ) },
          },
        )
        .post(`${E}/import`, ({ params, body, request }) => secrets.import(caller(request), params.workspace, params.environment, body), {
          body: m.ImportRequest,
          response: m.ImportResult,
          detail: { summary: "Import a .env file, JSON or entries, all or nothing; dry_run says what would change", tags, ...access(WRITE) },
        })
        .get(
          S,
          async ({ params, query, request, set }) => {
            const secret = await secrets.read(caller(request), params.workspace, params.environment, params.name, query.version);
            set.headers.etag = `"${secret.version}"`;
            set.headers["cache-control"] = "no-store";
            return secret;
          },
          { query: m.ReadQuery, response: m.SecretValue, detail: { summary: "A secret's value (?version=N for an older one); the read is audited first", tags, ...access(READ) } },
        )
        .put(
          S,
          async ({ params, body, request, set }) => {
            const secret = await secrets.set(caller(request), params.workspace, params.environment, params.name, body, ifMatchOf(request));
            set.headers.etag = `"${secret.version}"`;
            return secret;
          },
          { body: m.SetSecret, response: m.SecretMetadata, detail: { summary: "Set a secret (a new version); If-Match: \"N\" only if it is still at version N", tags, ...access(WRITE) } },
        )
        .patch(S, ({ params, body, request }) => secrets.updateMetadata(caller(request), params.workspace, params.environment, params.name, body, ifMatchOf(request)), {
          body: m.SecretMetadataChange,
          response: m.SecretMetadata,
          detail: { summary: "Change a secret's note, rotation reminder or expiry; If-Match: \"N\" only if it is still at version N", tags, ...access(WRITE) },
        })
        .delete(
          S,
          async ({ params, request }) => {
            await secrets.delete(caller(request), params.workspace, params.environment, params.name, ifMatchOf(request));
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Delete a secret (soft: restorable until purged); If-Match: \"N\" only if it is still at version N", tags, ...access(WRITE) } },
        )
        .post(`${S}/restore`, ({ params, request }) => secrets.restore(caller(request), params.workspace, params.environment, params.name, ifMatchOf(request)), {
          response: m.SecretMetadata,
          detail: { summary: "Restore a deleted secret; If-Match: \"N\" only if it is still at version N", tags, ...access(WRITE) },
        })
        .post(
          `${S}/purge`,
          async ({ params, request }) => {
            await secrets.purge(caller(request), params.workspace, params.environment, params.name, ifMatchOf(request));
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Remove a secret and every version for good (asks for confirmation); If-Match: \"N\" only if it is still at version N", tags, ...access({ ...WRITE, permission: "delete", confirm: true }) } },
        )
        .get(`${S}/versions`, ({ params, request }) => secrets.history(caller(request), params.workspace, params.environment, params.name), {
          response: m.SecretHistory,
          detail: { summary: "A secret's versions: who and when (no values)", tags, ...access(READ) },
        })
        .post(`${S}/rollback`, ({ params, body, request }) => secrets.rollback(caller(request), params.workspace, params.environment, params.name, body.version, ifMatchOf(request), body.value), {
          body: m.Rollback,
          response: m.SecretMetadata,
          detail: { summary: "Roll back: a new version with an older version's value (E2EE: the client sends it re-encrypted as the new version); If-Match: \"N\" only if it is still at version N", tags, ...access(WRITE) },
        })
        .post(`${S}/rotate`, ({ params, body, request }) => secrets.rotate(caller(request), params.workspace, params.environment, params.name, body.generator, body.length, ifMatchOf(request)), {
          body: m.Rotate,
          response: m.SecretMetadata,
          detail: { summary: "Rotate: a new version made by a generator (password, hex, base64, uuid); If-Match: \"N\" only if it is still at version N", tags, ...access(WRITE) },
        })
        .post(`${W}/rotate-key`, ({ params, request }) => {
          worksLong(request); // every stored value is re-encrypted before the answer
          return secrets.rotateDataKey(caller(request), params.workspace);
        }, {
          response: m.KeyRotation,
          detail: { summary: "A new data key for the workspace; every stored value is re-encrypted with it, online", tags, ...access(ADMIN) },
        })
        // --- share links -------------------------------------------------------------------
        .post("/orgs/:org/shares", ({ params, body, request }) => shares.create(caller(request), params.org, body), {
          body: m.NewShare,
          response: m.Share,
          detail: { summary: "Make a share link (the client encrypted the value; the key stays in the link)", tags: ["secrets: shares"], ...access({ scope: "secrets:write", org: "org" }) },
        })
        .get("/orgs/:org/shares", ({ params, query }) => shares.list(params.org, query.limit ?? 100, query.cursor), {
          query: m.ShareListQuery,
          response: m.ShareList,
          detail: { summary: "The organization's share links, newest first, one page at a time (never their content; admins: sources name secrets of any workspace)", tags: ["secrets: shares"], ...access({ scope: "secrets:read", org: "org", permission: "manage_members" }) },
        })
        .delete(
          "/orgs/:org/shares/:share",
          async ({ params, request }) => {
            await shares.revoke(caller(request), params.org, params.share);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Revoke a share link", tags: ["secrets: shares"], ...access({ scope: "secrets:write", org: "org" }) } },
        )
        // At /shares/ID/ its relative addresses ("../share-page.js", "ID/peek") would miss: sent to /shares/ID (the #key stays with the browser).
        .get("/shares/:share", ({ request }) => pageWithoutTrailingSlash(request) ?? new Response(SHARE_PAGE_HTML, { headers: { "content-type": "text/html; charset=utf-8", "content-security-policy": SHARE_PAGE_CSP, "cache-control": "no-store" } }), {
          detail: { summary: "The page a share link opens in a browser (it decrypts there; the key never reaches the server)", tags: ["secrets: shares"], responses: { 200: PAGE_RESPONSE("text/html") }, ...access({ public: true }) },
        })
        .get("/share-page.js", () => new Response(SHARE_PAGE_JS, { headers: { "content-type": "text/javascript; charset=utf-8", "content-security-policy": SHARE_PAGE_CSP } }), {
          detail: { summary: "The share page's script", tags: ["secrets: shares"], responses: { 200: PAGE_RESPONSE("text/javascript") }, ...access({ public: true }) },
        })
        .post("/shares/:share/peek", ({ params, body, request }) => shares.peek(params.share, body.proof, auditRequest(request)), {
          body: m.ShareView,
          response: m.SharePeek,
          detail: { summary: "Whether a share link opens, and how (passphrase, views left), without spending a view", tags: ["secrets: shares"], ...access({ public: true, authLimit: true }) },
        })
        .post("/shares/:share/view", ({ params, body, request }) => shares.open(params.share, body.proof, body.passphrase_proof, auditRequest(request)), {
          body: m.ShareView,
          response: m.ShareContent,
          detail: {
            summary: "Open a share link: one view (anyone with the link; citadel share open decrypts it). A wrong passphrase proof is 403 wrong_passphrase, spending nothing; the 5th burns the link",
            tags: ["secrets: shares"],
            ...access({ public: true, authLimit: true }),
          },
        })
        // --- end-to-end encryption ---------------------------------------------------------
        .put("/me/keypair", ({ body, request }) => keys.setKeyPair(accountWide(caller(request)), body), {
          body: m.KeyPair,
          response: m.KeyPairView,
          // The account's own, as its password and tokens are: iam:self, as the /v1/iam/me routes.
          detail: { summary: "Register your key pair (made on your machine; the private key sealed by your passphrase)", tags: ["secrets: e2ee"], ...access({ scope: "iam:self" }) },
        })
        .get("/me/keypair", ({ request }) => keys.keyPair(caller(request)), {
          response: m.KeyPairView,
          detail: { summary: "Your key pair (the private key sealed)", tags: ["secrets: e2ee"], ...access({ scope: "secrets:read" }) },
        })
        .get(`${W}/e2ee/public-keys/:user`, ({ params }) => keys.publicKey(params.workspace, params.user), {
          response: m.PublicKey,
          detail: { summary: "A member's public key, to wrap the workspace key for them", tags: ["secrets: e2ee"], ...access(READ) },
        })
        .get(`${W}/e2ee/keys`, async ({ params }) => items(await keys.holders(params.workspace)), {
          response: m.Holders,
          detail: { summary: "Who holds the workspace key", tags: ["secrets: e2ee"], ...access(READ) },
        })
        .get(`${W}/e2ee/my-key`, ({ params, query, request }) => keys.myKey(caller(request), params.workspace, query.version), {
          query: m.MyKeyQuery,
          response: m.WrappedKey,
          detail: { summary: "The workspace key, wrapped to your public key", tags: ["secrets: e2ee"], ...access(READ) },
        })
        .put(`${W}/e2ee/keys/:user`, async ({ params, body, request }) => items(await keys.grant(caller(request), params.workspace, params.user, body)), {
          body: m.Grant,
          response: m.Holders,
          detail: { summary: "Give a member the workspace key (wrapped by your client to their public key)", tags: ["secrets: e2ee"], ...access(ADMIN) },
        })
        .post(`${W}/e2ee/rotate`, ({ params, body, request }) => secrets.rotateE2eeKey(caller(request), params.workspace, body, keys), {
          body: m.E2eeRotation,
          response: m.E2eeRotated,
          detail: { summary: "Replace the workspace key: every live value re-encrypted by your client, the new key wrapped for those who keep access", tags: ["secrets: e2ee"], ...access(ADMIN) },
        })
        .delete(
          `${W}/e2ee/keys/:user`,
          async ({ params, request }) => {
            await keys.revoke(caller(request), params.workspace, params.user);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Remove a member's wrapped workspace key", tags: ["secrets: e2ee"], ...access(ADMIN) } },
        )
        // --- webhooks ----------------------------------------------------------------------
        .get(`${W}/webhooks`, ({ params, request }) => items(webhooks.list(caller(request), params.workspace)), {
          response: m.WebhookList,
          detail: { summary: "The workspace's webhooks", tags: ["secrets: webhooks"], ...access(READ) },
        })
        .post(`${W}/webhooks`, ({ params, body, request }) => webhooks.create(caller(request), params.workspace, body.url), {
          body: m.NewWebhook,
          response: m.CreatedWebhook,
          detail: { summary: "Add a webhook (its signing secret is shown once)", tags: ["secrets: webhooks"], ...access(ADMIN) },
        })
        .delete(
          `${W}/webhooks/:webhook`,
          async ({ params, request }) => {
            await webhooks.delete(caller(request), params.workspace, params.webhook);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Remove a webhook", tags: ["secrets: webhooks"], ...access(ADMIN) } },
        )
        .get(`${W}/webhooks/:webhook/deliveries`, ({ params, request }) => items(webhooks.deliveries(caller(request), params.workspace, params.webhook)), {
          response: m.Deliveries,
          detail: { summary: "A webhook's last 100 deliveries: state, attempts, the receiver's answer (admins; only the events of environments you may enter)", tags: ["secrets: webhooks"], ...access({ ...READ, permission: "manage_members" }) },
        })
    );
  },
  commands: secretsCommands,
});

const PAGE_RESPONSE = (type: string) => ({ description: "A page for browsers", content: { [type]: { schema: { type: "string" as const } } } });

const EXPORT_RESPONSE = {
  description: "The values, as a file",
  content: { "text/plain": { schema: { type: "string" as const } }, "application/json": { schema: { type: "object" as const } } },
};
