/** CLI: citadel unseal | seal | keys status | keys rotate | keys rekey. */
import { UsageError } from "../../src/cli/command-line.ts";
import { integerOption, print, stringOption } from "../../src/cli/output.ts";
import { readKeyShare } from "../../src/cli/prompt.ts";
import type { Command, CommandContext } from "../../src/plugin.ts";
import { sameInstanceFlags } from "../../src/cli/next-command.ts";
import { parseSealOption, SEAL_OPTIONS } from "../../src/cli/seal-option.ts";
import type { SealMethod } from "../../src/crypto/keyring.ts";
import type { KeysStatus, RekeyCancelResponse, RekeyResponse, RotateResponse, SealStatus, UnsealResponse } from "./model.ts";

type Status = typeof SealStatus.static;

function printStatus(ctx: CommandContext, status: Status): void {
  if (ctx.json) return ctx.out(JSON.stringify(status, null, 2));
  ctx.out(`sealed       ${status.sealed}`);
  ctx.out(`seal method  ${status.method ?? "not initialized"}`);
  if (status.threshold !== null) ctx.out(`progress     ${status.progress}/${status.threshold} shares`);
  if (status.key_id) ctx.out(`root key     ${status.key_id}`);
}

/** The most shares a root key is split into (RekeyRequest). */
const MAX_SHARES = 255;

/** --shares and --threshold as whole numbers (not NaN sent as null), each only when given. */
function shamirOptions(ctx: CommandContext): { shares?: number; threshold?: number } {
  const body: { shares?: number; threshold?: number } = {};
  for (const name of ["shares", "threshold"] as const) {
    const value = integerOption(ctx, name, 2, MAX_SHARES);
    if (value !== undefined) body[name] = value;
  }
  return body;
}

