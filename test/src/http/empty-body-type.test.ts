/**
 * A POST without a body, labelled with a type other than JSON: `curl -X POST -d ''` sends
 * `Content-Type: application/x-www-form-urlencoded` and `Content-Length: 0`. There is no body
 * of the wrong type to refuse; it was 415 where the same request without `-d ''` was 200.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { access } from "../../../src/http/access.ts";
import { parseRawResponse, rawHttp, testEdge } from "../../helpers/http.ts";

const routes = new Elysia().post("/rotate", () => ({ rotated: true }), { detail: access({ public: true }) });
const server = testEdge({ mounts: [{ name: "p", routes }] }).listen();
afterAll(() => server.stop());

const post = async (headers: string, body = "") =>
  parseRawResponse(await rawHttp(server.port, `POST /v1/p/rotate HTTP/1.1\r\nHost: citadel.test\r\nConnection: close\r\n${headers}\r\n${body}`));

describe("a body labelled with a type other than JSON", () => {
  test("empty by its Content-Length: taken as no body (found in review)", async () => {
    const res = await post("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n");
    expect([res.status, res.body]).toEqual([200, '{"rotated":true}']);
  });

  test("empty once read (chunked): taken as no body", async () => {
    const res = await post("Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n");
    expect([res.status, res.body]).toEqual([200, '{"rotated":true}']);
  });

  test("with something in it, declared or chunked: 415", async () => {
    const declared = await post("Content-Type: text/plain\r\nContent-Length: 2\r\n", "{}");
    const chunked = await post("Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n", "2\r\n{}\r\n0\r\n\r\n");
    expect([declared.status, JSON.parse(declared.body).code]).toEqual([415, "unsupported_media_type"]);
    expect([chunked.status, JSON.parse(chunked.body).code]).toEqual([415, "unsupported_media_type"]);
  });
});
