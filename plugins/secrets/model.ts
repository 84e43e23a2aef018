/** Request and response schemas of the secrets API (validation and the OpenAPI document). */
import { t } from "elysia";
import { Integer } from "../../src/http/schema.ts";

const Iso = t.String({ format: "date-time" });
const NullableIso = t.Union([Iso, t.Null()]);
const Protection = t.Union([t.Literal("members"), t.Literal("admins"), t.Literal("named")], {
  description: "members: the workspace's roles decide; admins: admins and owners (and service keys) only; named: the allowed users only",
});

export const Done = t.Object({ ok: t.Literal(true) });

export const Environment = t.Object({ name: t.String(), protection: Protection, allowed_users: t.Array(t.String()), created_at: Iso });
export const EnvironmentList = t.Object({ items: t.Array(Environment) });
export const NewEnvironment = t.Object({
  name: t.String({ maxLength: 32, description: "Lower-case letters, digits, - and _" }),
  protection: t.Optional(Protection),
  allowed_users: t.Optional(t.Array(t.String({ maxLength: 64 }), { maxItems: 100 })),
});
export const EnvironmentProtection = t.Object({ protection: Protection, allowed_users: t.Optional(t.Array(t.String({ maxLength: 64 }), { maxItems: 100 })) });

export const WorkspaceSettings = t.Object({
  workspace: t.String(),
  e2ee: t.Boolean({ description: "End-to-end encrypted: values are encrypted by the members' clients; the server stores ciphertext only." }),
  data_key_version: t.Union([Integer(), t.Null()], { description: "The workspace's data key version (null before its first value)." }),
  values_on_older_keys: Integer({ description: "Stored versions still encrypted with an older data key (a rotation under way)." }),
  environments: t.Array(Environment),
});
export const WorkspaceSettingsChange = t.Object({ e2ee: t.Boolean({ description: "Chosen while the workspace holds no secrets." }) });

export const SecretMetadata = t.Object({
  id: t.String(),
  name: t.String(),
  environment: t.String(),
  version: Integer({ description: "The current version; send it back in If-Match to update only if nobody changed it meanwhile." }),
  note: t.Union([t.String(), t.Null()]),
  rotation_days: t.Union([Integer(), t.Null()]),
  rotation_due: t.Boolean(),
  expires_at: NullableIso,
  expired: t.Boolean(),
  rotated_at: Iso,
  created_at: Iso,
  created_by: t.String(),
  updated_at: Iso,
  updated_by: t.String(),
  deleted_at: NullableIso,
});

export const SecretList = t.Object({
  environment: t.String(),
  e2ee: t.Boolean(),
  items: t.Array(
    t.Composite([
      SecretMetadata,
      t.Object({ value: t.Optional(t.String({ description: "Only with ?values=true; each read is audited." })), key_version: t.Optional(Integer({ description: "E2EE: the workspace key version the value is encrypted with." })) }),
    ]),
  ),
});

export const SecretValue = t.Composite([
  SecretMetadata,
  t.Object({
    value: t.String(),
    value_version: Integer(),
    e2ee: t.Boolean({ description: "The value is the client's ciphertext: decrypt it with the workspace key." }),
    key_version: Integer({ description: "E2EE: the workspace key version it is encrypted with (0 otherwise)." }),
  }),
]);

export const SecretHistory = t.Composite([
  SecretMetadata,
  t.Object({ versions: t.Array(t.Object({ version: Integer(), origin: t.String(), created_at: Iso, created_by: t.String(), current: t.Boolean() })) }),
]);

const Metadata = {
  note: t.Optional(t.Union([t.String({ maxLength: 500 }), t.Null()])),
  rotation_days: t.Optional(t.Union([Integer({ minimum: 1, maximum: 3650 }), t.Null()], { description: "Remind to rotate this often (rotation_due in lists)." })),
  expires_at: t.Optional(t.Union([t.String({ format: "date-time" }), t.Null()])),
};
export const SetSecret = t.Object({ value: t.String({ description: "At most secrets.max_value_bytes; never logged or audited." }), ...Metadata });
export const SecretMetadataChange = t.Object(Metadata);
export const Rollback = t.Object({
  version: Integer({ minimum: 1 }),
  value: t.Optional(t.String({ description: "E2EE workspaces only, and needed there: the old version's value, decrypted and re-encrypted by the client as the version the rollback makes." })),
});
export const Rotate = t.Object({
  generator: t.Union([t.Literal("password"), t.Literal("hex"), t.Literal("base64"), t.Literal("uuid")]),
  length: t.Optional(Integer({ minimum: 1, maximum: 512, description: "Characters (password) or random bytes (hex, base64)." })),
});

