/**
 * The `iam` plugin: Citadel as its own identity provider. Routes for login and sessions,
 * TOTP, personal access tokens, API keys, organizations, members, workspaces, service
 * activation and users; the OAuth endpoints of `citadel login` (device flow) and token
 * exchange; the identity provider the kernel's guard consults.
 */
import { Elysia, t } from "elysia";
import { actorOf, type IdentityProvider, type Principal } from "../../src/auth/principal.ts";
import { permissionForScope } from "../../src/auth/rbac.ts";
import { isScope } from "../../src/auth/scopes.ts";
import { cidrContains, parseIp, type Cidr } from "../../src/net/ip.ts";
import { CitadelError, InvalidError, NotFoundError, TotpRequiredError, UnauthorizedError } from "../../src/errors.ts";
import { access } from "../../src/http/access.ts";
import { auditRequest } from "../../src/http/audit-request.ts";
import { boundOrganizationRefusal, type Refusal } from "../../src/http/guard.ts";
import { pageWithoutTrailingSlash, publicBaseUrl } from "../../src/http/public-url.ts";
import { oauthError } from "../../src/http/oauth-error.ts";
import { HttpProblem, problemFor } from "../../src/http/problem.ts";
import { principalOf, requestMeta } from "../../src/http/request-meta.ts";
import { subjectsOf } from "../../src/subjects.ts";
import { iamSubjects } from "./subject.ts";
import { sameInstanceFlags, shellQuote } from "../../src/cli/next-command.ts";
import { definePlugin, type Kernel, type SetupResult } from "../../src/plugin.ts";
import { accountCommands } from "./account-commands.ts";
import { iamAdminCommands } from "./admin-commands.ts";
import { iamCommands } from "./commands.ts";
import { approvalPage, resultPage, TOTP_MISSING_ON_PAGE } from "./device-page.ts";
import { DeviceFlow } from "./device.ts";
import { IamIdentity } from "./identity.ts";
import { iamMigrations } from "./migrations.ts";
import * as m from "./model.ts";
import { pruneExpiredCredentials, type PruneCursor } from "./store.ts";
import { IamService, type Caller, type ClearedAllowlist } from "./service.ts";
import { IamSettings } from "./settings.ts";
import { revokeAfterRestore } from "./restore.ts";

const ACTIONS = [
  ["iam.login", "A password login (failure: wrong credentials, throttled, second factor wrong)."],
  ["iam.logout", "A credential logged itself out (or a user ended every login session and CLI login)."],
  ["iam.session.revoke", "A user ended one of their sessions."],
  ["iam.password.change", "A user changed their password (their other sessions ended)."],
  ["iam.mfa.start", "A user started TOTP enrolment (a pending secret was made)."],
  ["iam.mfa.enable", "A user enabled TOTP."],
  ["iam.mfa.disable", "A user disabled TOTP (with a code or a recovery code)."],
  ["iam.mfa.reset", "An operator turned a user's TOTP off, deleted their recovery codes and ended their logins."],
  ["iam.password.reset", "An operator gave a user a one-time password and ended their logins."],
  ["iam.operator.recover", "On the host, `citadel recover` gave an operator a one-time password, turned their TOTP off and ended their logins."],
  ["iam.token.create", "A personal access token (or a device-login token) was made."],
  ["iam.token.revoke", "A personal access token was revoked."],
  ["iam.token.rotate", "A personal access token was replaced by a new one."],
  ["iam.token.exchange", "A short-lived workload token was issued in exchange for another token."],
  ["iam.console_token.create", "A single-use console token was issued."],
  ["iam.api_key.create", "A service API key was made."],
  ["iam.api_key.revoke", "A service API key was revoked."],
  ["iam.organization.create", "An organization was made."],
  ["iam.organization.update", "An organization's name, MFA requirement or allowlist changed."],
  ["iam.organization.delete", "An organization was deleted."],
  ["iam.member.add", "An operator added a user to an organization."],
  ["iam.invitation.create", "A member invited an email address to join an organization (the address is not recorded)."],
  ["iam.invitation.revoke", "A pending invitation was revoked."],
  ["iam.invitation.accept", "A user accepted an invitation and joined its organization with its role."],
  ["iam.invitation.decline", "A user declined an invitation."],
  ["iam.member.update", "A member's role changed."],
  ["iam.member.remove", "A member was removed from an organization, or left it (the reason says so)."],
  ["iam.workspace.create", "A workspace was made."],
  ["iam.workspace.update", "A workspace's name or allowlist changed."],
  ["iam.workspace.delete", "A workspace was deleted."],
  ["iam.workspace_member.set", "A member's role in one workspace was narrowed (or reset)."],
  ["iam.service.activate", "A service was activated for an organization (its API keys work)."],
  ["iam.service.deactivate", "A service was deactivated for an organization."],
  ["iam.user.create", "A user account was made."],
  ["iam.user.delete", "A user account was deleted (its credentials revoked)."],
  ["iam.device.start", "A device login (citadel login) was started."],
  ["iam.device.approve", "A user approved (success) or denied (failure) a device login."],
  ["iam.restore.revoke", "At the first start after a restore: credentials revoked and users deleted after the backup were revoked and deleted again, and every login ended."],
] as const;

