/** What the secrets commands check before they ask the server (the whole flow: test/e2e/secrets-cli.test.ts). */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateToken } from "../../../src/auth/tokens.ts";
import { ApiError } from "../../../src/cli/api-client.ts";
import { secretsCommands } from "../../../plugins/secrets/commands.ts";
import { createShareSecret, shareUrl } from "../../../plugins/secrets/share-crypto.ts";
import { runCommand, type SentRequest } from "../../helpers/command.ts";

const WS = { workspace: "ws_1" };

describe("flags are checked here, named as flags (found in review: the server's message named query fields)", () => {
  test("secrets get --version: a whole number, else refused before any request", async () => {
    for (const version of ["abc", "0", "1.5", "-1"]) {
      const run = await runCommand(secretsCommands, "secrets get", { args: ["DB"], options: { ...WS, version } });
      expect(run.code).not.toBe(0);
      expect(run.error?.message).toStartWith("--version: a whole number from 1 to");
      expect(run.requests).toEqual([]);
    }
  });

  test("a choice flag outside its words is a usage error listing them", async () => {
    const rotate = await runCommand(secretsCommands, "secrets rotate", { args: ["DB"], options: { ...WS, generator: "dice" } });
    expect([rotate.code, rotate.error?.message, rotate.requests]).toEqual([2, "--generator: one of password, hex, base64, uuid", []]);
    const exported = await runCommand(secretsCommands, "secrets export", { options: { ...WS, format: "yaml" } });
    expect([exported.code, exported.error?.message, exported.requests]).toEqual([2, "--format: one of dotenv, json", []]);
  });
});

describe("share with a service API key names its organization with --org (found in review)", () => {
  test("without --org: a usage error saying so, before any request", async () => {
    const run = await runCommand(secretsCommands, "share", { options: { ...WS, secret: "DB" }, env: { CITADEL_TOKEN: generateToken("secrets").token } });
    expect([run.code, run.error?.message, run.requests]).toEqual([2, "an API key must be given --org ORG_ID", []]);
  });
});

describe("share open asks a server for no more than share-crypto's bounds allow", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-share-open-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("argon2id parameters out of bounds from a peek: refused before anything is stretched or any view asked for", async () => {
    const file = join(dir, "passphrase");
    writeFileSync(file, "pw\n", { mode: 0o600 });
    const sealed = await createShareSecret("v", "pw");
    const url = shareUrl("https://citadel.test:8443", "shr_1", sealed.linkKey);
    const hostile = { passphrase: true, passphrase_kdf: { ...sealed.passphraseKdf, memory_kib: 4_194_304 }, views_left: 1 };
    const run = await runCommand(secretsCommands, "share open", { args: [url], options: { "passphrase-file": file }, answer: () => hostile });
    expect([run.code, run.error?.message]).toEqual([1, "the server asks for argon2id parameters out of bounds (memory_kib: a whole number from 19456 to 1048576)"]);
    expect(run.requests.map((r) => r.path)).toEqual(["/v1/secrets/shares/shr_1/peek"]);
  });

  test("a passphrase file others may read is refused, as backup's is (one rule for --passphrase-file; found in an operator's walkthrough)", async () => {
    const file = join(dir, "open-passphrase");
    writeFileSync(file, "pw\n");
    chmodSync(file, 0o644); // not through writeFileSync's mode, which the process's umask narrows
    const sealed = await createShareSecret("v", "pw");
    const url = shareUrl("https://citadel.test:8443", "shr_1", sealed.linkKey);
    const run = await runCommand(secretsCommands, "share open", { args: [url], options: { "passphrase-file": file }, answer: () => ({ passphrase: true, passphrase_kdf: sealed.passphraseKdf, views_left: 1 }) });
    expect(run.code).toBe(2); // a usage error, as any input file refused (found in review: exit 1)
    expect(run.error?.message).toBe(`--passphrase-file ${file}: its group or others may read or change it (mode 644), and it holds a passphrase; run: chmod 600 ${file}`);
  });
});

