/**
 * What DNS holds about an organization (src/subjects.ts): its zones as zone files. An erasure
 * request stops serving them (soft delete, and the listener reloads); the erasure deletes them
 * and their records. Users own nothing here.
 */
import type { SubjectContributor } from "../../src/subjects.ts";
import type { OrganizationDeletionHandler } from "../../src/workspace-deletions.ts";
import type { DnsService } from "./service.ts";
import * as sql from "./store.ts";

/**
 * What goes of DNS when iam deletes an organization (src/workspace-deletions.ts): its zones, as
 * the zone delete route deletes one (records gone, the row kept soft-deleted so a zone made
 * again under the name continues from its serial). They were served on, and their names
 * refused to every other organization, with no route left to delete them (found in review).
 */
export function dnsOrganizationDeletion(dns: DnsService): OrganizationDeletionHandler {
  return {
    name: "dns",
    deleted(tx, organizationId, now) {
      const zones = sql.liveZonesOf(tx, organizationId);
      for (const zone of zones) {
        sql.deleteZone(tx, zone.id, now);
        dns.signer.forget(zone.id); // its decrypted signing key too, not left in memory
      }
      return zones.length === 0 ? null : `${zones.length} zone(s) deleted (${zones.map((z) => z.name).join(", ")})`;
    },
    // The listener serves from memory: it reloads once the deletion is committed.
    committed: () => dns.changedElsewhere(),
  };
}

export function dnsSubjects(dns: DnsService): SubjectContributor {
  return {
    name: "dns",
    // Every zone still stored, soft-deleted ones too: during an erasure's grace period they all
    // are (found in review: the export read the live zones only, and left them out).
    export(subject) {
      if (subject.kind !== "organization") return null;
      const zones = dns.storedZones(subject.id);
      if (zones.length === 0) return null;
      return { zones: zones.map((z) => ({ name: z.name, serial: z.serial, created_at: z.created_at, deleted_at: z.deleted_at, zone_file: z.zone_file })) };
    },
    // An organization being erased: its zones stop being served at once (they stay, soft-deleted, until the erasure).
    softDelete(tx, subject, now) {
      if (subject.kind !== "organization") return;
      for (const zone of sql.liveZonesOf(tx, subject.id)) dns.signer.forget(zone.id);
      tx.query("UPDATE dns_zones SET deleted_at = ? WHERE organization_id = ? AND deleted_at IS NULL").run(now, subject.id);
    },
    committed(subject) {
      if (subject.kind === "organization") void dns.reloaded();
    },
    erase(tx, subject) {
      if (subject.kind !== "organization") return null;
      const zones = tx.query<{ id: string }, [string]>("SELECT id FROM dns_zones WHERE organization_id = ?").all(subject.id);
      for (const z of zones) {
        tx.query("DELETE FROM dns_records WHERE zone_id = ?").run(z.id);
        sql.deleteZoneKeys(tx, z.id);
        dns.signer.forget(z.id);
      }
      tx.query("DELETE FROM dns_zones WHERE organization_id = ?").run(subject.id);
      return zones.length === 0 ? null : `${zones.length} zone(s) deleted`;
    },
  };
}
