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

export const Dnssec = t.Object({
  zone: t.String(),
  enabled: t.Boolean({ description: "The zone is served signed (DNSKEY, RRSIG, NSEC)" }),
  algorithm: t.Union([t.String({ description: "ECDSAP256SHA256 (13)" }), t.Null()]),
  key_tag: t.Union([Integer(), t.Null()]),
  dnskey: t.Array(t.String(), { description: "The zone's DNSKEY record (one combined signing key, flags 257), presentation form" }),
  ds: t.Array(t.String(), { description: "The DS record to give the parent zone (the registrar): SHA-256 (digest type 2)" }),
  signatures_expire_at: t.Union([Iso, t.Null()], { description: "When the signatures served now expire; the zone is signed again (a new serial) a week before" }),
  created_at: t.Union([Iso, t.Null()], { description: "When signing was turned on (the key was made)" }),
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