describe("share --secret takes a secret's name only (found in review)", () => {
  test("a name that is not one (`.` read the environment's list) is a usage error, before any request", async () => {
    for (const secret of [".", "..", "A/B", "1DB", ""]) {
      const run = await runCommand(secretsCommands, "share", { options: { ...WS, org: "org_1", secret } });
      expect([secret, run.code, run.error?.message, run.requests]).toEqual([secret, 2, "--secret: a secret's name is an environment variable name: letters, digits and _, not starting with a digit", []]);
    }
  });
});

describe("share --passphrase with standard input not a terminal (found in an operator's walkthrough)", () => {
  test("is a usage error naming --passphrase-file, before any request (the prompt failed on a locked stream)", async () => {
    const run = await runCommand(secretsCommands, "share", { options: { org: "org_1", passphrase: true } });
    expect([run.code, run.error?.message, run.requests]).toEqual([2, "give the link's passphrase with --passphrase-file (standard input is not a terminal)", []]);
  });
});

describe("secrets purge (found in an operator's walkthrough: secrets delete spoke of a purge no command made)", () => {
  test("without --yes: a usage error, before any request", async () => {
    const run = await runCommand(secretsCommands, "secrets purge", { args: ["DB"], options: { ...WS, env: "production" } });
    expect([run.code, run.requests]).toEqual([2, []]);
    expect(run.error?.message).toBe("this removes DB and every version of it for good (secrets restore cannot bring it back): add --yes");
  });

  test("with --yes: the purge route, confirmed as the operator said", async () => {
    const run = await runCommand(secretsCommands, "secrets purge", { args: ["DB"], options: { ...WS, env: "production", yes: true }, answer: () => ({ ok: true }) });
    expect(run.code).toBe(0);
    expect(run.requests).toEqual([{ method: "POST", path: "/v1/secrets/workspaces/ws_1/environments/production/secrets/DB/purge", body: undefined, confirmed: true }]);
    expect(run.stdout).toBe("DB purged: every version is gone\n");
  });
});

