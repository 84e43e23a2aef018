/** CLI: citadel audit list | export | verify | checkpoint | note | erase. */
import { closeSync, existsSync, openSync } from "node:fs";
import { join } from "node:path";
import { parseCheckpointFile, type ExportedCheckpoint } from "../../src/audit/checkpoints.ts";
import { verifyAuditChain } from "../../src/audit/verify.ts";
import { UsageError } from "../../src/cli/command-line.ts";
import { readUpTo } from "../../src/cli/input-files.ts";
import { choiceOption, forStdout, integerOption, oneLine } from "../../src/cli/output.ts";
import { describeFsError, fileWriteProblem, writeOwnerOnlyFile, writeOwnerOnlyFileFrom } from "../../src/files.ts";
import type { Command, CommandContext, CommandOption } from "../../src/plugin.ts";
import { readDatabase } from "../../src/store/read-only.ts";
import { parseDateTime, REVERSED_WINDOW } from "./date-time.ts";
import type { AuditPage, Checkpoint, EraseResponse, EventRef } from "./model.ts";

const FILTER_OPTIONS: Record<string, CommandOption> = {
  action: { type: "string", description: "Action type or dotted prefix (secrets, sys.unseal)" },
  actor: { type: "string", description: "Acting user's id" },
  outcome: { type: "string", description: "success or failure" },
  organization: { type: "string", description: "Organization id" },
  workspace: { type: "string", description: "Workspace id" },
  "resource-type": { type: "string", description: "Resource type" },
  "resource-id": { type: "string", description: "Resource id" },
  since: { type: "string", description: "From this time (ISO 8601)" },
  until: { type: "string", description: "Before this time (ISO 8601)" },
};

/** The largest page the server gives (ListQuery). */
const MAX_LIMIT = 1000;

function limitOption(ctx: CommandContext): number {
  try {
    return integerOption(ctx, "limit", 1, MAX_LIMIT) ?? 50;
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(`${error.message} (--cursor continues after a page)`);
    throw error;
  }
}

/** The filters with fixed forms, checked here so that a mistake is named by its flag. */
function checkFilters(ctx: CommandContext): void {
  choiceOption(ctx, "outcome", ["success", "failure"]);
  const [since, until] = ["since", "until"].map((name) => {
    const value = ctx.options[name];
    if (typeof value !== "string") return null;
    const ms = parseDateTime(value);
    if (ms === null) throw new UsageError(`--${name}: an ISO 8601 date and time with its zone, such as 2026-06-01T00:00:00Z (a day and time that exist)`);
    return ms;
  });
  if (since != null && until != null && since >= until) throw new UsageError(`--until: ${REVERSED_WINDOW}`);
}

function filterQuery(ctx: CommandContext, extra: Record<string, string | undefined> = {}): string {
  checkFilters(ctx);
  const params = new URLSearchParams();
  for (const name of Object.keys(FILTER_OPTIONS)) {
    const value = ctx.options[name];
    if (typeof value === "string") params.set(name.replace("-", "_"), value);
  }
  for (const [name, value] of Object.entries(extra)) if (value !== undefined) params.set(name, value);
  const text = params.toString();
  return text ? `?${text}` : "";
}

/**
 * Pieces of text to standard output, as forStdout shows them, each taken by a slow reader (a
 * pipe) before the next. False when the reader went away first (`| head`: EPIPE): the rest is
 * not asked for, which ends the request.
 */
async function writeToStdout(pieces: AsyncIterable<Uint8Array>): Promise<boolean> {
  const decoder = new TextDecoder();
  let readerGone = false;
  const gone = () => (readerGone = true);
  process.stdout.on("error", gone);
  try {
    for await (const piece of pieces) {
      if (!process.stdout.write(forStdout(decoder.decode(piece, { stream: true })))) await drainedOrGone(process.stdout);
      if (readerGone) return false;
    }
    return true;
  } finally {
    process.stdout.off("error", gone);
  }
}

/** Once `stream` can take more, or has failed: waiting for "drain" alone waited for ever on a closed pipe. */
function drainedOrGone(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("error", done);
      resolve();
    };
    stream.once("drain", done);
    stream.once("error", done);
  });
}

