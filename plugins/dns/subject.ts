/**
 * What DNS holds about an organization (src/subjects.ts): its zones as zone files. An erasure
 * request stops serving them (soft delete, and the listener reloads); the erasure deletes them
 * and their records. Users own nothing here.
 */
import type { SubjectContributor } from "../../src/subjects.ts";
import type { DnsService } from "./service.ts";

export function dnsSubjects(dns: DnsService): SubjectContributor {
  return {
    name: "dns",
    export(subject) {
      if (subject.kind !== "organization") return null;
      const zones = dns.list(subject.id).items;
      if (zones.length === 0) return null;
      return { zones: zones.map((z) => ({ name: z.name, serial: z.serial, created_at: z.created_at, zone_file: dns.export(subject.id, z.id) })) };
    },
    // An organization being erased: its zones stop being served at once (they stay, soft-deleted, until the erasure).
    softDelete(tx, subject, now) {
      if (subject.kind === "organization") tx.query("UPDATE dns_zones SET deleted_at = ? WHERE organization_id = ? AND deleted_at IS NULL").run(now, subject.id);
    },
    committed(subject) {
      if (subject.kind === "organization") void dns.reloaded();
    },
    erase(tx, subject) {
      if (subject.kind !== "organization") return null;
      const zones = tx.query<{ id: string }, [string]>("SELECT id FROM dns_zones WHERE organization_id = ?").all(subject.id);
      for (const z of zones) tx.query("DELETE FROM dns_records WHERE zone_id = ?").run(z.id);
      tx.query("DELETE FROM dns_zones WHERE organization_id = ?").run(subject.id);
      return zones.length === 0 ? null : `${zones.length} zone(s) deleted`;
    },
  };
}
