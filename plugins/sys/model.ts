import { t } from "elysia";

export const SealStatus = t.Object({
  sealed: t.Boolean(),
  initialized: t.Boolean(),
  method: t.Union([t.Literal("key_file"), t.Literal("systemd_credential"), t.Literal("shamir"), t.Null()]),
  threshold: t.Union([t.Integer(), t.Null()], { description: "Shamir: how many shares unseal." }),
  progress: t.Integer({ description: "Shamir: shares received so far." }),
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
  shares: t.Union([t.Integer(), t.Null()]),
  threshold: t.Union([t.Integer(), t.Null()]),
  state: t.String(),
  created_at: t.String({ format: "date-time" }),
  age_days: t.Number(),
});

export const KeysStatus = t.Object({
  root: RootKeyInfo,
  pending_root: t.Union([RootKeyInfo, t.Null()]),
  active_kek: t.Integer(),
  keks: t.Array(
    t.Object({
      version: t.Integer(),
      created_at: t.String({ format: "date-time" }),
      retired_at: t.Union([t.String({ format: "date-time" }), t.Null()]),
      age_days: t.Number(),
      deks: t.Integer({ description: "Data keys wrapped by this KEK." }),
    }),
  ),
  deks: t.Integer(),
  deks_to_rewrap: t.Integer({ description: "Data keys still under an older KEK (a rotation in progress)." }),
  rotation_days: t.Integer({ description: "Configured rotation period (0: manual only)." }),
  rotation_due: t.Boolean(),
});

export const RotateResponse = t.Object({
  version: t.Integer({ description: "The new KEK version." }),
  rewrapped: t.Integer({ description: "Data keys re-wrapped with it." }),
});

export const RekeyRequest = t.Object({
  shares: t.Optional(t.Integer({ minimum: 2, maximum: 255 })),
  threshold: t.Optional(t.Integer({ minimum: 2, maximum: 255 })),
});

export const RekeyResponse = t.Object({
  key_id: t.String(),
  active: t.Boolean({ description: "True: the new key is in use. False: it is pending until it is used to unseal." }),
  shares: t.Optional(t.Array(t.String(), { description: "Shamir: the new shares, shown only now." })),
  root_key: t.Optional(t.String({ description: "systemd_credential: the new key (64 hex digits), shown only now." })),
});
