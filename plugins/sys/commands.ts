/** CLI: citadel unseal | seal | keys status | keys rotate | keys rekey. */
import { UsageError } from "../../src/cli/command-line.ts";
import { integerOption, print } from "../../src/cli/output.ts";
import { readKeyShare } from "../../src/cli/prompt.ts";
import type { Command, CommandContext } from "../../src/plugin.ts";
import type { KeysStatus, RekeyResponse, RotateResponse, SealStatus, UnsealResponse } from "./model.ts";

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
      if (s.pending_root) ctx.out(`pending    ${s.pending_root.id}: becomes the root key when it is first used to unseal`);
      ctx.out(`KEK        v${s.active_kek}${s.rotation_due ? "  (rotation due)" : ""}; rotation every ${s.rotation_days || "—"} days`);
      for (const k of s.keks) ctx.out(`  v${String(k.version).padEnd(4)} ${k.retired_at ? "retired" : "live   "}  ${String(k.age_days).padStart(6)} days  ${k.deks} data keys`);
      if (s.deks_to_rewrap > 0) ctx.out(`${s.deks_to_rewrap} data keys still to re-wrap (run: citadel keys rotate, or restart to resume)`);
      return 0;
    },
  },
  {
    words: ["keys", "rotate"],
    summary: "Add a key-encryption key version and re-wrap every data key with it (online)",
    async run(ctx) {
      const r = await (await ctx.api()).request<typeof RotateResponse.static>("POST", "/v1/sys/keys/rotate");
      ctx.out(ctx.json ? JSON.stringify(r, null, 2) : `KEK v${r.version} is active; ${r.rewrapped} data keys re-wrapped.`);
      return 0;
    },
  },
  {
    words: ["keys", "rekey"],
    summary: "Replace the root key: a new key file, new key shares, or a new systemd credential",
    options: {
      shares: { type: "string", description: "Shamir: how many new shares (default: as before)" },
      threshold: { type: "string", description: "Shamir: how many shares unseal (default: as before)" },
      yes: { type: "boolean", description: "Yes, replace the root key" },
    },
    async run(ctx) {
      const body = shamirOptions(ctx);
      if (ctx.options.yes !== true) throw new UsageError("this replaces the root key (and its key file, shares or credential): add --yes");
      const api = await ctx.api();
      // As init: shares and a threshold are for a Shamir-sealed Citadel only, not ignored elsewhere.
      if (Object.keys(body).length > 0) {
        const { method } = await api.request<Status>("GET", "/v1/sys/seal-status");
        if (method !== "shamir") throw new UsageError(`--shares and --threshold are for seal.method = "shamir"; this Citadel's is ${method ?? "not initialized"}`);
      }
      const r = await api.request<typeof RekeyResponse.static>("POST", "/v1/sys/keys/rekey", body, { confirmed: true });
      if (ctx.json) {
        ctx.out(JSON.stringify(r, null, 2));
        return 0;
      }
      if (r.active) ctx.out(`The root key is now ${r.key_id}; the key file was replaced.`);
      if (r.shares) {
        ctx.out(`New root key ${r.key_id}. Its shares are shown only now; the old shares keep working until the new ones are first used to unseal:\n`);
        for (const s of r.shares) ctx.out(`  ${s}`);
      }
      if (r.root_key) {
        ctx.out(`New root key ${r.key_id} (shown only now); store it as the systemd credential, then restart Citadel:`);
        ctx.out(`  ${r.root_key}`);
      }
      return 0;
    },
  },
];
