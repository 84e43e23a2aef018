import { t } from "elysia";
import { Integer } from "../../src/http/schema.ts";

const sealMethodName = (description: string) => t.Union([t.Literal("key_file"), t.Literal("systemd_credential"), t.Literal("shamir")], { description });

export const SealStatus = t.Object({
  sealed: t.Boolean(),
  initialized: t.Boolean(),
  method: t.Union([t.Literal("key_file"), t.Literal("systemd_credential"), t.Literal("shamir"), t.Null()], { description: "The method of the key that unseals under the configured seal method." }),
  threshold: t.Union([Integer(), t.Null()], { description: "Shamir: how many shares unseal." }),
  progress: Integer({ description: "Shamir: shares received so far." }),
  key_id: t.Union([t.String(), t.Null()], { description: "The root key's id (the prefix of its shares)." }),
});

export const UnsealRequest = t.Object({
  share: t.Optional(t.String({ maxLength: 200, description: "One Shamir key share (seal method shamir)." })),
  reset: t.Optional(t.Boolean({ description: "Forget the shares given so far." })),
});

export const UnsealResponse = t.Object({
  unsealed: t.Boolean({ description: "True when this request unsealed Citadel." }),
  status: SealStatus,
});

export const RootKeyInfo = t.Object({
  id: t.String(),
  method: t.String(),
  shares: t.Union([Integer(), t.Null()]),
  threshold: t.Union([Integer(), t.Null()]),
  state: t.String(),
  created_at: t.String({ format: "date-time" }),
  age_days: t.Number(),
});

export const KeysStatus = t.Object({
  root: RootKeyInfo,
  pending_root: t.Union([RootKeyInfo, t.Null()]),
  active_kek: Integer(),
  keks: t.Array(
    t.Object({
      version: Integer(),
      created_at: t.String({ format: "date-time" }),
      retired_at: t.Union([t.String({ format: "date-time" }), t.Null()]),
      age_days: t.Number(),
      deks: Integer({ description: "Data keys wrapped by this KEK." }),
    }),
  ),
  deks: Integer(),
  deks_to_rewrap: Integer({ description: "Data keys still under an older KEK (a rotation in progress), not counting the damaged ones." }),
  deks_damaged: Integer({
    description: "Data keys under an older KEK that do not unwrap (damaged or altered, or their KEK gone), as the last re-wrap found them: no rotation moves them. Restore a backup made before the damage, or destroy their owners' data.",
  }),
  rotation_days: Integer({ description: "Configured rotation period (0: manual only)." }),
  rotation_due: t.Boolean(),
});

export const RotateResponse = t.Object({
  version: Integer({ description: "The new KEK version." }),
  rewrapped: Integer({ description: "Data keys re-wrapped with it." }),
  damaged: Integer({ description: "Data keys that do not unwrap (damaged or altered): left under their KEK, which is kept; each is logged and audited." }),
});


export const RekeyRequest = t.Object({
  method: t.Optional(sealMethodName("The new key's seal method, to move to another one (a seal migration); default: the current one.")),
  shares: t.Optional(Integer({ minimum: 2, maximum: 255 })),
  threshold: t.Optional(Integer({ minimum: 2, maximum: 255 })),
});

export const RekeyResponse = t.Object({
  key_id: t.String(),
  method: sealMethodName("The new key's seal method. When it is not the current one, the first start configured for it promotes the key."),
  active: t.Boolean({ description: "True: the new key is in use. False: it is pending until it is used to unseal." }),
  previous_key_id: t.String({ description: "The root key before: backups made until the new key is in use open with it only." }),
  old_key_kept: t.Optional(t.Boolean({ description: "Key file: the old key file was kept beside the new one, as <seal.key_file>.<previous_key_id>." })),
  shares: t.Optional(t.Array(t.String(), { description: "Shamir: the new shares, shown only now." })),
  root_key: t.Optional(t.String({ description: "systemd_credential: the new key (64 hex digits), shown only now." })),
});

export const RekeyCancelResponse = t.Object({
  cancelled: t.Union([t.String(), t.Null()], { description: "The id of the pending root key dropped; null when none was pending." }),
});
