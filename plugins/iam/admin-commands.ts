/**
 * CLI for administering identity, over the API like every client command:
 *   citadel org list | create | show | set | delete | members | add | role | remove
 *               | invite | invitations | uninvite | services | activate | deactivate
 *   citadel invitations [accept | decline]
 *   citadel workspace list | create | show | set | delete | role
 *   citadel apikey list | create | revoke
 *   citadel user list | create | delete | password-reset | mfa-reset   (operators)
 * The organization is --org, else the caller's only one. What the server refuses comes back
 * as its message and a non-zero exit; destructive commands need --yes.
 */
import { UsageError } from "../../src/cli/command-line.ts";
import { integerOption, needArgs, organizationOf, print, table } from "../../src/cli/output.ts";
import { allPages } from "../../src/cli/pages.ts";
import { secretPrompter } from "../../src/cli/prompt.ts";
import type { ApiClient, Command, CommandContext } from "../../src/plugin.ts";
import { ALLOW_FROM, allowFromOption, scopesOption } from "./cli-options.ts";
import { emailKey } from "./email-key.ts";
import type { CreatedApiKey, CreatedUser, Credential, Invitation, Member, MyInvitation, Organization, OrganizationList, OrganizationWithRole, PasswordReset, User, Workspace } from "./model.ts";

const ORG = { org: { type: "string", description: "The organization (org_...); default: your only one" } } as const;
const ROLES = ["viewer", "editor", "admin", "owner"];

type OrganizationView = typeof Organization.static;
type WorkspaceView = typeof Workspace.static;
type UserView = typeof User.static;

const path = (...parts: string[]) => parts.map(encodeURIComponent).join("/");
const orgPath = (org: string, rest = "") => `/v1/iam/orgs/${path(org)}${rest}`;

async function inOrganization(ctx: CommandContext): Promise<{ api: ApiClient; org: string }> {
  const api = await ctx.api();
  return { api, org: await organizationOf(ctx, api) };
}

function role(text: string | undefined, flag = "role"): string {
  if (!text || !ROLES.includes(text)) throw new UsageError(`${flag}: one of ${ROLES.join(", ")}`);
  return text;
}

function requireYes(ctx: CommandContext, what: string): void {
  if (ctx.options.yes !== true) throw new UsageError(`${what}: add --yes`);
}

/**
 * A user named by id (usr_...) or, as `org add` and `recover` take them, by email: looked up in
 * the list of users, which the operators the user commands are for may read.
 */
async function userIdOf(api: ApiClient, given: string): Promise<string> {
  if (!given.includes("@")) return given;
  const items = await allPages<UserView>(api, "/v1/iam/users");
  // Compared by the key the server compares addresses by (emailKey: composed, lower case in
  // every script), so "e\u0301ve@" finds "éve@" here as it does in the API (found in review).
  const caseless = items.filter((u) => emailKey(u.email) === emailKey(given));
  const user = items.find((u) => u.email === given) ?? (caseless.length === 1 ? caseless[0] : undefined);
  if (!user) throw new Error(`No user has the email ${given} (citadel user list shows them).`);
  return user.id;
}

const yes = (description: string) => ({ yes: { type: "boolean", description } }) as const;
const orDash = (v: string | null | undefined) => (v === null || v === undefined || v === "" ? "-" : v);

function organizationText(o: OrganizationView): string {
  return [
    `${o.name} (${o.id})`,
    `  MFA required: ${o.require_mfa ? "yes" : "no"}`,
    `  allowed from: ${o.ip_allowlist.length > 0 ? o.ip_allowlist.join(", ") : "any address"}`,
    `  services:     ${o.services.length > 0 ? o.services.join(", ") : "none"}`,
    `  created:      ${o.created_at}`,
  ].join("\n");
}

function workspaceText(w: WorkspaceView): string {
  return [
    `${w.name} (${w.id}) in ${w.organization}`,
    `  allowed from: ${w.ip_allowlist.length > 0 ? w.ip_allowlist.join(", ") : "any address"}`,
    `  narrowed roles: ${w.members.length > 0 ? w.members.map((m) => `${m.user} ${m.role}`).join(", ") : "none (organization roles apply)"}`,
  ].join("\n");
}