describe("share list and share revoke (found in review: no command listed or revoked links)", () => {
  const link = (id: string, state: string, source: string | null) => ({ id, state, views: 0, max_views: 1, passphrase: true, source, created_by: "usr_AAAAAAAAAAAAAA", created_at: "2026-06-01T00:00:00.000Z", expires_at: "2026-06-02T00:00:00.000Z" });
  const page = { items: [link("shr_AAAAAAAAAAAAAA", "active", "ws_1/production/DB"), link("shr_BBBBBBBBBBBBBB", "revoked", null)], next_cursor: "c2hhcmU6MTox" };

  test("share list: a table, then how to go on; --limit and --cursor passed on; --json the page as the server gave it", async () => {
    const run = await runCommand(secretsCommands, "share list", { options: { org: "org_1", limit: "2", cursor: "abc" }, answer: () => page });
    expect(run.code).toBe(0);
    expect(run.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["GET /v1/secrets/orgs/org_1/shares?limit=2&cursor=abc"]);
    expect(run.stdout.split("\n")[0]).toMatch(/^ID +STATE +VIEWS +PASSPHRASE +CARRIES +MADE BY +MADE +EXPIRES$/);
    expect(run.stdout).toContain("shr_AAAAAAAAAAAAAA  active   0/1    yes         ws_1/production/DB");
    expect(run.stdout).toContain("(a one-off value)");
    expect(run.stdout).toEndWith("(more: --cursor c2hhcmU6MTox)\n");
    const json = await runCommand(secretsCommands, "share list", { options: { org: "org_1" }, json: true, answer: () => page });
    expect([json.requests[0]!.path, JSON.parse(json.stdout)]).toEqual(["/v1/secrets/orgs/org_1/shares", page]);
  });

  test("share list --limit out of the server's range: a usage error, before any request", async () => {
    for (const limit of ["0", "1001", "many"]) {
      const run = await runCommand(secretsCommands, "share list", { options: { org: "org_1", limit } });
      expect([run.code, run.error?.message, run.requests]).toEqual([2, `--limit: a whole number from 1 to 1000, not ${JSON.stringify(limit)}`, []]);
    }
  });

  test("share revoke ID: the link's DELETE; something that is neither an id nor a link is a usage error, before any request", async () => {
    const run = await runCommand(secretsCommands, "share revoke", { args: ["shr_AAAAAAAAAAAAAA"], options: { org: "org_1" }, answer: () => ({ ok: true }) });
    expect([run.code, run.stdout]).toEqual([0, "shr_AAAAAAAAAAAAAA revoked: it opens no more\n"]);
    expect(run.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["DELETE /v1/secrets/orgs/org_1/shares/shr_AAAAAAAAAAAAAA"]);
    for (const args of [[], ["the-link"], ["https://citadel.test:8443/v1/secrets/other/shr_AAAAAAAAAAAAAA"]]) {
      const refused = await runCommand(secretsCommands, "share revoke", { args, options: { org: "org_1" } });
      expect([refused.code, refused.requests]).toEqual([2, []]);
      expect(refused.error?.message).toContain("shr_..., as citadel share and citadel share list show it");
    }
  });

  test("share revoke URL: the link's id, taken from the link, is all that is sent; its key is neither sent nor printed (found in review: an editor, who cannot list links, had only the link)", async () => {
    const { linkKey } = await createShareSecret("the value");
    const url = shareUrl("https://citadel.test:8443", "shr_AAAAAAAAAAAAAA", linkKey);
    const run = await runCommand(secretsCommands, "share revoke", { args: [url], options: { org: "org_1" }, answer: () => ({ ok: true }) });
    expect([run.code, run.stdout, run.stderr]).toEqual([0, "shr_AAAAAAAAAAAAAA revoked: it opens no more\n", ""]);
    expect(run.requests).toEqual([{ method: "DELETE", path: "/v1/secrets/orgs/org_1/shares/shr_AAAAAAAAAAAAAA", body: undefined, confirmed: false }]);
    // Its key cut short, or cut off (a link seen in a proxy's log): still the link of that id (found in review).
    for (const cut of [url.slice(0, -3), url.slice(0, url.indexOf("#"))]) {
      const again = await runCommand(secretsCommands, "share revoke", { args: [cut], options: { org: "org_1" }, answer: () => ({ ok: true }) });
      expect([again.code, again.requests.map((r) => r.path)]).toEqual([0, ["/v1/secrets/orgs/org_1/shares/shr_AAAAAAAAAAAAAA"]]);
      expect(again.stdout + again.stderr).not.toContain(linkKey.slice(0, 8));
    }
    // A link that is not one: refused, the argument not repeated.
    const other = `https://citadel.test:8443/v1/secrets/elsewhere#${linkKey}`;
    const refused = await runCommand(secretsCommands, "share revoke", { args: [other], options: { org: "org_1" } });
    expect([refused.code, refused.requests, refused.error?.message]).toEqual([2, [], `not a share link's id (shr_..., as citadel share and citadel share list show it) nor a share link: not a share link: its path does not end in /v1/secrets/shares/<id>`]);
    expect(JSON.stringify(refused)).not.toContain(linkKey.slice(0, 8));
  });
});

describe("share says the link's id too (found in review: only the link was printed, and share revoke wanted the id)", () => {
  const answer = (r: { method: string; path: string }) =>
    r.path.endsWith("/settings") ? { e2ee: false } : r.method === "GET" ? { value: "v" } : { id: "shr_AAAAAAAAAAAAAA", state: "active", max_views: 1, expires_at: "2026-06-02T00:00:00.000Z" };

  test("on a second line of standard error, standard output being the link alone; --json has it as id", async () => {
    const run = await runCommand(secretsCommands, "share", { options: { ...WS, env: "production", org: "org_1", secret: "DB" }, answer });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^https:\/\/citadel\.test:8443\/v1\/secrets\/shares\/shr_AAAAAAAAAAAAAA#[A-Za-z0-9_-]+\n$/);
    expect(run.stderr.split("\n")[1]).toBe("its id: shr_AAAAAAAAAAAAAA (citadel share revoke shr_AAAAAAAAAAAAAA ends it)");
    const json = await runCommand(secretsCommands, "share", { options: { ...WS, env: "production", org: "org_1", secret: "DB" }, json: true, answer });
    expect([json.code, JSON.parse(json.stdout).id, json.stderr]).toEqual([0, "shr_AAAAAAAAAAAAAA", ""]);
  });
});

