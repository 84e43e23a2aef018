/** CLI: citadel login | logout | whoami | org leave | token create | token list | token revoke | token check. */
import { loginWithDeviceFlow, logout } from "../../src/cli/credentials.ts";
import { parseToken, TOKEN_REGEX } from "../../src/auth/tokens.ts";
import { UsageError } from "../../src/cli/command-line.ts";
import { boundedStdin } from "../../src/cli/input-files.ts";
import { integerOption, organizationOf, print } from "../../src/cli/output.ts";
import { allPages } from "../../src/cli/pages.ts";
import type { Command } from "../../src/plugin.ts";
import { ALLOW_FROM, allowFromOption, scopesOption } from "./cli-options.ts";
import type { Credential, Me, NewCredential } from "./model.ts";

export const iamCommands: Command[] = [
  {
    words: ["login"],
    summary: "Log in to a Citadel (device flow): approve in a browser, the token is stored in ~/.config/citadel",
    options: {
      server: { type: "string", description: "The server's URL (default: this machine's Citadel)" },
      fingerprint: { type: "string", description: "The server's public key pin (sha256//..., as `citadel serve` prints it), to pin a self-signed certificate; 64 hex digits (colons allowed) are taken as its certificate's SHA-256 fingerprint" },
      scope: { type: "string", description: "Scopes to ask for (default: read write iam:self)" },
    },
    run: (ctx) => loginWithDeviceFlow(ctx),
  },
  {
    words: ["logout"],
    summary: "Forget the stored token (and revoke it on the server)",
    run: (ctx) => logout(ctx),
  },
  {
    words: ["whoami"],
    summary: "Show the account the stored token belongs to",
    async run(ctx) {
      const me = await (await ctx.api()).request<typeof Me.static>("GET", "/v1/iam/me");
      if (ctx.json) ctx.out(JSON.stringify(me, null, 2));
      else {
        ctx.out(`${me.email} (${me.id})${me.operator ? ", operator" : ""}${me.mfa ? ", TOTP on" : ""}`);
        for (const o of me.organizations) ctx.out(`  ${o.role.padEnd(7)} ${o.name} (${o.id})`);
      }
      return 0;
    },
  },
  {
    words: ["org", "leave"],
    summary: "Leave an organization, whatever your role (the last owner cannot): your tokens and API keys bound to it are revoked",
    options: {
      org: { type: "string", description: "The organization (org_...); default: your only one" },
      yes: { type: "boolean", description: "Leave: joining again takes a new invitation" },
    },
    async run(ctx) {
      if (ctx.options.yes !== true) throw new UsageError("leaving an organization (joining again takes a new invitation): add --yes");
      const api = await ctx.api();
      const org = await organizationOf(ctx, api);
      await api.request("DELETE", `/v1/iam/orgs/${encodeURIComponent(org)}/membership`);
      print(ctx, { ok: true, organization: org }, `left ${org}`);
      return 0;
    },
  },
  {
    words: ["token", "create"],
    summary: "Make a personal access token (printed once)",
    args: "<name>",
    maxArgs: 1,
    options: {
      scope: { type: "string", description: "Space- or comma-separated scopes (default: read)" },
      days: { type: "string", description: "Days until it expires" },
      workspace: { type: "string", description: "Restrict it to one workspace" },
      ...ALLOW_FROM,
    },
    async run(ctx) {
      const name = ctx.args[0];
      if (!name) throw new UsageError("give the token a name");
      const body: Record<string, unknown> = { name, scopes: scopesOption(ctx, "read") };
      const days = integerOption(ctx, "days", 1, 3650); // refused when not a whole number, not sent as null
      if (days !== undefined) body.expires_in_days = days;
      if (typeof ctx.options.workspace === "string") body.workspace = ctx.options.workspace;
      const allowFrom = allowFromOption(ctx);
      if (allowFrom) body.ip_allowlist = allowFrom;
      const t = await (await ctx.api()).request<typeof NewCredential.static>("POST", "/v1/iam/me/tokens", body);
      if (ctx.json) ctx.out(JSON.stringify(t, null, 2));
      else {
        ctx.out(t.token);
        ctx.err(`token ${t.id} (${t.scopes?.join(" ")}), expires ${t.expires_at}: shown only now`);
      }
      return 0;
    },
  },
  {
    words: ["token", "list"],
    summary: "List my personal access tokens",
    async run(ctx) {
      const items = await allPages<typeof Credential.static>(await ctx.api(), "/v1/iam/me/tokens");
      if (ctx.json) ctx.out(JSON.stringify(items, null, 2));
      else for (const t of items) ctx.out(`${t.id}  ${(t.name ?? "").padEnd(20)} ${(t.scopes ?? []).join(" ").padEnd(24)} expires ${t.expires_at ?? "never"}  last used ${t.last_used_at ?? "never"}`);
      return 0;
    },
  },
  {
    words: ["token", "revoke"],
    summary: "Revoke one of my tokens by its id",
    args: "<id>",
    maxArgs: 1,
    async run(ctx) {
      if (!ctx.args[0]) throw new UsageError("give the token's id");
      await (await ctx.api()).request("DELETE", `/v1/iam/me/tokens/${encodeURIComponent(ctx.args[0])}`);
      print(ctx, { ok: true, id: ctx.args[0] }, "revoked");
      return 0;
    },
  },
  {
    words: ["token", "check"],
    summary: "Tell offline whether text is a well-formed Citadel token (its checksum), as secret scanners do",
    args: "<token>",
    maxArgs: 1,
    async run(ctx) {
      // Bounded: a token is some 60 characters; `yes |` grew until memory ran out (found in review).
      const text = ctx.args[0] ?? new TextDecoder().decode(await boundedStdin({ bytes: 64 * 1024, tooLarge: "standard input: larger than 64 KiB, more than any token: nothing was read further" })).trim();
      const parsed = parseToken(text);
      const result = { valid_format: parsed !== null, kind: parsed?.kind ?? null, id: parsed?.prefix ?? null, scanner_regex: TOKEN_REGEX.source };
      if (ctx.json) ctx.out(JSON.stringify(result, null, 2));
      else ctx.out(parsed ? `a Citadel ${parsed.kind} token, id ${parsed.prefix} (checksum correct; whether it is still valid only the server knows)` : "not a Citadel token (wrong shape or checksum)");
      return parsed ? 0 : 1;
    },
  },
];
