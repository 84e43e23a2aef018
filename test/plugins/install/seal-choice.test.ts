/** The seal an installation gets and the reason printed for it, with stand-ins for systemd-creds. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decideSeal } from "../../../plugins/install/seal-choice.ts";
import { parseSealOption } from "../../../src/cli/seal-option.ts";
import { UsageError } from "../../../src/cli/command-line.ts";
import { SystemTools } from "../../../plugins/install/system-tools.ts";

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "citadel-seal-choice-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A PATH holding only a systemd-creds whose `has-tpm2` answers as a given machine would. */
function machine(name: string, hasTpm2: { answer: string; code: number } | null): SystemTools {
  const dir = join(work, name);
  mkdirSync(dir);
  if (hasTpm2) {
    writeFileSync(join(dir, "systemd-creds"), `#!/bin/sh\n[ "$1" = has-tpm2 ] || exit 2\necho ${hasTpm2.answer}\necho '+firmware'\nexit ${hasTpm2.code}\n`);
    chmodSync(join(dir, "systemd-creds"), 0o755);
  }
  return new SystemTools({ PATH: dir });
}

test("the default follows the machine: TPM2, host key, or a key file without systemd-creds", async () => {
  const cases = [
    { name: "tpm2", tpm: { answer: "yes", code: 0 }, method: "systemd_credential", key: "tpm2", reason: /TPM2 found \(systemd-creds has-tpm2: yes\)/ },
    { name: "partial", tpm: { answer: "partial", code: 11 }, method: "systemd_credential", key: "host", reason: /no usable TPM2 \(systemd-creds has-tpm2: partial\).*host key/ },
    { name: "no-tpm", tpm: { answer: "no", code: 1 }, method: "systemd_credential", key: "host", reason: /no usable TPM2 \(systemd-creds has-tpm2: no\)/ },
    { name: "no-creds", tpm: null, method: "key_file", key: null, reason: /systemd-creds not found/ },
  ] as const;
  for (const c of cases) {
    const decision = await decideSeal(machine(c.name, c.tpm), undefined, null, true);
    expect([c.name, decision.method, decision.credentialKey]).toEqual([c.name, c.method, c.key]);
    expect(decision.reason).toMatch(c.reason);
  }
});

test("--seal is obeyed, and --seal credential without systemd-creds is refused", async () => {
  const withTpm = machine("explicit-tpm", { answer: "yes", code: 0 });
  expect((await decideSeal(withTpm, "key-file", null, true)).method).toBe("key_file");
  expect((await decideSeal(withTpm, "shamir", null, true)).reason).toContain("citadel unseal");
  expect(await decideSeal(withTpm, "credential", null, true)).toMatchObject({ method: "systemd_credential", credentialKey: "tpm2" });
  await expect(decideSeal(machine("explicit-none", null), "credential", null, true)).rejects.toThrow(/needs systemd-creds/);
});

test("an existing installation keeps its method; asking for another one is refused", async () => {
  const tools = machine("installed", { answer: "yes", code: 0 });
  const installed = { method: "shamir" as const, configFile: "/etc/citadel/citadel.toml" };
  expect(await decideSeal(tools, undefined, installed, true)).toMatchObject({ method: "shamir", reason: expect.stringContaining("already installed") });
  expect((await decideSeal(tools, "shamir", installed, true)).method).toBe("shamir");
  await expect(decideSeal(tools, "credential", installed, true)).rejects.toThrow(/installed with seal.method "shamir"/);
});

test("--seal accepts its three values only", () => {
  expect([parseSealOption("credential"), parseSealOption("shamir"), parseSealOption("key-file"), parseSealOption(undefined)]).toEqual(["credential", "shamir", "key-file", undefined]);
  expect(() => parseSealOption("tpm")).toThrow(/use one of credential, shamir, key-file/);
});

test("under --root: a key file by default even where a TPM2 is, shamir when asked, and --seal credential refused (found in review)", async () => {
  const withTpm = machine("image", { answer: "yes", code: 0 });
  expect(await decideSeal(withTpm, undefined, null, false)).toMatchObject({ method: "key_file", credentialKey: null, reason: expect.stringMatching(/^--root is not \/: .*would decrypt only on this machine/) });
  expect((await decideSeal(withTpm, "shamir", null, false)).method).toBe("shamir");
  expect((await decideSeal(withTpm, "key-file", null, false)).method).toBe("key_file");
  const refusal = decideSeal(withTpm, "credential", null, false);
  await expect(refusal).rejects.toBeInstanceOf(UsageError);
  await expect(refusal).rejects.toThrow(/this machine's TPM2 or host key, not to the machine that boots the image/);
});
