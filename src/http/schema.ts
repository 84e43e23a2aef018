/**
 * Schema types the routes share, where Elysia's own would take what they should not.
 *
 * Elysia's t.Integer is a union with a string that it turns into a number: meant for query
 * strings, it let a JSON body send "0x1e", "3e1" or " 30 " for 30, and named no range when a
 * number was out of it ("Expected union value"). A body's integer is TypeBox's, a JSON number:
 * a string is 422 "Expected integer", 99999 "Expected integer to be less or equal to 3650".
 * Query parameters keep t.Integer (they are text); the app takes only plain decimal digits there
 * (app.ts, refuseQuery).
 */
import { Type, type IntegerOptions, type TInteger } from "@sinclair/typebox";

export function Integer(options?: IntegerOptions): TInteger {
  return Type.Integer(options);
}