export const ListQuery = t.Object({
  values: t.Optional(t.Boolean({ description: "Include values (each read is audited)." })),
  deleted: t.Optional(t.Boolean({ description: "Include soft-deleted secrets." })),
  purpose: t.Optional(
    t.Literal("export", {
      description:
        "With values: what the client reads them for, in each read's audit reason (`export (declared by the client)`): an end-to-end-encrypted workspace's export is decrypted by the client, so the server cannot tell it from a list.",
    }),
  ),
});
export const ReadQuery = t.Object({ version: t.Optional(t.Integer({ minimum: 1 })) });
export const ExportQuery = t.Object({ format: t.Optional(t.Union([t.Literal("dotenv"), t.Literal("json")])) });

/**
 * The entries of one import: all of them are written in one transaction, which holds the store
 * (and the event loop) while it runs. Content is checked once parsed (the service does it).
 */
export const MAX_IMPORT_ENTRIES = 5000;

export const ImportRequest = t.Object({
  format: t.Optional(t.Union([t.Literal("dotenv"), t.Literal("json")])),
  content: t.Optional(t.String({ description: `A .env file or a flat JSON object of strings: at most ${MAX_IMPORT_ENTRIES} entries.` })),
  entries: t.Optional(t.Array(t.Object({ name: t.String({ maxLength: 128 }), value: t.String() }), { maxItems: MAX_IMPORT_ENTRIES })),
  dry_run: t.Optional(t.Boolean({ description: "Say what would change, change nothing." })),
  overwrite: t.Optional(t.Boolean({ description: "Replace values that differ (default true)." })),
});
export const ImportResult = t.Object({
  dry_run: t.Boolean(),
  plan: t.Array(t.Object({ name: t.String(), action: t.Union([t.Literal("create"), t.Literal("update"), t.Literal("unchanged"), t.Literal("skip")]), reason: t.Optional(t.String()) })),
  created: Integer(),
  updated: Integer(),
  unchanged: Integer(),
  skipped: Integer(),
});

export const KeyRotation = t.Object({ workspace: t.String(), data_key_version: Integer(), reencrypted: Integer() });

/** Bounds are checked by the service (shareKdfProblem): the same LIMITS the viewer's client applies. */
export const ShareKdf = t.Object(
  {
    salt: t.String({ maxLength: 64, description: "16 bytes, base64url." }),
    memory_kib: Integer(),
    iterations: Integer(),
    parallelism: Integer(),
  },
  { description: "The argon2id salt and parameters of the link's passphrase (not secret)." },
);
export const NewShare = t.Object({
  ciphertext: t.String({ minLength: 1, description: "Made by the client (share-crypto); the key stays in the link's fragment." }),
  view_proof: t.String({ minLength: 16, maxLength: 256, description: "Derived from the link key by the client: viewers present it." }),
  passphrase: t.Boolean({ description: "A passphrase is needed besides the link." }),
  passphrase_proof: t.Optional(t.String({ minLength: 16, maxLength: 256, description: "Derived from the link key and the passphrase by the client: viewers present it too, before a view is spent." })),
  passphrase_kdf: t.Optional(ShareKdf),
  ttl_hours: t.Optional(Integer({ minimum: 1 })),
  max_views: t.Optional(Integer({ minimum: 1, description: "Default 1." })),
  source: t.Optional(t.Object({ workspace: t.String(), environment: t.String(), name: t.String() }, { description: "The secret it carries (for the audit trail)." })),
});
export const Share = t.Object({
  id: t.String(),
  state: t.String({ description: "active, used, expired or revoked" }),
  views: Integer(),
  max_views: Integer(),
  passphrase: t.Boolean(),
  source: t.Union([t.String(), t.Null()]),
  created_by: t.String(),
  created_at: Iso,
  expires_at: Iso,
});
export const ShareListQuery = t.Object({
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  cursor: t.Optional(t.String({ maxLength: 100, description: "`next_cursor` of the previous page." })),
});
export const ShareList = t.Object({ items: t.Array(Share), next_cursor: t.Union([t.String(), t.Null()], { description: "Pass as `cursor` for the next (older) page; null on the last page." }) });
export const ShareView = t.Object({
  proof: t.String({ maxLength: 256 }),
  passphrase_proof: t.Optional(t.String({ maxLength: 256, description: "For a link whose peek gave passphrase_kdf: needed to view it." })),
});
export const SharePeek = t.Object({
  passphrase: t.Boolean(),
  passphrase_kdf: t.Optional(ShareKdf),
  views_left: Integer(),
  expires_at: Iso,
});
export const ShareContent = t.Object({ ciphertext: t.String(), passphrase: t.Boolean(), views_left: Integer(), expires_at: Iso });

