/** What the seal and key commands check before they ask the server (the server's side: index.test.ts). */
import { describe, expect, test } from "bun:test";
import { sysCommands } from "../../../plugins/sys/commands.ts";
import { runCommand, type SentRequest } from "../../helpers/command.ts";

const status = (method: string) => ({ sealed: false, initialized: true, method, threshold: method === "shamir" ? 3 : null, progress: 0, key_id: "0123abcd" });
const rekeyed = { key_id: "89abcdef", active: false, shares: ["s1", "s2"] };
/** A server of the given seal method: its status, and a rekey's answer. */
const server = (method: string) => (r: SentRequest) => (r.path === "/v1/sys/seal-status" ? status(method) : rekeyed);
const rekeys = (requests: SentRequest[]) => requests.filter((r) => r.path === "/v1/sys/keys/rekey");

describe("keys rekey --shares, --threshold (found in review)", () => {
  test("a value that is not a whole number is refused naming the flag, not sent as null", async () => {
    for (const [name, value] of [["shares", "abc"], ["threshold", "2.5"], ["shares", "1"], ["threshold", "-3"]]) {
      const run = await runCommand(sysCommands, "keys rekey", { options: { [name!]: value, yes: true }, answer: server("shamir") });
      expect(run.code).not.toBe(0);
      expect(run.error?.message).toStartWith(`--${name}: a whole number from 2 to 255`);
      expect(run.requests).toEqual([]);
    }
    const tooMany = await runCommand(sysCommands, "keys rekey", { options: { shares: "256", yes: true }, answer: server("shamir") });
    expect([tooMany.code, tooMany.error?.message]).toEqual([2, '--shares: a whole number from 2 to 255, not "256"']);
  });

  test("on a Citadel not sealed with Shamir shares they are refused, as init refuses them, before the rekey", async () => {
    for (const method of ["key_file", "systemd_credential"]) {
      const run = await runCommand(sysCommands, "keys rekey", { options: { shares: "5", threshold: "3", yes: true }, answer: server(method) });
      expect(run.code).toBe(2);
      expect(run.error?.message).toBe(`--shares and --threshold are for seal.method = "shamir"; this Citadel's is ${method}`);
      expect(rekeys(run.requests)).toEqual([]);
    }
  });

  test("with Shamir they are sent as numbers; without them nothing is asked first", async () => {
    const shamir = await runCommand(sysCommands, "keys rekey", { options: { shares: "5", threshold: "3", yes: true }, answer: server("shamir") });
    expect(shamir.code).toBe(0);
    expect(rekeys(shamir.requests)).toEqual([{ method: "POST", path: "/v1/sys/keys/rekey", body: { shares: 5, threshold: 3 }, confirmed: true }]);
    const plain = await runCommand(sysCommands, "keys rekey", { options: { yes: true }, answer: server("key_file") });
    expect(plain.requests).toEqual([{ method: "POST", path: "/v1/sys/keys/rekey", body: {}, confirmed: true }]);
  });
});

