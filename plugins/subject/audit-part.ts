/**
 * The audit log's part of a data subject (src/audit is the kernel's, so the subject plugin
 * speaks for it): for a user, the events they did, the events about them and those holding
 * their personal data (a throttled login names the account it tried), with the personal
 * data recorded under their own key decrypted (others' left out); for an organization, its
 * events, with the personal data it holds as its own (its mesh nodes' names and the addresses
 * they enrolled from, under its key) — the people's belongs to them, each exported on their
 * own. The subject service hands over only subjects of their kind (an organization's id is no
 * user's: its part would show the organization's data). Erasure of a user destroys their subject key:
 * the personal data in their events becomes unreadable ("[erased]") and the chain, which hashes
 * only ciphertext, still verifies. The events themselves stay: the log is append-only.
 */
import { subjectKeyOwner } from "../../src/audit/event.ts";
import { iterateAuditEvents, type AuditEventView } from "../../src/audit/query.ts";
import type { Kernel } from "../../src/plugin.ts";
import type { SubjectContributor } from "../../src/subjects.ts";

export function auditSubjects(k: Kernel): SubjectContributor {
  const events = (filter: Parameters<typeof iterateAuditEvents>[2]) => [...iterateAuditEvents(k.store.db, k.seal.keyring(), filter)];
  return {
    name: "audit",
    export(subject) {
      let found: AuditEventView[];
      if (subject.kind === "organization") found = events({ organization: subject.id });
      else {
        const byId = new Map<string, AuditEventView>();
        for (const e of [...events({ actor: subject.id }), ...events({ resource_type: "user", resource_id: subject.id }), ...events({ subject: subject.id })]) byId.set(e.id, e);
        found = [...byId.values()].sort((a, b) => a.seq - b.seq);
      }
      // Personal data goes out only to its own subject: an event about a user that an
      // operator caused carries the operator's address, which is not the user's to receive;
      // an organization's events carry its members' addresses, but its enrollments its own.
      const own = (e: AuditEventView) => e.subject === subject.id;
      const shown = found.map((e) => (own(e) ? e : { ...e, source_address: null, user_agent: null, personal: null }));
      return shown.length === 0 ? null : { events: shown };
    },
    erase(tx, subject, now) {
      // A user's personal data, or what an organization's holds as its own (its mesh nodes' names
      // and the addresses they enrolled from).
      const destroyed = k.seal.keyring().destroyOwner(tx, subjectKeyOwner(subject.id), now);
      return destroyed === 0 ? null : `personal data in the audit log shredded (${destroyed} key version(s) destroyed)`;
    },
  };
}
