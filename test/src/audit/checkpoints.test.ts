import { expect, test } from "bun:test";
import { createPrivateKey, sign } from "node:crypto";
import { checkpointMessage, createCheckpoint, listCheckpoints, parseCheckpointFile, verifyCheckpointSignature } from "../../../src/audit/checkpoints.ts";
import { testKernel } from "../../helpers/http.ts";

// RFC 8032 section 7.1, TEST 1 and TEST 2.
const RFC8032 = [
  {
    secret: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    public: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    message: "",
    signature: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  },
  {
    secret: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    public: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    message: "72",
    signature: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
  },
];

test("Ed25519 known answers (RFC 8032): our verifier accepts them, and signing reproduces them", () => {
  const hex = (s: string) => Buffer.from(s, "hex");
  for (const v of RFC8032) {
    expect(verifyCheckpointSignature(hex(v.public), hex(v.message), hex(v.signature))).toBe(true);
    const bad = hex(v.signature);
    bad[0]! ^= 1;
    expect(verifyCheckpointSignature(hex(v.public), hex(v.message), bad)).toBe(false);
    const key = createPrivateKey({ key: { kty: "OKP", crv: "Ed25519", d: hex(v.secret).toString("base64url"), x: hex(v.public).toString("base64url") }, format: "jwk" });
    expect(sign(null, hex(v.message), key).toString("hex")).toBe(v.signature);
  }
});

test("a checkpoint signs the head once; its export verifies and parses", async () => {
  const k = testKernel();
  expect(await k.store.write((tx) => createCheckpoint(tx, k.seal.keyring(), 1))).toBeNull(); // empty log
  await k.store.write((tx) => k.audit.record(tx, { action: "audit.note.create", actor: { kind: "operator" }, outcome: "success" }));
  const first = await k.store.write((tx) => createCheckpoint(tx, k.seal.keyring(), 2));
  expect(first?.seq).toBe(1);
  expect(await k.store.write((tx) => createCheckpoint(tx, k.seal.keyring(), 3))).toBeNull(); // nothing new
  const [exported] = listCheckpoints(k.store.db);
  const parsed = parseCheckpointFile(JSON.stringify(exported));
  expect(verifyCheckpointSignature(Buffer.from(parsed.public_key, "base64"), checkpointMessage(parsed.seq, Buffer.from(parsed.hash, "hex"), parsed.time), Buffer.from(parsed.signature, "base64"))).toBe(true);
  expect(() => parseCheckpointFile("{}")).toThrow(/not a Citadel audit checkpoint/);
  expect(() => parseCheckpointFile("nope")).toThrow(/not JSON/);
  // The signing key's private half is stored encrypted, never in clear.
  const row = k.store.db.query<{ private_key: Uint8Array }, []>("SELECT private_key FROM audit_signing_keys").get()!;
  expect(row.private_key[0]).toBe(1); // a keyring envelope, format 1
});