export const sysCommands: Command[] = [
  {
    words: ["unseal"],
    summary: "Unseal with key shares: give one share (read without echo, or from standard input)",
    args: "[share]",
    maxArgs: 1,
    options: { reset: { type: "boolean", description: "Forget the shares given so far" } },
    async run(ctx) {
      const api = await ctx.api();
      const status = await api.request<Status>("GET", "/v1/sys/seal-status");
      if (!status.sealed && !ctx.options.reset) {
        print(ctx, { unsealed: false, status }, "Citadel is not sealed."); // as an unseal's answer
        return 0;
      }
      let share = ctx.args[0];
      if (share === undefined && status.method === "shamir" && !ctx.options.reset) share = await readKeyShare(`Key share (${status.progress + 1} of ${status.threshold}): `);
      const result = await api.request<typeof UnsealResponse.static>("POST", "/v1/sys/unseal", { ...(share ? { share } : {}), ...(ctx.options.reset ? { reset: true } : {}) });
      if (ctx.json) ctx.out(JSON.stringify(result, null, 2));
      else if (result.unsealed) ctx.out("Unsealed.");
      else if (ctx.options.reset && result.status.sealed) ctx.out(`The shares given so far are forgotten: 0 of ${result.status.threshold}.`);
      else if (result.status.sealed) ctx.out(`Share accepted: ${result.status.progress} of ${result.status.threshold}.`);
      else printStatus(ctx, result.status);
      return 0;
    },
  },
  {
    words: ["seal"],
    summary: "Seal: drop the keys from memory until the next unseal",
    async run(ctx) {
      printStatus(ctx, await (await ctx.api()).request<Status>("POST", "/v1/sys/seal"));
      return 0;
    },
  },
  {
    words: ["keys", "status"],
    summary: "Show the root key, KEK versions, their ages and the rotation state",
    async run(ctx) {
      const s = await (await ctx.api()).request<typeof KeysStatus.static>("GET", "/v1/sys/keys");
      if (ctx.json) {
        ctx.out(JSON.stringify(s, null, 2));
        return 0;
      }
      ctx.out(`root key   ${s.root.id} (${s.root.method}, ${s.root.age_days} days old)`);
      if (s.pending_root?.method === s.root.method) ctx.out(`pending    ${s.pending_root.id}: becomes the root key when it is first used to unseal`);
      else if (s.pending_root) ctx.out(`pending    ${s.pending_root.id} (${s.pending_root.method}): a seal migration; becomes the root key at the first start with seal.method = "${s.pending_root.method}" that it unseals`);
      ctx.out(`KEK        v${s.active_kek}${s.rotation_due ? "  (rotation due)" : ""}; rotation every ${s.rotation_days || "—"} days`);
      for (const k of s.keks) ctx.out(`  v${String(k.version).padEnd(4)} ${k.retired_at ? "retired" : "live   "}  ${String(k.age_days).padStart(6)} days  ${k.deks} data keys`);
      // While a rekey is pending a rotation answers 409: that rekey comes first.
      const flags = sameInstanceFlags(ctx.options);
      if (s.rotation_due && s.pending_root) ctx.out(`Rotation waits for the pending rekey: finish it (unseal with the new key) or cancel it (citadel keys rekey --cancel${flags}), then run citadel keys rotate${flags}.`);
      if (s.deks_to_rewrap > 0) {
        const how = s.pending_root ? "restart to resume; citadel keys rotate waits for the pending rekey" : `run: citadel keys rotate${flags}, or restart to resume`;
        ctx.out(`${s.deks_to_rewrap} data keys still to re-wrap (${how})`);
      }
      if (s.deks_damaged > 0) {
        // No rotation moves them: the advice above would only add KEKs.
        ctx.out(`${s.deks_damaged} data keys do not unwrap (damaged or altered), and no rotation moves them; the audit names their owners (citadel audit list --action keys.kek.rotate${sameInstanceFlags(ctx.options)}).`);
        ctx.out("  Restore a backup made before the damage, or destroy those owners' data (their erasure or deletion destroys their keys; the appliance's own keys — audit/, mesh/, dns/ — only a restore mends): see docs/keys.md.");
      }
      return 0;
    },
  },
  {
    words: ["keys", "rotate"],
    summary: "Add a key-encryption key version and re-wrap every data key with it (online)",
    async run(ctx) {
      const r = await (await ctx.api()).request<typeof RotateResponse.static>("POST", "/v1/sys/keys/rotate", undefined, { worksLong: true });
      const damaged = r.damaged > 0 ? ` ${r.damaged} data keys do not unwrap (damaged or altered) and stay under their old KEK: see the log and the audit (keys.kek.rotate failures).` : "";
      ctx.out(ctx.json ? JSON.stringify(r, null, 2) : `KEK v${r.version} is active; ${r.rewrapped} data keys re-wrapped.${damaged}`);
      return 0;
    },
  },
  {
    words: ["keys", "rekey"],
    summary: "Replace the root key: a new key file, new key shares, or a new systemd credential; --seal moves to another seal method",
    options: {
      seal: { type: "string", description: "Move to this seal method: credential, shamir or key-file (default: keep the current one)" },
      shares: { type: "string", description: "Shamir: how many new shares (default: as before, or 5)" },
      threshold: { type: "string", description: "Shamir: how many shares unseal (default: as before, or 3)" },
      cancel: { type: "boolean", description: "Drop a pending new root key instead (one never used to unseal)" },
      yes: { type: "boolean", description: "Yes, replace the root key" },
    },
    async run(ctx) {
      if (ctx.options.cancel === true) return cancelRekey(ctx);
      const seal = parseSealOption(stringOption(ctx, "seal"));
      const body: { method?: SealMethod; shares?: number; threshold?: number } = shamirOptions(ctx);
      if (ctx.options.yes !== true) throw new UsageError("this replaces the root key (and its key file, shares or credential): add --yes");
      const api = await ctx.api();
      const sharesGiven = body.shares !== undefined || body.threshold !== undefined;
      // The current method, when it matters: to check the flags, and to say what a migration leaves in use.
      const current = seal || sharesGiven ? (await api.request<Status>("GET", "/v1/sys/seal-status")).method : null;
      const target = seal ? SEAL_OPTIONS[seal] : current;
      // As init: shares and a threshold are for Shamir only, not ignored elsewhere.
      if (sharesGiven && target !== "shamir") {
        throw new UsageError(`--shares and --threshold are for seal.method = "shamir"; ${seal ? `--seal ${seal} is` : "this Citadel's is"} ${target ?? "not initialized"}`);
      }
      if (seal) body.method = SEAL_OPTIONS[seal];
      const r = await api.request<typeof RekeyResponse.static>("POST", "/v1/sys/keys/rekey", body, { confirmed: true });
      if (ctx.json) ctx.out(JSON.stringify(r, null, 2));
      else for (const line of rekeyReport(r, seal ? current : r.method, sameInstanceFlags(ctx.options))) ctx.out(line);
      return 0;
    },
  },
];

