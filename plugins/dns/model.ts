/** Request and response schemas of the dns API (validation and the OpenAPI document). */
import { t } from "elysia";
import { Integer } from "../../src/http/schema.ts";

const Iso = t.String({ format: "date-time" });
const Ttl = Integer({ minimum: 0, maximum: 2_147_483_647, description: "Seconds (RFC 2181: 0–2147483647)" });
const Timer = Integer({ minimum: 0, maximum: 2_147_483_647 });

export const Done = t.Object({ ok: t.Literal(true) });

const soaFields = {
  mname: t.String({ minLength: 1, maxLength: 1024, description: "The primary name server (relative to the zone unless it ends with a dot)" }),
  rname: t.String({ minLength: 1, maxLength: 1024, description: "The responsible mailbox as a name (hostmaster.example.org.)" }),
  refresh: Timer,
  retry: Timer,
  expire: Timer,
  minimum: Integer({ minimum: 0, maximum: 2_147_483_647, description: "Negative-caching TTL (RFC 2308)" }),
};
const SOA_TTL = "The SOA record's own TTL (default: the zone's ttl). Negative answers are cached for the lesser of it and minimum (RFC 2308).";
export const Soa = t.Object({
  ...soaFields,
  mname: t.Optional(t.String({ minLength: 1, maxLength: 1024, description: "The primary name server (relative to the zone unless it ends with a dot; default: the first name server)" })),
  ttl: t.Optional(Integer({ minimum: 0, maximum: 2_147_483_647, description: SOA_TTL })),
});
const SoaView = t.Object({ ...soaFields, ttl: Integer({ description: SOA_TTL }) });

export const Zone = t.Object({
  id: t.String(),
  organization: t.String(),
  name: t.String({ description: "Canonical: absolute, lower-case" }),
  ttl: Integer({ description: "The default TTL of records given without one (and of the SOA unless soa.ttl)" }),
  serial: Integer({ description: "The SOA serial (RFC 1982), bumped on every change" }),
  soa: SoaView,
  created_at: Iso,
  updated_at: Iso,
});
export const ZoneList = t.Object({ items: t.Array(Zone) });

export const Record = t.Object({
  name: t.String({ description: "The owner: absolute, lower-case" }),
  type: t.String({ description: "A, AAAA, MX, ... or TYPEnnn" }),
  ttl: Integer(),
  data: t.String({ description: "The record data in presentation form" }),
});
export const RecordList = t.Object({ zone: t.String(), serial: Integer(), items: t.Array(Record) });
export const ZoneWithRecords = t.Composite([
  Zone,
  t.Object({
    records: t.Array(Record, { description: "Every record, the SOA first" }),
    problems: t.Array(t.String(), { description: "What would make the zone unreachable though it is served (an in-zone name server without an address)" }),
  }),
]);

export const NewZone = t.Object({
  name: t.String({ minLength: 1, maxLength: 1024, description: "The zone's name, such as example.org" }),
  soa: t.Optional(Soa),
  ttl: t.Optional(Ttl),
  ns: t.Optional(t.Array(t.String({ minLength: 1, maxLength: 1024 }), { minItems: 1, maxItems: 13, description: "The apex name servers (default: the SOA's mname)" })),
});

export const SetRrset = t.Object({
  ttl: t.Optional(Ttl),
  records: t.Array(t.String({ maxLength: 65_535 }), { maxItems: 1000, description: "Record data in presentation form, one string per record; empty removes the RRset" }),
});
export const Rrset = t.Object({ zone: t.String(), serial: Integer(), name: t.String(), type: t.String(), ttl: Integer(), records: t.Array(t.String()) });

export const ImportRequest = t.Object({
  content: t.String({ maxLength: 4_194_304, description: "Zone file text (RFC 1035 master file; no $INCLUDE)" }),
  dry_run: t.Optional(t.Boolean({ description: "Check and count only: nothing is written" })),
});
export const ImportResult = t.Object({
  zone: t.String(),
  dry_run: t.Boolean(),
  serial: Integer({ description: "The serial after the import (a dry run: the current one)" }),
  records: Integer({ description: "Records in the zone after the import, the SOA not counted" }),
  added: Integer(),
  removed: Integer(),
  changed: Integer({ description: "Records kept with another TTL" }),
  warnings: t.Array(t.String(), { description: "Accepted but adjusted data (duplicates merged, RRset TTLs unified)" }),
});

