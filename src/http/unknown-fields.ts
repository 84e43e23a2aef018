/**
 * Fields a request body holds that its route's schema does not know. Elysia drops them without
 * a word before validating (its `normalize`), so a misspelt or unsupported field — an ACL rule's
 * `"action": "deny"`, `"disable": true` for `"disabled"` — answered 200 and did nothing: the
 * caller believed a change made that was not. They are refused instead, 422 naming the field,
 * as Kubernetes' strict field validation does.
 *
 * Read from the JSON as the client sent it (the edge parsed it), against the route's TypeBox
 * schema: an object's `properties` are the fields it knows, unless it takes any
 * (`additionalProperties` not false, or `patternProperties`: a map); arrays, unions and
 * intersections are followed.
 */
import type { TSchema } from "@sinclair/typebox";

/** JSON pointers (RFC 6901) of the fields `value` holds that `schema` does not know; empty when none. */
export function unknownFields(schema: TSchema | undefined, value: unknown, at = ""): string[] {
  if (schema === undefined || value === null || typeof value !== "object") return [];
  if (schema.anyOf || schema.oneOf) {
    const branches = ((schema.anyOf ?? schema.oneOf) as TSchema[]).filter((branch) => fits(branch, value));
    return fewest(branches.map((branch) => unknownFields(branch, value, at)));
  }
  if (schema.allOf) return common((schema.allOf as TSchema[]).filter(describesObject).map((part) => unknownFields(part, value, at)));
  if (Array.isArray(value)) {
    const items = schema.items as TSchema | undefined;
    return items ? value.flatMap((item, i) => unknownFields(items, item, `${at}/${i}`)) : [];
  }
  const map = schema.patternProperties as Record<string, TSchema> | undefined;
  if (map) {
    const [entry] = Object.values(map);
    return Object.entries(value).flatMap(([key, item]) => unknownFields(entry, item, `${at}/${escape(key)}`));
  }
  const properties = schema.properties as Record<string, TSchema> | undefined;
  if (!properties) return [];
  const open = schema.additionalProperties !== undefined && schema.additionalProperties !== false;
  const unknown: string[] = [];
  for (const [key, item] of Object.entries(value)) {
    const known = Object.hasOwn(properties, key) ? properties[key] : undefined;
    if (known) unknown.push(...unknownFields(known, item, `${at}/${escape(key)}`));
    else if (!open) unknown.push(`${at}/${escape(key)}`);
  }
  return unknown;
}

/** The branch of a union that fits best: none unknown when any branch knows every field. */
function fewest(lists: string[][]): string[] {
  return lists.reduce((best, list) => (list.length < best.length ? list : best), lists[0] ?? []);
}

/**
 * Unknown to an intersection: to every one of its object parts (each knows some fields). A
 * field inside one that a part knows stays unknown where the other parts do not know the
 * field at all ("/a/x" unknown to one part, "/a" to the other).
 */
function common(lists: string[][]): string[] {
  const unknownTo = (list: string[], pointer: string) => list.some((p) => p === pointer || pointer.startsWith(`${p}/`));
  return [...new Set(lists.flat())].filter((pointer) => lists.every((list) => unknownTo(list, pointer)));
}

/** Whether a branch of a union may describe `value` at all (a null branch says nothing of an object's fields). */
function fits(branch: TSchema, value: object): boolean {
  if (branch.type === "array") return Array.isArray(value);
  if (branch.type === "object") return !Array.isArray(value);
  return branch.type === undefined; // a union, an intersection, unknown or any
}

const describesObject = (schema: TSchema) => schema.properties !== undefined || schema.patternProperties !== undefined || schema.allOf !== undefined || schema.anyOf !== undefined;

const escape = (key: string) => key.replaceAll("~", "~0").replaceAll("/", "~1");
