/**
 * The CLI and values that name the version they are stored as: what it reads must have been
 * written as the version it asked for (or the server says is current), a write another write
 * came before is encrypted again for the next version and sent again (a few times), a rollback
 * is made on this machine, and values of the format before still read, said once.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ApiError } from "../../../src/cli/api-client.ts";
import { secretsCommands } from "../../../plugins/secrets/commands.ts";
import { decryptValue, e2eeValueHeader, e2eeValueVersion, encryptValue, newWorkspaceKey, wrapWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { runCommand, type SentRequest } from "../../helpers/command.ts";
import { encryptUnboundValue } from "../../helpers/e2ee.ts";
import { e2eeCliFixture, ME, WS } from "../../helpers/e2ee-cli.ts";

const fixture = e2eeCliFixture("e2ee-version-bound");
const { phraseFile, mine, workspaceKey, newHome, dir } = fixture;
const sealed = await fixture.sealed();
const SECRETS = `${WS}/environments/development/secrets`;

const where = (name: string) => ({ workspace: "ws_1", environment: "development", name });
const seal = (name: string, value: string, version: number) => encryptValue(workspaceKey, value, { ...where(name), version, keyVersion: 1 });
const versionTaken = () => new ApiError("A would be stored as version 3, but its value was encrypted as version 2 (another write came in between): read it again and retry. (version_conflict)", 409, "version_conflict");

/** A server where I hold the workspace key (v1); `secrets` answers the rest, or undefined for an unexpected request. */
function server(secrets: (r: SentRequest) => unknown) {
  return (r: SentRequest): unknown => {
    const route = `${r.method} ${r.path}`;
    if (route === `GET ${WS}/settings`) return { e2ee: true, environments: [{ name: "development" }] };
    if (route === `GET ${WS}/e2ee/my-key`) return { key_version: 1, wrapped: wrapWorkspaceKey(workspaceKey, mine.publicKey, { workspace: "ws_1", user: ME }) };
    if (route === "GET /v1/iam/me") return { id: ME };
    if (route === "GET /v1/secrets/me/keypair") return { public_key: mine.publicKey, sealed_private_key: sealed };
    const answer = secrets(r);
    if (answer === undefined) throw new Error(`unexpected request ${route}`);
    return answer;
  };
}

const run = (words: string, answer: (r: SentRequest) => unknown, args: string[]) =>
  runCommand(secretsCommands, words, { args, options: { workspace: "ws_1", "passphrase-file": phraseFile }, answer: server(answer), configHome: newHome() });
const posts = (requests: SentRequest[], path: string) => requests.filter((r) => r.method === "POST" && r.path === path).map((r) => r.body as Record<string, unknown>);

