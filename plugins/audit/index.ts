/**
 * The `audit` plugin: the HTTP API over src/audit — query, export, action types, signed
 * checkpoints, verification, operator notes and erasure of a subject's personal data.
 * Operators only: the appliance's log spans every organization.
 */
import { Elysia } from "elysia";
import { createCheckpoint, listCheckpoints } from "../../src/audit/checkpoints.ts";
import { isPseudoSubject, subjectKeyOwner } from "../../src/audit/event.ts";
import { auditEventSlices, BadCursorError, csvRow, CSV_COLUMNS, listAuditEvents, type AuditEventView, type AuditFilter } from "../../src/audit/query.ts";
import { verifyAuditChainInSlices, VerifyBusyError } from "../../src/audit/verify.ts";
import { ConflictError, InvalidError, SealedError } from "../../src/errors.ts";
import { actorOf } from "../../src/auth/principal.ts";
import { access } from "../../src/http/access.ts";
import { auditRequest } from "../../src/http/audit-request.ts";
import { principalOf, worksLong } from "../../src/http/request-meta.ts";
import { definePlugin, type Kernel } from "../../src/plugin.ts";
import { auditCommands } from "./commands.ts";
import { parseDateTime, REVERSED_WINDOW } from "./date-time.ts";
import { ActionList, AuditPage, CheckpointList, Checkpoint, EraseResponse, EventRef, ExportQuery, ListQuery, NoteRequest, VerifyReport, type EventQuery } from "./model.ts";

export const auditPlugin = definePlugin({
  name: "audit",
  scopes: ["audit:read", "audit:write"],
  actions: [],
  migrations: [],
  routes: (k) =>
    new Elysia({ name: "audit" })
      .get(
        "/events",
        async ({ query, request }) => {
          const filter = filterOf(query);
          let page: ReturnType<typeof listAuditEvents>;
          try {
            page = listAuditEvents(k.store.db, k.seal.keyring(), filter, query.limit ?? 100, query.cursor);
          } catch (error) {
            if (error instanceof BadCursorError) throw new InvalidError(error.message, "query.cursor");
            throw error;
          }
          // The page holds personal data decrypted (addresses, names): who read it is recorded
          // before it is answered, as an export is.
          const reason = `${page.events.length} event${page.events.length === 1 ? "" : "s"}${query.cursor ? ", a later page" : ""}, filter ${JSON.stringify(filter)}`;
          await k.store.write((tx) => k.audit.record(tx, { action: "audit.read", actor: actorOf(principalOf(request)), outcome: "success", reason, request: auditRequest(request) }));
          return page;
        },
        { query: ListQuery, response: AuditPage, detail: { summary: "Audit events, newest first, filtered, one page at a time (each page read is itself audited)", tags: ["audit"], ...READ } },
      )
      .get(
        "/export",
        async ({ query, request }) => {
          const filter = filterOf(query);
          const keyring = k.seal.keyring();
          const format = query.format ?? "ndjson";
          await k.store.write((tx) =>
            k.audit.record(tx, { action: "audit.export", actor: actorOf(principalOf(request)), outcome: "success", reason: `format ${format}, filter ${JSON.stringify(filter)}`, request: auditRequest(request) }),
          );
          const slices = auditEventSlices(k.store.db, keyring, filter);
          const line = format === "csv" ? csvRow : (event: AuditEventView) => `${JSON.stringify(event)}\n`;
          const encoder = new TextEncoder();
          let header = format === "csv" ? `${CSV_COLUMNS.join(",")}\r\n` : "";
          let cancelled = false;
          const stream = new ReadableStream<Uint8Array>({
            // A slice per turn of the event loop, the API and DNS answering between them: Bun's
            // stream asks for the next chunk at once, and an export of 300 k events held them
            // 1.4 s in one go (found in review).
            async pull(controller) {
              for (;;) {
                await nextTurn();
                if (cancelled) return;
                // Sealed since the export began, the keyring is wiped: every later event would read
                // as damaged ("[unreadable]"). The export fails instead, as it would have at its start.
                if (k.seal.keyringIfUnsealed() !== keyring) {
                  slices.return(undefined);
                  controller.error(new SealedError());
                  return;
                }
                const next = slices.next();
                if (next.done) {
                  if (header) controller.enqueue(encoder.encode(header));
                  controller.close();
                  return;
                }
                if (next.value.length === 0) continue; // nothing matched in this slice: the next, after another turn
                controller.enqueue(encoder.encode(header + next.value.map(line).join("")));
                header = "";
                return;
              }
            },
            // The client went away (or it was a HEAD): no more slices are read.
            cancel() {
              cancelled = true;
              slices.return(undefined);
            },
          });
          return new Response(stream, {
            headers: {
              "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson",
              "content-disposition": `attachment; filename="citadel-audit.${format === "csv" ? "csv" : "ndjson"}"`,
            },
          });
        },
        { query: ExportQuery, detail: { summary: "Stream every matching event as NDJSON or CSV (the export itself is audited)", tags: ["audit"], responses: { 200: EXPORT_RESPONSE }, ...READ } },
      )
      .get("/actions", () => ({ actions: k.audit.registeredActions() }), {
        response: ActionList,
        detail: { summary: "Every audit action type, with what it means", tags: ["audit"], ...READ },
      })
      .get("/checkpoints", () => ({ checkpoints: listCheckpoints(k.store.db) }), {
        response: CheckpointList,
        detail: { summary: "Signed checkpoints of the chain, newest first (keep one elsewhere)", tags: ["audit"], ...READ },
      })
      .post(
        "/checkpoints",
        async ({ request }) => {
          const keyring = k.seal.keyring();
          // Recorded first, so that the checkpoint it gives (often kept elsewhere) covers who asked for it.
          await k.store.write((tx) => {
            k.audit.record(tx, { action: "audit.checkpoint.create", actor: actorOf(principalOf(request)), outcome: "success", request: auditRequest(request) });
            createCheckpoint(tx, keyring, k.clock.now());
          });
          const latest = listCheckpoints(k.store.db, 1)[0];
          if (!latest) throw new InvalidError("the audit log is empty: nothing to sign yet");
          return latest;
        },
        { response: Checkpoint, detail: { summary: "Sign the head of the chain now and return the checkpoint", tags: ["audit"], ...WRITE } },
      )
      .get(
        "/verify",
        async ({ request }) => {
          worksLong(request); // the whole chain is walked before the answer
          try {
            // In slices, yielding between them: the API and DNS answer meanwhile.
            return await verifyAuditChainInSlices(k.store, { keyring: k.seal.sealed ? undefined : k.seal.keyring() });
          } catch (error) {
            if (error instanceof VerifyBusyError) throw new ConflictError(error.message);
            throw error;
          }
        },
        {
          response: VerifyReport,
          detail: { summary: "Walk the chain as it stands and the signed checkpoints; name the first bad event (one verification at a time: 409 while one runs)", tags: ["audit"], ...READ },
        },
      )
      .post(
        "/notes",
        async ({ body, request }) => ({
          id: await k.store.write((tx) => k.audit.record(tx, { action: "audit.note.create", actor: actorOf(principalOf(request)), outcome: "success", reason: body.text, request: auditRequest(request) })),
        }),
        { body: NoteRequest, response: EventRef, detail: { summary: "Write an operator's note into the audit log", tags: ["audit"], ...WRITE } },
      )
      .post("/subjects/:subject/erase", ({ params, request }) => erase(k, params.subject, request), {
        response: EraseResponse,
        detail: { summary: "Erase a subject's personal data from the audit log (destroys its key; the chain still verifies; asks for confirmation)", tags: ["audit"], ...access({ operator: true, scope: "audit:write", confirm: true }) },
      }),
  commands: auditCommands,
});

