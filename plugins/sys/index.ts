/**
 * The `sys` plugin: seal state, unseal and seal, key status, rotation and rekey, over the
 * kernel's keyring (src/crypto). Seal and keys are for appliance operators.
 */
import { Elysia } from "elysia";
import type { AuditRequestContext } from "../../src/audit/event.ts";
import { ActiveKekError, cancelRekey, finishInterruptedRotation, refuseUnusableActiveKek, rekey, rotateKek } from "../../src/crypto/key-operations.ts";
import { onDekReplaced, promoteRootKey, type RootKeyRecord } from "../../src/crypto/keyring.ts";
import { UnsealError } from "../../src/crypto/seal.ts";
import { ConflictError, InvalidError } from "../../src/errors.ts";
import { actorOf } from "../../src/auth/principal.ts";
import { access } from "../../src/http/access.ts";
import { auditRequest } from "../../src/http/audit-request.ts";
import { principalOf, worksLong } from "../../src/http/request-meta.ts";

import { definePlugin, type Kernel } from "../../src/plugin.ts";
import { sysCommands } from "./commands.ts";
import { KeysStatus, RekeyCancelResponse, RekeyRequest, RekeyResponse, RotateResponse, SealStatus, UnsealRequest, UnsealResponse } from "./model.ts";

const DAY_MS = 86_400_000;
/** Whoever gives a key share: the share is the credential. */
const SHARE_HOLDER = { kind: "anonymous" as const };

export const sysPlugin = definePlugin({
  name: "sys",
  scopes: ["sys:seal", "sys:keys"],
  actions: [
    {
      type: "sys.dek.replace",
      description: "An owner's newest data key did not unwrap (damaged, or its KEK does not open): a new one was made for its writes; what the old one encrypted stays unreadable.",
    },
  ],
  migrations: [],
  async start(k) {
    return reportReplacedDeks(k);
  },
  routes: (k) =>
    new Elysia({ name: "sys" })
      .get("/seal-status", () => k.seal.status(), {
        response: SealStatus,
        detail: { summary: "Whether Citadel is sealed, and unseal progress", tags: ["sys"], ...access({ public: true }) },
      })
      // The key shares are the credential here (as in Vault): no token is asked for, but the
      // attempts are rate-limited and every one is audited.
      .post("/unseal", ({ body, request }) => unseal(k, body, request), {
        body: UnsealRequest,
        response: UnsealResponse,
        detail: { summary: "Give one key share (Shamir); a key file or credential unseals by restarting", tags: ["sys"], ...access({ public: true, authLimit: true }) },
      })
      .post(
        "/seal",
        // After the key operation under way (a rekey would otherwise unseal again after it).
        ({ request }) => k.seal.exclusive(() => seal(k, request)),
        { response: SealStatus, detail: { summary: "Drop the keys from memory (operators)", tags: ["sys"], ...access({ operator: true, scope: "sys:seal" }) } },
      )
      .get("/keys", () => keysStatus(k), { response: KeysStatus, detail: { summary: "Root key, KEK versions, ages and rotation state (operators)", tags: ["sys"], ...access({ operator: true, scope: "sys:keys" }) } })
      .post("/keys/rotate", ({ request }) => {
        worksLong(request); // every data key is re-wrapped before the answer
        return rotateKek(k.store, k.seal, k.audit, k.log, actorOf(principalOf(request)), k.clock.now, auditRequest(request));
      }, {
        response: RotateResponse,
        detail: { summary: "Add a KEK version and re-wrap every data key with it (operators)", tags: ["sys"], ...access({ operator: true, scope: "sys:keys" }) },
      })
      .post(
        "/keys/rekey",
        async ({ body, request }) => {
          // Shares and a threshold mean nothing to a key file or a credential: refused (422), not ignored.
          const result = await rekey(k.store, k.seal, k.audit, k.keySource, actorOf(principalOf(request)), k.clock.now, body, auditRequest(request));
          return {
            key_id: result.keyId,
            method: result.method,
            active: result.active,
            previous_key_id: result.previousKeyId,
            ...(result.keptKeyFile ? { old_key_kept: true } : {}),
            shares: result.shares,
            root_key: result.rootKeyText?.trim(),
          };
        },
        {
          body: RekeyRequest,
          response: RekeyResponse,
          detail: {
            summary: "Replace the root key: new key file, shares or credential, or move to another seal method (operators; asks for confirmation)",
            tags: ["sys"],
            ...access({ operator: true, scope: "sys:keys", confirm: true }),
          },
        },
      )
      .delete("/keys/rekey", async ({ request }) => ({ cancelled: await cancelRekey(k.store, k.seal, k.audit, k.keySource, actorOf(principalOf(request)), auditRequest(request)) }), {
        response: RekeyCancelResponse,
        detail: { summary: "Drop a pending root key (a rekey whose new key was never used to unseal) (operators)", tags: ["sys"], ...access({ operator: true, scope: "sys:keys" }) },
      }),
  commands: sysCommands,
});