/** The exit code of a command whose reader closed the pipe (128 + SIGPIPE), as a shell shows it for `yes | head`. */
const READER_GONE = 141;

/**
 * The checkpoint file --checkpoint names. One that cannot be read, or is not a checkpoint, is a
 * usage error (exit 2): exit 1 says the log failed verification.
 */
function checkpointFile(file: string): ExportedCheckpoint {
  let text: string;
  try {
    // Bounded: a checkpoint is a few hundred bytes; /dev/zero grew until memory ran out (found in review).
    const fd = openSync(file, "r");
    try {
      text = new TextDecoder().decode(readUpTo(fd, { bytes: 1024 * 1024, tooLarge: `--checkpoint ${file}: larger than 1 MiB, more than any checkpoint file` }));
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`--checkpoint ${file}: ${describeFsError(error)}`);
  }
  try {
    return parseCheckpointFile(text);
  } catch (error) {
    throw new UsageError(`--checkpoint ${file}: ${(error as Error).message}`);
  }
}

export const auditCommands: Command[] = [
  {
    words: ["audit", "list"],
    summary: "List audit events, newest first",
    options: { ...FILTER_OPTIONS, limit: { type: "string", description: "How many (default 50)" }, cursor: { type: "string", description: "Continue after a previous page" } },
    async run(ctx) {
      const query = filterQuery(ctx, { limit: String(limitOption(ctx)), cursor: ctx.options.cursor as string | undefined });
      const page = await (await ctx.api()).request<typeof AuditPage.static>("GET", `/v1/audit/events${query}`);
      if (ctx.json) {
        ctx.out(JSON.stringify(page, null, 2));
        return 0;
      }
      for (const e of page.events) {
        const who = e.actor.user ?? e.actor.kind;
        const what = e.resource ? ` ${e.resource.type}${e.resource.id ? `:${e.resource.id}` : ""}` : "";
        // One line an event: a reason with a line break in it (an operator's note) must not read as another event.
        ctx.out(oneLine(`${String(e.seq).padStart(6)}  ${e.time}  ${e.outcome === "success" ? "ok  " : "FAIL"}  ${e.action.padEnd(24)} ${who}${what}${e.reason ? `  — ${e.reason}` : ""}`));
      }
      if (page.next_cursor) ctx.out(`(more: --cursor ${page.next_cursor})`);
      return 0;
    },
  },
  {
    words: ["audit", "export"],
    summary: "Export audit events as NDJSON or CSV (to standard output or --out FILE)",
    options: { ...FILTER_OPTIONS, format: { type: "string", description: "ndjson (default) or csv" }, out: { type: "string", description: "Write to this file (mode 0600)" } },
    async run(ctx) {
      const format = choiceOption(ctx, "format", ["ndjson", "csv"]);
      // NDJSON is JSON already, an event a line; CSV is not.
      if (ctx.json && format === "csv") throw new UsageError("--json with --format csv: give one (the export is NDJSON, a JSON object a line, unless --format csv)");
      const query = filterQuery(ctx, { format });
      if (typeof ctx.options.out === "string") refuseUnwritableOut(ctx.options.out, "nothing was exported");
      // Streamed, never held whole: an export can be larger than memory, and take longer than any time limit.
      const pieces = await (await ctx.api()).requestStream("GET", `/v1/audit/export${query}`);
      if (typeof ctx.options.out === "string") await writeOwnerOnlyFileFrom(ctx.options.out, pieces); // personal data may be in it
      else if (!(await writeToStdout(pieces))) return READER_GONE;
      return 0;
    },
  },
  {
    words: ["audit", "verify"],
    summary: "Verify the audit chain and its signed checkpoints in the data directory (works sealed and offline)",
    options: { checkpoint: { type: "string", description: "A checkpoint file kept elsewhere (citadel audit checkpoint --out FILE)" } },
    async run(ctx) {
      const checkpoint = typeof ctx.options.checkpoint === "string" ? checkpointFile(ctx.options.checkpoint) : undefined;
      const path = join(ctx.dataDir(), "citadel.db");
      if (!existsSync(path)) throw new Error(`no database at ${path}`);
      // Read again the usual way if a Citadel started meanwhile (readDatabase): a verdict from stale reads would mislead.
      const report = await readDatabase(path, (db) => verifyAuditChain(db, { checkpoint }));
      if (ctx.json) ctx.out(JSON.stringify(report, null, 2));
      else if (report.ok) {
        ctx.out(`OK: ${report.events} events, chain head ${report.head ? `${report.head.seq} ${report.head.hash}` : "(empty)"}`);
        ctx.out(`${report.checkpoints.verified} signed checkpoints verified; ${report.unsigned_tail} events after the latest one`);
      } else {
        const p = report.first_problem!;
        const at = (q: typeof p) => `event ${q.seq ?? "(no seq)"}${q.id ? ` (${q.id})` : ""}`;
        // Error lines, each starting "citadel: " as every error does (docs/cli.md).
        ctx.err(`citadel: FAILED at ${at(p)}: ${p.problem}`);
        for (const later of report.problems.slice(1)) ctx.err(`citadel:   and at ${at(later)}: ${later.problem}`);
        if (report.problem_count > report.problems.length) ctx.err(`citadel:   and ${report.problem_count - report.problems.length} more`);
      }
      return report.ok ? 0 : 1;
    },
  },
  {
    words: ["audit", "checkpoint"],
    summary: "Sign the head of the audit chain now and print (or save) the checkpoint to keep elsewhere",
    options: { out: { type: "string", description: "Write the checkpoint to this file" } },
    async run(ctx) {
      if (typeof ctx.options.out === "string") refuseUnwritableOut(ctx.options.out, "no checkpoint was made");
      const checkpoint = await (await ctx.api()).request<typeof Checkpoint.static>("POST", "/v1/audit/checkpoints");
      const text = JSON.stringify(checkpoint, null, 2);
      if (typeof ctx.options.out === "string") {
        writeOwnerOnlyFile(ctx.options.out, `${text}\n`);
        ctx.err(`checkpoint of event ${checkpoint.seq} written to ${ctx.options.out}`);
      } else ctx.out(text);
      return 0;
    },
  },
  {
    words: ["audit", "note"],
    summary: "Write a note into the audit log (no secrets, no personal data)",
    args: "<text>",
    maxArgs: 1,
    async run(ctx) {
      if (!ctx.args[0]) throw new UsageError("give the note's text");
      const { id } = await (await ctx.api()).request<typeof EventRef.static>("POST", "/v1/audit/notes", { text: ctx.args[0] });
      ctx.out(ctx.json ? JSON.stringify({ id }) : id);
      return 0;
    },
  },
  {
    words: ["audit", "erase"],
    summary: "Erase a subject's personal data from the audit log by destroying its key (cannot be undone: needs --yes)",
    args: "<subject>",
    maxArgs: 1,
    options: { yes: { type: "boolean", description: "Yes, destroy the subject's key: their personal data cannot be read again" } },
    async run(ctx) {
      const subject = ctx.args[0];
      if (!subject) throw new UsageError("give the subject (a user id)");
      if (ctx.options.yes !== true) throw new UsageError(`this destroys the key of ${subject}'s personal data in the audit log, for good: add --yes`);
      // The server asks for confirmation (428); --yes is that confirmation.
      const r = await (await ctx.api()).request<typeof EraseResponse.static>("POST", `/v1/audit/subjects/${encodeURIComponent(subject)}/erase`, undefined, { confirmed: true });
      ctx.out(ctx.json ? JSON.stringify(r) : `Erased ${r.subject}: ${r.keys_destroyed} keys destroyed.`);
      return 0;
    },
  },
];

/**
 * Refuses an --out that could not be written, before the server is asked: after, the export
 * (personal data, maybe) or the checkpoint is made and audited for nothing.
 */
function refuseUnwritableOut(out: string, consequence: string): void {
  const problem = fileWriteProblem(out, { inPlace: true }); // written where it is: /dev/stdout, a file made ahead
  if (problem !== null) throw new UsageError(`--out ${out}: ${problem}; ${consequence}`);
}