describe("secrets e2ee init with a key pair already (found in review: run again on a new laptop, it dropped every workspace key wrapped to the user, without a word)", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-e2ee-init-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const phraseFile = join(dir, "passphrase");
  writeFileSync(phraseFile, "a long enough passphrase\n", { mode: 0o600 });
  const existing = { public_key: "pk", sealed_private_key: "c1.pk.x", created_at: "2026-06-01T00:00:00.000Z" };
  const haveOne = (r: SentRequest) => (r.method === "GET" ? existing : { ...existing, public_key: "new" });
  const haveNone = (r: SentRequest) => {
    if (r.method === "GET") throw new ApiError("You have no key pair yet: citadel secrets e2ee init makes one.", 404, "not_found");
    return existing;
  };

  test("is refused without --yes, saying what a new one costs, before a passphrase is read or anything is sent", async () => {
    const run = await runCommand(secretsCommands, "secrets e2ee init", { options: { "passphrase-file": join(dir, "not-read") }, answer: haveOne });
    expect(run.code).toBe(2);
    expect(run.error?.message).toStartWith("you have an end-to-end encryption key pair already");
    expect(run.error?.message).toContain("drops your access to every end-to-end-encrypted workspace, in every organization, until a member grants you again");
    expect(run.error?.message).toEndWith("add --yes to replace it all the same");
    expect(run.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["GET /v1/secrets/me/keypair"]);
  });

  test("with --yes the new key pair is registered; with none yet, no --yes is needed", async () => {
    const replaced = await runCommand(secretsCommands, "secrets e2ee init", { options: { "passphrase-file": phraseFile, yes: true }, answer: haveOne });
    expect([replaced.code, replaced.requests.map((r) => `${r.method} ${r.path}`)]).toEqual([0, ["PUT /v1/secrets/me/keypair"]]);
    const first = await runCommand(secretsCommands, "secrets e2ee init", { options: { "passphrase-file": phraseFile }, answer: haveNone });
    expect([first.code, first.requests.map((r) => `${r.method} ${r.path}`)]).toEqual([0, ["GET /v1/secrets/me/keypair", "PUT /v1/secrets/me/keypair"]]);
  });

  test("a token that may not read the key pair cannot tell: refused without --yes", async () => {
    const outOfScope = () => {
      throw new ApiError("this token lacks secrets:read", 403, "insufficient_scope");
    };
    const run = await runCommand(secretsCommands, "secrets e2ee init", { options: { "passphrase-file": phraseFile }, answer: outOfScope });
    expect([run.code, run.requests.length]).toEqual([2, 1]);
    expect(run.error?.message).toStartWith("this token may not read your key pair (this token lacks secrets:read), so whether you have one cannot be told");
  });
});

