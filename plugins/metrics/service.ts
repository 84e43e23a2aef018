/**
 * What the appliance reports about itself at scrape time: build, seal state, key ages, the
 * audit log and its checkpoints, backups. Each is read when Prometheus asks (a few indexed
 * reads, one directory listing and a stat of each backup per scrape; a backup's header only the
 * first time it is seen), so nothing runs between scrapes; audit events by action are counted
 * as they are recorded.
 */
import { dataPath } from "../../src/config/load.ts";
import type { Kernel } from "../../src/plugin.ts";
import type { Counter } from "../../src/metrics.ts";
import { BackupSummaries, oncePerScrape } from "./backups.ts";
import type { MetricsSettings } from "./settings.ts";
import { auditHeadSeq, lastAuditCheckpoint } from "./store.ts";

const DAY_MS = 86_400_000;

/** Registers the scrape-time metrics and the audit counter; returns the function that removes them. */
export function registerApplianceMetrics(k: Kernel<MetricsSettings>): () => void {
  const m = k.metrics;
  const seconds = (ms: number) => ms / 1000;
  const ageSeconds = (ms: number) => (k.clock.now() - ms) / 1000;
  const db = k.store.db;
  const keyStatus = () => k.seal.keyringIfUnsealed()?.status() ?? null;
  const summaries = new BackupSummaries();
  const backups = oncePerScrape(() => summaries.summarize(backupDir(k), k.clock.now(), instanceId(k)));

  const removers = [
    m.onScrape({
      name: "citadel_build_info",
      type: "gauge",
      help: "Always 1; the labels say which Citadel is running.",
      labelNames: ["version", "commit"],
      read: () => [{ labels: { version: k.build.version, commit: k.build.commit }, value: 1 }],
    }),
    m.onScrape({ name: "citadel_start_time_seconds", type: "gauge", help: "When this process started serving (Unix time).", read: () => seconds(k.startedAt) }),
    m.onScrape({ name: "process_resident_memory_bytes", type: "gauge", help: "Resident memory of the Citadel process.", read: () => process.memoryUsage.rss() }),

    m.onScrape({ name: "citadel_sealed", type: "gauge", help: "1 while sealed (no keys in memory: only health, metrics and unsealing answer), else 0.", read: () => (k.seal.sealed ? 1 : 0) }),
    m.onScrape({
      name: "citadel_key_age_seconds",
      type: "gauge",
      help: "Age of the active root key and of the active key-encryption key (as citadel keys status shows them); absent while sealed.",
      labelNames: ["key"],
      read: () => {
        const status = keyStatus();
        if (!status) return null;
        const kek = status.keks.find((x) => x.version === status.active_kek)!;
        return [
          { labels: { key: "root" }, value: ageSeconds(status.root.created_at) },
          { labels: { key: "kek" }, value: ageSeconds(kek.created_at) },
        ];
      },
    }),
    m.onScrape({
      name: "citadel_key_rotation_due",
      type: "gauge",
      help: "1 when the active key-encryption key is older than keys.rotation_days (the schedule should rotate it), else 0; absent while sealed or without a schedule.",
      read: () => {
        const days = k.config.keys.rotation_days;
        const status = days > 0 ? keyStatus() : null;
        if (!status) return null;
        const kek = status.keks.find((x) => x.version === status.active_kek)!;
        return k.clock.now() - kek.created_at >= days * DAY_MS ? 1 : 0;
      },
    }),

    m.onScrape({ name: "citadel_audit_events_total", type: "counter", help: "Events in the audit log's hash chain (its head's sequence number).", read: () => auditHeadSeq(db) }),
    m.onScrape({
      name: "citadel_audit_events_since_checkpoint",
      type: "gauge",
      help: "Audit events recorded after the newest signed checkpoint (all of them when there is none).",
      read: () => auditHeadSeq(db) - (lastAuditCheckpoint(db)?.seq ?? 0),
    }),
    m.onScrape({
      name: "citadel_audit_checkpoint_age_seconds",
      type: "gauge",
      help: "Seconds since the newest signed checkpoint was made; absent before the first.",
      read: () => {
        const checkpoint = lastAuditCheckpoint(db);
        return checkpoint ? ageSeconds(checkpoint.time) : null;
      },
    }),

    m.onScrape({
      name: "citadel_backups",
      type: "gauge",
      help: "This instance's backup files (citadel-YYYYMMDDTHHMMSSZ.backup, its manifest naming this instance) in the backup directory.",
      read: () => backups().count,
    }),
    m.onScrape({
      name: "citadel_backup_age_seconds",
      type: "gauge",
      help: "Seconds since this instance's newest backup was taken (the time in its file name); absent when there is none.",
      read: () => {
        const { newestAt } = backups();
        // Never below 0: a backup named within the skew allowance ahead of the clock is new, not from the future.
        return newestAt === null ? null : Math.max(0, ageSeconds(newestAt));
      },
    }),
  ];

  // Counted as recorded (inside the recording transaction): by action, so that a rise in
  // rejected tokens or denied permissions can be alerted on without querying the log.
  const recorded = m.counter("citadel_audit_events_recorded_total", "Audit events recorded by this process, by action and outcome (an event whose transaction then failed is counted too).", ["action", "outcome"]);
  const byAction = new Map<string, { success?: Counter; failure?: Counter }>();
  const stopCounting = k.audit.onRecord((event) => {
    let outcomes = byAction.get(event.action);
    if (!outcomes) byAction.set(event.action, (outcomes = {}));
    (outcomes[event.outcome] ??= recorded.labels({ action: event.action, outcome: event.outcome })).value++;
  });

  return () => {
    for (const remove of removers) remove();
    stopCounting();
  };
}

/** This installation's id (the instance table): what the manifests of its backups carry, as the backup plugin writes them. */
function instanceId(k: Kernel): string | null {
  return k.store.db.query<{ id: string }, []>("SELECT id FROM instance").get()?.id ?? null;
}

/** `<data_dir>/<[backup] dir>`, "backups" by default: where the backup plugin writes. */
function backupDir(k: Kernel): string {
  const dir = (k.config as { backup?: { dir?: string } }).backup?.dir ?? "backups";
  return dataPath(k.config, dir);
}