export const KeyPair = t.Object({
  public_key: t.String({ description: "X25519, base64url (32 bytes)." }),
  sealed_private_key: t.String({ maxLength: 4200, description: "Sealed by the user's passphrase on their machine (c1.pk....)." }),
});
export const KeyPairView = t.Composite([KeyPair, t.Object({ created_at: Iso })]);
export const PublicKey = t.Object({ user: t.String(), public_key: t.String() });
/** The public key a wrapped copy was made for: refused (409) when it is no longer its holder's. */
const WrappedFor = t.Optional(t.String({ maxLength: 64, description: "The member's public key the copy is wrapped to (as GET …/e2ee/public-keys/:user gave it): 409 if it is no longer theirs (their key pair was replaced meanwhile). citadel sends it; a copy without it is taken as it is." }));
export const Grant = t.Object({ wrapped: t.String({ maxLength: 4200, description: "The workspace key wrapped to the member's public key (c1.wk....)." }), public_key: WrappedFor });
export const Holders = t.Object({ items: t.Array(t.Object({ user: t.String(), wrapped_by: t.String(), created_at: Iso })) });
export const WrappedKey = t.Object({ workspace: t.String(), key_version: Integer(), wrapped: t.String(), wrapped_by: t.String() });
export const MyKeyQuery = t.Object({ version: t.Optional(t.Integer({ minimum: 1, description: "An older version of the workspace key (default: the current one)." })) });
export const E2eeRotation = t.Object({
  from_version: t.Optional(Integer({ minimum: 1, description: "The key version the client re-encrypted from: 409 when the workspace is no longer at it (another rotation came first)." })),
  values: t.Array(t.Object({ environment: t.String(), name: t.String(), version: Integer({ description: "The version this ciphertext re-encrypts; the value names the next one, the version the rotation stores it as." }), value: t.String() }), { maxItems: 10_000 }),
  wrapped: t.Array(t.Object({ user: t.String(), wrapped: t.String({ maxLength: 4200 }), public_key: WrappedFor }), { minItems: 1, maxItems: 1000 }),
});
export const E2eeRotated = t.Object({ workspace: t.String(), key_version: Integer(), reencrypted: Integer(), holders: t.Array(t.String()) });

export const NewWebhook = t.Object({ url: t.String({ maxLength: 2000, description: "Under a prefix of secrets.webhook_allowed_urls." }) });
export const Webhook = t.Object({ id: t.String(), url: t.String(), created_at: Iso, created_by: t.String() });
export const WebhookList = t.Object({ items: t.Array(Webhook) });
export const CreatedWebhook = t.Composite([Webhook, t.Object({ secret: t.String({ description: "The signing secret: shown once." }) })]);
export const Deliveries = t.Object({
  items: t.Array(
    t.Object({
      id: Integer(),
      event: t.Object({}, { additionalProperties: true }),
      state: t.String(),
      attempts: Integer(),
      next_attempt_at: NullableIso,
      last_status: t.Union([Integer(), t.Null()]),
      last_error: t.Union([t.String(), t.Null()]),
      created_at: Iso,
      delivered_at: NullableIso,
    }),
  ),
});