const DnssecKey = t.Object({
  key_tag: Integer(),
  state: t.Union([t.Literal("active"), t.Literal("incoming"), t.Literal("retiring")], {
    description: "active: the zone's one key; during a rollover, retiring: the old key (signs until the rollover finishes), incoming: the new one (signs too)",
  }),
  dnskey: t.String({ description: "Its DNSKEY record, presentation form" }),
  ds: t.String({ description: "Its DS record (SHA-256, digest type 2)" }),
  created_at: Iso,
  published_at: t.String({ format: "date-time", description: "When it was first served: Citadel publishes a key in the serial that makes it" }),
});

const Rollover = t.Object({
  started_at: Iso,
  published_serial: Integer({ description: "The serial that first published the new key: check that each secondary serves it, or a later one" }),
  replace_ds_from: t.String({ format: "date-time", description: "From when caches hold the new DNSKEY: the DS at the parent may be replaced by the new key's" }),
  finish_possible_at: t.String({ format: "date-time", description: "From when the rollover may finish: the DNSKEY TTL, the zone's largest TTL and the propagation delay after the start" }),
  can_finish: t.Boolean(),
  dnskey_ttl: Integer({ description: "The DNSKEY RRset's TTL at the start (seconds), counted at most the signatures' validity (1,209,600: 14 days)" }),
  max_ttl: Integer({ description: "The largest TTL in the zone at the start (seconds), counted at most the signatures' validity (1,209,600: 14 days)" }),
  propagation_delay: Integer({ description: "[dns] dnssec_propagation_delay at the start (seconds): a configuration changed since does not move the rollover's times" }),
  ready_at: t.Union([Iso, t.Null()], { description: "When the new key became ready for the parent (the schedule's check at replace_ds_from): its CDS/CDNSKEY published from then when the zone publishes them" }),
  submitted_at: t.Union([Iso, t.Null()], { description: "When an operator confirmed that the parent publishes the new key's DS alone (rollover submitted; Citadel asks no parent)" }),
  auto_finish_at: t.Union([Iso, t.Null()], { description: "From when the schedule finishes the rollover by itself (null: not before the parent's DS is confirmed)" }),
  automatic: t.Boolean({ description: "Started by the schedule (the key's lifetime ran out)" }),
  waiting_for: t.Union([t.Literal("propagation"), t.Literal("parent"), t.Literal("parent_delay"), t.Literal("finish")], {
    description: "propagation: the new DNSKEY reaching caches (the DS may not change yet); parent: the parent's new DS to be confirmed (rollover submitted); parent_delay: the parent's DS TTL and old caches; finish: nothing, the schedule finishes at its next check",
  }),
  waiting: t.String({ description: "The same in words, with the time" }),
});

const Cds = t.Object({
  mode: t.Union([t.Literal("none"), t.Literal("rollover"), t.Literal("always"), t.Literal("delete")], {
    description: "none: Citadel publishes no CDS/CDNSKEY (stored ones are served); rollover: the new key's while a rollover waits for the parent; always: the key the parent should point at; delete: RFC 8078's delete records (the parent asked to remove the DS)",
  }),
  since: t.Union([Iso, t.Null()], { description: "When the mode was last set (null: as signed)" }),
  cds: t.Array(t.String(), { description: "The CDS records served now (SHA-256), presentation form" }),
  cdnskey: t.Array(t.String(), { description: "The CDNSKEY records served now, presentation form" }),
});

