import { t } from "elysia";
import { Integer } from "../../src/http/schema.ts";

export const EventQuery = t.Object({
  organization: t.Optional(t.String({ maxLength: 200 })),
  workspace: t.Optional(t.String({ maxLength: 200 })),
  actor: t.Optional(t.String({ maxLength: 200, description: "The acting user's id." })),
  action: t.Optional(t.String({ maxLength: 200, description: "An action type, or a dotted prefix of one (`secrets`), in any case." })),
  outcome: t.Optional(t.Union([t.Literal("success"), t.Literal("failure")])),
  resource_type: t.Optional(t.String({ maxLength: 200 })),
  resource_id: t.Optional(t.String({ maxLength: 200 })),
  since: t.Optional(t.String({ format: "date-time", description: "Inclusive, ISO 8601." })),
  until: t.Optional(t.String({ format: "date-time", description: "Exclusive, ISO 8601." })),
});

export const ListQuery = t.Composite([
  EventQuery,
  t.Object({
    limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    cursor: t.Optional(t.String({ maxLength: 100, description: "`next_cursor` of the previous page." })),
  }),
]);

export const ExportQuery = t.Composite([EventQuery, t.Object({ format: t.Optional(t.Union([t.Literal("ndjson"), t.Literal("csv")], { default: "ndjson" })) })]);

const Personal = t.Union([t.Record(t.String(), t.String()), t.Literal("[erased]"), t.Literal("[unreadable]"), t.Null()]);

export const AuditEvent = t.Object({
  id: t.String(),
  seq: Integer(),
  time: t.String({ format: "date-time" }),
  actor: t.Object({ kind: t.String(), organization: t.Union([t.String(), t.Null()]), user: t.Union([t.String(), t.Null()]), token: t.Union([t.String(), t.Null()]) }),
  action: t.String(),
  resource: t.Union([t.Object({ type: t.String(), id: t.Union([t.String(), t.Null()]) }), t.Null()]),
  organization: t.Union([t.String(), t.Null()]),
  workspace: t.Union([t.String(), t.Null()]),
  request_id: t.Union([t.String(), t.Null()]),
  outcome: t.String(),
  reason: t.Union([t.String(), t.Null()]),
  subject: t.Union([t.String(), t.Null()]),
  source_address: t.Union([t.String(), t.Null()], { description: "Personal data: `[erased]` after erasure, `[unreadable]` when its ciphertext was changed (`citadel audit verify` names the event)." }),
  user_agent: t.Union([t.String(), t.Null()], { description: "Personal data: `[erased]` after erasure, `[unreadable]` when its ciphertext was changed (`citadel audit verify` names the event)." }),
  personal: Personal,
  hash: t.String({ description: "This event's chain hash (hex SHA-256)." }),
});

export const AuditPage = t.Object({ events: t.Array(AuditEvent), next_cursor: t.Union([t.String(), t.Null()]) });

export const ActionList = t.Object({ actions: t.Array(t.Object({ type: t.String(), description: t.String() })) });

export const Checkpoint = t.Object({
  format: t.Literal("citadel-audit-checkpoint-v1"),
  seq: Integer(),
  hash: t.String(),
  time: Integer(),
  key_id: t.String(),
  public_key: t.String(),
  signature: t.String(),
});

export const CheckpointList = t.Object({ checkpoints: t.Array(Checkpoint) });

const Problem = t.Object({
  seq: t.Union([Integer(), t.Null()], { description: "The event (or checkpoint) found wrong; null when its own seq is not a number (a tampered table)" }),
  id: t.Union([t.String(), t.Null()]),
  problem: t.String(),
});

export const VerifyReport = t.Object({
  ok: t.Boolean(),
  events: Integer(),
  head: t.Union([t.Object({ seq: Integer(), hash: t.String() }), t.Null()]),
  first_problem: t.Union([Problem, t.Null()]),
  problems: t.Array(Problem, { description: "Everything found wrong, in order (at most 100)" }),
  problem_count: Integer({ description: "How many problems in all" }),
  checkpoints: t.Object({ verified: Integer(), latest_seq: t.Union([Integer(), t.Null()]) }),
  unsigned_tail: Integer(),
});

export const NoteRequest = t.Object({ text: t.String({ minLength: 1, maxLength: 2000, description: "Recorded as the event's reason: no secrets, no personal data." }) });
export const EventRef = t.Object({ id: t.String() });
export const EraseResponse = t.Object({ subject: t.String(), keys_destroyed: Integer() });
