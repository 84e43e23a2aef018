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

interface ParameterContext {
  request: Request;
  route: string;
  query: Record<string, string | undefined>;
  params: Record<string, unknown>;
}

/**
 * Elysia reports a numeric query or path parameter that fails its schema without saying
 * which one. This finds it: the first parameter whose raw value fails its declared schema.
 */
export function locateInvalidParameter(app: AnyElysia, ctx: ParameterContext): string | null {
  const route = app.routes.find((r) => r.path === ctx.route && r.method === ctx.request.method);
  const hooks = route?.hooks as Record<string, { properties?: Record<string, TSchema> } | undefined> | undefined;
  for (const location of ["params", "query"] as const) {
    const properties = hooks?.[location]?.properties ?? {};
    for (const [key, schema] of Object.entries(properties)) {
      const raw = ctx[location]?.[key];
      if (typeof raw !== "string") continue;
      // Elysia wraps a numeric schema as anyOf [numeric string, number]: check the number branch.
      const numeric = (schema.anyOf as TSchema[] | undefined)?.find((s) => s.type !== "string") ?? schema;
      if (!Value.Check(numeric, Number(raw))) return location === "query" ? `query.${key}` : `path.${key}`;
    }
  }
  return null;
}
