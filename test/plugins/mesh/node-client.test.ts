/** Which of the control plane's refusals end a node's membership (found in review: the agent kept its mesh on any of them). */
import { afterAll, expect, test } from "bun:test";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import { nodeRequest, NodeRefusedError, refusesNode } from "../../../plugins/mesh/node-client.ts";
import { ApiError } from "../../../src/cli/api-client.ts";
import { testCitadel } from "../../helpers/citadel.ts";
import { FakeControlPlane } from "./fake-node.ts";

test("the poll's answers to a disabled, expired and removed node are refusals for good (401, or 403 standing_ended)", async () => {
  const c = await testCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const net = `/v1/mesh/orgs/${c.owner.organization}/networks/office`;
  expect((await c.send("POST", `/v1/mesh/orgs/${c.owner.organization}/networks`, owner, { json: { name: "office" } })).status).toBe(200);
  const key = (await c.send("POST", `${net}/keys`, owner, { json: { reusable: true } })).body.key as string;
  const enroll = async (name: string) => (await c.send("POST", "/v1/mesh/enroll", undefined, { json: { key, name, public_key: (await generateKeyPair()).publicKey } })).body.token as string;
  const codes: string[] = [];
  const poll = async (token: string) => {
    const res = await c.send("GET", "/v1/mesh/node/config", token);
    if (res.status >= 400) codes.push(`${res.status} ${res.body?.code}`);
    return refusesNode(res.status, res.body?.code);
  };
  const [a, b, d] = [await enroll("a"), await enroll("b"), await enroll("d")];
  expect(await poll(a)).toBe(false);
  await c.send("PATCH", `${net}/nodes/a`, owner, { json: { disabled: true } });
  await c.send("PATCH", `${net}/nodes/b`, owner, { json: { expires_at: new Date(c.clock.now() + 60_000).toISOString() } });
  c.clock.advance(61_000);
  await c.send("DELETE", `${net}/nodes/d`, owner);
  expect([await poll(a), await poll(b), await poll(d)]).toEqual([true, true, true]);
  expect(codes).toEqual(["403 standing_ended", "403 standing_ended", "401 unauthorized"]);
  expect(refusesNode(403, "forbidden")).toBe(false); // the shield's refusal of an address may pass
});

const plane = new FakeControlPlane();
afterAll(() => plane.stop());

test("a 401 without the node's token (enrolling with a pre-auth key) is not a refusal of the node", async () => {
  plane.refusal = { status: 401, body: { detail: "This pre-auth key is not valid.", code: "unauthorized" } };
  const enrolling = await nodeRequest({ server: plane.url, trust: null }, "POST", "/v1/mesh/enroll", {}).catch((e: Error) => e);
  expect(enrolling).toBeInstanceOf(ApiError);
  expect(enrolling).not.toBeInstanceOf(NodeRefusedError);
  const polling = await nodeRequest({ server: plane.url, trust: null, token: "citadel_node_x" }, "GET", "/v1/mesh/node/config").catch((e: Error) => e);
  expect(polling).toBeInstanceOf(NodeRefusedError);
});

test("a 401 that is not Citadel's problem document (a reverse proxy's basic auth or SSO page) is not a refusal of the node (found in review)", async () => {
  const polling = { server: plane.url, trust: null, token: "citadel_node_x" };
  for (const proxy of [
    { status: 401, body: "<html>401 Authorization Required</html>", contentType: "text/html", headers: { "www-authenticate": 'Basic realm="intranet"' } },
    { status: 401, body: JSON.stringify({ error: "unauthorized" }), contentType: "application/json" },
    { status: 401, body: JSON.stringify({ detail: "Log in first.", code: "unauthorized" }), contentType: "application/json" },
  ]) {
    plane.refusal = proxy;
    const error = await nodeRequest(polling, "GET", "/v1/mesh/node/config").catch((e: Error) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).not.toBeInstanceOf(NodeRefusedError);
  }
  expect(refusesNode(401, undefined)).toBe(false);
});

test("a redirect (to a proxy's login page) is not followed: its page's 401 is not the control plane's (found in review)", async () => {
  const proxy = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (request) =>
      new URL(request.url).pathname === "/login"
        ? Response.json({ detail: "Log in.", code: "unauthorized" }, { status: 401, headers: { "content-type": "application/problem+json" } })
        : new Response(null, { status: 302, headers: { location: "/login" } }),
  });
  try {
    const error = await nodeRequest({ server: `http://127.0.0.1:${proxy.port}`, trust: null, token: "citadel_node_x" }, "GET", "/v1/mesh/node/config").catch((e: Error) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).not.toBeInstanceOf(NodeRefusedError);
    expect((error as ApiError).status).toBe(302);
  } finally {
    proxy.stop(true);
  }
});

test("a control plane behind a reverse proxy's path prefix is asked under it (found in review: /v1/... at the origin's root)", async () => {
  const asked: string[] = [];
  const proxy = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => (asked.push(new URL(request.url).pathname), Response.json({ ok: true })) });
  try {
    for (const server of [`http://127.0.0.1:${proxy.port}/citadel`, `http://127.0.0.1:${proxy.port}/citadel/`]) {
      await nodeRequest({ server, trust: null, token: "citadel_node_x" }, "GET", "/v1/mesh/node/config");
    }
    expect(asked).toEqual(["/citadel/v1/mesh/node/config", "/citadel/v1/mesh/node/config"]);
  } finally {
    proxy.stop(true);
  }
});

test("a node pinned at join reaches the control plane with that certificate; another is refused, a passing failure (found in review)", async () => {
  const { generateSelfSignedCertificate } = await import("../../../src/http/self-signed.ts");
  const certificateFor127 = () => generateSelfSignedCertificate({ dnsNames: [], ipAddresses: ["127.0.0.1"], validDays: 30, now: new Date() });
  const [pinned, other] = await Promise.all([certificateFor127(), certificateFor127()]);
  const plane = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: { cert: pinned.certPem, key: pinned.keyPem }, fetch: () => Response.json({ ok: true }) });
  try {
    const server = `https://127.0.0.1:${plane.port}`;
    expect(await nodeRequest({ server, trust: pinned.certPem, token: "citadel_node_x" }, "GET", "/v1/mesh/node/config")).toEqual({ ok: true });
    const refused = await nodeRequest({ server, trust: other.certPem, token: "citadel_node_x" }, "GET", "/v1/mesh/node/config").catch((e: Error) => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused).not.toBeInstanceOf(NodeRefusedError);
    expect((refused as Error).message).toStartWith(`cannot reach the control plane at ${server} (`);
  } finally {
    plane.stop(true);
  }
});