export const Dnssec = t.Object({
  zone: t.String(),
  enabled: t.Boolean({ description: "The zone is served signed (DNSKEY, RRSIG, NSEC)" }),
  algorithm: t.Union([t.String({ description: "ECDSAP256SHA256 (13)" }), t.Null()]),
  key_tag: t.Union([Integer(), t.Null()], { description: "The zone's key (during a rollover the old one, which signs until the rollover finishes)" }),
  dnskey: t.Array(t.String(), { description: "The DNSKEY records served (combined signing keys, flags 257; two during a rollover), presentation form" }),
  ds: t.Array(t.String(), { description: "The DS record of each key, SHA-256 (digest type 2): the parent zone (the registrar) publishes the zone key's; during a rollover, replace it by the incoming key's" }),
  signatures_expire_at: t.Union([Iso, t.Null()], { description: "When the signatures served now expire; the zone is signed again (a new serial) a week before" }),
  created_at: t.Union([Iso, t.Null()], { description: "When the zone's key was made: signing turned on, or the start of the rollover that made it" }),
  keys: t.Array(DnssecKey),
  rollover: t.Union([Rollover, t.Null()], { description: "The key rollover in progress, if any" }),
  denial: t.Union([t.Literal("nsec"), t.Literal("nsec3"), t.Null()], {
    description: "How the zone proves names and types absent: nsec (its names can be listed by walking the NSEC chain) or nsec3 (hashed names, RFC 5155); null when unsigned",
  }),
  nsec3: t.Union(
    [
      t.Object({
        hash_algorithm: t.String({ description: "SHA-1 (1), the only one RFC 5155 defines" }),
        iterations: Integer({ description: "Additional iterations: 0 (RFC 9276)" }),
        salt: t.String({ description: "Hex; empty for none (RFC 9276's advice)" }),
        opt_out: t.Boolean({ description: "Always false: every delegation has its NSEC3" }),
        nsec3param: t.String({ description: "The NSEC3PARAM record at the apex, presentation form" }),
      }),
      t.Null(),
    ],
    { description: "The NSEC3 parameters (denial nsec3)" },
  ),
  cds: t.Union([Cds, t.Null()], { description: "CDS/CDNSKEY publication for the parent (RFC 7344, 8078); null when unsigned" }),
  csk_lifetime_days: t.Union([Integer(), t.Null()], { description: "The key's lifetime: the schedule starts a rollover once the key is this old (0: rolled by hand)" }),
  activated_at: t.Union([Iso, t.Null()], { description: "When the zone's key began to sign alone (its signing, or its rollover's finish): the lifetime counts from then" }),
  next_rollover_at: t.Union([Iso, t.Null()], { description: "When the schedule starts the next rollover (activated_at + the lifetime; null: none scheduled, or one in progress)" }),
});

const Nsec3Request = t.Object(
  {
    salt: t.Optional(t.String({ maxLength: 510, description: "Hex octets, or - (or empty) for none: the default, and RFC 9276's advice (a salt buys nothing: docs/dns.md)" })),
    iterations: t.Optional(Integer({ minimum: 0, maximum: 65_535, description: "Additional hash iterations: 0, the only count accepted (RFC 9276 section 3.1; 422 otherwise, saying why)" })),
    opt_out: t.Optional(t.Boolean({ description: "false, the only value accepted: opt-out leaves unsigned delegations unproven (422 otherwise, saying why)" })),
  },
  { description: "NSEC3 parameters (with denial nsec3 only)" },
);
const DenialChoice = t.Union([t.Literal("nsec"), t.Literal("nsec3")], { description: "nsec: the NSEC chain (RFC 4034; anyone can list the names); nsec3: hashed (RFC 5155, with RFC 9276's parameters)" });

/** Optional: a POST without a body signs with NSEC. */
const CdsChoice = t.Union([t.Literal("none"), t.Literal("rollover"), t.Literal("always")], {
  description: "CDS/CDNSKEY for the parent to scan: none; rollover (the default for a new signing): the new key's while a rollover waits for the parent; always: the key the parent should point at. Delete: POST .../dnssec/ds-removal",
});
const Lifetime = Integer({ minimum: 0, maximum: 36_500, description: "The key's lifetime in days: the schedule starts a rollover once it is this old; 0 (the default): rolled by hand; else at least 7" });

