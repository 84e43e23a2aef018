/** The [subject] config section: how long an erasure waits before it cannot be undone. */
import { Type, type Static } from "@sinclair/typebox";
import { section } from "../../src/config/schema.ts";

export const SubjectSettings = section("Data subjects (GDPR): export and erasure of a user's or an organization's data.", {
  grace_days: Type.Integer({
    default: 30,
    minimum: 0,
    maximum: 365,
    description: "Days between an erasure request (the subject is soft-deleted and stops working) and the hard deletion with crypto-shredding. 0: at the next run.",
  }),
});
export type SubjectSettings = Static<typeof SubjectSettings>;