const READ = access({ operator: true, scope: "audit:read" });

/** After the event loop's next turn: what waits (requests, DNS queries, timers) runs first. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const WRITE = access({ operator: true, scope: "audit:write" });

const EXPORT_RESPONSE = {
  description: "One event per line (NDJSON), or CSV with a header row",
  content: { "application/x-ndjson": { schema: { type: "string" as const } }, "text/csv": { schema: { type: "string" as const } } },
};

function filterOf(query: typeof EventQuery.static): AuditFilter {
  const time = (value: string | undefined, field: string) => {
    if (value === undefined) return undefined;
    const ms = parseDateTime(value);
    if (ms === null) throw new InvalidError("not an ISO 8601 date-time, or a day or time that does not exist", `query.${field}`);
    return ms;
  };
  const { since, until, ...rest } = query;
  const filter: AuditFilter = {};
  for (const [key, value] of Object.entries(rest)) if (value !== undefined && key in EMPTY_FILTER) (filter as Record<string, unknown>)[key] = value;
  filter.since = time(since, "since");
  filter.until = time(until, "until");
  // Reversed, the window finds nothing, which reads as "no such events" rather than as the mistake.
  if (filter.since !== undefined && filter.until !== undefined && filter.since >= filter.until) throw new InvalidError(REVERSED_WINDOW, "query.until");
  return filter;
}

/** The filters the query API offers (`subject`, unindexed, is for a data subject's export only). */
const EMPTY_FILTER: Record<Exclude<keyof AuditFilter, "subject">, true> = {
  organization: true,
  workspace: true,
  actor: true,
  action: true,
  outcome: true,
  resource_type: true,
  resource_id: true,
  since: true,
  until: true,
};

async function erase(k: Kernel, subject: string, request: Request) {
  if (subject.length > 200) throw new InvalidError("the subject id is too long", "path.subject");
  if (isPseudoSubject(subject)) throw new InvalidError(`${subject} names no person but a kind of actor (or the shield): its events' personal data is many people's (erase a user or organization by its id)`, "path.subject");
  k.seal.keyring(); // refuses while sealed, before anything is written
  const destroyed = await k.store.write((tx) => {
    const count = k.seal.keyring().destroyOwner(tx, subjectKeyOwner(subject), k.clock.now());
    k.audit.record(tx, { action: "audit.subject.erase", actor: actorOf(principalOf(request)), outcome: "success", resource: { type: "subject", id: subject }, reason: `${count} keys destroyed`, request: auditRequest(request) });
    return count;
  });
  return { subject, keys_destroyed: destroyed };
}
