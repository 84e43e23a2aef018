/**
 * The `backup` plugin: encrypted, consistent snapshots of the live database, on demand
 * (API and `citadel backup`) and on a schedule ([backup]), checked and restored offline
 * (`citadel backup verify`, `citadel restore`). Operators only: a backup spans every
 * organization. The file format is in format.ts, the keys in keys.ts; docs/backup.md is the
 * operator's guide.
 *
 * A backup is written on the server, into the backup directory, under its time-stamped name;
 * the CLI then downloads it. Writing it server-side first means the same code path for the
 * schedule and for an operator, a backup that exists even when the client goes away
 * half-way, and one place (the directory) where doctor and metrics find the newest backup.
 */
import { Elysia } from "elysia";
import { actorOf } from "../../src/auth/principal.ts";
import { access } from "../../src/http/access.ts";
import { auditRequest } from "../../src/http/audit-request.ts";
import { principalOf, worksLong } from "../../src/http/request-meta.ts";
import { definePlugin, type Kernel } from "../../src/plugin.ts";
import { backupCommands } from "./commands.ts";
import { BackupListing, BackupNameParams, CreateBackupRequest, CreatedBackup, DownloadQuery } from "./model.ts";
import { BackupSchedule, newestNotAhead } from "./schedule.ts";
import { newKeyringBackupKeys } from "./keys.ts";
import { BackupService } from "./service.ts";
import { BackupSettings } from "./settings.ts";

const HOUR_MS = 3_600_000;

const services = new WeakMap<Kernel<BackupSettings>, BackupService>();

/** One service per kernel: routes and the schedule share its queue. */
function serviceOf(k: Kernel<BackupSettings>): BackupService {
  let service = services.get(k);
  if (!service) {
    service = new BackupService({
      store: k.store,
      audit: k.audit,
      clock: k.clock,
      build: k.build,
      log: k.log,
      dataDir: k.config.data_dir,
      settings: k.settings,
      keyring: () => k.seal.keyring(),
      rootKeyBackupKeys: () => newKeyringBackupKeys(k.seal.keyring()),
      onSeal: (listener) => k.seal.onSeal(listener),
    });
    services.set(k, service);
  }
  return service;
}

const READ = access({ operator: true, scope: "backup:read" });
const WRITE = access({ operator: true, scope: "backup:write" });

const DOWNLOAD_RESPONSE = {
  description: "The backup file (application/octet-stream), or its base64 text with ?encoding=base64",
  content: { "application/octet-stream": { schema: { type: "string" as const, format: "binary" } }, "text/plain": { schema: { type: "string" as const } } },
};

export const backupPlugin = definePlugin<BackupSettings>({
  name: "backup",
  settings: BackupSettings,
  scopes: ["backup:read", "backup:write"],
  actions: [
    { type: "backup.create", description: "A backup was made (scheduled or on demand); failure: why none was made." },
    { type: "backup.download", description: "A backup file was downloaded from the server." },
    { type: "backup.prune", description: "An old backup was deleted to keep [backup] keep." },
    { type: "backup.restore", description: "This database was restored from a backup (recorded at the first start after citadel restore)." },
  ],
  migrations: [],

  async start(k) {
    const service = serviceOf(k);
    await service.removeLeftovers();
    await service.recordRestore();
    if (!k.settings.enabled) return async () => {};
    const schedule = new BackupSchedule({
      intervalMs: k.settings.interval_hours * HOUR_MS,
      now: k.clock.now,
      newest: async () => newestNotAhead(await service.list(), k.clock.now()),
      sealed: () => k.seal.sealed,
      run: () => service.create({ reason: "scheduled", actor: { kind: "system" } }),
      log: k.log,
    });
    k.log.info("scheduled backups", { every_hours: k.settings.interval_hours, keep: k.settings.keep, directory: service.directory });
    return schedule.start();
  },

  routes: (k) =>
    new Elysia({ name: "backup" })
      .post(
        "/snapshots",
        async ({ body, request }) => {
          worksLong(request); // a large database takes a while to copy and encrypt
          const created = await serviceOf(k).create({ reason: "on_demand", actor: actorOf(principalOf(request)), request: auditRequest(request), passphrase: body?.passphrase });
          return { name: created.name, bytes: created.bytes, sha256: created.sha256, key: created.key, manifest: created.manifest, pruned: created.pruned };
        },
        {
          body: CreateBackupRequest,
          response: CreatedBackup,
          detail: { summary: "Make a backup now: a consistent snapshot, encrypted, written to the backup directory (audited)", tags: ["backup"], ...WRITE },
        },
      )
      .get(
        "/snapshots",
        async () => {
          const service = serviceOf(k);
          return { directory: service.directory, items: (await service.list()).map((f) => ({ name: f.name, time: f.time.toISOString(), bytes: f.bytes })) };
        },
        { response: BackupListing, detail: { summary: "This instance's backups in the backup directory, newest first (another Citadel's there are left out)", tags: ["backup"], ...READ } },
      )
      .get(
        "/snapshots/:name",
        async ({ params, query, request }) => {
          const service = serviceOf(k);
          const file = await service.file(params.name);
          await service.recordDownload(file.name, actorOf(principalOf(request)), auditRequest(request));
          const headers = { "cache-control": "no-store", "content-disposition": `attachment; filename="${file.name}"` };
          if (query.encoding === "base64") {
            return new Response(Buffer.from(await Bun.file(file.path).arrayBuffer()).toString("base64"), { headers: { ...headers, "content-type": "text/plain; charset=us-ascii" } });
          }
          return new Response(Bun.file(file.path), { headers: { ...headers, "content-type": "application/octet-stream" } });
        },
        {
          params: BackupNameParams,
          query: DownloadQuery,
          detail: { summary: "Download a backup file (the download is audited)", tags: ["backup"], responses: { 200: DOWNLOAD_RESPONSE }, ...READ },
        },
      ),

  commands: backupCommands,
});