/** `citadel org activate|deactivate <service>`: the same request but for its method. */
function serviceSwitch(word: "activate" | "deactivate", method: "PUT" | "DELETE", summary: string): Command {
  return {
    words: ["org", word],
    summary,
    args: "<service>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, `citadel org ${word} <service>`);
      const { api, org } = await inOrganization(ctx);
      const o = await api.request<OrganizationView>(method, orgPath(org, `/services/${path(ctx.args[0]!)}`));
      print(ctx, o, `services: ${o.services.join(", ") || "none"}`);
      return 0;
    },
  };
}

/** A setting the list leaves out: the organization's (or workspace's) allowlist refuses this address. */
const HIDDEN = "(not from here)";

const organizationCommands: Command[] = [
  {
    words: ["org", "list"],
    summary: "My organizations and my role in each (operators: every one they belong to)",
    async run(ctx) {
      const items = await allPages<(typeof OrganizationList.static)["items"][number]>(await ctx.api(), "/v1/iam/orgs");
      print(ctx, items, items.length === 0 ? "no organizations" : table([["ID", "NAME", "ROLE", "MFA", "SERVICES"], ...items.map((o) => [o.id, o.name, orDash(o.role), o.require_mfa === null ? HIDDEN : o.require_mfa ? "required" : "-", o.services === null ? HIDDEN : o.services.join(",") || "-"])]));
      return 0;
    },
  },
  {
    words: ["org", "create"],
    summary: "Make an organization (operators); --owner USER_ID makes someone else its owner",
    args: "<name>",
    maxArgs: 1,
    options: { owner: { type: "string", description: "The owner's user id (default: you)" } },
    async run(ctx) {
      needArgs(ctx, 1, "citadel org create <name> [--owner USER_ID]");
      const body: Record<string, unknown> = { name: ctx.args[0] };
      if (typeof ctx.options.owner === "string") body.owner = ctx.options.owner;
      const o = await (await ctx.api()).request<OrganizationView>("POST", "/v1/iam/orgs", body);
      print(ctx, o, `created ${o.name} (${o.id})`);
      return 0;
    },
  },
  {
    words: ["org", "show"],
    summary: "An organization's settings: MFA requirement, allowlist, activated services",
    options: ORG,
    async run(ctx) {
      const { api, org } = await inOrganization(ctx);
      const o = await api.request<OrganizationView>("GET", orgPath(org));
      print(ctx, o, organizationText(o));
      return 0;
    },
  },
  {
    words: ["org", "set"],
    summary: "Rename an organization, require MFA of its members, or set its allowlist (owners)",
    options: {
      ...ORG,
      name: { type: "string", description: "A new name" },
      "require-mfa": { type: "string", description: "on or off" },
      "allow-from": { type: "string", description: 'Comma-separated CIDRs members may connect from ("none": any address); must include yours' },
    },
    async run(ctx) {
      const changes: Record<string, unknown> = {};
      if (typeof ctx.options.name === "string") changes.name = ctx.options.name;
      const mfa = ctx.options["require-mfa"];
      if (mfa !== undefined) {
        if (mfa !== "on" && mfa !== "off") throw new UsageError("--require-mfa: on or off");
        changes.require_mfa = mfa === "on";
      }
      const list = allowFromOption(ctx);
      if (list) changes.ip_allowlist = list;
      if (Object.keys(changes).length === 0) throw new UsageError("nothing to change: give --name, --require-mfa or --allow-from");
      const { api, org } = await inOrganization(ctx);
      const o = await api.request<OrganizationView>("PATCH", orgPath(org), changes);
      print(ctx, o, organizationText(o));
      return 0;
    },
  },
  {
    words: ["org", "delete"],
    summary: "Delete an organization (owners): its members lose access, its API keys stop (needs --yes)",
    args: "<org-id>",
    maxArgs: 1,
    options: yes("Yes, delete the organization"),
    async run(ctx) {
      needArgs(ctx, 1, "citadel org delete <org-id> --yes");
      requireYes(ctx, `this deletes organization ${ctx.args[0]}`);
      await (await ctx.api()).request("DELETE", orgPath(ctx.args[0]!), undefined, { confirmed: true });
      print(ctx, { ok: true, id: ctx.args[0] }, "deleted");
      return 0;
    },
  },
  {
    words: ["org", "members"],
    summary: "An organization's members and their roles",
    options: ORG,
    async run(ctx) {
      const { api, org } = await inOrganization(ctx);
      const items = await allPages<typeof Member.static>(api, orgPath(org, "/members"));
      print(ctx, items, table([["USER", "EMAIL", "ROLE", "MFA", "SINCE"], ...items.map((m) => [m.user, m.email, m.role, m.mfa ? "on" : "-", m.since])]));
      return 0;
    },
  },
  {
    words: ["org", "add"],
    summary: "Add an existing user by email with a role (operators; everyone else invites: citadel org invite)",
    args: "<email>",
    maxArgs: 1,
    options: { ...ORG, role: { type: "string", description: "viewer, editor, admin or owner" } },
    async run(ctx) {
      needArgs(ctx, 1, "citadel org add <email> --role ROLE");
      const { api, org } = await inOrganization(ctx);
      const m = await api.request<typeof Member.static>("POST", orgPath(org, "/members"), { email: ctx.args[0], role: role(ctx.options.role as string | undefined, "--role") });
      print(ctx, m, `${m.email} (${m.user}) is ${m.role}`);
      return 0;
    },
  },
  {
    words: ["org", "role"],
    summary: "Change a member's role (only owners make or unmake owners; the last owner stays one)",
    args: "<user-id> <role>",
    maxArgs: 2,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 2, "citadel org role <user-id> <viewer|editor|admin|owner>");
      const { api, org } = await inOrganization(ctx);
      const m = await api.request<typeof Member.static>("PUT", orgPath(org, `/members/${path(ctx.args[0]!)}`), { role: role(ctx.args[1]) });
      print(ctx, m, `${m.email} (${m.user}) is ${m.role}`);
      return 0;
    },
  },
  {
    words: ["org", "remove"],
    summary: "Remove a member from an organization (the last owner cannot leave)",
    args: "<user-id>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, "citadel org remove <user-id>");
      const { api, org } = await inOrganization(ctx);
      await api.request("DELETE", orgPath(org, `/members/${path(ctx.args[0]!)}`));
      print(ctx, { ok: true, organization: org, user: ctx.args[0] }, "removed");
      return 0;
    },
  },
  {
    words: ["org", "invite"],
    summary: "Invite an email address into an organization with a role; its user joins with `citadel invitations accept`",
    args: "<email>",
    maxArgs: 1,
    options: {
      ...ORG,
      role: { type: "string", description: "viewer (default), editor, admin or owner" },
      days: { type: "string", description: "Days until the invitation expires (1 to 30, default 7)" },
    },
    async run(ctx) {
      needArgs(ctx, 1, "citadel org invite <email> [--role ROLE] [--days N]");
      const body: Record<string, unknown> = { email: ctx.args[0], role: role((ctx.options.role as string | undefined) ?? "viewer", "--role") };
      const days = integerOption(ctx, "days", 1, 30);
      if (days !== undefined) body.expires_in_days = days;
      const { api, org } = await inOrganization(ctx);
      const sent = await api.request<typeof Invitation.static>("POST", orgPath(org, "/invitations"), body);
      print(ctx, sent, `invitation ${sent.id}: ${sent.email} as ${sent.role}, until ${sent.expires_at} (they accept it with: citadel invitations accept ${sent.id})`);
      return 0;
    },
  },
  {
    words: ["org", "invitations"],
    summary: "An organization's pending invitations",
    options: ORG,
    async run(ctx) {
      const { api, org } = await inOrganization(ctx);
      const items = await allPages<typeof Invitation.static>(api, orgPath(org, "/invitations"));
      print(ctx, items, items.length === 0 ? "no pending invitations" : table([["ID", "EMAIL", "ROLE", "UNTIL"], ...items.map((i) => [i.id, i.email, i.role, i.expires_at])]));
      return 0;
    },
  },
  {
    words: ["org", "uninvite"],
    summary: "Revoke a pending invitation",
    args: "<invitation-id>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, "citadel org uninvite <invitation-id>");
      const { api, org } = await inOrganization(ctx);
      await api.request("DELETE", orgPath(org, `/invitations/${path(ctx.args[0]!)}`));
      print(ctx, { ok: true, id: ctx.args[0] }, "revoked");
      return 0;
    },
  },
  serviceSwitch("activate", "PUT", "Activate a service for an organization: its API keys start working (owners)"),
  serviceSwitch("deactivate", "DELETE", "Deactivate a service for an organization: its API keys stop working (owners)"),
];