/**
 * Logs and audits each DEK a keyring replaced because it did not unwrap: once per owner, as the
 * new version serves its later writes. In a write of its own, queued behind the one that made it
 * (which may be an audit event's own, where no second event can be recorded), and only if that
 * one committed: the new version is there.
 */
function reportReplacedDeks(k: Kernel): () => Promise<void> {
  const reported = new Set<string>();
  const stop = onDekReplaced(k.store.db, (replaced) => {
    const id = `${replaced.owner}\0${replaced.version}`;
    void k.store
      .write((tx) => {
        const made = tx.query("SELECT 1 FROM deks WHERE owner = ? AND version = ? AND wrapped IS NOT NULL").get(replaced.owner, replaced.version);
        if (!made || reported.has(id)) return false;
        const reason = `data key v${replaced.replaced.version} under KEK v${replaced.replaced.kek_version} does not unwrap (${replaced.cause}): v${replaced.version} made for the owner's writes; what v${replaced.replaced.version} encrypted stays unreadable (docs/keys.md)`;
        k.audit.record(tx, { action: "sys.dek.replace", actor: { kind: "system" }, outcome: "success", resource: { type: "dek", id: replaced.owner }, reason });
        reported.add(id);
        return true;
      })
      .then((recorded) => {
        if (!recorded) return;
        k.log.error(REPLACED_DEK_MESSAGE, { owner: replaced.owner, version: replaced.version, replaced_version: replaced.replaced.version, kek_version: replaced.replaced.kek_version, cause: replaced.cause });
      })
      .catch((error) => k.log.error("could not record a replaced data key", { owner: replaced.owner, error: String(error) }));
  });
  return async () => void stop();
}

const REPLACED_DEK_MESSAGE =
  "an owner's newest data key does not unwrap: a new one was made for its writes, and what the old one encrypted stays unreadable; restore a backup made before the damage to read it again (docs/keys.md)";

async function seal(k: Kernel, request: Request) {
  // Already sealed: by a seal queued before this one (the edge answers 503 to one sent while sealed).
  if (!k.seal.sealed) {
    await k.store.write((tx) => k.audit.record(tx, { action: "sys.seal", actor: actorOf(principalOf(request)), outcome: "success", request: auditRequest(request) }));
    k.seal.seal();
    k.log.warn("sealed by the operator");
  }
  return k.seal.status();
}

async function unseal(k: Kernel, body: typeof UnsealRequest.static, request: Request) {
  const result = await k.seal.exclusive(() => takeShare(k, body, request));
  if (result.unsealed) {
    // A KEK rotation killed half-way is finished now, as a start from a key file does; in the
    // background: the shares' holder need not wait for every DEK.
    void finishInterruptedRotation(k.store, k.seal, k.audit, k.log, () => k.clock.now()).catch((error) => k.log.error("could not finish an interrupted key rotation", { error: String(error) }));
  }
  return result;
}