describe("reading: the value must have been written as the version it is served as", () => {
  test("version 1's value served as the current version 2 is refused, nothing printed", async () => {
    const got = await run("secrets get", (r) => (r.path === `${SECRETS}/A` ? { name: "A", version: 2, value_version: 2, key_version: 1, value: seal("A", "the leaked password", 1) } : undefined), ["A"]);
    expect([got.code, got.stdout, got.error?.message]).toEqual([1, "", "the server served development/A as version 2, but its value was written as version 1: refused (an older value passed off as a newer one, or a damaged one)"]);
  });

  test("an older version asked for (--version) is checked against the version asked for, not the server's word", async () => {
    const answer = server((r) => (r.path === `${SECRETS}/A?version=1` ? { name: "A", version: 2, value_version: 1, key_version: 1, value: seal("A", "current", 2) } : undefined));
    const got = await runCommand(secretsCommands, "secrets get", { args: ["A"], options: { workspace: "ws_1", "passphrase-file": phraseFile, version: "1" }, answer, configHome: newHome() });
    expect([got.code, got.stdout]).toEqual([1, ""]);
    expect(got.error?.message).toStartWith("the server served development/A as version 1, but its value was written as version 2");
  });

  test("values of the format before still read; the CLI says once that they are not bound to their version", async () => {
    const unbound = (name: string, value: string) => encryptUnboundValue(workspaceKey, value, where(name));
    const got = await run("secrets get", (r) => (r.path === `${SECRETS}/A` ? { name: "A", version: 4, value_version: 4, key_version: 1, value: unbound("A", "old") } : undefined), ["A"]);
    expect([got.code, got.stdout]).toEqual([0, "old\n"]);
    expect(got.stderr).toBe("note: development/A (and maybe others) was written before values named their version: the server could pass another older value of it off as this one unnoticed. citadel secrets e2ee rotate -w ws_1, run with this citadel or a later one, re-encrypts the live values bound and marks its new key so: from then on every member's citadel refuses a value of that format served as current.\n");
    const items = [{ name: "A", version: 1, key_version: 1, value: unbound("A", "a") }, { name: "B", version: 2, key_version: 1, value: unbound("B", "b") }, { name: "C", version: 3, key_version: 1, value: seal("C", "c", 3) }];
    const exported = await run("secrets export", (r) => (r.path === `${SECRETS}?values=true&purpose=export` ? { items } : undefined), []);
    expect([exported.code, exported.stderr.match(/^note: /gm)?.length]).toEqual([0, 1]);
  });
});

describe("a rollback to a value of the format before, under a key from before (no mark)", () => {
  test("goes ahead without --accept-unbound, saying what the value becomes (found in review: the note said something else)", async () => {
    const old = { name: "A", version: 3, value_version: 1, key_version: 1, value: encryptUnboundValue(workspaceKey, "old", where("A")) };
    const rolled = await run("secrets rollback", (r) => (r.path === `${SECRETS}/A?version=1` ? old : r.path === `${SECRETS}/A/rollback` ? { name: "A", version: 4 } : undefined), ["A", "1"]);
    expect([rolled.code, rolled.stderr]).toEqual([0, "note: development/A version 1 was written before values named their version: the server could have served any older value of A as version 1. Rolled back, it becomes A's current value, bound to its new version.\n"]);
    expect(decryptValue(workspaceKey, posts(rolled.requests, `${SECRETS}/A/rollback`)[0]!.value as string, { ...where("A"), version: 4, keyVersion: 1 })).toBe("old");
  });
});