const invitationCommands: Command[] = [
  {
    words: ["invitations"],
    summary: "My invitations to join organizations",
    async run(ctx) {
      const items = await allPages<typeof MyInvitation.static>(await ctx.api(), "/v1/iam/me/invitations");
      print(
        ctx,
        items,
        items.length === 0
          ? "no invitations"
          : table([["ID", "ORGANIZATION", "ROLE", "FROM", "UNTIL"], ...items.map((i) => [i.id, `${i.organization.name} (${i.organization.id})`, i.role, i.invited_by ?? "a deleted account", i.expires_at])]),
      );
      return 0;
    },
  },
  {
    words: ["invitations", "accept"],
    summary: "Accept an invitation: join its organization with its role",
    args: "<invitation-id>",
    maxArgs: 1,
    async run(ctx) {
      needArgs(ctx, 1, "citadel invitations accept <invitation-id>");
      const joined = await (await ctx.api()).request<typeof OrganizationWithRole.static>("POST", `/v1/iam/me/invitations/${path(ctx.args[0]!)}/accept`);
      print(ctx, joined, `joined ${joined.name} (${joined.id}) as ${joined.role}`);
      return 0;
    },
  },
  {
    words: ["invitations", "decline"],
    summary: "Decline an invitation",
    args: "<invitation-id>",
    maxArgs: 1,
    async run(ctx) {
      needArgs(ctx, 1, "citadel invitations decline <invitation-id>");
      await (await ctx.api()).request("POST", `/v1/iam/me/invitations/${path(ctx.args[0]!)}/decline`);
      print(ctx, { ok: true, id: ctx.args[0] }, "declined");
      return 0;
    },
  },
];