async function cancelRekey(ctx: CommandContext): Promise<number> {
  for (const flag of ["seal", "shares", "threshold"]) if (ctx.options[flag] !== undefined) throw new UsageError(`--cancel takes no --${flag}`);
  const { cancelled } = await (await ctx.api()).request<typeof RekeyCancelResponse.static>("DELETE", "/v1/sys/keys/rekey");
  print(ctx, { cancelled }, cancelled ? `Dropped the pending root key ${cancelled}: its shares, credential or key file unseal nothing now.` : "No new root key was pending.");
  return 0;
}

/**
 * What the operator must do next, by the new key's method and whether it changes the method.
 * `flags`: the --data/--config the rekey was given, for the commands it names.
 */
function rekeyReport(r: typeof RekeyResponse.static, current: SealMethod | null, flags: string): string[] {
  const older = `Backups made before open only with the old root key ${r.previous_key_id}`;
  if (r.active) {
    const kept = r.old_key_kept ? `: it is kept beside the key file, as <seal.key_file>.${r.previous_key_id} (root.key.${r.previous_key_id} by default). Move it off this host, next to those backups.` : ": keep a copy of it with them.";
    return [`The root key is now ${r.key_id}; the key file was replaced.`, `${older}${kept}`];
  }
  const migrating = r.method !== current;
  const keep = `Until then the current key keeps unsealing (seal method ${current}); \`citadel keys rekey --cancel${flags}\` drops the new one.`;
  // The config file, not the environment: the installer (the upgrade path) reads the method from it.
  const restart = `set method = "${r.method}" under [seal] in the config file (/etc/citadel/citadel.toml on an installed host), then restart Citadel`;
  if (r.shares) {
    const lines = [`New root key ${r.key_id}. Its shares are shown only now; give one to each keeper:`, "", ...r.shares.map((s) => `  ${s}`), ""];
    if (!migrating) return [...lines, "The old shares keep working until the new ones are first used to unseal."];
    return [...lines, `To move to Shamir shares: ${restart} and unseal with these shares (citadel unseal${flags}): the first unseal makes ${r.key_id} the root key. ${keep}`];
  }
  if (r.root_key) {
    const store = "store it with systemd-creds encrypt under the name seal.credential names (docs/keys.md)";
    if (!migrating) return [`New root key ${r.key_id} (shown only now); ${store}, then restart Citadel:`, `  ${r.root_key}`];
    return [`New root key ${r.key_id} (shown only now):`, `  ${r.root_key}`, `To move to a systemd credential: ${store}, ${restart}: the first start with it makes ${r.key_id} the root key. ${keep}`];
  }
  return [`New root key ${r.key_id}, written to the key file seal.key_file names (root.key in the data directory by default, mode 0600).`, `To move to the key file: ${restart}: the first start with it makes ${r.key_id} the root key. ${keep}`];
}
