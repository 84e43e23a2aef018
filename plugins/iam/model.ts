import { t, type TSchema } from "elysia";
import { Integer } from "../../src/http/schema.ts";

const Id = t.String({ minLength: 1, maxLength: 64 });
const Iso = t.String({ format: "date-time" });
const Nullable = <T extends ReturnType<typeof t.String>>(s: T) => t.Union([s, t.Null()]);
const RoleName = t.Union([t.Literal("viewer"), t.Literal("editor"), t.Literal("admin"), t.Literal("owner")]);
const Cidrs = t.Array(t.String({ maxLength: 50 }), { maxItems: 100, description: "IPv4/IPv6 CIDRs; empty: any address" });
const Scopes = t.Array(t.String({ maxLength: 64 }), { minItems: 1, maxItems: 50, description: "`service:action` scopes, or read, write, deploy, shell" });

/** A list's paging (src/http/cursor.ts), as the audit list's: `limit` rows a page, after `cursor`. */
export const PageQuery = t.Object({
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  cursor: t.Optional(t.String({ maxLength: 2000, description: "`next_cursor` of the previous page." })),
});
const PageOf = <T extends TSchema>(item: T) =>
  t.Object({ items: t.Array(item), next_cursor: t.Union([t.String(), t.Null()], { description: "Pass as `cursor` for the next page; null on the last page." }) });

export const LoginRequest = t.Object({
  email: t.String({ minLength: 1, maxLength: 320 }),
  password: t.String({ minLength: 1, maxLength: 1024 }),
  totp: t.Optional(t.String({ maxLength: 10 })),
  recovery_code: t.Optional(t.String({ maxLength: 30 })),
});

export const User = t.Object({
  id: t.String(),
  email: t.String(),
  name: Nullable(t.String()),
  operator: t.Boolean(),
  mfa: t.Boolean(),
  must_change_password: t.Boolean({ description: "A one-time password: until it is changed, only /me, /me/password and /logout answer." }),
  created_at: Iso,
});

export const LoginResponse = t.Object({ token: t.String({ description: "The session token: shown once." }), token_id: t.String(), expires_at: Iso, user: User });

export const LogoutRequest = t.Object({ everywhere: t.Optional(t.Boolean({ description: "End every login session and CLI login of this user (personal access tokens and API keys stay)." })) });

export const Me = t.Composite([
  User,
  t.Object({ recovery_codes_left: Integer(), organizations: t.Array(t.Object({ id: t.String(), name: t.String(), role: RoleName })) }),
]);

export const Credential = t.Object({
  id: t.String({ description: "The token's public prefix." }),
  kind: t.String(),
  name: Nullable(t.String()),
  service: Nullable(t.String()),
  organization: Nullable(t.String()),
  workspace: Nullable(t.String()),
  scopes: t.Union([t.Array(t.String()), t.Null()]),
  ip_allowlist: t.Union([t.Array(t.String()), t.Null()], { description: "null: the stored list is unreadable, and refuses every address" }),
  created_at: Iso,
  expires_at: Nullable(Iso),
  last_used_at: Nullable(Iso),
  last_used_from: Nullable(t.String()),
});
export const CredentialList = PageOf(Credential);
export const Session = t.Composite([Credential, t.Object({ current: t.Boolean() })]);
export const SessionList = PageOf(Session);
export const NewCredential = t.Composite([t.Object({ token: t.String({ description: "The token itself: shown only now." }) }), Credential]);
export const CreatedApiKey = t.Composite([
  NewCredential,
  t.Object({ service_active: t.Boolean({ description: "Whether the key's service is activated for the organization: until it is, the key is refused (403)." }) }),
]);

export const PasswordChange = t.Object({ current_password: t.String({ maxLength: 1024 }), new_password: t.String({ maxLength: 1024 }) });
export const TotpEnrolment = t.Object({ secret: t.String({ description: "Base32, for manual entry." }), otpauth_uri: t.String(), qr_svg: t.String({ description: "The otpauth URI as a QR code (SVG)." }) });
/** The first code of an enrolment, and the current password: a stolen session must not enrol a factor of its own. */
export const TotpConfirmation = t.Object({ code: t.String({ minLength: 6, maxLength: 10 }), current_password: t.String({ maxLength: 1024 }) });
/** A current TOTP code or, the authenticator lost, an unused recovery code: one of them. */
export const TotpProof = t.Object({ code: t.Optional(t.String({ minLength: 6, maxLength: 10 })), recovery_code: t.Optional(t.String({ minLength: 1, maxLength: 30 })) });
export const RecoveryCodes = t.Object({ recovery_codes: t.Array(t.String(), { description: "Each works once instead of a TOTP code: shown only now." }) });

