/**
 * The app's route table as path matchers, to tell "no such route" (404) from "no such
 * method on this route" (405, with Allow). Built once, on the first miss.
 */
import type { TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { AnyElysia } from "elysia";

interface RouteMatcher {
  method: string;
  pattern: RegExp;
}

const tables = new WeakMap<AnyElysia, RouteMatcher[]>();

/** Methods that do exist for `path`, sorted; empty when the path itself is unknown. */
export function allowedMethods(app: AnyElysia, path: string): string[] {
  let table = tables.get(app);
  if (!table) {
    table = app.routes.map((r) => ({ method: r.method.toUpperCase(), pattern: patternOf(r.path) }));
    tables.set(app, table);
  }
  const methods = new Set<string>();
  for (const r of table) if (r.pattern.test(path)) methods.add(r.method);
  if (methods.has("GET")) methods.add("HEAD");
  return [...methods].sort();
}

/** "/v1/zones/:zone/records/*" → /^\/v1\/zones\/[^/]+\/records\/.*$/ */
function patternOf(path: string): RegExp {
  const source = path
    .split("/")
    .map((segment) => {
      if (segment === "*") return ".*";
      if (segment.startsWith(":")) return segment.endsWith("?") ? "[^/]*" : "[^/]+";
      return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  return new RegExp(`^${source}/?$`);
}

/**
 * Elysia reports a numeric query or path parameter that fails its schema without saying
 * which one. This finds it: the first parameter whose raw value fails its declared schema.
 */
export function locateInvalidParameter(app: AnyElysia, request: Request, routePath: string): string | null {
  const route = app.routes.find((r) => r.path === routePath && r.method === request.method);
  if (!route) return null;
  const hooks = route.hooks as Record<string, { properties?: Record<string, TSchema> } | undefined>;
  const url = new URL(request.url);
  const raw = {
    params: pathParameters(route.path, url.pathname),
    query: Object.fromEntries(url.searchParams),
  };
  for (const location of ["params", "query"] as const) {
    for (const [key, schema] of Object.entries(hooks[location]?.properties ?? {})) {
      const value = raw[location][key];
      if (value === undefined) continue;
      // Elysia wraps a numeric schema as anyOf [numeric string, number]: check the number branch.
      const numeric = (schema.anyOf as TSchema[] | undefined)?.find((s) => s.type !== "string") ?? schema;
      if (!Value.Check(numeric, Number(value))) return location === "query" ? `query.${key}` : `path.${key}`;
    }
  }
  return null;
}

/** The values of a route's :parameters in a concrete path. */
function pathParameters(pattern: string, path: string): Record<string, string> {
  const names = pattern.split("/");
  const values = path.split("/");
  const out: Record<string, string> = {};
  names.forEach((segment, i) => {
    if (segment.startsWith(":") && values[i] !== undefined) out[segment.slice(1).replace(/\?$/, "")] = safeDecode(values[i]!);
  });
  return out;
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
