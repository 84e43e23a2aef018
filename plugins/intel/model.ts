/** Request and response schemas of the intel API (validation and the OpenAPI document). */
import { t, type TSchema } from "elysia";
import { Integer } from "../../src/http/schema.ts";

const Iso = t.String({ format: "date-time" });
const Action = t.Union([t.Literal("allow"), t.Literal("throttle"), t.Literal("refuse"), t.Literal("drop")]);
const DenyAction = t.Union([t.Literal("throttle"), t.Literal("refuse"), t.Literal("drop")]);

export const Done = t.Object({ ok: t.Literal(true) });

export const Decision = t.Object({ id: t.String(), target: t.String(), scope: t.Union([t.Literal("all"), t.Literal("dns")], { description: "dns: made from DNS evidence, enforced by the DNS server over UDP only, as a throttle at most" }), action: DenyAction, score: Integer(), reasons: t.Array(t.String()), since: Iso, until: Iso, shadow: t.Boolean() });
export const DecisionList = t.Object({ items: t.Array(Decision) });

export const ManualEntry = t.Object({ id: t.String(), kind: t.Union([t.Literal("allow"), t.Literal("deny")]), target: t.String(), action: t.Union([DenyAction, t.Null()], { description: "What a deny entry does; null for an allow entry" }), reason: t.Union([t.String(), t.Null()]), until: t.Union([Iso, t.Null()]) });
export const ManualList = t.Object({ items: t.Array(ManualEntry) });
export const RemoveManualQuery = t.Object({
  lock_out: t.Optional(t.Boolean({ description: "Removing an allow entry that shields the caller's own address from a deny (or a score) is a 409 unless this is true" })),
});
export const NewManualEntry = t.Object({
  kind: t.Union([t.Literal("allow"), t.Literal("deny")], { description: "allow always wins over deny, decisions and scores" }),
  target: t.String({ minLength: 1, maxLength: 64, description: "An address or CIDR (host bits zero)" }),
  action: t.Optional(DenyAction),
  minutes: t.Optional(Integer({ minimum: 1, maximum: 5_256_000, description: "Lasts this long; forever when absent" })),
  reason: t.Optional(t.String({ maxLength: 500 })),
  lock_out: t.Optional(t.Boolean({ description: "A deny entry covering the caller's own address is a 409 unless this is true (the caller's next request would be throttled, refused or dropped)" })),
});

const Anonymous = t.Union([t.Object({ any: t.Boolean(), vpn: t.Boolean(), hosting: t.Boolean(), publicProxy: t.Boolean(), residentialProxy: t.Boolean(), tor: t.Boolean() }), t.Null()]);
export const IpReport = t.Object({
  ip: t.String(),
  prefix: t.String(),
  country: t.Union([t.String(), t.Null()]),
  asn: t.Union([Integer(), t.Null()]),
  organisation: t.Union([t.String(), t.Null()]),
  anonymous: Anonymous,
  lists: t.Array(t.String()),
  score: Integer({ minimum: 0, maximum: 100 }),
  reasons: t.Array(t.String()),
  action: Action,
  source: t.String({ description: "Why that action: loopback, allowlist, denylist, decision or score" }),
  shadow: t.Boolean(),
  decision: t.Union([Decision, t.Null()]),
  manual: t.Union([ManualEntry, t.Null()]),
  dns: t.Object(
    { action: Action, source: t.String(), score: Integer({ minimum: 0, maximum: 100 }), reasons: t.Array(t.String()), decision: t.Union([Decision, t.Null()]) },
    { description: "The same over DNS over UDP, where what DNS traffic did counts too and decisions of scope dns apply (the fields above hold for HTTP and DNS over TCP)" },
  ),
});

export const List = t.Object({ name: t.String(), weight: Integer(), format: t.String(), url: t.Union([t.String(), t.Null()]), refresh_minutes: t.Union([Integer(), t.Null()]), entries: Integer(), bad_lines: Integer(), updated_at: Iso });
export const ListList = t.Object({ items: t.Array(List) });
export const PutList = t.Object({
  weight: Integer({ minimum: 0, maximum: 100, description: "Score points for an address on the list" }),
  content: t.Optional(t.String({ maxLength: 67_108_864, description: "The list's text: plain IP/CIDR lines, a FireHOL netset or Spamhaus DROP/EDROP" })),
  url: t.Optional(t.String({ maxLength: 2048, description: "Fetch it from here (https) now and every refresh_minutes; never without this" })),
  refresh_minutes: t.Optional(Integer({ minimum: 15, maximum: 10_080 })),
  format: t.Optional(t.Union([t.Literal("auto"), t.Literal("plain"), t.Literal("firehol"), t.Literal("spamhaus")])),
  lock_out: t.Optional(t.Boolean({ description: "A list that would refuse the caller's own address is a 409 unless this is true" })),
});
export const PutListResult = t.Composite([List, t.Object({ bad_lines_shown: t.Array(t.Object({ line: Integer(), text: t.String(), problem: t.String() })) })]);

export const Policy = t.Object({
  shadow: t.Boolean(),
  countries: t.Record(t.String(), t.Number()),
  asns: t.Record(t.String(), t.Number()),
  anonymous: t.Record(t.String(), t.Number()),
  behaviour: t.Record(t.String(), t.Object({ per_event: t.Number(), max: t.Number() })),
  thresholds: t.Object({ throttle: t.Number(), refuse: t.Number(), drop: t.Number() }),
  decision_minutes: t.Number(),
});
/**
 * A map of keys to `value`, never a list: Elysia turns a list given for a record into an object
 * before the schema sees it (`[]` into `{}`, which replaced a whole map with nothing).
 */
const mapOf = <T extends TSchema>(value: T) => t.Intersect([t.Record(t.String(), value), t.Not(t.Array(t.Any()))]);

export const SetPolicy = t.Object({
  countries: t.Optional(mapOf(Integer({ minimum: 0, maximum: 100 }))),
  asns: t.Optional(mapOf(Integer({ minimum: 0, maximum: 100 }))),
  anonymous: t.Optional(mapOf(Integer({ minimum: 0, maximum: 100 }))),
  behaviour: t.Optional(mapOf(t.Object({ per_event: t.Number({ minimum: 0, maximum: 100 }), max: Integer({ minimum: 0, maximum: 100 }) }))),
  lock_out: t.Optional(t.Boolean({ description: "Points that would have the shield refuse or drop the caller's own address are a 409 unless this is true" })),
});

export const Status = t.Object({
  enabled: t.Boolean(),
  shadow: t.Boolean(),
  geo: t.Array(t.Object({ kind: t.String(), path: t.Union([t.String(), t.Null()]), databaseType: t.Union([t.String(), t.Null()]), buildDate: t.Union([t.String(), t.Null()]), licence: t.Union([t.String(), t.Null()]), loadedAt: t.Union([t.String(), t.Null()]), error: t.Union([t.String(), t.Null()]) }, { additionalProperties: true })),
  lists: t.Array(List),
  decisions: Integer(),
  manual: Integer(),
  tracked_keys: Integer(),
  verdicts: t.Record(t.String(), Integer()),
});