describe("keys rekey --seal (a seal migration) and --cancel", () => {
  const migrated = (method: string) => (r: SentRequest) =>
    r.path === "/v1/sys/seal-status" ? status("key_file") : { key_id: "89abcdef", method, active: false, ...(method === "shamir" ? { shares: ["s1", "s2", "s3"] } : method === "systemd_credential" ? { root_key: "ab".repeat(32) } : {}) };

  test("sends the new method, and says what to do next and what keeps unsealing meanwhile", async () => {
    const run = await runCommand(sysCommands, "keys rekey", { options: { seal: "shamir", shares: "3", threshold: "2", yes: true }, answer: migrated("shamir") });
    expect(run.code).toBe(0);
    expect(rekeys(run.requests)).toEqual([{ method: "POST", path: "/v1/sys/keys/rekey", body: { shares: 3, threshold: 2, method: "shamir" }, confirmed: true }]);
    expect(run.stdout).toContain("  s3\n");
    expect(run.stdout).toContain('set method = "shamir" under [seal] in the config file');
    expect(run.stdout).toContain("Until then the current key keeps unsealing (seal method key_file); `citadel keys rekey --cancel` drops the new one.");
    const credential = await runCommand(sysCommands, "keys rekey", { options: { seal: "credential", yes: true }, answer: migrated("systemd_credential") });
    expect(credential.stdout).toContain(`  ${"ab".repeat(32)}\n`);
    expect(credential.stdout).toContain('To move to a systemd credential: store it with systemd-creds encrypt');
    const keyFile = await runCommand(sysCommands, "keys rekey", { options: { seal: "key-file", yes: true }, answer: migrated("key_file") });
    expect(keyFile.stdout).toContain("written to the key file seal.key_file names");
  });

  test("a method it does not know, or shares for a method without them, is a usage error before the rekey", async () => {
    const unknown = await runCommand(sysCommands, "keys rekey", { options: { seal: "tpm", yes: true }, answer: migrated("shamir") });
    expect([unknown.code, unknown.error?.message, unknown.requests]).toEqual([2, "--seal tpm: use one of credential, shamir, key-file", []]);
    const shares = await runCommand(sysCommands, "keys rekey", { options: { seal: "key-file", shares: "3", yes: true }, answer: migrated("key_file") });
    expect([shares.code, shares.error?.message]).toEqual([2, '--shares and --threshold are for seal.method = "shamir"; --seal key-file is key_file']);
    expect(rekeys(shares.requests)).toEqual([]);
  });

  test("--cancel drops the pending key (DELETE), and takes no other flag", async () => {
    const answer = (r: SentRequest) => (r.method === "DELETE" ? { cancelled: "89abcdef" } : {});
    const run = await runCommand(sysCommands, "keys rekey", { options: { cancel: true }, answer });
    expect([run.code, run.requests.map((r) => `${r.method} ${r.path}`)]).toEqual([0, ["DELETE /v1/sys/keys/rekey"]]);
    expect(run.stdout).toBe("Dropped the pending root key 89abcdef: its shares, credential or key file unseal nothing now.\n");
    const none = await runCommand(sysCommands, "keys rekey", { options: { cancel: true }, answer: () => ({ cancelled: null }) });
    expect(none.stdout).toBe("No new root key was pending.\n");
    const mixed = await runCommand(sysCommands, "keys rekey", { options: { cancel: true, seal: "shamir" }, answer });
    expect([mixed.code, mixed.error?.message, mixed.requests]).toEqual([2, "--cancel takes no --seal", []]);
  });
});

test("keys rekey with a key file says where the old key is kept, which backups made before need (found in review)", async () => {
  const answer = (r: SentRequest) => (r.path === "/v1/sys/seal-status" ? status("key_file") : { key_id: "89abcdef", method: "key_file", active: true, previous_key_id: "0123abcd", old_key_kept: true });
  const run = await runCommand(sysCommands, "keys rekey", { options: { yes: true }, answer });
  expect(run.stdout).toBe("The root key is now 89abcdef; the key file was replaced.\nBackups made before open only with the old root key 0123abcd: it is kept beside the key file, as <seal.key_file>.0123abcd (root.key.0123abcd by default). Move it off this host, next to those backups.\n");
});

describe("unseal --json (found in review: a Citadel not sealed was told in a sentence)", () => {
  test("not sealed: the answer an unseal gives, as JSON; as text the sentence", async () => {
    const answer = () => status("key_file");
    const run = await runCommand(sysCommands, "unseal", { json: true, answer });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ unsealed: false, status: status("key_file") });
    expect((await runCommand(sysCommands, "unseal", { answer })).stdout).toBe("Citadel is not sealed.\n");
  });
});

