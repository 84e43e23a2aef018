/**
 * GET /v1/iam/orgs lists the caller's own organizations: iam:read or iam:self may ask it (the
 * CLI's organization when --org is not given), and with neither the token is refused.
 */
import { expect, test } from "bun:test";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

test("a self-service token lists its organizations as a reader's does; a token with neither scope is refused", async () => {
  const c = await newCitadel();
  const owner = await c.login(c.owner.email, c.owner.password);
  const token = async (scopes: string[]) => (await c.send("POST", "/v1/iam/me/tokens", owner, { json: { name: `t-${scopes.length}-${scopes[0]!.replace(":", "-")}`, scopes } })).body.token as string;
  for (const scopes of [["dns:read", "iam:self"], ["read"], ["iam:read"]]) {
    const listed = await c.send("GET", "/v1/iam/orgs", await token(scopes));
    expect([scopes, listed.status, listed.body.items?.map((o: { id: string }) => o.id)]).toEqual([scopes, 200, [c.owner.organization]]);
  }
  const refused = await c.send("GET", "/v1/iam/orgs", await token(["dns:read"]));
  expect([refused.status, refused.body.code]).toEqual([403, "insufficient_scope"]);
});