describe("citadel run refuses secrets that make a program run a command or load a file (found in review: TAR_OPTIONS, LUA_INIT, npm_config_*, *_EDITOR... passed)", () => {
  /** The server's answers for an environment holding secrets of these names. */
  const holding = (names: string[]) => (r: SentRequest) => (r.path.endsWith("/settings") ? { e2ee: false } : { items: names.map((name) => ({ name, value: "x", version: 1 })) });
  const run = (names: string[]) => runCommand(secretsCommands, "run", { args: ["true"], options: { ...WS, env: "production" }, answer: holding(names) });

  test("each is named in the refusal, a usage error, before the command starts", async () => {
    const names = [
      ...["TAR_OPTIONS", "LUA_INIT", "LUA_INIT_5_4", "RSYNC_RSH", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "GOFLAGS", "PSQL_PAGER", "SUDO_EDITOR", "KUBE_EDITOR", "SYSTEMD_EDITOR", "npm_config_script_shell", "NPM_CONFIG_NODE_OPTIONS"],
      ...["OPENSSL_CONF", "GCONV_PATH", "ZDOTDIR", "NODE_PATH", "PHPRC"],
      ...["EDITOR", "VISUAL", "PAGER", "GIT_EDITOR", "CVS_RSH", "MY_TOOL_PAGER"],
      // A JVM's, an Erlang VM's or cargo's (found in review: passed).
      ...["JAVA_OPTS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "MAVEN_OPTS", "GRADLE_OPTS", "ERL_AFLAGS", "ERL_FLAGS", "ERL_ZFLAGS", "RUSTC", "CARGO_BUILD_RUSTC", "CARGO_BUILD_RUSTC_WRAPPER", "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER"],
    ];
    for (const name of names) {
      const refused = await run(["DB_PASSWORD", name]);
      expect([name, refused.code, refused.error?.message]).toEqual([
        name,
        2,
        `the secrets of ws_1/production hold ${name}, which make programs load code: refusing to start the command with them (--allow-variable ${name} passes these on, --allow-loader-variables any)`,
      ]);
    }
  });

  test("--allow-variable lets through the names given, one or several separated by commas, and no other (found in review: only --allow-loader-variables, which let LD_PRELOAD through too)", async () => {
    const runAllowing = (allowed: string, names: string[]) => runCommand(secretsCommands, "run", { args: ["true"], options: { ...WS, env: "production", "allow-variable": allowed }, answer: holding(names) });
    expect((await runAllowing("NODE_PATH", ["DB_PASSWORD", "NODE_PATH"])).code).toBe(0);
    expect((await runAllowing("NPM_CONFIG_PRODUCTION, GOFLAGS", ["NPM_CONFIG_PRODUCTION", "GOFLAGS", "DB_PASSWORD"])).code).toBe(0);
    const others = await runAllowing("NODE_PATH,GOFLAGS", ["NODE_PATH", "LD_PRELOAD", "GOFLAGS", "npm_config_script_shell"]);
    expect([others.code, others.error?.message]).toEqual([
      2,
      "the secrets of ws_1/production hold LD_PRELOAD, npm_config_script_shell, which make programs load code: refusing to start the command with them (--allow-variable LD_PRELOAD,npm_config_script_shell passes these on, --allow-loader-variables any)",
    ]);
    // Exactly as written: npm reads any case, an allowed name one case only.
    expect((await runAllowing("npm_config_production", ["NPM_CONFIG_PRODUCTION"])).code).toBe(2);
  });

  test("--allow-variable with anything but names is a usage error before any request", async () => {
    for (const allowed of ["", "NODE_PATH,", "LD_*", "NODE PATH"]) {
      const refused = await runCommand(secretsCommands, "run", { args: ["true"], options: { ...WS, env: "production", "allow-variable": allowed }, answer: holding([]) });
      expect([allowed, refused.code, refused.error?.message, refused.requests]).toEqual([allowed, 2, expect.stringMatching(/^--allow-variable takes variable names separated by commas, not "/), []]);
    }
  });

  test("names that merely contain such words pass: DB_PASSWORD, EDITOR_URL, PAGER_DUTY_KEY, NPM_TOKEN", async () => {
    const names = ["DB_PASSWORD", "EDITOR_URL", "PAGER_DUTY_KEY", "NPM_TOKEN", "GIT_TOKEN", "RSH", "_EDITOR_", "TAR_OPTION"];
    const passed = await runCommand(secretsCommands, "run", { args: ["true"], options: { ...WS, env: "production" }, answer: holding(names) });
    expect([passed.code, passed.error]).toEqual([0, null]);
  });
});

describe("--passphrase-file - where standard input carries the value or the file (found in review: 'Body object should not be disturbed or locked', or all of it taken as the passphrase)", () => {
  test("secrets set and secrets import -: a usage error, before anything is read or asked", async () => {
    const set = await runCommand(secretsCommands, "secrets set", { args: ["DB"], options: { ...WS, "passphrase-file": "-" } });
    expect([set.code, set.error?.message, set.requests]).toEqual([2, "--passphrase-file -: standard input carries the value; give the passphrase in a file", []]);
    const imported = await runCommand(secretsCommands, "secrets import", { args: ["-"], options: { ...WS, "passphrase-file": "-" } });
    expect([imported.code, imported.error?.message, imported.requests]).toEqual([2, "--passphrase-file -: standard input carries the file to import; give the passphrase in a file", []]);
  });

  test("an import from a file may take the passphrase on standard input", async () => {
    const imported = await runCommand(secretsCommands, "secrets import", { args: ["/nonexistent/prod.env"], options: { ...WS, "passphrase-file": "-" } });
    expect([imported.code, imported.error?.message]).toEqual([2, "/nonexistent/prod.env: no such file"]);
  });
});

describe("secrets import: a file that cannot be read or is not what import takes is a usage error naming it (found in review: ENOENT, EISDIR or a bare line number, exit 1)", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-import-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const importing = (file: string) => runCommand(secretsCommands, "secrets import", { args: [file], options: WS });

  test("missing, a directory: the file and why, before any request", async () => {
    const missing = join(dir, "nope.env");
    for (const [file, why] of [[missing, "no such file"], [dir, "is a directory"]] as const) {
      const run = await importing(file);
      expect([run.code, run.error?.message, run.requests]).toEqual([2, `${file}: ${why}`, []]);
    }
  });

  test("malformed .env or JSON: the file, the line or entry, and why, never a value, before any request", async () => {
    const dotenv = join(dir, "bad.env");
    writeFileSync(dotenv, "A=1\ns3cr3t-pasted-alone\n");
    const json = join(dir, "bad.json");
    writeFileSync(json, '{"A": 1}');
    for (const [file, why] of [[dotenv, "line 2: expected NAME=value, but there is no '='"], [json, "A: the value must be a string, not a number"]] as const) {
      const run = await importing(file);
      expect([run.code, run.error?.message, run.requests]).toEqual([2, `${file}: ${why}`, []]);
    }
  });
});

describe("what the review found in the corners of set, share, share open and run", () => {
  test("secrets set --rotation-days and share --ttl/--views out of range: usage errors before the value is read or any request", async () => {
    const set = await runCommand(secretsCommands, "secrets set", { args: ["DB"], options: { ...WS, "rotation-days": "0" } });
    expect([set.code, set.error?.message, set.requests]).toEqual([2, '--rotation-days: a whole number from 1 to 3650, not "0"', []]);
    for (const [flag, raw] of [["ttl", "0"], ["views", "many"]] as const) {
      const share = await runCommand(secretsCommands, "share", { options: { org: "org_1", [flag]: raw } });
      expect([share.code, share.error?.message, share.requests]).toEqual([2, `--${flag}: a whole number from 1 to 2147483647, not ${JSON.stringify(raw)}`, []]);
    }
  });

  test("share open of something that is not a link is a usage error, as a missing link is", async () => {
    for (const [given, why] of [["notalink", "not a share link: not a URL"], ["https://citadel.test/v1/secrets/shares/shr_1", "this share link has no key after '#': it was cut short (copy the whole link)"]]) {
      const run = await runCommand(secretsCommands, "share open", { args: [given!] });
      expect([run.code, run.error?.message, run.requests]).toEqual([2, why, []]);
    }
  });

  test("citadel run: secrets too large for a process environment are said to be, exit 126 (E2BIG)", async () => {
    const answer = (r: SentRequest) => (r.path.endsWith("/settings") ? { e2ee: false } : { items: [{ name: "HUGE", value: "x".repeat(200_000), version: 1 }] });
    const run = await runCommand(secretsCommands, "run", { args: ["true"], options: WS, answer });
    expect([run.code, run.stderr]).toEqual([126, "citadel: cannot run true: the secrets are too large for a process environment, with the command's arguments (E2BIG)\n"]);
  });
});