export const NewToken = t.Object({
  name: t.String({ minLength: 1, maxLength: 63 }),
  scopes: Scopes,
  expires_in_days: t.Optional(Integer({ minimum: 1, maximum: 3650 })),
  organization: t.Optional(Id),
  workspace: t.Optional(Id),
  ip_allowlist: t.Optional(Cidrs),
});
export const NewApiKey = t.Object({
  service: t.String({ minLength: 1, maxLength: 16 }),
  name: t.String({ minLength: 1, maxLength: 63 }),
  scopes: Scopes,
  expires_in_days: t.Optional(Integer({ minimum: 1, maximum: 3650 })),
  ip_allowlist: t.Optional(Cidrs),
});
export const ConsoleToken = t.Object({ token: t.String(), expires_at: Iso, single_use: t.Boolean() });

export const Organization = t.Object({ id: t.String(), name: t.String(), require_mfa: t.Boolean(), ip_allowlist: t.Array(t.String()), services: t.Array(t.String()), created_at: Iso });
export const OrganizationWithRole = t.Composite([Organization, t.Object({ role: t.Union([RoleName, t.Null()]) })]);
/**
 * GET /v1/iam/orgs: an organization whose allowlist refuses the caller's address is listed
 * without its settings (null), which GET /v1/iam/orgs/{org} would refuse to show from there.
 */
export const OrganizationSeen = t.Object({
  ...OrganizationWithRole.properties,
  require_mfa: t.Union([t.Boolean(), t.Null()]),
  ip_allowlist: t.Union([t.Array(t.String()), t.Null()]),
  services: t.Union([t.Array(t.String()), t.Null()]),
});
export const OrganizationList = PageOf(OrganizationSeen);
export const NewOrganization = t.Object({ name: t.String({ minLength: 1, maxLength: 63 }), owner: t.Optional(Id) });
export const OrganizationChanges = t.Object({ name: t.Optional(t.String({ minLength: 1, maxLength: 63 })), require_mfa: t.Optional(t.Boolean()), ip_allowlist: t.Optional(Cidrs) });

export const Member = t.Object({ user: t.String(), email: t.String(), name: Nullable(t.String()), role: RoleName, mfa: t.Boolean(), since: Iso });
export const MemberList = PageOf(Member);
export const NewMember = t.Object({ email: t.String({ minLength: 3, maxLength: 320 }), role: RoleName });
export const MemberRole = t.Object({ role: RoleName });
export const NewInvitation = t.Object({
  email: t.String({ minLength: 3, maxLength: 320 }),
  role: RoleName,
  expires_in_days: t.Optional(Integer({ minimum: 1, maximum: 30, description: "Days until it expires (default 7)" })),
});
export const Invitation = t.Object({ id: t.String(), organization: t.String(), email: t.String(), role: RoleName, invited_by: t.String(), created_at: Iso, expires_at: Iso });
export const InvitationList = PageOf(Invitation);
export const MyInvitation = t.Object({
  id: t.String(),
  organization: t.Object({ id: t.String(), name: t.String() }),
  role: RoleName,
  invited_by: Nullable(t.String({ description: "The inviter's email (null if their account is gone)" })),
  created_at: Iso,
  expires_at: Iso,
});
export const MyInvitationList = PageOf(MyInvitation);

export const Workspace = t.Object({ id: t.String(), organization: t.String(), name: t.String(), ip_allowlist: t.Array(t.String()), members: t.Array(t.Object({ user: t.String(), role: RoleName })), created_at: Iso });
/**
 * GET /v1/iam/orgs/{org}/workspaces: a workspace whose allowlist refuses the caller's address is
 * listed without its allowlist and members (null), which GET /v1/iam/workspaces/{ws} would
 * refuse to show from there.
 */
export const WorkspaceList = PageOf(
  t.Object({
    ...Workspace.properties,
    ip_allowlist: t.Union([t.Array(t.String()), t.Null()]),
    members: t.Union([Workspace.properties.members, t.Null()]),
  }),
);
export const NewWorkspace = t.Object({ name: t.String({ minLength: 1, maxLength: 63 }), ip_allowlist: t.Optional(Cidrs) });
export const WorkspaceChanges = t.Object({ name: t.Optional(t.String({ minLength: 1, maxLength: 63 })), ip_allowlist: t.Optional(Cidrs) });
export const WorkspaceRole = t.Object({ role: t.Union([RoleName, t.Null()], { description: "null: the organization role applies" }) });

export const NewUser = t.Object({
  email: t.String({ minLength: 3, maxLength: 320 }),
  name: t.Optional(t.String({ maxLength: 100 })),
  password: t.Optional(t.String({ maxLength: 1024, description: "Omit to get a one-time password in the answer." })),
  operator: t.Optional(t.Boolean()),
});
export const CreatedUser = t.Object({ user: User, password: t.Optional(t.String({ description: "The one-time password: shown only now." })) });
export const UserList = PageOf(User);
export const PasswordReset = t.Object({ user: User, password: t.String({ description: "The one-time password: shown only now; replaced at the next login." }) });

export const DeviceDecision = t.Object({ user_code: t.String({ minLength: 8, maxLength: 12 }), approve: t.Boolean() });
export const Done = t.Object({ ok: t.Literal(true) });