test("the commands a rekey and keys status print name the --data and --config they were given, quoted, so a fresh shell acts on the same instance (found in an operator's walkthrough)", async () => {
  const options = { seal: "shamir", yes: true, data: "/srv/my citadel", config: "/etc/c.toml" };
  const answer = (r: SentRequest) => (r.path === "/v1/sys/seal-status" ? status("key_file") : { key_id: "89abcdef", method: "shamir", active: false, shares: ["s1", "s2", "s3"] });
  const run = await runCommand(sysCommands, "keys rekey", { options, answer });
  expect(run.stdout).toContain("(citadel unseal --data '/srv/my citadel' --config /etc/c.toml)");
  expect(run.stdout).toContain("`citadel keys rekey --cancel --data '/srv/my citadel' --config /etc/c.toml` drops the new one.");
  const keys = { root: { id: "0123abcd", method: "key_file", age_days: 1 }, pending_root: null, active_kek: 2, rotation_due: false, rotation_days: 90, keks: [], deks_to_rewrap: 3 };
  const listed = await runCommand(sysCommands, "keys status", { options: { data: "/srv/my citadel" }, answer: () => keys });
  expect(listed.stdout).toContain("(run: citadel keys rotate --data '/srv/my citadel', or restart to resume)");
});

test("keys status tells damaged data keys from those to re-wrap, and what to do about them (found in review: it advised a rotation that moves nothing)", async () => {
  const keys = { root: { id: "0123abcd", method: "key_file", age_days: 1 }, pending_root: null, active_kek: 3, rotation_due: false, rotation_days: 90, keks: [], deks_to_rewrap: 0, deks_damaged: 2 };
  const listed = await runCommand(sysCommands, "keys status", { options: { data: "/srv/c" }, answer: () => keys });
  expect(listed.stdout).not.toContain("still to re-wrap");
  expect(listed.stdout).toContain("2 data keys do not unwrap (damaged or altered), and no rotation moves them; the audit names their owners (citadel audit list --action keys.kek.rotate --data /srv/c).\n");
  expect(listed.stdout).toContain("  Restore a backup made before the damage, or destroy those owners' data (their erasure or deletion destroys their keys; the appliance's own keys — audit/, mesh/, dns/ — only a restore mends): see docs/keys.md.\n");
});

test("keys status, rotation due while a rekey is pending: the rekey is finished or cancelled first, as keys rotate answers 409 meanwhile (found in review)", async () => {
  const keys = { root: { id: "0123abcd", method: "key_file", age_days: 100 }, pending_root: { id: "89abcdef", method: "key_file" }, active_kek: 2, rotation_due: true, rotation_days: 90, keks: [], deks_to_rewrap: 3, deks_damaged: 0 };
  const listed = await runCommand(sysCommands, "keys status", { options: { data: "/srv/c" }, answer: () => keys });
  expect(listed.stdout).toContain("Rotation waits for the pending rekey: finish it (unseal with the new key) or cancel it (citadel keys rekey --cancel --data /srv/c), then run citadel keys rotate --data /srv/c.\n");
  expect(listed.stdout).toContain("3 data keys still to re-wrap (restart to resume; citadel keys rotate waits for the pending rekey)\n");
  const none = await runCommand(sysCommands, "keys status", { options: { data: "/srv/c" }, answer: () => ({ ...keys, pending_root: null }) });
  expect(none.stdout).not.toContain("waits for the pending rekey");
  expect(none.stdout).toContain("3 data keys still to re-wrap (run: citadel keys rotate --data /srv/c, or restart to resume)\n");
});

test("keys rotate names the data keys a rotation left because they do not unwrap (found in review)", async () => {
  const run = await runCommand(sysCommands, "keys rotate", { answer: () => ({ version: 3, rewrapped: 41, damaged: 1 }) });
  expect(run.stdout).toBe("KEK v3 is active; 41 data keys re-wrapped. 1 data keys do not unwrap (damaged or altered) and stay under their old KEK: see the log and the audit (keys.kek.rotate failures).\n");
  const clean = await runCommand(sysCommands, "keys rotate", { answer: () => ({ version: 3, rewrapped: 42, damaged: 0 }) });
  expect(clean.stdout).toBe("KEK v3 is active; 42 data keys re-wrapped.\n");
});