const workspaceCommands: Command[] = [
  {
    words: ["workspace", "list"],
    summary: "An organization's workspaces",
    options: ORG,
    async run(ctx) {
      const { api, org } = await inOrganization(ctx);
      const items = await allPages<WorkspaceView>(api, orgPath(org, "/workspaces"));
      print(ctx, items, items.length === 0 ? "no workspaces" : table([["ID", "NAME", "ALLOWED FROM"], ...items.map((w) => [w.id, w.name, w.ip_allowlist === null ? HIDDEN : w.ip_allowlist.join(",") || "any"])]));
      return 0;
    },
  },
  {
    words: ["workspace", "create"],
    summary: "Make a workspace in an organization",
    args: "<name>",
    maxArgs: 1,
    options: { ...ORG, ...ALLOW_FROM },
    async run(ctx) {
      needArgs(ctx, 1, "citadel workspace create <name> [--allow-from CIDRS]");
      const body: Record<string, unknown> = { name: ctx.args[0] };
      const list = allowFromOption(ctx);
      if (list) body.ip_allowlist = list;
      const { api, org } = await inOrganization(ctx);
      const w = await api.request<WorkspaceView>("POST", orgPath(org, "/workspaces"), body);
      print(ctx, w, `created ${w.name} (${w.id})`);
      return 0;
    },
  },
  {
    words: ["workspace", "show"],
    summary: "A workspace: its allowlist and the members whose role it narrows",
    args: "<workspace-id>",
    maxArgs: 1,
    async run(ctx) {
      needArgs(ctx, 1, "citadel workspace show <workspace-id>");
      const w = await (await ctx.api()).request<WorkspaceView>("GET", `/v1/iam/workspaces/${path(ctx.args[0]!)}`);
      print(ctx, w, workspaceText(w));
      return 0;
    },
  },
  {
    words: ["workspace", "set"],
    summary: "Rename a workspace or set its allowlist",
    args: "<workspace-id>",
    maxArgs: 1,
    options: { name: { type: "string", description: "A new name" }, ...ALLOW_FROM },
    async run(ctx) {
      needArgs(ctx, 1, "citadel workspace set <workspace-id> [--name NAME] [--allow-from CIDRS]");
      const changes: Record<string, unknown> = {};
      if (typeof ctx.options.name === "string") changes.name = ctx.options.name;
      const list = allowFromOption(ctx);
      if (list) changes.ip_allowlist = list;
      if (Object.keys(changes).length === 0) throw new UsageError("nothing to change: give --name or --allow-from");
      const w = await (await ctx.api()).request<WorkspaceView>("PATCH", `/v1/iam/workspaces/${path(ctx.args[0]!)}`, changes);
      print(ctx, w, workspaceText(w));
      return 0;
    },
  },
  {
    words: ["workspace", "delete"],
    summary: "Delete a workspace and everything in it (needs --yes)",
    args: "<workspace-id>",
    maxArgs: 1,
    options: yes("Yes, delete the workspace"),
    async run(ctx) {
      needArgs(ctx, 1, "citadel workspace delete <workspace-id> --yes");
      requireYes(ctx, `this deletes workspace ${ctx.args[0]} and the secrets in it`);
      await (await ctx.api()).request("DELETE", `/v1/iam/workspaces/${path(ctx.args[0]!)}`, undefined, { confirmed: true });
      print(ctx, { ok: true, id: ctx.args[0] }, "deleted");
      return 0;
    },
  },
  {
    words: ["workspace", "role"],
    summary: "Narrow a member's role in one workspace (never wider than their organization role); `org` resets it",
    args: "<workspace-id> <user-id> <role|org>",
    maxArgs: 3,
    async run(ctx) {
      needArgs(ctx, 3, "citadel workspace role <workspace-id> <user-id> <viewer|editor|admin|owner|org>");
      const narrowed = ctx.args[2] === "org" ? null : role(ctx.args[2]);
      const w = await (await ctx.api()).request<WorkspaceView>("PUT", `/v1/iam/workspaces/${path(ctx.args[0]!)}/members/${path(ctx.args[1]!)}`, { role: narrowed });
      print(ctx, w, workspaceText(w));
      return 0;
    },
  },
];

