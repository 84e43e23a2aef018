/**
 * A member given twice in one JSON object, or a field twice in an OAuth form: JSON.parse and
 * URLSearchParams keep the last in silence, so `{"name":"a","name":"b"}` made organization "b".
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { checkedJsonRequest } from "../../../src/http/body.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const citadel = stoppedAfterEach();
const json = { "content-type": "application/json" };

/** What the edge makes of a body sent to `path`: "ok", or the refusal's status, code and detail. */
const checked = (body: string, contentType = "application/json", path = "/v1/x") =>
  checkedJsonRequest(new Request(`http://localhost${path}`, { method: "POST", headers: { "content-type": contentType }, body }), 1 << 20).then(
    () => "ok",
    (error) => `${error.status} ${error.code}: ${error.detail}`,
  );

describe("a JSON member given more than once", () => {
  test("is refused, 400 naming it, and nothing is done (found in review)", async () => {
    const c = await citadel();
    const token = await c.login(c.owner.email, c.owner.password);
    const res = await c.send("POST", "/v1/iam/orgs", token, { body: '{"name":"first","name":"second"}', headers: json });
    expect([res.status, res.body.code, res.body.detail]).toEqual([400, "malformed_json", 'The request body gives the member "name" more than once.']);
    const orgs = await c.send("GET", "/v1/iam/orgs", token);
    expect(orgs.status).toBe(200);
    expect(JSON.stringify(orgs.body)).not.toContain("second");
  });

  test("in a nested object, in an array, or written with an escape", async () => {
    expect(await checked('{"a":{"x":1,"y":{"z":1},"x":2}}')).toBe('400 malformed_json: The request body gives the member "a.x" more than once.');
    expect(await checked('{"a":[1,{"b":1},{"c":1 , "c" :2}]}')).toBe('400 malformed_json: The request body gives the member "a[2].c" more than once.');
    expect(await checked('{"name":1,"\\u006eame":2}')).toBe('400 malformed_json: The request body gives the member "name" more than once.');
    expect(await checked('{"q\\"":1,"q\\"":2}')).toBe('400 malformed_json: The request body gives the member "q\\"" more than once.');
  });

  test("the same name in different objects, or colons in strings, are not repeats", async () => {
    expect(await checked('{"a":{"name":1},"b":{"name":1},"c":[{"name":1},{"name":2}]}')).toBe("ok");
    expect(await checked('{"url":"https://h:443/","at":"12:00:00","k:\\"":"\\":\\""}')).toBe("ok");
  });

  test("any JSON object without repeats is taken", async () => {
    await fc.assert(fc.asyncProperty(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 4 })), async (body) => expect(await checked(JSON.stringify(body))).toBe("ok")));
  });
});

describe("an OAuth form field given more than once", () => {
  test("is refused, 400 invalid_request in the OAuth error form (found in review)", async () => {
    const c = await citadel();
    const res = await c.send("POST", "/oauth/device/code", undefined, {
      body: "scope=bogus&scope=secrets:read&client_name=a",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect([res.status, res.body.error, res.body.error_description]).toEqual([400, "invalid_request", "scope is given more than once."]);
  });

  test("each field once is taken", async () => {
    expect(await checked("scope=secrets:read&client_name=a", "application/x-www-form-urlencoded", "/oauth/device/code")).toBe("ok");
  });

  test("a field sent without a value is omitted (RFC 6749 3.1), so it is no repeat (found in review)", async () => {
    expect(await checked("foo&foo&scope=&scope=secrets:read&client_name=a", "application/x-www-form-urlencoded", "/oauth/device/code")).toBe("ok");
  });
});
