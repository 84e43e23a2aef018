/**
 * The OpenAPI 3.1 document. @elysiajs/openapi reads the routes and their TypeBox schemas;
 * we add what it cannot know: every operation can fail with a problem document, and bodies
 * are JSON only (the edge answers 415 to anything else).
 */
import { toOpenAPISchema } from "@elysiajs/openapi/openapi";
import type { AnyElysia } from "elysia";
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
  for (const item of Object.values(paths)) {
    for (const method of HTTP_METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const json = operation.requestBody?.content?.["application/json"];
      if (operation.requestBody && json) operation.requestBody.content = { "application/json": json };
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
      responses: {
        Problem: {
          description: "The request failed; see `code` and `detail`.",
          content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: "#/components/schemas/Problem" } } },
        },
      },
    },
  };
}