export const CancelRolloverQuery = t.Object({
  force: t.Optional(
    t.Boolean({ description: "Cancel although the new key's CDS/CDNSKEY were published (a parent that scans may hold its DS): only once the parent is checked to hold the old DS alone (dig +norecurse DS <zone> @<parent server>)" }),
  ),
});

export const EnableDnssec = t.Optional(
  t.Object({
    denial: t.Optional(DenialChoice),
    nsec3: t.Optional(Nsec3Request),
    cds: t.Optional(CdsChoice),
    csk_lifetime_days: t.Optional(Lifetime),
  }),
);
export const SetDenial = t.Object({
  denial: t.Optional(DenialChoice),
  nsec3: t.Optional(Nsec3Request),
  cds: t.Optional(CdsChoice),
  csk_lifetime_days: t.Optional(Lifetime),
});

// --- transfers (operators) ---------------------------------------------------------------

const Algorithm = t.Union([t.Literal("hmac-sha256"), t.Literal("hmac-sha384"), t.Literal("hmac-sha512")]);

export const TsigKey = t.Object({ name: t.String(), algorithm: t.String(), created_at: Iso });
export const TsigKeyList = t.Object({ items: t.Array(TsigKey) });
export const NewTsigKey = t.Object({
  name: t.String({ minLength: 1, maxLength: 255, description: "The key's name, the same on the secondary (such as transfer.example.org)" }),
  algorithm: t.Optional(Algorithm),
  secret: t.Optional(t.String({ minLength: 1, maxLength: 1024, description: "Import an existing secret (base64, at least 16 octets); a random one is made when absent" })),
});
export const CreatedTsigKey = t.Composite([TsigKey, t.Object({ secret: t.String({ description: "The secret, base64: shown this once, never again" }) })]);

export const Secondary = t.Object({
  name: t.String(),
  address: t.String(),
  port: Integer(),
  tsig_key: t.String(),
  zones: t.Union([t.Array(t.String()), t.Null()], { description: "The zones it serves; null: every zone" }),
  created_at: Iso,
});
export const SecondaryList = t.Object({
  items: t.Array(Secondary),
  catalog: t.Union([t.String(), t.Null()], { description: "The catalog zone's name ([dns] catalog) each secondary may transfer its view of; null: none" }),
});

export const Catalog = t.Object({
  name: t.Union([t.String(), t.Null()], { description: "The catalog zone's name ([dns] catalog); null: no catalog is served" }),
  served: t.Boolean({ description: "The authoritative listener serves it (without one, no secondary gets it)" }),
  views: t.Array(
    t.Object({
      address: t.String({ description: "The address its secondaries transfer from" }),
      tsig_key: t.String({ description: "The key they sign with" }),
      secondaries: t.Array(t.String(), { description: "The secondaries of that address and key (each gets this view)" }),
      serial: Integer({ description: "The view's SOA serial: it moves when its zones do" }),
      zones: t.Array(t.Object({ id: t.String({ description: "The member's unique id (RFC 9432 section 4.1): a stored zone's row id in hex" }), name: t.String() })),
    }),
    { description: "One view per address and key of the secondaries: the zones they serve" },
  ),
});
export const NewSecondary = t.Object({
  name: t.String({ minLength: 1, maxLength: 63, description: "A label for the secondary (ns2, fra-1, ...)" }),
  address: t.String({ minLength: 1, maxLength: 64, description: "Its IP address: transfers must come from it, NOTIFY goes to it" }),
  port: t.Optional(Integer({ minimum: 1, maximum: 65_535, description: "Where it listens for NOTIFY (default 53)" })),
  tsig_key: t.String({ minLength: 1, maxLength: 255, description: "The TSIG key it signs transfers with" }),
  zones: t.Optional(t.Array(t.String({ minLength: 1, maxLength: 255 }), { maxItems: 10_000, description: "Only these zones (default: every zone); \"*\" is every hosted zone, to list a record provider's own zone (the mesh's) beside it" })),
});
