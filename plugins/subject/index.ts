/**
 * The `subject` plugin: GDPR export and erasure of a user's or an organization's data across
 * every plugin (operators only: they answer data-subject requests). See service.ts.
 */
import { Elysia, t } from "elysia";
import { access } from "../../src/http/access.ts";
import { auditRequest } from "../../src/http/audit-request.ts";
import { principalOf, worksLong } from "../../src/http/request-meta.ts";
import { definePlugin, type Kernel } from "../../src/plugin.ts";
import { subjectsOf } from "../../src/subjects.ts";
import { auditSubjects } from "./audit-part.ts";
import { subjectCommands } from "./commands.ts";
import { subjectMigrations } from "./migrations.ts";
import { carryOverDestroyedKeys } from "./restore.ts";
import { checkSubject, SubjectService, type Caller } from "./service.ts";
import { SubjectSettings } from "./settings.ts";

const caller = (request: Request): Caller => ({ principal: principalOf(request), request: auditRequest(request) });

const services = new WeakMap<object, SubjectService>();
export function subjectServiceOf(k: Kernel<SubjectSettings>): SubjectService {
  let s = services.get(k.store);
  if (!s) services.set(k.store, (s = new SubjectService(k)));
  return s;
}

const SubjectParams = t.Object({ kind: t.Union([t.Literal("user"), t.Literal("organization")]), id: t.String({ minLength: 1, maxLength: 64 }) });
const Exported = t.Object({
  subject: t.Object({ kind: t.String(), id: t.String() }),
  exported_at: t.String({ format: "date-time" }),
  secret_values: t.Boolean(),
  data: t.Record(t.String(), t.Unknown(), { description: "Each plugin's part: iam, audit, secrets, dns, mesh, ..." }),
});
const Erasure = t.Object({
  id: t.String(),
  kind: t.String(),
  subject: t.String(),
  requested_at: t.String({ format: "date-time" }),
  due_at: t.String({ format: "date-time" }),
  erased_at: t.Union([t.String({ format: "date-time" }), t.Null()]),
  summary: t.Union([t.String(), t.Null()]),
});
const tags = ["subject"];
const OPERATOR = { operator: true, scope: "subject:admin" } as const;
const HOUR = 3_600_000;

export const subjectPlugin = definePlugin<SubjectSettings>({
  name: "subject",
  settings: SubjectSettings,
  scopes: ["subject:admin"],
  actions: [
    { type: "subject.exported", description: "All data of a user or an organization was exported (with or without secret values)." },
    { type: "subject.erased", description: "Erasure of a user or an organization: requested (soft-deleted), then erased for good with crypto-shredding." },
    { type: "subject.restore.keys", description: "At the first start after a restore: audit log keys shredded after the backup by audit erase were shredded again (the counts); without the previous database, they read again." },
    { type: "subject.restore.erasures", description: "At the first start after a restore: erasures asked for after the backup were carried over (the count), or one held (its subject the last operator or owner); without the previous database, they are unknown and must be made again." },
  ],
  migrations: subjectMigrations,

  async start(k) {
    const service = subjectServiceOf(k);
    const unregister = subjectsOf(k.store).register(auditSubjects(k));
    const run = () => {
      if (k.seal.sealed) return; // erasing needs the keys: the unseal runs it (below)
      void service.runDue().catch((e) => k.log.error("subject: erasing due subjects failed", { error: String(e) }));
    };
    const timer = setInterval(run, HOUR);
    timer.unref();
    // Erasing needs the keys: on an instance that starts sealed (key shares), what fell due
    // meanwhile, or was carried over by a restore, is erased once unsealed — not an hour later.
    const stopOnUnseal = k.seal.onUnseal(run);
    // Before the backup plugin (later in the list) consumes the restore marker.
    const carried = await service.carryOverErasures(k.config.data_dir);
    if (carried && !carried.previousRead) k.log.warn("subject: after a restore, no previous database to read erasures from: erasures asked for after the backup are unknown and must be made again");
    if (carried && carried.carried > 0) k.log.warn("subject: erasures made after the restored backup were carried over and run again", { erasures: carried.carried });
    const keys = await carryOverDestroyedKeys(k, k.config.data_dir);
    if (keys && !keys.previousRead) k.log.warn("subject: after a restore, no previous database to read destroyed keys from: audit log keys shredded after the backup (audit erase) read again — erase those subjects again");
    if (keys && keys.keys > 0) k.log.warn("subject: audit log keys shredded after the restored backup were shredded again", { owners: keys.owners, keys: keys.keys });
    run();
    return async () => {
      stopOnUnseal();
      unregister();
      clearInterval(timer);
    };
  },

  routes: (k) => {
    const service = subjectServiceOf(k);
    // The subject is in the path, so a confirmation (bound to the route and its parameters)
    // given for one subject cannot be spent on another.
    return new Elysia({ name: "subject" })
      .post("/:kind/:id/export", ({ params, request }) => service.export(caller(request), checkSubject(params.kind, params.id), false), {
        params: SubjectParams,
        response: Exported,
        detail: { summary: "Everything Citadel holds about a user or an organization, as JSON, without secret values (operators)", tags, ...access(OPERATOR) },
      })
      .post("/:kind/:id/export/with-secret-values", ({ params, request }) => service.export(caller(request), checkSubject(params.kind, params.id), true), {
        params: SubjectParams,
        response: Exported,
        detail: { summary: "The same with secret values decrypted (asks for confirmation; audited as such)", tags, ...access({ ...OPERATOR, confirm: true }) },
      })
      .post("/:kind/:id/erasure", ({ params, request }) => service.requestErasure(caller(request), checkSubject(params.kind, params.id)), {
        params: SubjectParams,
        response: Erasure,
        detail: { summary: "Erase a user or an organization: soft-deleted now, erased for good after [subject] grace_days (asks for confirmation)", tags, ...access({ ...OPERATOR, confirm: true }) },
      })
      .get("/erasures", () => service.list(), { response: t.Object({ items: t.Array(Erasure) }), detail: { summary: "Erasure requests, pending and done (operators)", tags, ...access(OPERATOR) } })
      .post("/erasures/run", async ({ request }) => {
        worksLong(request); // an organization's erasure deletes all it held
        return { erased: await service.runDue() };
      }, {
        response: t.Object({ erased: t.Integer() }),
        detail: { summary: "Erase now what is due (it also runs every hour)", tags, ...access(OPERATOR) },
      });
  },
  commands: subjectCommands,
});