/** How often expired invitations and device logins (and the addresses in them), and long-expired credentials, are dropped. */
const PURGE_MS = 60 * 60 * 1000;
/** Credentials deleted per write: a first pass over years of logins must not hold the event loop. */
const PRUNE_BATCH = 1000;
const DAY_MS = 86_400_000;

const caller = (request: Request): Caller => ({ principal: principalOf(request), request: auditRequest(request) });

/** Services made per kernel; the routes and the start hook share one. */
const services = new WeakMap<object, { iam: IamService; device: DeviceFlow; identity: IamIdentity }>();
function servicesOf(k: Kernel<IamSettings>) {
  let s = services.get(k.store);
  if (!s) {
    const identity = new IamIdentity(k.store, k.log);
    s = { identity, iam: new IamService(k, identity, Math.max(1, navigator.hardwareConcurrency - 1)), device: new DeviceFlow(k) };
    services.set(k.store, s);
  }
  return s;
}

/** The identity service the plugin made for this store (tests drive its timers' work directly). */
export function iamServiceOf(store: object): IamService | undefined {
  return services.get(store)?.iam;
}

export const iamPlugin = definePlugin<IamSettings>({
  name: "iam",
  settings: IamSettings,
  scopes: ["iam:read", "iam:write", "iam:admin", "iam:self"],
  actions: ACTIONS.map(([type, description]) => ({ type, description })),
  migrations: iamMigrations,

  async start(k) {
    const { identity, iam } = servicesOf(k);
    // Before anything is served: a credential revoked after the backup must not work a moment.
    const restored = await revokeAfterRestore(k, k.config.data_dir);
    if (restored) k.log.warn("iam: after a restore, credentials revoked and users deleted since the backup were revoked and deleted again, and every login ended", { ...restored });
    if (restored && !restored.previousRead) k.log.warn("iam: after a restore with no previous database to read, tokens and API keys revoked and users deleted after the backup work again: revoke and delete them");
    k.identity.provide(identity);
    const unregister = subjectsOf(k.store).register(iamSubjects(k.store, () => k.seal.keyring()));
    const timer = setInterval(() => void identity.flushUses(k.store).catch((error) => k.log.error("could not record token use", { error })), 5000);
    timer.unref();
    // One pass at a time: a first one over a large table takes many writes.
    let pruning: Promise<number> | null = null;
    const pruneCredentials = () => (pruning ??= pruneLongExpiredCredentials(k).finally(() => (pruning = null)));
    const purge = () => {
      void iam.purgeExpiredInvitations().catch((error) => k.log.error("could not drop expired invitations", { error }));
      void iam.purgeExpiredDeviceGrants().catch((error) => k.log.error("could not drop expired device logins", { error }));
      void pruneCredentials().catch((error) => k.log.error("could not delete long-expired credentials", { error }));
    };
    const purger = setInterval(purge, PURGE_MS);
    purger.unref();
    purge();
    return async () => {
      unregister();
      clearInterval(timer);
      clearInterval(purger);
      await identity.flushUses(k.store);
    };
  },

  async setup(k, options) {
    const { iam } = servicesOf(k);
    if (iam.hasUsers()) return null;
    const email = typeof options.email === "string" ? options.email : "admin@localhost";
    const orgName = typeof options.org === "string" ? options.org : "default";
    const system = { kind: "system" as const };
    const { user, password } = await iam.createUser({ email, name: "Owner", operator: true }, system);
    const org = await iam.createOrganization(orgName, user.id, system);
    const flags = sameInstanceFlags(options);
    return {
      summary: { owner: email, organization: org.id, one_time_password: password },
      lines: [
        `Organization "${org.name}" (${org.id}) with owner ${email} (also the appliance operator).`,
        `One-time password for ${email}: ${password}`,
        `It is shown only now. Replace it first: citadel password --email ${shellQuote(email)}${flags} (or POST /v1/iam/me/password); then citadel login${flags}.`,
      ],
    };
  },

  async recover(k, options) {
    const { iam } = servicesOf(k);
    const invoker = typeof options.invoker === "string" && typeof options.invoker_uids === "string" ? { named: options.invoker, uids: options.invoker_uids } : undefined;
    const email = typeof options.email === "string" ? options.email : undefined;
    const clearAllowlist = typeof options.clear_allowlist === "string" ? options.clear_allowlist : undefined;
    // Both checked before either is done, and done in one write.
    const { allowlist, operator } = await iam.recover({ email, clearAllowlist }, invoker);
    const done: SetupResult[] = [];
    // The allowlist first: the account's one-time password is then shown last, nearest the prompt.
    if (allowlist) done.push(allowlistCleared(allowlist));
    if (operator) done.push(operatorRecovered(operator, sameInstanceFlags(options)));
    return done.length === 0 ? null : { summary: Object.assign({}, ...done.map((d) => d.summary)), lines: done.flatMap((d) => d.lines) };
  },

  routes: (k) => {
    const { iam, device } = servicesOf(k);
    const self = (summary: string) => ({ summary, tags: ["iam: me"], ...access({ scope: "iam:self" }) });
    const firstSteps = (summary: string) => ({ summary, tags: ["iam: me"], ...access({ scope: "iam:self", beforePasswordChange: true }) });
    return (
      new Elysia({ name: "iam" })
        // --- login and the caller's own account -------------------------------------------
        .post("/login", ({ body, request }) => iam.login(body, auditRequest(request)), {
          body: m.LoginRequest,
          response: m.LoginResponse,
          detail: { summary: "Log in with email and password (and TOTP): a session token", tags: ["iam: me"], ...access({ public: true, authLimit: true }) },
        })
        .post(
          "/logout",
          async ({ body, request }) => {
            await iam.logout(caller(request), body.everywhere === true);
            return { ok: true as const };
          },
          // Any credential may end itself, whatever its scopes (a CLI login made without iam:self
          // could not be logged out by `citadel login` replacing it); every session needs a session.
          { body: m.LogoutRequest, response: m.Done, detail: { summary: "End this credential, or every login session and CLI login (personal access tokens and API keys stay)", tags: ["iam: me"], ...access({ anyScope: true, beforePasswordChange: true }) } },
        )
        .get("/me", ({ request }) => iam.me(principalOf(request)), { response: m.Me, detail: firstSteps("Who am I: account, MFA, organizations") })
        .get("/me/sessions", ({ query, request }) => iam.sessions(principalOf(request), query), { query: m.PageQuery, response: m.SessionList, detail: self("My sessions, newest first, a page at a time") })
        .delete(
          "/me/sessions/:session",
          async ({ params, request }) => {
            await iam.revokeSession(caller(request), params.session);
            return { ok: true as const };
          },
          { response: m.Done, detail: self("End one of my sessions") },
        )
        .post(
          "/me/password",
          async ({ body, request }) => {
            await iam.changePassword(caller(request), body.current_password, body.new_password);
            return { ok: true as const };
          },
          { body: m.PasswordChange, response: m.Done, detail: { ...firstSteps("Change my password (my other sessions end)"), ...access({ scope: "iam:self", beforePasswordChange: true, authLimit: true }) } },
        )
        .post(
          "/me/mfa/totp",
          async ({ request }) => {
            const enrolment = await iam.startTotp(caller(request));
            const { renderSVG } = await import("uqr"); // only enrolment needs it
            return { ...enrolment, qr_svg: renderSVG(enrolment.otpauth_uri) };
          },
          { response: m.TotpEnrolment, detail: self("Start TOTP enrolment: a secret, its otpauth URI and QR code") },
        )
        .post("/me/mfa/totp/confirm", ({ body, request }) => iam.confirmTotp(caller(request), body), {
          body: m.TotpConfirmation,
          response: m.RecoveryCodes,
          // It checks the password: in the auth bucket, as a login and a password change are.
          detail: { ...self("Finish TOTP enrolment with a first code and the current password: ten recovery codes"), ...access({ scope: "iam:self", authLimit: true }) },
        })
        .post(
          "/me/mfa/totp/disable",
          async ({ body, request }) => {
            await iam.disableTotp(caller(request), body);
            return { ok: true as const };
          },
          { body: m.TotpProof, response: m.Done, detail: self("Disable TOTP (needs a current code or an unused recovery code)") },
        )
        .get("/me/tokens", ({ query, request }) => iam.tokens(principalOf(request), query), { query: m.PageQuery, response: m.CredentialList, detail: self("My personal access tokens, newest first, a page at a time") })
        .post("/me/tokens", ({ body, request }) => iam.createPat(caller(request), body), { body: m.NewToken, response: m.NewCredential, detail: self("Make a personal access token (shown once)") })
        .delete(
          "/me/tokens/:token",
          async ({ params, request }) => {
            await iam.revokeToken(caller(request), params.token);
            return { ok: true as const };
          },
          { response: m.Done, detail: self("Revoke one of my tokens") },
        )
        .post("/me/tokens/:token/rotate", ({ params, request }) => iam.rotateToken(caller(request), params.token), {
          response: m.NewCredential,
          detail: self("Replace a token by a new one with the same settings (the old one stops working)"),
        })
        .get("/me/invitations", ({ query, request }) => iam.myInvitations(principalOf(request), query), {
          query: m.PageQuery,
          response: m.MyInvitationList,
          detail: self("Invitations to join organizations, addressed to my email, oldest first, a page at a time"),
        })
        .post("/me/invitations/:invitation/accept", ({ params, request }) => iam.acceptInvitation(caller(request), params.invitation), {
          response: m.OrganizationSeen,
          detail: self("Accept an invitation: join its organization with its role"),
        })
        .post(
          "/me/invitations/:invitation/decline",
          async ({ params, request }) => {
            await iam.declineInvitation(caller(request), params.invitation);
            return { ok: true as const };
          },
          { response: m.Done, detail: self("Decline an invitation") },
        )
        .post("/console-tokens", ({ request }) => iam.consoleToken(caller(request)), {
          response: m.ConsoleToken,
          detail: { summary: "A single-use console token (two minutes)", tags: ["iam: me"], ...access({ scope: "shell:connect" }) },
        })
        .post("/device/approve", ({ body, request }) => device.decide(body.user_code, body.approve, principalOf(request), auditRequest(request)), {
          body: m.DeviceDecision,
          response: t.Object({ approved: t.Boolean() }),
          // A user code is a credential of a kind (approving one hands out a token): guessing
          // codes is throttled like guessing passwords.
          detail: { ...self("Approve or deny a device login (citadel login) by its user code"), ...access({ scope: "iam:self", authLimit: true }) },
        })

        // --- organizations ------------------------------------------------------------------
        .get("/orgs", ({ query, request }) => iam.organizations(caller(request), query), {
          query: m.PageQuery,
          response: m.OrganizationList,
          detail: { summary: "My organizations, by name, a page at a time (the settings of one whose allowlist refuses your address: null)", tags: ["iam: organizations"], ...access({ scope: "iam:read" }) },
        })
        .post(
          "/orgs",
          ({ body, request }) => {
            const c = caller(request);
            return iam.createOrganization(body.name, body.owner ?? c.principal.userId!, actorOf(c.principal), c.request);
          },
          { body: m.NewOrganization, response: m.Organization, detail: { summary: "Make an organization (operators)", tags: ["iam: organizations"], ...access({ operator: true, scope: "iam:admin" }) } },
        )
        .get("/orgs/:org", ({ params }) => iam.organizationView(params.org), {
          response: m.Organization,
          detail: { summary: "An organization", tags: ["iam: organizations"], ...access({ scope: "iam:read", org: "org" }) },
        })
        .patch("/orgs/:org", ({ params, body, request }) => iam.updateOrganization(caller(request), params.org, body), {
          body: m.OrganizationChanges,
          response: m.Organization,
          // The organization's own safeguards (MFA required, the allowlist): as deleting it, iam:admin, which no coarse scope implies.
          detail: { summary: "Rename, require MFA, set the allowlist (owners)", tags: ["iam: organizations"], ...access({ scope: "iam:admin", org: "org", permission: "admin" }) },
        })
        .delete(
          "/orgs/:org",
          async ({ params, request }) => {
            await iam.deleteOrganization(caller(request), params.org);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Delete an organization (owners; asks for confirmation)", tags: ["iam: organizations"], ...access({ scope: "iam:admin", org: "org", permission: "admin", confirm: true }) } },
        )
        .get("/orgs/:org/members", ({ params, query }) => iam.members(params.org, query), {
          query: m.PageQuery,
          response: m.MemberList,
          detail: { summary: "Members and their roles, by address, a page at a time", tags: ["iam: organizations"], ...access({ scope: "iam:read", org: "org" }) },
        })
        .post("/orgs/:org/members", ({ params, body, request }) => iam.setMember(caller(request), params.org, body, "add"), {
          body: m.NewMember,
          response: m.Member,
          detail: { summary: "Add an existing user by email, with a role (operators; everyone else invites)", tags: ["iam: organizations"], ...access({ scope: "iam:write", org: "org", permission: "manage_members" }) },
        })
        .put("/orgs/:org/members/:user", ({ params, body, request }) => iam.setMember(caller(request), params.org, { user: params.user, role: body.role }, "change"), {
          body: m.MemberRole,
          response: m.Member,
          detail: { summary: "Change a member's role (only owners make owners)", tags: ["iam: organizations"], ...access({ scope: "iam:write", org: "org", permission: "manage_members" }) },
        })
        .delete(
          "/orgs/:org/members/:user",
          async ({ params, request }) => {
            await iam.removeMember(caller(request), params.org, params.user);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Remove a member (the last owner cannot leave)", tags: ["iam: organizations"], ...access({ scope: "iam:write", org: "org", permission: "manage_members" }) } },
        )
        .delete(
          "/orgs/:org/membership",
          async ({ params, request }) => {
            await iam.leaveOrganization(caller(request), params.org);
            return { ok: true as const };
          },
          // Any member leaves, a viewer too: the membership is all it needs (view), not manage_members.
          { response: m.Done, detail: { summary: "Leave the organization (any member; the last owner cannot)", tags: ["iam: organizations"], ...access({ scope: "iam:self", org: "org", permission: "view" }) } },
        )
        .get("/orgs/:org/invitations", ({ params, query }) => iam.invitations(params.org, query), {
          query: m.PageQuery,
          response: m.InvitationList,
          detail: { summary: "Pending invitations, oldest first, a page at a time", tags: ["iam: organizations"], ...access({ scope: "iam:read", org: "org", permission: "manage_members" }) },
        })
        .post("/orgs/:org/invitations", ({ params, body, request }) => iam.invite(caller(request), params.org, body), {
          body: m.NewInvitation,
          response: m.Invitation,
          detail: {
            summary: "Invite an email address with a role: its user joins by accepting (the answer does not tell whether the address has an account)",
            tags: ["iam: organizations"],
            ...access({ scope: "iam:write", org: "org", permission: "manage_members" }),
          },
        })
        .delete(
          "/orgs/:org/invitations/:invitation",
          async ({ params, request }) => {
            await iam.revokeInvitation(caller(request), params.org, params.invitation);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Revoke a pending invitation", tags: ["iam: organizations"], ...access({ scope: "iam:write", org: "org", permission: "manage_members" }) } },
        )
        .get("/orgs/:org/services", ({ params }) => ({ items: iam.organizationView(params.org).services.map((service) => ({ service })) }), {
          response: t.Object({ items: t.Array(t.Object({ service: t.String() })) }),
          detail: { summary: "Services activated for the organization", tags: ["iam: organizations"], ...access({ scope: "iam:read", org: "org" }) },
        })
        .put("/orgs/:org/services/:service", ({ params, request }) => iam.setService(caller(request), params.org, params.service, true, k.services), {
          response: m.Organization,
          detail: { summary: "Activate a service (its API keys start working)", tags: ["iam: organizations"], ...access({ scope: "iam:admin", org: "org", permission: "admin" }) },
        })
        .delete("/orgs/:org/services/:service", ({ params, request }) => iam.setService(caller(request), params.org, params.service, false, k.services), {
          response: m.Organization,
          detail: { summary: "Deactivate a service", tags: ["iam: organizations"], ...access({ scope: "iam:admin", org: "org", permission: "admin" }) },
        })
        .get("/orgs/:org/api-keys", ({ params, query }) => iam.apiKeys(params.org, query), {
          query: m.PageQuery,
          response: m.CredentialList,
          detail: { summary: "The organization's service API keys, newest first, a page at a time", tags: ["iam: organizations"], ...access({ scope: "iam:read", org: "org", permission: "manage_members" }) },
        })
        .post("/orgs/:org/api-keys", ({ params, body, request }) => iam.createApiKey(caller(request), params.org, body, k.services), {
          body: m.NewApiKey,
          response: m.CreatedApiKey,
          detail: { summary: "Make a service API key (shown once)", tags: ["iam: organizations"], ...access({ scope: "iam:write", org: "org", permission: "manage_members" }) },
        })
        .delete(
          "/orgs/:org/api-keys/:key",
          async ({ params, request }) => {
            await iam.revokeApiKey(caller(request), params.org, params.key);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Revoke a service API key", tags: ["iam: organizations"], ...access({ scope: "iam:write", org: "org", permission: "manage_members" }) } },
        )

        // --- workspaces ---------------------------------------------------------------------
        .get("/orgs/:org/workspaces", ({ params, query, request }) => iam.workspaces(params.org, caller(request), query), {
          query: m.PageQuery,
          response: m.WorkspaceList,
          detail: { summary: "The organization's workspaces, by name, a page at a time", tags: ["iam: workspaces"], ...access({ scope: "iam:read", org: "org" }) },
        })
        .post("/orgs/:org/workspaces", ({ params, body, request }) => iam.createWorkspace(caller(request), params.org, body), {
          body: m.NewWorkspace,
          response: m.Workspace,
          detail: { summary: "Make a workspace", tags: ["iam: workspaces"], ...access({ scope: "iam:write", org: "org", permission: "manage_members" }) },
        })
        .get("/workspaces/:workspace", ({ params }) => iam.workspaceView(params.workspace), {
          response: m.Workspace,
          detail: { summary: "A workspace", tags: ["iam: workspaces"], ...access({ scope: "iam:read", workspace: "workspace" }) },
        })
        .patch("/workspaces/:workspace", ({ params, body, request }) => iam.updateWorkspace(caller(request), params.workspace, body), {
          body: m.WorkspaceChanges,
          response: m.Workspace,
          detail: { summary: "Rename a workspace or set its allowlist (the allowlist needs iam:admin, as an organization's)", tags: ["iam: workspaces"], ...access({ scope: "iam:write", workspace: "workspace", permission: "manage_members" }) },
        })
        .delete(
          "/workspaces/:workspace",
          async ({ params, request }) => {
            await iam.deleteWorkspace(caller(request), params.workspace);
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Delete a workspace (asks for confirmation)", tags: ["iam: workspaces"], ...access({ scope: "iam:write", workspace: "workspace", permission: "delete", confirm: true }) } },
        )
        .put("/workspaces/:workspace/members/:user", ({ params, body, request }) => iam.setWorkspaceRole(caller(request), params.workspace, params.user, body.role), {
          body: m.WorkspaceRole,
          response: m.Workspace,
          detail: { summary: "Narrow a member's role in this workspace (null: the organization role)", tags: ["iam: workspaces"], ...access({ scope: "iam:write", workspace: "workspace", permission: "manage_members" }) },
        })

        // --- users (operators) -----------------------------------------------------------
        .get("/users", ({ query }) => iam.users(query), {
          query: m.PageQuery,
          response: m.UserList,
          detail: { summary: "Every user, by address, a page at a time (operators)", tags: ["iam: users"], ...access({ operator: true, scope: "iam:admin" }) },
        })
        .post("/users", ({ body, request }) => iam.createUser(body, actorOf(principalOf(request)), auditRequest(request)), {
          body: m.NewUser,
          response: m.CreatedUser,
          detail: { summary: "Make a user (operators); without a password, a one-time one is returned", tags: ["iam: users"], ...access({ operator: true, scope: "iam:admin" }) },
        })
        .delete(
          "/users/:user",
          async ({ params, request }) => {
            await iam.deleteUser(params.user, caller(request));
            return { ok: true as const };
          },
          { response: m.Done, detail: { summary: "Delete a user and revoke their credentials (operators; asks for confirmation)", tags: ["iam: users"], ...access({ operator: true, scope: "iam:admin", confirm: true }) } },
        )
        .post("/users/:user/password/reset", ({ params, request }) => iam.resetPassword(params.user, caller(request)), {
          response: m.PasswordReset,
          detail: {
            summary: "Give a user a one-time password (shown once) and end their logins: their password is lost (operators; asks for confirmation)",
            tags: ["iam: users"],
            ...access({ operator: true, scope: "iam:admin", confirm: true }),
          },
        })
        .post(
          "/users/:user/mfa/reset",
          async ({ params, request }) => {
            await iam.resetMfa(params.user, caller(request));
            return { ok: true as const };
          },
          {
            response: m.Done,
            detail: {
              summary: "Turn a user's TOTP off, delete their recovery codes and end their logins: their authenticator is lost (operators; asks for confirmation)",
              tags: ["iam: users"],
              ...access({ operator: true, scope: "iam:admin", confirm: true }),
            },
          },
        )
    );
  },

  rootRoutes: (k) => {
    const { device, identity, iam } = servicesOf(k);
    const oauth = { tags: ["oauth"], ...access({ public: true, authLimit: true }) };
    return new Elysia({ name: "iam-oauth" })
      .post(
        "/oauth/device/code",
        ({ body, request }) => device.start(body, auditRequest(request), `${publicBaseUrl(k.config.http.public_url, request.url)}/oauth/device`),
        {
          body: t.Object({ client_name: t.Optional(t.String({ maxLength: 100 })), scope: t.Optional(t.String({ maxLength: 500 })), client_id: t.Optional(t.String({ maxLength: 100 })) }),
          response: t.Object({ device_code: t.String(), user_code: t.String(), verification_uri: t.String(), verification_uri_complete: t.String(), expires_in: t.Integer(), interval: t.Integer() }),
          detail: { summary: "Start a device login (RFC 8628)", ...oauth },
        },
      )
      .post(
        "/oauth/token",
        async ({ body, request }) => {
          const context = auditRequest(request);
          // The schema lets these through for the OAuth error form (RFC 6749 section 5.2), not a 422.
          if (!body.grant_type) throw oauthError(400, "invalid_request", "grant_type is missing");
          if (body.grant_type === "urn:ietf:params:oauth:grant-type:device_code") {
            if (!body.device_code) throw oauthError(400, "invalid_request", "device_code is missing");
            return device.poll(body.device_code, context);
          }
          if (body.grant_type === "urn:ietf:params:oauth:grant-type:token-exchange") {
            if (!body.subject_token) throw oauthError(400, "invalid_request", "subject_token is missing");
            const lifetime = exchangeLifetime(body.expires_in);
            if (lifetime === null) throw oauthError(400, "invalid_request", "expires_in: whole seconds, 1 to 3600");
            // Every refusal is on record and, as the guard does with a bad bearer token, held
            // against the address; its answer is an OAuth error (RFC 8693 section 2.2.2).
            const refuse = async (error: string, description: string, reason: string): Promise<never> => {
              await k.store.write((tx) => k.audit.record(tx, { action: "auth.token.reject", actor: { kind: "anonymous" }, outcome: "failure", reason: `token exchange: ${reason}`, request: context }));
              k.shield.current?.observe(context.source ?? "unknown", "invalid_token");
              throw oauthError(400, error, description);
            };
            const parent = identity.authenticate(body.subject_token, context.source ?? "unknown", k.clock.now());
            if (!parent.ok) return refuse("invalid_request", "The subject token is not valid.", parent.reason);
            if (!usableFrom(context.source ?? undefined, parent.principal.ipAllowlist)) return refuse("invalid_request", "The subject token is not valid.", "subject token used from outside its allowed addresses");
            const scopes = (body.scope ?? "").split(/\s+/).filter(Boolean);
            // A good token its organization refuses, as the guard refuses it on a route that names
            // none: unacceptable by policy, invalid_request (RFC 8693 section 2.2.2), recorded
            // and heard by the shield as the guard's refusals are (found in review: a token the
            // guard refused from an address was exchanged there for a workload token).
            const refusal = organizationRefusalOfExchange(identity, parent.principal, context.source ?? "unknown", scopes);
            if (refusal) {
              await k.store.write((tx) => k.audit.record(tx, { action: "auth.permission.deny", actor: actorOf(parent.principal), outcome: "failure", reason: `POST /oauth/token: ${refusal.why}`, request: context }));
              k.shield.current?.observe(context.source ?? "unknown", "http_forbidden");
              throw oauthError(400, "invalid_request", `The subject token may not be exchanged: ${refusal.why}.`);
            }
            try {
              return await iam.exchange(parent.principal, scopes, lifetime, context);
            } catch (error) {
              // Invalid input, or the subject revoked since it was authenticated (refused in the write).
              if (error instanceof UnauthorizedError) return refuse("invalid_request", "The subject token is not valid.", error.message);
              if (!(error instanceof InvalidError)) throw error;
              return refuse(error.field === "scope" ? "invalid_scope" : "invalid_request", error.message, error.message);
            }
          }
          throw oauthError(400, "unsupported_grant_type", "Use the device_code or token-exchange grant.");
        },
        {
          body: t.Object({
            grant_type: t.Optional(t.String({ maxLength: 100 })),
            device_code: t.Optional(t.String({ maxLength: 100 })),
            client_id: t.Optional(t.String({ maxLength: 100 })),
            subject_token: t.Optional(t.String({ maxLength: 200 })),
            subject_token_type: t.Optional(t.String({ maxLength: 100 })),
            scope: t.Optional(t.String({ maxLength: 500 })),
            expires_in: t.Optional(t.Union([t.Number(), t.String({ maxLength: 20 })])), // checked by exchangeLifetime
          }),
          response: t.Object({ access_token: t.String(), token_type: t.String(), expires_in: t.Integer(), scope: t.String(), issued_token_type: t.Optional(t.String()) }),
          detail: { summary: "OAuth token endpoint: device code polling (RFC 8628), token exchange (RFC 8693)", ...oauth },
        },
      )
      .get(
        "/oauth/device",
        ({ query, request }) => {
          const canonical = pageWithoutTrailingSlash(request); // its form posts to "device"
          if (canonical) return canonical;
          let pending = null;
          try {
            pending = query.user_code ? device.describe(query.user_code) : null;
          } catch (error) {
            if (!(error instanceof NotFoundError)) throw error;
          }
          return approvalPage({ userCode: query.user_code ?? "", pending, viewerAddress: auditRequest(request).source ?? "" });
        },
        // Under the login endpoints' limit: the page says whether a code is pending (and from which address).
        { query: t.Object({ user_code: t.Optional(t.String({ maxLength: 12 })) }), detail: { summary: "The approval page of a device login", tags: ["oauth"], hide: true, ...access({ public: true, authLimit: true }) } },
      )
      .post(
        "/oauth/device",
        async ({ body, request }) => {
          const context = auditRequest(request);
          try {
            const session = await iam.login({ email: body.email, password: body.password, totp: body.totp || undefined }, context);
            const principal = identity.authenticate(session.token, context.source ?? "unknown", k.clock.now());
            if (!principal.ok) throw new Error("a fresh session did not authenticate");
            try {
              await device.decide(body.user_code, body.decision === "approve", principal.principal, context);
            } finally {
              // The page's session was for this one decision: it ends even when the decision failed.
              await iam.logout({ principal: principal.principal, request: context }, false);
            }
            return resultPage(body.decision === "approve" ? "Approved: you can close this page and go back to the terminal." : "Denied: the device was not logged in.");
          } catch (error) {
            // Citadel's own refusals say what to do, with their status (a throttled login's 429
            // and Retry-After); anything else (a database error) is logged, and not shown.
            if (!(error instanceof CitadelError) && !(error instanceof HttpProblem)) {
              k.log.error("the device approval page failed", { request_id: requestMeta(request).id, error });
              return resultPage("Something went wrong.", { status: 500 });
            }
            const refusal = problemFor(error);
            // The API's "send `totp`" names its field; the page names its form's.
            return resultPage(error instanceof TotpRequiredError ? TOTP_MISSING_ON_PAGE : error.message, { status: refusal.status, headers: refusal.headers });
          }
        },
        {
          body: t.Object({
            user_code: t.String({ maxLength: 12 }),
            email: t.String({ maxLength: 320 }),
            password: t.String({ maxLength: 1024 }),
            totp: t.Optional(t.String({ maxLength: 10 })),
            decision: t.Union([t.Literal("approve"), t.Literal("deny")]),
          }),
          detail: { summary: "Submit the approval page", tags: ["oauth"], hide: true, ...access({ public: true, authLimit: true, errorPages: true }) },
        },
      );
  },

  commands: [...iamCommands, ...accountCommands, ...iamAdminCommands],
});

/**
 * Deletes the credentials that expired more than iam.credential_retention_days ago (every login,
 * token and key would otherwise stay forever), in small writes; how many went. The purger runs
 * it hourly.
 */
export async function pruneLongExpiredCredentials(k: Kernel<IamSettings>): Promise<number> {
  const expiredBefore = k.clock.now() - k.settings.credential_retention_days * DAY_MS;
  let cursor: PruneCursor | null = null;
  let deleted = 0;
  do {
    const pass = await k.store.write((tx) => pruneExpiredCredentials(tx, expiredBefore, cursor, PRUNE_BATCH));
    deleted += pass.deleted;
    cursor = pass.next;
  } while (cursor);
  if (deleted > 0) k.log.info("iam: deleted credentials expired longer ago than the retention", { deleted, retention_days: k.settings.credential_retention_days });
  return deleted;
}

/** A token exchange's `expires_in`: whole seconds, 1 to 3600, as a JSON number or form text; 3600 when absent; null when neither. */
function exchangeLifetime(expiresIn: number | string | undefined): number | null {
  if (expiresIn === undefined) return 3600;
  const seconds = typeof expiresIn === "number" ? expiresIn : /^[0-9]{1,4}$/.test(expiresIn) ? Number(expiresIn) : Number.NaN;
  return Number.isInteger(seconds) && seconds >= 1 && seconds <= 3600 ? seconds : null;
}

/**
 * Why the organization the subject token is bound to refuses it for the scopes asked, or null:
 * each scope needs its permission there (for an API key, of its maker's role). Scopes that are
 * none are left to the exchange to refuse (invalid_scope).
 */
function organizationRefusalOfExchange(identity: IdentityProvider, subject: Principal, client: string, scopes: readonly string[]): Refusal | null {
  const permissions = new Set(scopes.filter(isScope).map(permissionForScope));
  if (permissions.size === 0) permissions.add("view");
  for (const permission of permissions) {
    const refusal = boundOrganizationRefusal(identity, subject, client, permission);
    if (refusal) return refusal;
  }
  return null;
}

/** A token's own allowlist admits the address (empty: any). */
function usableFrom(address: string | undefined, allowlist: readonly Cidr[]): boolean {
  if (allowlist.length === 0) return true;
  const ip = address ? parseIp(address) : null;
  return ip !== null && allowlist.some((c) => cidrContains(c, ip));
}

/** What `citadel recover --clear-allowlist` says it did. */
function allowlistCleared({ kind, id, was }: ClearedAllowlist): SetupResult {
  return {
    summary: { allowlist_cleared: { [kind]: id, was } },
    lines: [
      Array.isArray(was) && was.length === 0
        ? `The ${kind} ${id} has no address allowlist: it is used from any address already.`
        : `The ${kind} ${id} is used from any address again (its allowlist was ${typeof was === "string" ? `unreadable, ${JSON.stringify(was)}, and refused every address` : was.join(", ")}): set the right one once back in.`,
    ],
  };
}

/** What `citadel recover <email>` says it did, and what the operator does next. */
function operatorRecovered({ email, password }: Awaited<ReturnType<IamService["recoverOperator"]>>, flags: string): SetupResult {
  return {
    summary: { operator: email, one_time_password: password },
    lines: [
      `${email}: two-factor authentication is off, every login session and CLI login has ended, and the password is now a one-time password:`,
      `  ${password}`,
      `It is shown only now. Replace it first: citadel password --email ${shellQuote(email)}${flags}; then log in (citadel login${flags}) and enrol two-factor authentication again (citadel mfa enable${flags}).`,
    ],
  };
}