const apiKeyCommands: Command[] = [
  {
    words: ["apikey", "list"],
    summary: "An organization's service API keys (never the keys themselves)",
    options: ORG,
    async run(ctx) {
      const { api, org } = await inOrganization(ctx);
      const items = await allPages<typeof Credential.static>(api, orgPath(org, "/api-keys"));
      print(
        ctx,
        items,
        items.length === 0
          ? "no API keys"
          : table([["ID", "NAME", "SERVICE", "SCOPES", "EXPIRES", "LAST USED"], ...items.map((k) => [k.id, orDash(k.name), orDash(k.service), (k.scopes ?? []).join(" "), orDash(k.expires_at), orDash(k.last_used_at)])]),
      );
      return 0;
    },
  },
  {
    words: ["apikey", "create"],
    summary: "Make a service API key (printed once); it works only for its service, within your role",
    args: "<name>",
    maxArgs: 1,
    options: {
      ...ORG,
      service: { type: "string", description: "The one service it works for (dns, secrets, mesh, ...)" },
      scope: { type: "string", description: "Space- or comma-separated scopes of that service (default: <service>:read)" },
      days: { type: "string", description: "Days until it expires" },
      ...ALLOW_FROM,
    },
    async run(ctx) {
      needArgs(ctx, 1, "citadel apikey create <name> --service SERVICE [--scope SCOPES] [--days N] [--allow-from CIDRS]");
      const service = ctx.options.service;
      if (typeof service !== "string" || service === "") throw new UsageError("--service: the service the key is for (dns, secrets, mesh, ...)");
      const body: Record<string, unknown> = { name: ctx.args[0], service, scopes: scopesOption(ctx, `${service}:read`) };
      const days = integerOption(ctx, "days", 1, 3650);
      if (days !== undefined) body.expires_in_days = days;
      const list = allowFromOption(ctx);
      if (list) body.ip_allowlist = list;
      const { api, org } = await inOrganization(ctx);
      const key = await api.request<typeof CreatedApiKey.static>("POST", orgPath(org, "/api-keys"), body);
      if (ctx.json) ctx.out(JSON.stringify(key, null, 2));
      else {
        ctx.out(key.token);
        ctx.err(`API key ${key.id} for ${key.service} (${key.scopes?.join(" ")}), expires ${key.expires_at ?? "never"}: shown only now`);
      }
      // An older server says nothing (undefined): only a known inactive service is warned of.
      if (key.service_active === false) {
        ctx.err(`warning: ${service} is not activated for ${org}: this key is refused (403) until an owner runs citadel org activate ${service} --org ${org}`);
      }
      return 0;
    },
  },
  {
    words: ["apikey", "revoke"],
    summary: "Revoke a service API key by its id",
    args: "<key-id>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, "citadel apikey revoke <key-id>");
      const { api, org } = await inOrganization(ctx);
      await api.request("DELETE", orgPath(org, `/api-keys/${path(ctx.args[0]!)}`));
      print(ctx, { ok: true, id: ctx.args[0] }, "revoked");
      return 0;
    },
  },
];