describe("a key made by a citadel that binds values: values of the format before are refused where none can be genuine (found in review)", () => {
  const olderKey = newWorkspaceKey();
  /** Key v1 from before (no mark), v2 made by a binding citadel (marked), as after `e2ee rotate` with this one. */
  const rotated = (secrets: (r: SentRequest) => unknown) => (r: SentRequest): unknown => {
    const route = `${r.method} ${r.path}`;
    if (route === `GET ${WS}/settings`) return { e2ee: true, environments: [{ name: "development" }] };
    if (route === `GET ${WS}/e2ee/my-key`) return { key_version: 2, wrapped: wrapWorkspaceKey(workspaceKey, mine.publicKey, { workspace: "ws_1", user: ME }, { valuesBound: true }) };
    if (route === `GET ${WS}/e2ee/my-key?version=1`) return { key_version: 1, wrapped: wrapWorkspaceKey(olderKey, mine.publicKey, { workspace: "ws_1", user: ME }) };
    if (route === "GET /v1/iam/me") return { id: ME };
    if (route === "GET /v1/secrets/me/keypair") return { public_key: mine.publicKey, sealed_private_key: sealed };
    const answer = secrets(r);
    if (answer === undefined) throw new Error(`unexpected request ${route}`);
    return answer;
  };
  const oldValue = encryptUnboundValue(olderKey, "the leaked password", where("A"));
  const runAgainst = (words: string, secrets: (r: SentRequest) => unknown, args: string[], options: Record<string, string | boolean> = {}) =>
    runCommand(secretsCommands, words, { args, options: { workspace: "ws_1", "passphrase-file": phraseFile, ...options }, answer: rotated(secrets), configHome: newHome() });

  test("an old value of the format before, copied with its key version into the current row, is refused by get, export and e2ee rotate", async () => {
    const current = { name: "A", version: 3, value_version: 3, key_version: 1, value: oldValue };
    const got = await runAgainst("secrets get", (r) => (r.path === `${SECRETS}/A` ? current : undefined), ["A"]);
    expect([got.code, got.stdout]).toEqual([1, ""]);
    expect(got.error?.message).toStartWith("development/A is served as its current value in the format from before values named their version (c1.v.), but the workspace key (version 2) was made by a citadel that binds every value (e2ee enable or rotate)");
    const exported = await runAgainst("secrets export", (r) => (r.path === `${SECRETS}?values=true&purpose=export` ? { items: [current] } : undefined), []);
    expect([exported.code, exported.error?.message]).toEqual([1, got.error?.message]);
    const rotation = await runCommand(secretsCommands, "secrets e2ee rotate", {
      options: { workspace: "ws_1", "passphrase-file": phraseFile },
      answer: rotated((r) => (r.path === `${WS}/e2ee/keys` ? { items: [{ user: ME }] } : r.path === `${SECRETS}?values=true` ? { items: [current] } : undefined)),
      configHome: newHome(),
    });
    expect([rotation.code, rotation.error?.message]).toEqual([1, got.error?.message]);
    expect(rotation.requests.some((r) => r.method === "POST")).toBe(false); // never laundered into a bound value
  });

  test("under the marked key itself, a value of the format before is refused even as a version asked for", async () => {
    const underMarked = encryptUnboundValue(workspaceKey, "never written so", where("A"));
    const got = await runAgainst("secrets get", (r) => (r.path === `${SECRETS}/A?version=2` ? { name: "A", version: 3, value_version: 2, key_version: 2, value: underMarked } : undefined), ["A"], { version: "2" });
    expect([got.code, got.error?.message]).toEqual([1, "development/A is served in the format from before values named their version (c1.v.) under version 2 of the workspace key, which a citadel that binds every value made: no such value is genuine. Refused (an older value served in its place)"]);
  });

  test("history from before the rotation still reads, as the version asked for, and rolls back bound only with --accept-unbound (found in review: taken silently)", async () => {
    const old = { name: "A", version: 3, value_version: 1, key_version: 1, value: oldValue };
    const got = await runAgainst("secrets get", (r) => (r.path === `${SECRETS}/A?version=1` ? old : undefined), ["A"], { version: "1" });
    expect([got.code, got.stdout, got.stderr]).toEqual([0, "the leaked password\n", expect.stringContaining("The current key binds values: none of that format is taken as current.")]);
    const answer = (r: SentRequest) => (r.path === `${SECRETS}/A?version=1` ? old : r.path === `${SECRETS}/A/rollback` ? { name: "A", version: 4 } : undefined);
    // Any older value of A the server chose could be "version 1": it would become the current one, bound.
    const refused = await runAgainst("secrets rollback", answer, ["A", "1"]);
    expect([refused.code, refused.stdout, refused.error?.message]).toEqual([
      1,
      "",
      "development/A version 1 is served in the format from before values named their version (c1.v.), bound to no version: the server could have served any older value of A as version 1, and the rollback would store it as the current value, bound, which the workspace key (version 2, made by a citadel that binds every value) takes from nobody else. Nothing was changed. Check it (citadel secrets get A --version 1); to roll back to it all the same, add --accept-unbound",
    ]);
    expect(posts(refused.requests, `${SECRETS}/A/rollback`)).toEqual([]);
    const rolled = await runAgainst("secrets rollback", answer, ["A", "1"], { "accept-unbound": true });
    expect([rolled.code, rolled.stderr]).toEqual([0, "note: development/A version 1 was written before values named their version: the server could have served any older value of A as version 1. Rolled back, it becomes A's current value, bound to its new version.\n"]);
    const sent = posts(rolled.requests, `${SECRETS}/A/rollback`)[0]!.value as string;
    expect(decryptValue(workspaceKey, sent, { ...where("A"), version: 4, keyVersion: 2 })).toBe("the leaked password");
  });

  test("--accept-unbound does not take a value of the format before under the marked key itself: none is genuine", async () => {
    const underMarked = { name: "A", version: 3, value_version: 2, key_version: 2, value: encryptUnboundValue(workspaceKey, "never written so", where("A")) };
    const rolled = await runAgainst("secrets rollback", (r) => (r.path === `${SECRETS}/A?version=2` ? underMarked : undefined), ["A", "2"], { "accept-unbound": true });
    expect([rolled.code, rolled.error?.message]).toEqual([1, expect.stringContaining("under version 2 of the workspace key, which a citadel that binds every value made: no such value is genuine")]);
  });

  test("a current value of the format before is refused with the way back: check it, then roll back with --accept-unbound", async () => {
    const got = await runAgainst("secrets get", (r) => (r.path === `${SECRETS}/A` ? { name: "A", version: 3, value_version: 3, key_version: 1, value: oldValue } : undefined), ["A"]);
    expect(got.error?.message).toEndWith("check it (citadel secrets get A --version N) and roll back to it (citadel secrets rollback A N --accept-unbound), which stores it bound");
  });
});

