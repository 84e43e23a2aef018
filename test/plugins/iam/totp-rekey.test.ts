/**
 * A TOTP enrolment confirmed while a rekey replaces the keyring (found in review: confirmTotp
 * took the keyring before awaiting its write, and the wiped one, whose root key's wraps the
 * promotion had deleted, answered "KEK v1 is not wrapped", a 500).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { iamServiceOf } from "../../../plugins/iam/index.ts";
import type { AuditRequestContext } from "../../../src/audit/event.ts";
import type { Principal } from "../../../src/auth/principal.ts";
import { base32Decode, totp } from "../../../src/auth/totp.ts";
import { rekey } from "../../../src/crypto/key-operations.ts";
import { stoppedAfterEach } from "../../helpers/citadel.ts";

const newCitadel = stoppedAfterEach();
const dir = mkdtempSync(join(tmpdir(), "citadel-totp-rekey-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a rekey between the code's check and the write: the enrolment is written with the new keyring", async () => {
  const c = await newCitadel({ keyFile: join(dir, "root.key") });
  const login = (await c.send("POST", "/v1/iam/login", undefined, { json: { email: c.owner.email, password: c.owner.password } })).body as { token: string; token_id: string };
  const session = login.token;
  const secret = base32Decode((await c.send("POST", "/v1/iam/me/mfa/totp", session)).body.secret);
  const me = (await c.send("GET", "/v1/iam/me", session)).body as { id: string };
  const k = c.kernel;
  // The next write waits for a key file rekey first: it replaces the keyring confirmTotp decrypted with.
  const write = k.store.write;
  k.store.write = async (fn) => {
    k.store.write = write;
    await rekey(k.store, k.seal, k.audit, k.keySource, { kind: "operator" }, k.clock.now);
    return write(fn);
  };
  const principal = { kind: "session", tokenId: login.token_id, userId: me.id } as Principal;
  const confirmation = { code: totp(secret, c.clock.now()), current_password: c.owner.password };
  const { recovery_codes } = await iamServiceOf(k.store)!.confirmTotp({ principal, request: {} as AuditRequestContext }, confirmation);
  expect(recovery_codes).toHaveLength(10);
  expect(k.store.db.query("SELECT count(*) AS n FROM root_keys").get()).toEqual({ n: 1 }); // the rekey was promoted
  expect((await c.send("GET", "/v1/iam/me", session)).body).toMatchObject({ mfa: true, recovery_codes_left: 10 });
});
