import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { E2eePinError, E2eePins, normalizeFingerprint } from "../../../plugins/secrets/e2ee-pins.ts";
import { generateUserKeyPair, publicKeyFingerprint } from "../../../plugins/secrets/e2ee.ts";

const homes: string[] = [];
afterEach(() => {
  while (homes.length) rmSync(homes.pop()!, { recursive: true, force: true });
});

function pins() {
  const home = mkdtempSync(join(tmpdir(), "citadel-pins-"));
  homes.push(home);
  return { pins: E2eePins.forCli(home), file: join(home, "citadel", "e2ee-pins.json") };
}

const SERVER = "https://citadel.example:8443";
const key = (fill: number) => new Uint8Array(32).fill(fill);

describe("E2eePins", () => {
  test("a workspace seen encrypted stays encrypted: the server's later 'not encrypted' is refused", () => {
    const { pins: p } = pins();
    expect(() => p.checkNotEncrypted(SERVER, "ws_a")).not.toThrow(); // never seen: the server's word
    p.pin(SERVER, "ws_a");
    expect(() => p.checkNotEncrypted(SERVER, "ws_a")).toThrow(E2eePinError);
    expect(() => p.checkNotEncrypted(SERVER, "ws_a")).toThrow("citadel secrets e2ee forget -w ws_a");
    expect(() => p.checkNotEncrypted(SERVER, "ws_b")).not.toThrow();
    expect(() => p.checkNotEncrypted("https://other.example", "ws_a")).not.toThrow(); // per server
    expect(p.forget(SERVER, "ws_a")).toBe(true);
    expect(p.forget(SERVER, "ws_a")).toBe(false);
    expect(() => p.checkNotEncrypted(SERVER, "ws_a")).not.toThrow();
  });

  test("a key version is trusted on first use; another key for that version is refused, a new version is not", () => {
    const { pins: p, file } = pins();
    p.pinKey(SERVER, "ws_a", 1, key(1));
    p.pinKey(SERVER, "ws_a", 1, key(1)); // the same again
    expect(() => p.pinKey(SERVER, "ws_a", 1, key(9))).toThrow("a different key for version 1 of workspace ws_a");
    p.pinKey(SERVER, "ws_a", 2, key(2));
    expect(() => p.pinKey(SERVER, "ws_a", 2, key(1))).toThrow(E2eePinError);
    expect(() => p.pinKey(SERVER, "ws_a", 0, key(1))).toThrow("which is not one");
    expect(() => p.pinKey(SERVER, "ws_a", "01" as unknown as number, key(1))).toThrow("which is not one");
    // Fingerprints only, readable by the owner only.
    const text = readFileSync(file, "utf8");
    expect(text).not.toContain(Buffer.from(key(1)).toString("hex"));
    expect(text).toContain("72cd6e8422c407fb6d098690f1130b7ded7ec2f7f5e1d30bd9d521f015363793"); // SHA-256 of 32 × 0x01
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  test("the current key version never goes back (found in review)", () => {
    const { pins: p } = pins();
    p.checkCurrent(SERVER, "ws_a", 1);
    p.checkCurrent(SERVER, "ws_a", 2); // rotated
    p.checkCurrent(SERVER, "ws_a", 2);
    expect(() => p.checkCurrent(SERVER, "ws_a", 1)).toThrow("calls version 1 of workspace ws_a's key current, but this machine has seen version 2");
    // The same old key under a new number (a wrapped key does not name its version).
    p.pinKey(SERVER, "ws_a", 1, key(1));
    expect(() => p.pinKey(SERVER, "ws_a", 3, key(1))).toThrow("handed version 1 of workspace ws_a's key as version 3");
  });

  test("one server however its URL is written (found in review)", () => {
    const { pins: p } = pins();
    p.pin("https://citadel.example:8443", "ws_a");
    for (const written of ["https://citadel.example:8443/", "https://Citadel.EXAMPLE:8443", "https://citadel.example:8443/v1"]) {
      expect(() => p.checkNotEncrypted(written, "ws_a")).toThrow(E2eePinError);
    }
  });

  test("CLI runs at the same time lose none of each other's pins (found in review)", async () => {
    const { file } = pins();
    const home = file.slice(0, -"/citadel/e2ee-pins.json".length);
    const module = new URL("../../../plugins/secrets/e2ee-pins.ts", import.meta.url).pathname;
    const runs = [0, 1, 2].map((run) =>
      Bun.spawn(["bun", "-e", `const { E2eePins } = await import(${JSON.stringify(module)}); const p = E2eePins.forCli(${JSON.stringify(home)}); for (let i = 0; i < 40; i++) p.pin("${SERVER}", "ws_${run}_" + i);`], { stderr: "pipe" }),
    );
    for (const run of runs) expect(await run.exited).toBe(0);
    const saved = JSON.parse(readFileSync(file, "utf8")).servers[SERVER];
    expect(Object.keys(saved)).toHaveLength(120);
  });

  test("a damaged pin file is an error, not an empty file that forgets every pin", () => {
    const { pins: p, file } = pins();
    p.pin(SERVER, "ws_a");
    writeFileSync(file, "{ not json");
    expect(() => p.checkNotEncrypted(SERVER, "ws_a")).toThrow("is not a valid pin file");
    expect(() => p.pin(SERVER, "ws_b")).toThrow("is not a valid pin file");
  });

  test("a member's public key: unchecked until sent to in this workspace; then another key for them is refused until forgotten", () => {
    const { pins: p, file } = pins();
    const bob = generateUserKeyPair().publicKey;
    const planted = generateUserKeyPair().publicKey;
    expect(p.memberKey(SERVER, "ws_a", "usr_bob", bob)).toBe("unchecked");
    expect(existsSync(file)).toBe(false); // asking remembers nothing
    p.pinMembers(SERVER, "ws_a", [{ user: "usr_bob", publicKey: bob }]);
    p.pinMembers(SERVER, "ws_a", [{ user: "usr_bob", publicKey: bob }]); // the same again
    expect(p.memberKey(SERVER, "ws_a", "usr_bob", bob)).toBe("checked");
    expect(() => p.memberKey(SERVER, "ws_a", "usr_bob", planted)).toThrow(E2eePinError);
    expect(() => p.memberKey(SERVER, "ws_a", "usr_bob", planted)).toThrow(`fingerprint ${publicKeyFingerprint(planted)}) than the one this machine wrapped keys to before (${publicKeyFingerprint(bob)})`);
    expect(() => p.memberKey(SERVER, "ws_a", "usr_bob", planted)).toThrow("citadel secrets e2ee forget --user usr_bob");
    expect(() => p.pinMembers(SERVER, "ws_a", [{ user: "usr_carol", publicKey: planted }, { user: "usr_bob", publicKey: planted }])).toThrow(E2eePinError);
    expect(p.memberKey(SERVER, "ws_a", "usr_carol", planted)).toBe("unchecked"); // a refused batch pins none of it
    expect(p.memberKey(SERVER, "ws_b", "usr_bob", bob)).toBe("unchecked"); // per workspace: sent there, not here
    expect(p.memberKey("https://other.example", "ws_a", "usr_bob", bob)).toBe("unchecked"); // per server
    expect(JSON.parse(readFileSync(file, "utf8")).servers[SERVER].ws_a.members).toEqual({ usr_bob: bob });
    p.pinMembers(SERVER, "ws_b", [{ user: "usr_bob", publicKey: bob }]);
    expect(p.forgetMember(SERVER, "usr_bob")).toBe(true); // from every workspace
    expect(p.forgetMember(SERVER, "usr_bob")).toBe(false);
    expect(p.memberKey(SERVER, "ws_a", "usr_bob", planted)).toBe("unchecked");
    expect(p.memberKey(SERVER, "ws_b", "usr_bob", planted)).toBe("unchecked");
  });

  test("a member removed by a rotation is a stranger again: the server cannot list them back in unchecked", () => {
    const { pins: p } = pins();
    const bob = generateUserKeyPair().publicKey;
    const carol = generateUserKeyPair().publicKey;
    p.pinMembers(SERVER, "ws_a", [{ user: "usr_bob", publicKey: bob }, { user: "usr_carol", publicKey: carol }]);
    p.pinMembers(SERVER, "ws_a", [{ user: "usr_carol", publicKey: carol }], ["usr_bob"]);
    expect(p.memberKey(SERVER, "ws_a", "usr_bob", bob)).toBe("unchecked");
    expect(p.memberKey(SERVER, "ws_a", "usr_carol", carol)).toBe("checked");
  });

  test("ids that are not Citadel ids (such as __proto__) are refused, never looked up on an object's prototype", () => {
    const { pins: p } = pins();
    const key = generateUserKeyPair().publicKey;
    for (const id of ["__proto__", "constructor", "toString", "usr bob", ""]) {
      expect(() => p.memberKey(SERVER, "ws_a", id, key)).toThrow("is not a workspace or user id");
      expect(() => p.memberKey(SERVER, id, "usr_bob", key)).toThrow("is not a workspace or user id");
      expect(() => p.pin(SERVER, id)).toThrow("is not a workspace or user id");
    }
    expect(({} as Record<string, unknown>).keys).toBeUndefined(); // Object.prototype untouched
  });

  test("a pin file whose member keys are not keys is refused as a whole, not read as a bad key", () => {
    const { pins: p, file } = pins();
    p.pinMembers(SERVER, "ws_a", [{ user: "usr_bob", publicKey: generateUserKeyPair().publicKey }]);
    const damaged = JSON.parse(readFileSync(file, "utf8"));
    damaged.servers[SERVER].ws_a.members.usr_bob = 42;
    writeFileSync(file, JSON.stringify(damaged));
    expect(() => p.memberKey(SERVER, "ws_a", "usr_bob", generateUserKeyPair().publicKey)).toThrow("is not a valid pin file");
  });

  test("a fingerprint as typed: spaces, no prefix, padding", () => {
    const fingerprint = publicKeyFingerprint(generateUserKeyPair().publicKey);
    const body = fingerprint.slice("SHA256:".length);
    for (const typed of [fingerprint, ` ${fingerprint}\n`, body, `${body}=`, `sha256:${body}`]) expect(normalizeFingerprint(typed)).toBe(fingerprint);
  });

  test("a fingerprint is SHA256: and the unpadded base64 of the raw public key's SHA-256", () => {
    const { publicKey } = generateUserKeyPair();
    const raw = Buffer.from(publicKey, "base64url");
    expect(raw).toHaveLength(32);
    expect(publicKeyFingerprint(publicKey)).toBe(`SHA256:${createHash("sha256").update(raw).digest("base64").replace(/=+$/, "")}`);
    expect(publicKeyFingerprint(publicKey)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(() => publicKeyFingerprint("not a key")).toThrow("base64url of 32 bytes");
  });
});
