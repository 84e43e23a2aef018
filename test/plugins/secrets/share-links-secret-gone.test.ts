/**
 * Share links made before a purge or delete revoked the links carrying its secret (ac60c59):
 * one whose secret was purged or deleted then stays open after the upgrade, handing out the
 * value (found in review). The secrets plugin's start revokes them, each with its own event.
 */
import { describe, expect, test } from "bun:test";
import { secretsPlugin } from "../../../plugins/secrets/index.ts";
import { createShareSecret, shareViewProof } from "../../../plugins/secrets/share-crypto.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();

describe("at start, the open links whose secret is gone (found in review)", () => {
  test("revoked (410), one secrets.share.revoke each by the system; links to a live secret and one-off links stay open; once", async () => {
    const c = await newCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const org = c.owner.organization;
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
    for (const name of ["PURGED", "DELETED", "KEPT"]) {
      expect((await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/production/secrets/${name}`, owner, { json: { value: "hunter2" } })).status).toBe(200);
    }
    const link = async (name?: string) => {
      const sealed = await createShareSecret("hunter2");
      const proof = shareViewProof(sealed.linkKey);
      const source = name ? { source: { workspace: ws, environment: "production", name } } : {};
      const made = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: { ciphertext: sealed.ciphertext, view_proof: proof, passphrase: false, max_views: 5, ...source } });
      expect(made.status).toBe(200);
      return { id: made.body.id as string, opens: async () => (await c.send("POST", `/v1/secrets/shares/${made.body.id}/peek`, undefined, { json: { proof } })).status };
    };
    const [purged, purgedToo, deleted, kept, oneOff] = [await link("PURGED"), await link("PURGED"), await link("DELETED"), await link("KEPT"), await link()];
    // As the purge and the delete before ac60c59 left them: the secret gone, its links untouched.
    const db = c.kernel.store.db;
    db.run("DELETE FROM secrets WHERE name = 'PURGED'");
    db.query("UPDATE secrets SET deleted_at = ? WHERE name = 'DELETED'").run(c.clock.now());
    expect(await purged.opens()).toBe(200);

    const start = async () => {
      const stop = await secretsPlugin.start!({ ...c.kernel, config: c.config, settings: c.config.secrets, log: c.log.logger } as never);
      await stop();
    };
    await start();

    expect([await purged.opens(), await purgedToo.opens(), await deleted.opens()]).toEqual([410, 410, 410]);
    expect([await kept.opens(), await oneOff.opens()]).toEqual([200, 200]);
    const revocations = () => db.query("SELECT resource_id, actor_kind, reason, organization, workspace FROM audit_events WHERE action = 'secrets.share.revoke' ORDER BY resource_id").all();
    const gone = { actor_kind: "system", reason: "the secret it carries is gone", organization: org, workspace: ws };
    expect(revocations()).toEqual([purged.id, purgedToo.id, deleted.id].sort().map((id) => ({ resource_id: id, ...gone })));
    expect(db.query("SELECT count(*) AS n FROM secrets_shares WHERE revoked_at IS NOT NULL AND length(ciphertext) > 0").get()).toEqual({ n: 0 });
    expect(c.log.lines.some((l) => l.msg === "secrets: share links whose secret is gone were revoked" && l.revoked === 3)).toBe(true);

    await start(); // found nothing more: no event again
    expect(revocations()).toHaveLength(3);
  });

  test("a link whose secret was purged, then set again under its name, is revoked; a link to the value set again stays open (found in review)", async () => {
    const c = await newCitadel();
    const owner = await c.login(c.owner.email, c.owner.password);
    const org = c.owner.organization;
    const ws = (await c.send("POST", `/v1/iam/orgs/${org}/workspaces`, owner, { json: { name: "app" } })).body.id as string;
    const setDbPassword = async (value: string) =>
      expect((await c.send("PUT", `/v1/secrets/workspaces/${ws}/environments/production/secrets/DB_PASSWORD`, owner, { json: { value } })).status).toBe(200);
    const link = async (value: string) => {
      const sealed = await createShareSecret(value);
      const proof = shareViewProof(sealed.linkKey);
      const source = { workspace: ws, environment: "production", name: "DB_PASSWORD" };
      const made = await c.send("POST", `/v1/secrets/orgs/${org}/shares`, owner, { json: { ciphertext: sealed.ciphertext, view_proof: proof, passphrase: false, max_views: 5, source } });
      expect(made.status).toBe(200);
      return { id: made.body.id as string, opens: async () => (await c.send("POST", `/v1/secrets/shares/${made.body.id}/peek`, undefined, { json: { proof } })).status };
    };
    await setDbPassword("the purged one");
    const toPurged = await link("the purged one");
    // As the purge before ac60c59 left it: the secret gone, its link untouched; then set again.
    const db = c.kernel.store.db;
    db.run("DELETE FROM secrets WHERE name = 'DB_PASSWORD'");
    c.clock.advance(1000);
    await setDbPassword("the new one");
    c.clock.advance(1000);
    const toNew = await link("the new one");

    const stop = await secretsPlugin.start!({ ...c.kernel, config: c.config, settings: c.config.secrets, log: c.log.logger } as never);
    await stop();

    expect([await toPurged.opens(), await toNew.opens()]).toEqual([410, 200]);
    const revoked = db.query("SELECT resource_id, actor_kind, reason FROM audit_events WHERE action = 'secrets.share.revoke'").all();
    expect(revoked).toEqual([{ resource_id: toPurged.id, actor_kind: "system", reason: "the secret it carries is gone" }]);
  });
});

test("the secrets.share.revoke action says every way a link is revoked: by hand, with its secret, its workspace, at start, burned (found in review)", () => {
  const description = secretsPlugin.actions.find((a) => a.type === "secrets.share.revoke")!.description;
  for (const way of ["by a person", "purged or deleted", "workspace's deletion", "at start", "wrong passphrases"]) expect(description).toContain(way);
});
