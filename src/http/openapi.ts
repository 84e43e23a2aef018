/**
 * The OpenAPI 3.1 document. @elysiajs/openapi reads the routes and their TypeBox schemas;
 * we add what it cannot know: every operation can fail with a problem document, and bodies
 * are JSON only (the edge answers 415 to anything else; the OAuth endpoints take forms too) and
 * take no field their schema does not name (the edge answers 422: src/http/unknown-fields.ts).
 */
import { toOpenAPISchema } from "@elysiajs/openapi/openapi";
import type { AnyElysia } from "elysia";
import { BEARER_SCHEME } from "./access.ts";
import { isOAuthPath } from "./oauth-error.ts";
import { PROBLEM_CONTENT_TYPE, Problem } from "./problem.ts";

export interface ApiInfo {
  version: string;
}

type Operation = {
  requestBody?: { content?: Record<string, unknown> };
  responses?: Record<string, unknown>;
};

const HTTP_METHODS = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

export function openApiDocument(app: AnyElysia, info: ApiInfo): object {
  const { paths, components } = toOpenAPISchema(app) as {
    paths: Record<string, Record<string, Operation>>;
    components: { schemas: Record<string, unknown> };
  };
  for (const [path, item] of Object.entries(paths)) {
    for (const method of HTTP_METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const json = operation.requestBody?.content?.["application/json"] as { schema?: unknown } | undefined;
      if (operation.requestBody && json) operation.requestBody.content = isOAuthPath(path) ? oauthContent(json) : { "application/json": { ...json, schema: closed(json.schema) } };
      operation.responses = {
        ...operation.responses,
        default: { $ref: "#/components/responses/Problem" },
      };
    }
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Citadel API",
      version: info.version,
      description:
        "Every failure is an RFC 9457 problem document (application/problem+json) with a stable `code` and the `request_id` of the server log line.",
    },
    paths,
    components: {
      schemas: { ...components.schemas, Problem },
      // What each operation's `security` names (access.ts): undeclared, the document was invalid
      // and a client generated from it never sent Authorization (found in review).
      securitySchemes: { [BEARER_SCHEME]: BEARER_SECURITY_SCHEME },
      responses: {
        Problem: {
          description: "The request failed; see `code` and `detail`.",
          content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: "#/components/schemas/Problem" } } },
        },
      },
    },
  };
}

/**
 * A Citadel token in `Authorization: Bearer`. A requirement's list names the token scope the
 * operation needs (OpenAPI 3.1 lets a scheme other than OAuth list roles there).
 */
const BEARER_SECURITY_SCHEME = {
  type: "http",
  scheme: "bearer",
  bearerFormat: "citadel_<kind>_<id>_<secret>",
  description:
    "A Citadel token: a personal access token (citadel_pat_...), a session (citadel_ses_...), a service API key (citadel_<service>_...), a workload token (citadel_wlt_...) or a console token (citadel_con_...). An operation's requirement names the token scope it needs; its x-citadel-access says the rest.",
};

/**
 * An OAuth endpoint's body: a form as RFC 6749 requires (section 4.1.3), or JSON, with the same
 * fields. Open: an OAuth server ignores parameters it does not know (section 3.1, app.ts).
 */
function oauthContent(json: { schema?: unknown }): Record<string, unknown> {
  const { additionalProperties: _, ...open } = json.schema as Record<string, unknown>; // Elysia closes it as it compiles
  const content = { ...json, schema: open };
  return { "application/x-www-form-urlencoded": content, "application/json": content };
}

/**
 * A request body's schema as the edge enforces it: an object takes only the fields it names
 * (`additionalProperties: false`) unless it says otherwise or is a map. A copy: the route's own
 * schema is left alone. The parts of an intersection stay open (closed, each would refuse the
 * others' fields).
 */
function closed(schema: unknown, inIntersection = false): unknown {
  if (Array.isArray(schema)) return schema.map((s) => closed(s));
  if (typeof schema !== "object" || schema === null) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === "properties" || key === "patternProperties") out[key] = Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, closed(v)]));
    else if (key === "allOf") out[key] = (value as unknown[]).map((part) => closed(part, true));
    else if (key === "items" || key === "anyOf" || key === "oneOf") out[key] = closed(value);
    else out[key] = value;
  }
  if (out.properties && out.additionalProperties === undefined && out.patternProperties === undefined && !inIntersection) out.additionalProperties = false;
  return out;
}