/** The unseal request's part that is a key operation: one at a time with seal, rotation and rekey. */
async function takeShare(k: Kernel, body: typeof UnsealRequest.static, request: Request) {
  const context = auditRequest(request);
  if (body.reset) {
    // Anyone may reset (the route is open, as it must be while sealed): a reset that drops
    // shares is on record (with the request id; while sealed there is no key for the address).
    const given = k.seal.status().progress;
    k.seal.resetShares();
    if (given > 0) await k.store.write((tx) => k.audit.record(tx, { action: "sys.unseal", actor: SHARE_HOLDER, outcome: "success", reason: `reset: the shares given so far (${given}) dropped`, request: context }));
  }
  if (!k.seal.sealed) return { unsealed: false, status: k.seal.status() };
  if (k.keySource.method !== "shamir") {
    // The key file or credential unseals at start only: were a request enough to reload it,
    // anyone could undo an operator's seal with one call. A restart needs the host's administrator.
    const source = k.keySource.method === "key_file" ? "key file" : "systemd credential";
    throw new ConflictError(`This Citadel unseals from its ${source} when it starts: restart the service to unseal it.`);
  }
  if (body.share === undefined) {
    if (body.reset) return { unsealed: false, status: k.seal.status() };
    throw new InvalidError("give a key share: this Citadel is sealed with Shamir shares", "share");
  }
  let result;
  try {
    result = k.seal.submitShare(body.share);
  } catch (error) {
    if (!(error instanceof UnsealError)) throw error;
    await k.store.write((tx) => k.audit.record(tx, { action: "sys.unseal", actor: SHARE_HOLDER, outcome: "failure", reason: error.message, request: context }));
    throw new InvalidError(error.message, "share");
  }
  if (result.unsealed) await refuseUnusableKeyring(k, context);
  if (result.unsealed) {
    const promote = result.promote; // the new shares of a rekey, used for the first time
    await k.store.write((tx) => {
      k.audit.record(tx, { action: "sys.unseal", actor: SHARE_HOLDER, outcome: "success", request: context, resource: { type: "root_key", id: k.seal.keyring().rootId } });
      if (promote) {
        promoteRootKey(tx, promote);
        k.audit.record(tx, { action: "keys.root.promote", actor: SHARE_HOLDER, outcome: "success", resource: { type: "root_key", id: promote } });
      }
    });
    k.log.info("unsealed", { key_id: k.seal.keyring().rootId });
  } else {
    const { progress, threshold } = result.status;
    await k.store.write((tx) => k.audit.record(tx, { action: "sys.unseal", actor: SHARE_HOLDER, outcome: "success", reason: `share accepted: ${progress} of ${threshold ?? "?"}`, request: context }));
  }
  return { unsealed: result.unsealed, status: result.status };
}

/**
 * The shares rebuilt the root key, but its active KEK does not open: sealed again (the shares
 * must be given again, after a restore), on record, and a 409 naming the KEK and the remedy — as
 * a start from a key file stops. Unsealed, every write needing a key would fail (500) while
 * /readyz said ready.
 */
async function refuseUnusableKeyring(k: Kernel, context: AuditRequestContext) {
  try {
    refuseUnusableActiveKek(k.seal);
  } catch (error) {
    if (!(error instanceof ActiveKekError)) throw error;
    k.log.error(error.message);
    await k.store.write((tx) => k.audit.record(tx, { action: "sys.unseal", actor: SHARE_HOLDER, outcome: "failure", reason: error.message, request: context }));
    throw new ConflictError(error.message);
  }
}

function keysStatus(k: Kernel) {
  const status = k.seal.keyring().status();
  const now = k.clock.now();
  const age = (ms: number) => Math.floor(((now - ms) / DAY_MS) * 10) / 10;
  const iso = (ms: number) => new Date(ms).toISOString();
  const root = (r: RootKeyRecord) => ({ ...r, created_at: iso(r.created_at), age_days: age(r.created_at) });
  const rotationDays = k.config.keys.rotation_days;
  const activeKek = status.keks.find((x) => x.version === status.active_kek)!;
  return {
    root: root(status.root),
    pending_root: status.pending_root && root(status.pending_root),
    active_kek: status.active_kek,
    keks: status.keks.map((x) => ({ ...x, created_at: iso(x.created_at), retired_at: x.retired_at === null ? null : iso(x.retired_at), age_days: age(x.created_at) })),
    deks: status.deks,
    deks_to_rewrap: status.deks_to_rewrap,
    deks_damaged: status.deks_damaged,
    rotation_days: rotationDays,
    rotation_due: rotationDays > 0 && now - activeKek.created_at >= rotationDays * DAY_MS,
  };
}
