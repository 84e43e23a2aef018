/** CLI: citadel subject export | erase | erasures (operators). */
import { UsageError } from "../../src/cli/command-line.ts";
import { describeFsError, fileWriteProblem, writeFileAtomic } from "../../src/files.ts";
import { needArgs, print, table } from "../../src/cli/output.ts";
import type { Command, CommandContext } from "../../src/plugin.ts";

const kindOf = (ctx: CommandContext, synopsis: string) => {
  needArgs(ctx, 2, synopsis);
  const kind = ctx.args[0] === "org" ? "organization" : ctx.args[0];
  if (kind !== "user" && kind !== "organization") throw new UsageError(`${synopsis}: the first argument is user or org`);
  return { kind, id: ctx.args[1]! };
};

interface ErasureView {
  id: string;
  kind: string;
  subject: string;
  requested_at: string;
  due_at: string;
  erased_at: string | null;
  summary: string | null;
}

export const subjectCommands: Command[] = [
  {
    words: ["subject", "export"],
    summary: "Export everything Citadel holds about a user or an organization (GDPR art. 15/20) as JSON",
    args: "user|org <id>",
    maxArgs: 2,
    options: {
      "secret-values": { type: "boolean", description: "Include secret values, decrypted (needs --yes)" },
      yes: { type: "boolean", description: "Confirm --secret-values" },
      out: { type: "string", description: "Write to this file (mode 0600) instead of standard output" },
    },
    async run(ctx) {
      const subject = kindOf(ctx, "citadel subject export user|org <id>");
      const values = ctx.options["secret-values"] === true;
      if (values && ctx.options.yes !== true) throw new UsageError("--secret-values puts every secret of the subject in clear in the export: add --yes to confirm");
      const out = typeof ctx.options.out === "string" ? ctx.options.out : undefined;
      if (out !== undefined) refuseUnwritableOut(out);
      const api = await ctx.api();
      const path = `/v1/subject/${subject.kind}/${encodeURIComponent(subject.id)}/export${values ? "/with-secret-values" : ""}`;
      const exported = await api.request("POST", path, undefined, { confirmed: values });
      const text = `${JSON.stringify(exported, null, 2)}\n`;
      if (out !== undefined) {
        try {
          writeFileAtomic(out, text, 0o600); // a new file, owner-only, even where one existed
        } catch (error) {
          throw new Error(`the export of ${subject.kind} ${subject.id} was made (audited as subject.exported), but it could not be written to ${out}: ${describeFsError(error)}; export again`);
        }
        ctx.err(`wrote ${out}${values ? " (with secret values: keep it safe)" : ""}`);
      } else ctx.out(text.trimEnd());
      return 0;
    },
  },
  {
    words: ["subject", "erase"],
    summary: "Erase a user or an organization (GDPR art. 17): soft-deleted now, erased for good after the grace period",
    args: "user|org <id>",
    maxArgs: 2,
    options: { yes: { type: "boolean", description: "Confirm" } },
    async run(ctx) {
      const subject = kindOf(ctx, "citadel subject erase user|org <id> --yes");
      if (ctx.options.yes !== true) throw new UsageError(`this disables the ${subject.kind} now and erases its data for good after the grace period: add --yes to confirm`);
      const erasure = await (await ctx.api()).request<ErasureView>("POST", `/v1/subject/${subject.kind}/${encodeURIComponent(subject.id)}/erasure`, undefined, { confirmed: true });
      print(ctx, erasure, `${subject.kind} ${subject.id} is soft-deleted; its data is erased for good from ${erasure.due_at} (${erasure.id}).`);
      return 0;
    },
  },
  {
    words: ["subject", "erasures"],
    summary: "Erasure requests, pending and done",
    async run(ctx) {
      const list = await (await ctx.api()).request<{ items: ErasureView[] }>("GET", "/v1/subject/erasures");
      print(ctx, list, list.items.length === 0 ? "no erasures" : table([["ID", "SUBJECT", "REQUESTED", "DUE", "ERASED", "SUMMARY"], ...list.items.map((e) => [e.id, `${e.kind} ${e.subject}`, e.requested_at, e.due_at, e.erased_at ?? "pending", e.summary ?? ""])]));
      return 0;
    },
  },
];

/**
 * Refuses an --out the export could not be written to, before the server is asked: after, the
 * export was audited as made (with secret values, maybe) though nothing was written. The same
 * check as `citadel backup --out`'s (src/files.ts).
 */
function refuseUnwritableOut(out: string): void {
  const problem = fileWriteProblem(out);
  if (problem !== null) throw new UsageError(`--out ${out}: ${problem}; nothing was exported`);
}