const userCommands: Command[] = [
  {
    words: ["user", "list"],
    summary: "Every user of this Citadel (operators)",
    async run(ctx) {
      const items = await allPages<UserView>(await ctx.api(), "/v1/iam/users");
      print(ctx, items, table([["ID", "EMAIL", "NAME", "OPERATOR", "MFA"], ...items.map((u) => [u.id, u.email, orDash(u.name), u.operator ? "yes" : "-", u.mfa ? "on" : "-"])]));
      return 0;
    },
  },
  {
    words: ["user", "create"],
    summary: "Make a user (operators): a one-time password is printed once, or --password-stdin sets one",
    args: "<email>",
    maxArgs: 1,
    options: {
      name: { type: "string", description: "Their name" },
      operator: { type: "boolean", description: "Make them an operator of this Citadel (seal, keys, audit, users)" },
      "password-stdin": { type: "boolean", description: "Read their password from standard input (first line) instead of making a one-time one" },
    },
    async run(ctx) {
      needArgs(ctx, 1, "citadel user create <email> [--name NAME] [--operator] [--password-stdin]");
      const body: Record<string, unknown> = { email: ctx.args[0] };
      if (typeof ctx.options.name === "string") body.name = ctx.options.name;
      if (ctx.options.operator === true) body.operator = true;
      if (ctx.options["password-stdin"] === true) {
        const password = await secretPrompter()("Their password: ");
        if (password === "") throw new Error("--password-stdin: standard input held no password");
        body.password = password;
      }
      const made = await (await ctx.api()).request<typeof CreatedUser.static>("POST", "/v1/iam/users", body);
      if (ctx.json) ctx.out(JSON.stringify(made, null, 2));
      else {
        ctx.out(`created ${made.user.email} (${made.user.id})${made.user.operator ? ", operator" : ""}`);
        if (made.password) ctx.out(`one-time password (shown only now; they must change it at first login): ${made.password}`);
      }
      return 0;
    },
  },
  {
    words: ["user", "delete"],
    summary: "Delete a user and revoke their credentials (operators; needs --yes)",
    args: "<user-id | email>",
    maxArgs: 1,
    options: yes("Yes, delete the user"),
    async run(ctx) {
      needArgs(ctx, 1, "citadel user delete <user-id | email> --yes");
      requireYes(ctx, `this deletes user ${ctx.args[0]} and revokes their tokens and keys`);
      const api = await ctx.api();
      const id = await userIdOf(api, ctx.args[0]!);
      await api.request("DELETE", `/v1/iam/users/${path(id)}`, undefined, { confirmed: true });
      print(ctx, { ok: true, id }, "deleted");
      return 0;
    },
  },
  {
    words: ["user", "password-reset"],
    summary: "Give a user who lost their password a one-time password, printed once, and end their logins (operators; needs --yes)",
    args: "<user-id | email>",
    maxArgs: 1,
    options: yes("Yes, replace their password"),
    async run(ctx) {
      needArgs(ctx, 1, "citadel user password-reset <user-id | email> --yes");
      requireYes(ctx, `this replaces the password of user ${ctx.args[0]} by a one-time one and ends their logins`);
      const api = await ctx.api();
      const id = await userIdOf(api, ctx.args[0]!);
      const reset = await api.request<typeof PasswordReset.static>("POST", `/v1/iam/users/${path(id)}/password/reset`, undefined, { confirmed: true });
      print(ctx, reset, `one-time password for ${reset.user.email} (shown only now; they must change it at their next login): ${reset.password}`);
      return 0;
    },
  },
  {
    words: ["user", "mfa-reset"],
    summary: "Turn a user's TOTP off, delete their recovery codes and end their logins, their authenticator lost (operators; needs --yes)",
    args: "<user-id | email>",
    maxArgs: 1,
    options: yes("Yes, reset their two-factor authentication"),
    async run(ctx) {
      needArgs(ctx, 1, "citadel user mfa-reset <user-id | email> --yes");
      requireYes(ctx, `this turns off two-factor authentication for user ${ctx.args[0]} and ends their logins`);
      const api = await ctx.api();
      const id = await userIdOf(api, ctx.args[0]!);
      await api.request("POST", `/v1/iam/users/${path(id)}/mfa/reset`, undefined, { confirmed: true });
      print(ctx, { ok: true, id }, "reset");
      return 0;
    },
  },
];

export const iamAdminCommands: Command[] = [...organizationCommands, ...invitationCommands, ...workspaceCommands, ...apiKeyCommands, ...userCommands];