describe("a rollback with a write-only token, on a machine that never used the workspace (found in review: told to run the very command it ran)", () => {
  test("the server's refusal to copy a ciphertext is answered with what the rollback needs", async () => {
    const refusal = "This workspace is end-to-end encrypted: the server cannot roll A back (each value names the version it is stored as). A client rolls it back: citadel secrets rollback A 1 … (conflict)";
    const rolled = await runCommand(secretsCommands, "secrets rollback", {
      args: ["A", "1"],
      options: { workspace: "ws_1" },
      configHome: newHome(),
      answer: (r) => {
        if (r.path === `${WS}/settings`) throw new ApiError("this token lacks secrets:read", 403, "insufficient_scope");
        if (r.path === `${SECRETS}/A/rollback`) throw new ApiError(refusal, 409, "conflict");
        throw new Error(`unexpected request ${r.method} ${r.path}`);
      },
    });
    expect([rolled.code, rolled.error?.message]).toEqual([
      1,
      "workspace ws_1 is end-to-end encrypted, the server says, and this token may not read its settings nor its values (it lacks secrets:read): a rollback there reads version 1, decrypts it on this machine and encrypts it again as the new version. Run it with a token that may read secrets too; nothing was changed",
    ]);
  });
});

describe("writing: another write made the version first", () => {
  test("a rollback decrypts the old version here and sends it re-encrypted as the next; after a 409 version_conflict, read again and encrypted for the version after", async () => {
    let current = 2;
    const refusals = [versionTaken()];
    const rolled = await run(
      "secrets rollback",
      (r) => {
        if (r.path === `${SECRETS}/A?version=1`) return { name: "A", version: current, value_version: 1, key_version: 1, value: seal("A", "good", 1) };
        if (r.path !== `${SECRETS}/A/rollback`) return undefined;
        const refusal = refusals.shift();
        if (refusal) {
          current = 3; // the write that came in between
          throw refusal;
        }
        return { name: "A", version: current + 1 };
      },
      ["A", "1"],
    );
    expect([rolled.code, rolled.error, rolled.stdout]).toEqual([0, null, "A: version 4 (the value of version 1)\n"]);
    const sent = posts(rolled.requests, `${SECRETS}/A/rollback`);
    expect(sent.map((b) => [b.version, e2eeValueVersion(b.value as string)])).toEqual([[1, 3], [1, 4]]);
    expect(decryptValue(workspaceKey, sent[1]!.value as string, { ...where("A"), version: 4, keyVersion: 1 })).toBe("good");
  });

  test("a rotation came in between: the import is sealed again with the key fetched again, never the one it replaced (found in review)", async () => {
    const rotatedKey = newWorkspaceKey();
    let keyVersion = 1;
    const played = server((r) => {
      if (r.path === `${SECRETS}?deleted=true`) return { items: [{ name: "A", version: 1 }] };
      if (r.path !== `${WS}/environments/development/import`) return undefined;
      if (!(r.body as { dry_run: boolean }).dry_run && keyVersion === 1) {
        keyVersion = 2; // the rotation that came in between
        throw new ApiError("A's value was encrypted with version 1 of the workspace key, but the workspace is at version 2 (the key was replaced meanwhile): fetch the key again and retry. (key_conflict)", 409, "key_conflict");
      }
      return { plan: [{ name: "A", action: "update" }], created: 0, updated: 1, unchanged: 0, skipped: 0 };
    });
    const answer = (r: SentRequest): unknown =>
      r.method === "GET" && r.path === `${WS}/e2ee/my-key` && keyVersion === 2 ? { key_version: 2, wrapped: wrapWorkspaceKey(rotatedKey, mine.publicKey, { workspace: "ws_1", user: ME }) } : played(r);
    const file = join(dir, "rotated.env");
    writeFileSync(file, "A=the new value\n");
    const imported = await runCommand(secretsCommands, "secrets import", { args: [file], options: { workspace: "ws_1", "passphrase-file": phraseFile }, answer, configHome: newHome() });
    expect([imported.code, imported.error]).toEqual([0, null]);
    const sent = posts(imported.requests, `${WS}/environments/development/import`).map((b) => (b.entries as Array<{ value: string }>)[0]!.value);
    expect(sent.map((v) => e2eeValueHeader(v))).toEqual([{ version: 2, keyVersion: 1 }, { version: 2, keyVersion: 1 }, { version: 2, keyVersion: 2 }, { version: 2, keyVersion: 2 }]);
    expect(decryptValue(rotatedKey, sent[3]!, { ...where("A"), version: 2, keyVersion: 2 })).toBe("the new value");
  });

  test("the version taken every time: given up after five tries, with the server's word", async () => {
    const rolled = await run("secrets rollback", (r) => {
      if (r.path === `${SECRETS}/A?version=1`) return { name: "A", version: 2, value_version: 1, key_version: 1, value: seal("A", "good", 1) };
      if (r.path === `${SECRETS}/A/rollback`) throw versionTaken();
      return undefined;
    }, ["A", "1"]);
    expect([rolled.code, rolled.error?.message]).toEqual([1, versionTaken().message]);
    expect(posts(rolled.requests, `${SECRETS}/A/rollback`)).toHaveLength(5);
  });

  test("an import encrypts each entry for the version it makes, and again for the next after a 409 version_conflict", async () => {
    const file = join(dir, "two.env");
    writeFileSync(file, "A=alpha\nB=beta\n");
    let aVersion = 2;
    let refused = false;
    const imported = await run("secrets import", (r) => {
      if (r.path === `${SECRETS}?deleted=true`) return { items: [{ name: "A", version: aVersion }] };
      if (r.path !== `${WS}/environments/development/import`) return undefined;
      const body = r.body as { dry_run: boolean };
      if (!body.dry_run && !refused) {
        refused = true;
        aVersion = 3;
        throw versionTaken();
      }
      return { plan: [{ name: "A", action: "update" }, { name: "B", action: "create" }], created: 1, updated: 1, unchanged: 0, skipped: 0 };
    }, [file]);
    expect([imported.code, imported.error]).toEqual([0, null]);
    const sent = posts(imported.requests, `${WS}/environments/development/import`).map((b) => [b.dry_run, ...(b.entries as Array<{ name: string; value: string }>).map((e) => `${e.name} v${e2eeValueVersion(e.value)}`)]);
    expect(sent).toEqual([[true, "A v3", "B v1"], [false, "A v3", "B v1"], [true, "A v4", "B v1"], [false, "A v4", "B v1"]]);
  });
});
