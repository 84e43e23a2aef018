/**
 * `citadel install` and `citadel uninstall` under a temporary --root, run in-process through
 * the commands' run() with a recording context. The binary installed is a two-line wrapper
 * that runs this source tree, so the `citadel init` the installer starts is the real one.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { installPlugin } from "../../../plugins/install/index.ts";
import { renderInstalledConfig } from "../../../plugins/install/config-file.ts";
import { initializeOnce } from "../../../plugins/install/initialize.ts";
import { layoutUnder, TARGET } from "../../../plugins/install/layout.ts";
import { decideSeal } from "../../../plugins/install/seal-choice.ts";
import { SystemTools } from "../../../plugins/install/system-tools.ts";
import { serviceCredential, UNITS } from "../../../plugins/install/units.ts";
import { parseCommandLine, UsageError } from "../../../src/cli/command-line.ts";
import { ConfigError } from "../../../src/config/error.ts";
import { parseRootKey, readRootKeyFile, rootKeyVerifier } from "../../../src/crypto/root-key.ts";
import { combineShares, decodeShare } from "../../../src/crypto/shamir.ts";
import type { CommandContext } from "../../../src/plugin.ts";
import { requireTool } from "../../helpers/tools.ts";

const REPO = new URL("../../..", import.meta.url).pathname;
let work: string;
let wrapper: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "citadel-install-"));
  wrapper = join(work, "citadel-from-source");
  writeFileSync(wrapper, `#!/bin/sh\nexec "${process.execPath}" "${REPO}src/main.ts" "$@"\n`);
  chmodSync(wrapper, 0o755);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Run {
  code: number;
  out: string;
  err: string;
}

/** Runs `citadel <argv>` through the plugin's command, as main.ts would, and records its output. */
async function citadel(argv: string[], env: Record<string, string> = {}): Promise<Run> {
  const invocation = parseCommandLine(argv, installPlugin.commands!);
  if (invocation.kind !== "run") throw new Error(`not a command: ${argv.join(" ")}`);
  const out: string[] = [];
  const err: string[] = [];
  const ctx: CommandContext = {
    args: invocation.args,
    options: invocation.options,
    json: invocation.options.json === true,
    out: (text) => out.push(text),
    err: (text) => err.push(text),
    api: () => Promise.reject(new Error("install needs no API")),
    configHome: join(work, "config-home"),
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work, ...env },
    dataDir: () => join(work, "unused"),
    config: () => {
      throw new Error("install reads no configuration of this machine");
    },
    migrations: () => [],
  };
  const code = await invocation.command.run(ctx);
  return { code, out: out.join("\n"), err: err.join("\n") };
}

const modeOf = (path: string) => (lstatSync(path).mode & 0o7777).toString(8).padStart(4, "0");

/** Every path under a root with its mode, owner, content digest and modification time. */
function snapshot(root: string): Record<string, string> {
  const entries: Record<string, string> = {};
  const walk = (path: string) => {
    const stat = lstatSync(path);
    const digest = stat.isFile() ? new Bun.CryptoHasher("sha256").update(readFileSync(path)).digest("hex") : "-";
    entries[path.slice(root.length) || "/"] = `${modeOf(path)} ${stat.uid}:${stat.gid} ${digest} ${stat.mtimeMs}`;
    if (stat.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(root);
  return entries;
}

function activeVerifier(dataDir: string): Buffer {
  const db = new Database(join(dataDir, "citadel.db"), { readonly: true });
  try {
    return Buffer.from(db.query<{ verifier: Uint8Array }, []>("SELECT verifier FROM root_keys WHERE state = 'active'").get()!.verifier);
  } finally {
    db.close();
  }
}

describe("install --seal key-file under a root, twice, then uninstall", () => {
  let root: string;
  const at = (path: string) => join(root, path);
  beforeAll(() => {
    root = join(work, "key-file");
  });

  test("creates the layout with its modes, a config for this installation and a working root key", async () => {
    const run = await citadel(["install", "--root", root, "--initialize", "--binary", wrapper, "--seal", "key-file"]);
    expect(run.code).toBe(0);
    expect(run.out).toContain("seal: key_file, because --seal key-file");
    expect(run.out).toMatch(/One-time password for admin@localhost: \S+/); // init's output reaches the operator
    const expected: Array<[string, string]> = [
      ["etc/citadel", "0750"],
      ["etc/citadel/citadel.toml", "0640"],
      ["var/lib/citadel", "0700"],
      ["var/lib/citadel/root.key", "0600"],
      ["var/lib/citadel/citadel.db", "0600"],
      ["usr/local/bin/citadel", "0755"],
      ["usr/local/bin", "0755"],
      ["etc/systemd/system/citadel.service", "0644"],
      ["etc/systemd/system/citadel-mesh-agent.service", "0644"],
    ];
    expect(expected.map(([path]) => [path, modeOf(at(path))])).toEqual(expected);
    expect(readFileSync(at("usr/local/bin/citadel"))).toEqual(readFileSync(wrapper));
    for (const unit of UNITS) expect(readFileSync(at(`etc/systemd/system/${unit.name}`), "utf8")).toBe(readFileSync(join(REPO, "config", unit.name), "utf8"));

    const config = parseToml(readFileSync(at("etc/citadel/citadel.toml"), "utf8")) as { data_dir: string; seal: { method: string } };
    expect(config.data_dir).toBe("/var/lib/citadel");
    expect(config.seal.method).toBe("key_file");
    // The key file is the key the database was initialized with.
    expect(rootKeyVerifier(readRootKeyFile(at("var/lib/citadel/root.key")))).toEqual(activeVerifier(at("var/lib/citadel")));
    // Another root never touches this machine's accounts: the intended owners are reported.
    expect(run.out).toMatch(/skipped +user citadel/);
    expect(run.out).toContain("etc/citadel/citadel.toml  0640 root:citadel (owner not applied: --root is not /)");
  });

  test("a second run changes nothing and says so for every item", async () => {
    const before = snapshot(root);
    const run = await citadel(["install", "--root", root, "--initialize", "--binary", wrapper]);
    expect(run.code).toBe(0);
    expect(snapshot(root)).toEqual(before);
    const statuses = run.out.split("\n").filter((l) => l.startsWith("  ") && /^ {2}\w+ +\//.test(l)).map((l) => l.trim().split(/\s+/)[0]);
    expect(statuses.length).toBeGreaterThanOrEqual(8);
    expect(new Set(statuses)).toEqual(new Set(["unchanged"]));
    expect(run.out).not.toContain("One-time password"); // init did not run again
    expect(run.out).toContain('already installed with seal.method "key_file"');
  });

  test("an edited config is kept, and a different --seal is refused rather than re-keying", async () => {
    const configPath = at("etc/citadel/citadel.toml");
    const edited = `${readFileSync(configPath, "utf8")}\n# edited by the operator\n`;
    writeFileSync(configPath, edited);
    const run = await citadel(["install", "--root", root, "--initialize", "--binary", wrapper]);
    expect(run.out).toMatch(/unchanged +\S+citadel\.toml .*kept as it is/);
    expect(readFileSync(configPath, "utf8")).toBe(edited);
    await expect(citadel(["install", "--root", root, "--binary", wrapper, "--seal", "shamir"])).rejects.toThrow(/installed with seal.method "key_file"/);
  });

  test("a changed binary is replaced (the upgrade path)", async () => {
    const newer = join(work, "citadel-newer");
    writeFileSync(newer, `${readFileSync(wrapper, "utf8")}# newer build\n`);
    chmodSync(newer, 0o755);
    const run = await citadel(["install", "--root", root, "--binary", newer]);
    expect(run.out).toMatch(/updated +\S+usr\/local\/bin\/citadel/);
    expect(readFileSync(at("usr/local/bin/citadel"))).toEqual(readFileSync(newer));
    expect(modeOf(at("usr/local/bin/citadel"))).toBe("0755");
  });

  test("uninstall removes the units and the binary and keeps the config and the data", async () => {
    const kept = { config: readFileSync(at("etc/citadel/citadel.toml")), key: readFileSync(at("var/lib/citadel/root.key")) };
    const run = await citadel(["uninstall", "--root", root]);
    expect(run.code).toBe(0);
    for (const path of ["usr/local/bin/citadel", "etc/systemd/system/citadel.service", "etc/systemd/system/citadel-mesh-agent.service"]) expect(existsSync(at(path))).toBe(false);
    expect(readFileSync(at("etc/citadel/citadel.toml"))).toEqual(kept.config);
    expect(readFileSync(at("var/lib/citadel/root.key"))).toEqual(kept.key);
    expect(run.out).toMatch(/kept +\S+var\/lib\/citadel  delete it with --purge --yes/);
  });

  test("--purge without --yes refuses, naming what it would delete; with --yes it deletes", async () => {
    const refusal = citadel(["uninstall", "--root", root, "--purge"]);
    await expect(refusal).rejects.toBeInstanceOf(UsageError); // exit 2, as a missing --yes elsewhere
    await expect(refusal).rejects.toThrow(at("etc/citadel"));
    await expect(refusal).rejects.toThrow(at("var/lib/citadel"));
    expect(existsSync(at("var/lib/citadel/citadel.db"))).toBe(true);

    const run = await citadel(["uninstall", "--root", root, "--purge", "--yes"]);
    expect(run.code).toBe(0);
    expect(existsSync(at("etc/citadel"))).toBe(false);
    expect(existsSync(at("var/lib/citadel"))).toBe(false);
  });
});

describe("under --root nothing is initialized unless --initialize: an image must not carry one installation's keys to every machine (found in review)", () => {
  const filesUnder = (root: string) => readdirSync(root, { recursive: true }).map(String).filter((path) => lstatSync(join(root, path)).isFile()).sort();
  const installed = ["etc/citadel/citadel.toml", "etc/systemd/system/citadel-mesh-agent.service", "etc/systemd/system/citadel.service", "usr/local/bin/citadel"];

  test("a key file: the binary, the config and the units alone; the target's first start (or init there) makes the keys", async () => {
    const root = join(work, "image-uninitialized");
    const run = await citadel(["install", "--root", root, "--binary", wrapper]);
    expect(run.code).toBe(0);
    expect(filesUnder(root)).toEqual(installed);
    expect(existsSync(join(root, "var/lib/citadel"))).toBe(false);
    expect(run.out).not.toContain("One-time password");
    expect(run.out).toMatch(/skipped +\S+var\/lib\/citadel  --root is not \/: made on the target/);
    expect(run.out).toContain("The target's first start initializes it (the root key file, the TLS key, the first owner), and the one-time password goes to the journal (journalctl -u citadel); to see it on a terminal instead, before that start: install -d -o citadel -g citadel -m 700 /var/lib/citadel && runuser -u citadel -- citadel init --config /etc/citadel/citadel.toml");
    expect(run.err).toBe("");

    const again = await citadel(["install", "--root", root, "--binary", wrapper]);
    expect(filesUnder(root)).toEqual(installed);
    expect(again.out).not.toMatch(/^ {2}(created|updated) /m);
  });

  test("Shamir: the shares are made by init on the target, which the service waits for", async () => {
    const root = join(work, "image-uninitialized-shamir");
    const run = await citadel(["install", "--root", root, "--binary", wrapper, "--seal", "shamir"]);
    expect(filesUnder(root)).toEqual(installed);
    expect(run.out).not.toContain("citadel-share-");
    expect(run.out).toContain("runuser -u citadel -- citadel init --config /etc/citadel/citadel.toml --shares 5 --threshold 3 (it prints the root key's shares and the first owner's one-time password, once; until then the service refuses to start), then systemctl restart citadel");
  });

  test("--initialize runs init into the image as before, and warns that every machine booted from it shares its keys", async () => {
    const root = join(work, "image-initialized");
    const run = await citadel(["install", "--root", root, "--initialize", "--binary", wrapper]);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/One-time password for admin@localhost: \S+/);
    expect(existsSync(join(root, "var/lib/citadel/root.key"))).toBe(true);
    expect(run.err).toContain(`warning: ${join(root, "var/lib/citadel/citadel.db")} is in the image, initialized: every machine booted from ${root} has the same root key, TLS key, signing keys and instance id, and the first owner's one-time password was shown here`);
    expect(run.out).not.toContain("runuser -u citadel -- citadel init");
  });
});

test("a config whose data_dir is elsewhere is refused before anything is written, naming both directories (found in review: an upgrade set up a second, empty installation)", async () => {
  const root = join(work, "moved-data");
  expect((await citadel(["install", "--root", root, "--initialize", "--binary", wrapper, "--seal", "key-file"])).code).toBe(0);
  mkdirSync(join(root, "srv"));
  renameSync(join(root, "var/lib/citadel"), join(root, "srv/citadel"));
  const configPath = join(root, "etc/citadel/citadel.toml");
  writeFileSync(configPath, readFileSync(configPath, "utf8").replace('data_dir = "/var/lib/citadel"', 'data_dir = "/srv/citadel"'));
  const before = snapshot(root);

  const upgrade = citadel(["install", "--root", root, "--binary", wrapper]);
  await expect(upgrade).rejects.toThrow(`says data_dir = "/srv/citadel", but install sets up and looks for the data in ${join(root, "var/lib/citadel")}`);
  await expect(upgrade).rejects.toThrow("ReadWritePaths=/srv/citadel");
  expect(snapshot(root)).toEqual(before);
  expect(existsSync(join(root, "var/lib/citadel"))).toBe(false);
});

test("a key file there before the database is reported unchanged, not created, and init uses it (found in review)", async () => {
  const root = join(work, "kept-key-file");
  const dataDir = join(root, "var/lib/citadel");
  expect((await citadel(["install", "--root", root, "--initialize", "--binary", wrapper, "--seal", "key-file"])).code).toBe(0);
  const key = readFileSync(join(dataDir, "root.key"));
  for (const suffix of ["", "-wal", "-shm"]) rmSync(join(dataDir, `citadel.db${suffix}`), { force: true });

  const run = await citadel(["install", "--root", root, "--initialize", "--binary", wrapper]);
  expect(run.out).toMatch(/created +\S+citadel\.db  initialized by citadel init/);
  expect(run.out).toMatch(/unchanged +\S+var\/lib\/citadel\/root\.key  there already: citadel init used it as the root key/);
  expect(run.out).not.toMatch(/created +\S+root\.key/);
  expect(readFileSync(join(dataDir, "root.key"))).toEqual(key);
  expect(rootKeyVerifier(readRootKeyFile(join(dataDir, "root.key")))).toEqual(activeVerifier(dataDir));
});

test("uninstall under --root removes the enablement links `systemctl --root=DIR enable` made, and only those (found in review: they were left dangling)", async () => {
  const root = join(work, "enabled-image");
  expect((await citadel(["install", "--root", root, "--binary", wrapper])).code).toBe(0);
  const unitDir = join(root, "etc/systemd/system");
  const outside = join(work, "enabled-image-outside");
  mkdirSync(outside);
  symlinkSync("/etc/systemd/system/citadel.service", join(outside, "citadel.service"));
  const links: Array<[string, string]> = [
    ["multi-user.target.wants/citadel.service", "/etc/systemd/system/citadel.service"], // as systemctl --root makes them
    ["multi-user.target.wants/citadel-mesh-agent.service", "../citadel-mesh-agent.service"],
    ["network-online.target.requires/citadel.service", "/etc/systemd/system/citadel.service"],
    ["multi-user.target.wants/other.service", "/etc/systemd/system/other.service"], // another unit's: kept
    ["multi-user.target.wants/citadel-copy.service", "/usr/lib/systemd/system/citadel.service"], // not the removed unit: kept
  ];
  for (const [link, target] of links) {
    mkdirSync(dirname(join(unitDir, link)), { recursive: true });
    symlinkSync(target, join(unitDir, link));
  }
  symlinkSync(outside, join(unitDir, "default.target.wants")); // leads out of the root: never looked into

  const run = await citadel(["uninstall", "--root", root]);
  expect(run.code).toBe(0);
  const left = (dir: string) => readdirSync(join(unitDir, dir)).sort();
  expect(left("multi-user.target.wants")).toEqual(["citadel-copy.service", "other.service"]);
  expect(left("network-online.target.requires")).toEqual([]);
  expect(readdirSync(outside)).toEqual(["citadel.service"]);
  expect(run.out).toMatch(/removed +\S+multi-user\.target\.wants\/citadel\.service/);
});

test("--purge without --yes names the backups and the earlier root keys it would delete (found in review: it named neither)", async () => {
  const root = join(work, "purge-backups");
  const at = (path: string) => join(root, path);
  const files = [
    "var/lib/citadel/archive/citadel-20260101T000000Z.backup",
    "var/lib/citadel/archive/citadel-20260102T000000Z.backup",
    "var/lib/citadel/archive/notes.txt",
    "var/lib/citadel/backups/citadel-20250101T000000Z.backup", // the default directory, which the config moved away from
    "var/lib/citadel/root.key",
    "var/lib/citadel/root.key.3f9a01c2",
    "var/lib/citadel/root.key.bak",
  ];
  for (const file of files) {
    mkdirSync(dirname(at(file)), { recursive: true });
    writeFileSync(at(file), "");
  }
  mkdirSync(at("etc/citadel"), { recursive: true });
  writeFileSync(at("etc/citadel/citadel.toml"), 'data_dir = "/var/lib/citadel"\n[backup]\ndir = "archive"\n');

  const refusal = await citadel(["uninstall", "--root", root, "--purge"]).then(() => null, (error: unknown) => error);
  expect(refusal).toBeInstanceOf(UsageError);
  const message = (refusal as UsageError).message;
  expect(message).toContain(
    [
      "\nand with them:",
      `  ${at("var/lib/citadel/archive")}  (2 backups)`,
      `  ${at("var/lib/citadel/root.key.3f9a01c2")}  (an earlier root key kept by a rekey: the only key that opens the backups made under it)`,
      "Without the root key",
    ].join("\n"),
  );
  expect(message).toContain("copy the backups and the root keys (the key file, each root.key.<id>) off this host first, then run again with --purge --yes");
  expect(files.filter((file) => !existsSync(at(file)))).toEqual([]);
});

test("--seal shamir prints the shares once, and three of them rebuild the key the database knows", async () => {
  const root = join(work, "shamir");
  const run = await citadel(["install", "--root", root, "--initialize", "--binary", wrapper, "--seal", "shamir"]);
  expect(run.code).toBe(0);
  const shares = run.out.match(/citadel-share-\S+/g) ?? [];
  expect(shares).toHaveLength(5);
  const key = combineShares([shares[0]!, shares[2]!, shares[4]!].map((s) => decodeShare(s).share));
  expect(rootKeyVerifier(key)).toEqual(activeVerifier(join(root, "var/lib/citadel")));
  expect((parseToml(readFileSync(join(root, "etc/citadel/citadel.toml"), "utf8")) as { seal: { method: string } }).seal.method).toBe("shamir");
  expect(readdirSync(join(root, "var/lib/citadel"))).not.toContain("root.key");

  const again = await citadel(["install", "--root", root, "--initialize", "--binary", wrapper]);
  expect(again.out).not.toContain("citadel-share-");
  expect(again.out).toMatch(/unchanged +root key/);
});

test("--seal credential: systemd-creds holds the key made by init, no plain key on disk; a second run changes nothing", async () => {
  const systemdCreds = requireTool("systemd-creds", "systemd");
  if (!systemdCreds) return;
  // A credential is made only for this machine (--root /), which a test must not install into:
  // the same steps on a layout under the test's directory, taken for this machine's.
  const root = join(work, "credential");
  const layout = { ...layoutUnder(root), onHost: true };
  // systemd-creds' host key, in the test's directory instead of /var/lib/systemd/credential.secret.
  const tools = new SystemTools({ PATH: process.env.PATH, SYSTEMD_CREDENTIAL_SECRET: join(work, "credential.secret") });
  const seal = await decideSeal(tools, "credential", null, true);
  expect(seal.method).toBe("systemd_credential");
  mkdirSync(layout.configDir, { recursive: true });
  mkdirSync(layout.dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(layout.configFile, renderInstalledConfig({ dataDir: TARGET.dataDir, sealMethod: "systemd_credential", credential: serviceCredential().name }));
  const input = { layout, binary: wrapper, seal, keyFile: "root.key", credentialName: serviceCredential().name, runAs: null };
  const made = await initializeOnce(tools, input);
  expect(made.output.join("\n")).toMatch(/One-time password for admin@localhost: \S+/);

  const credentialFile = join(root, serviceCredential().path);
  expect(modeOf(credentialFile)).toBe("0600");
  const decrypted = Bun.spawnSync([systemdCreds, "decrypt", `--name=${serviceCredential().name}`, credentialFile, "-"], { env: { ...process.env, ...tools.env } });
  expect(decrypted.exitCode).toBe(0);
  const key = parseRootKey(decrypted.stdout, "decrypted credential");
  expect(rootKeyVerifier(key)).toEqual(activeVerifier(layout.dataDir));
  const hex = key.toString("hex");
  const leaks = Object.keys(snapshot(root)).filter((path) => {
    const full = join(root, path);
    return lstatSync(full).isFile() && readFileSync(full).includes(hex);
  });
  expect(leaks).toEqual([]);

  const again = await initializeOnce(tools, input);
  expect(again.items.map((i) => [i.status, i.what])).toEqual([
    ["unchanged", join(layout.dataDir, "citadel.db")],
    ["unchanged", credentialFile],
  ]);
});

const SERVICE = { uid: 4321, gid: 4321 };

/** A layout taken for this machine's, under the test's directory, set up as install leaves it for init: the data directory the service's. */
function serviceLayout(name: string): ReturnType<typeof layoutUnder> {
  chmodSync(work, 0o755); // the service's user must reach the wrapper, the config and the data directory
  const root = join(work, name);
  const layout = { ...layoutUnder(root), onHost: true };
  // Modes are set, not asked of mkdir and writeFile: the umask (the CLI's 0077) would narrow them.
  for (const dir of [root, join(root, "etc"), join(root, "var"), join(root, "var/lib")]) {
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o755);
  }
  mkdirSync(layout.configDir);
  chmodSync(layout.configDir, 0o750);
  chownSync(layout.configDir, 0, SERVICE.gid);
  writeFileSync(layout.configFile, renderInstalledConfig({ dataDir: TARGET.dataDir, sealMethod: "key_file", credential: serviceCredential().name }));
  chmodSync(layout.configFile, 0o640);
  chownSync(layout.configFile, 0, SERVICE.gid);
  mkdirSync(layout.dataDir, { mode: 0o700 });
  chownSync(layout.dataDir, SERVICE.uid, SERVICE.gid);
  return layout;
}

function initAsService(layout: ReturnType<typeof layoutUnder>) {
  const seal = { method: "key_file", credentialKey: null, reason: "test" } as const;
  return initializeOnce(new SystemTools({ PATH: process.env.PATH, HOME: work }), { layout, binary: wrapper, seal, keyFile: "root.key", credentialName: serviceCredential().name, runAs: SERVICE });
}

function ownersUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map((name) => {
    const stat = lstatSync(join(dir, String(name)));
    return `${name} ${stat.uid}:${stat.gid}`;
  });
}

describe.if(process.getuid?.() === 0)("on this machine init runs as the service's user", () => {
  test("in its directory: what it makes is the service's (found in review: run as root, Citadel now refuses a data directory root does not own)", async () => {
    const layout = serviceLayout("as-service");
    const made = await initAsService(layout);
    expect(made.output.join("\n")).toMatch(/One-time password for admin@localhost: \S+/);
    const owners = ownersUnder(layout.dataDir);
    expect(owners).toContain("root.key 4321:4321");
    expect(owners).toContain("citadel.db 4321:4321");
    expect(owners.filter((line) => !line.endsWith(" 4321:4321"))).toEqual([]);
  });

  test("a restored key file root put back (sudo cp: root:root 0600) is given to the service, mode kept, and init uses it (found in review: init failed with permission denied, at every run)", async () => {
    const layout = serviceLayout("restored-key");
    const keyFile = join(layout.dataDir, "root.key");
    const key = Buffer.from(`${"ab".repeat(32)}\n`);
    writeFileSync(keyFile, key, { mode: 0o600 });
    chownSync(keyFile, 0, 0);

    const made = await initAsService(layout);
    expect(made.items).toContainEqual({ status: "updated", what: keyFile, detail: "there already: given to the service's user and group (4321:4321, was 0:0), mode 0600 kept; citadel init used it as the root key" });
    expect(ownersUnder(layout.dataDir).filter((line) => !line.endsWith(" 4321:4321"))).toEqual([]);
    expect(modeOf(keyFile)).toBe("0600");
    expect(readFileSync(keyFile)).toEqual(key);
    expect(rootKeyVerifier(readRootKeyFile(keyFile))).toEqual(activeVerifier(layout.dataDir));
  });

  test("a key put back after install said it was missing, beside an existing database, is given to the service too (found in review: reported unchanged, root's, the service unable to read it)", async () => {
    const layout = serviceLayout("restored-key-beside-database");
    await initAsService(layout);
    const keyFile = join(layout.dataDir, "root.key");
    const key = readFileSync(keyFile);
    rmSync(keyFile);
    await expect(initAsService(layout)).rejects.toThrow(`is initialized, but its root key ${keyFile} is missing: restore it from your backup`);
    writeFileSync(keyFile, key, { mode: 0o600 }); // sudo cp
    chownSync(keyFile, 0, 0);
    const again = await initAsService(layout);
    expect(again.items).toContainEqual({ status: "updated", what: keyFile, detail: "given to the service's user and group (4321:4321, was 0:0), mode 0600 kept" });
    expect(ownersUnder(layout.dataDir).filter((line) => !line.endsWith(" 4321:4321"))).toEqual([]);
  });

  test("a key file that is a symbolic link or not a regular file is refused before init runs, and left as it is", async () => {
    const layout = serviceLayout("restored-key-not-a-file");
    const keyFile = join(layout.dataDir, "root.key");
    const elsewhere = join(work, "restored-key-elsewhere");
    writeFileSync(elsewhere, `${"cd".repeat(32)}\n`, { mode: 0o600 });
    chownSync(elsewhere, 0, 0);
    symlinkSync(elsewhere, keyFile);
    await expect(initAsService(layout)).rejects.toThrow(`${keyFile} is a symbolic link: install uses an existing root key file only when it is a regular file; put the key itself there`);
    expect(lstatSync(elsewhere).uid).toBe(0);
    expect(lstatSync(keyFile).isSymbolicLink()).toBe(true);

    rmSync(keyFile);
    mkdirSync(keyFile);
    await expect(initAsService(layout)).rejects.toThrow(`${keyFile} is not a regular file: install uses an existing root key file only when it is a regular file; put the key itself there`);
    expect(existsSync(join(layout.dataDir, "citadel.db"))).toBe(false);
    rmSync(elsewhere);
  });
});

describe("under --root the root key is never sealed to this machine (found in review: the image could not start on its target)", () => {
  /** A PATH whose systemd-creds only records how it was called (has-tpm2 answers no): nothing reaches this machine's host key. */
  function recordingSystemdCreds(name: string): { PATH: string; calls: () => string[] } {
    const dir = join(work, name);
    mkdirSync(dir);
    const log = join(dir, "calls");
    writeFileSync(join(dir, "systemd-creds"), `#!/bin/sh\necho "$*" >> "${log}"\n[ "$1" = has-tpm2 ] && { echo no; exit 1; }\nexit 0\n`);
    chmodSync(join(dir, "systemd-creds"), 0o755);
    return { PATH: `${dir}:${process.env.PATH}`, calls: () => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : []) };
  }

  test("the default is a key file although systemd-creds exists", async () => {
    const creds = recordingSystemdCreds("creds-default");
    const root = join(work, "image-default");
    const run = await citadel(["install", "--root", root, "--binary", wrapper], { PATH: creds.PATH });
    expect(run.code).toBe(0);
    expect(run.out).toContain("seal: key_file, because --root is not /: the key is a file in the data directory");
    expect((parseToml(readFileSync(join(root, "etc/citadel/citadel.toml"), "utf8")) as { seal: { method: string } }).seal.method).toBe("key_file");
    expect(existsSync(join(root, serviceCredential().path))).toBe(false);
    expect(creds.calls()).toEqual([]);
  });

  test("--seal credential is a usage error that says why, before anything is written", async () => {
    const creds = recordingSystemdCreds("creds-explicit");
    const root = join(work, "image-credential");
    const refusal = citadel(["install", "--root", root, "--binary", wrapper, "--seal", "credential"], { PATH: creds.PATH });
    await expect(refusal).rejects.toBeInstanceOf(UsageError);
    await expect(refusal).rejects.toThrow(/--seal credential with --root: systemd-creds would seal the root key to this machine's TPM2 or host key, not to the machine that boots the image/);
    expect(existsSync(root)).toBe(false);
    expect(creds.calls().filter((c) => c.startsWith("encrypt"))).toEqual([]);
  });

  test("an image's config that already says systemd_credential, with no database yet: refused, nothing encrypted", async () => {
    const creds = recordingSystemdCreds("creds-installed");
    const root = join(work, "image-installed");
    mkdirSync(join(root, "etc/citadel"), { recursive: true });
    writeFileSync(join(root, "etc/citadel/citadel.toml"), renderInstalledConfig({ dataDir: TARGET.dataDir, sealMethod: "systemd_credential", credential: serviceCredential().name }));
    await expect(citadel(["install", "--root", root, "--initialize", "--binary", wrapper], { PATH: creds.PATH })).rejects.toThrow(/under --root a credential would be sealed to this machine's TPM2 or host key/);
    expect(existsSync(join(root, "var/lib/citadel/citadel.db"))).toBe(false);
    // Without --initialize it installs, and the target makes its credential.
    const run = await citadel(["install", "--root", root, "--binary", wrapper], { PATH: creds.PATH });
    expect(run.out).toContain('seal: systemd_credential, because already installed with seal.method "systemd_credential"');
    expect(run.out).toContain("citadel init --config /etc/citadel/citadel.toml --key-out - | systemd-creds encrypt --name=citadel-root-key - /etc/citadel/root-key.cred && chmod 600 /etc/citadel/root-key.cred");
    // This machine's systemd-creds was never run, not even asked whether it has a TPM2 (found in review).
    expect(creds.calls()).toEqual([]);
  });

  test("a config whose [seal] install does not know is refused before anything is planned, written or run, naming the key (found in review: systemd-creds ran for \"keyfile\"; key_file = 5 was a TypeError)", async () => {
    for (const [name, seal, message] of [
      ["method", 'method = "keyfile"', 'seal.method must be one of "key_file", "systemd_credential", "shamir", not "keyfile"'],
      ["key-file", "key_file = 5", "seal.key_file must be a string (a path), not 5"],
    ] as const) {
      const creds = recordingSystemdCreds(`creds-bad-${name}`);
      const root = join(work, `image-bad-${name}`);
      mkdirSync(join(root, "etc/citadel"), { recursive: true });
      writeFileSync(join(root, "etc/citadel/citadel.toml"), `data_dir = "/var/lib/citadel"\n[seal]\n${seal}\n`);
      const before = snapshot(root);
      for (const initialize of [[], ["--initialize"]]) {
        const refusal = citadel(["install", "--root", root, ...initialize, "--binary", wrapper], { PATH: creds.PATH });
        await expect(refusal).rejects.toBeInstanceOf(ConfigError); // exit 2
        await expect(refusal).rejects.toThrow(`${join(root, "etc/citadel/citadel.toml")}: ${message}`);
      }
      expect(snapshot(root)).toEqual(before);
      expect(creds.calls()).toEqual([]);
    }
  });
});

describe("an init that fails after it committed the database (found in review: the key was lost, or the setup never finished)", () => {
  /** The real binary, whose `init` fails after it has done its work, as when the first owner's setup fails. */
  function failingInit(name: string): string {
    const path = join(work, name);
    writeFileSync(path, `#!/bin/sh\n"${wrapper}" "$@" || exit $?\n[ "$1" = init ] || exit 0\necho "the first owner's setup failed (test)" >&2\nexit 1\n`);
    chmodSync(path, 0o755);
    return path;
  }

  test("key file: what init made is removed, and running install again initializes afresh", async () => {
    const root = join(work, "init-fails-key-file");
    await expect(citadel(["install", "--root", root, "--initialize", "--binary", failingInit("fails-key-file"), "--seal", "key-file"])).rejects.toThrow(/citadel init failed \(exit 1\).*removed again/s);
    expect(["citadel.db", "root.key"].filter((name) => existsSync(join(root, "var/lib/citadel", name)))).toEqual([]);

    const again = await citadel(["install", "--root", root, "--initialize", "--binary", wrapper]);
    expect(again.out).toMatch(/created +\S+citadel\.db  initialized by citadel init/);
    expect(again.out).toMatch(/One-time password for admin@localhost: \S+/); // the setup ran to its end this time
    expect(rootKeyVerifier(readRootKeyFile(join(root, "var/lib/citadel/root.key")))).toEqual(activeVerifier(join(root, "var/lib/citadel")));
  });

  test("systemd credential: the database whose key was printed is removed, and running install again stores a key that opens it", async () => {
    // A stand-in systemd-creds that stores what it is given as it is: the key can be checked, and this machine's host key is never used.
    const bin = join(work, "plain-creds");
    mkdirSync(bin);
    writeFileSync(join(bin, "systemd-creds"), '#!/bin/sh\n[ "$1" = encrypt ] || exit 1\nfor last; do :; done\nif [ "$last" = - ]; then cat >/dev/null; else cat > "$last"; fi\n');
    chmodSync(join(bin, "systemd-creds"), 0o755);
    const tools = new SystemTools({ PATH: `${bin}:${process.env.PATH}` });
    const root = join(work, "init-fails-credential");
    const layout = { ...layoutUnder(root), onHost: true }; // a credential is made only for this machine: taken for it, under the test's directory
    mkdirSync(layout.configDir, { recursive: true });
    mkdirSync(layout.dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(layout.configFile, renderInstalledConfig({ dataDir: TARGET.dataDir, sealMethod: "systemd_credential", credential: serviceCredential().name }));
    const seal = { method: "systemd_credential", credentialKey: "host", reason: "test" } as const;
    const input = { layout, seal, keyFile: "root.key", credentialName: serviceCredential().name, runAs: null };

    await expect(initializeOnce(tools, { ...input, binary: failingInit("fails-credential") })).rejects.toThrow(/citadel init failed \(exit 1\).*removed again/s);
    expect([existsSync(join(layout.dataDir, "citadel.db")), existsSync(layout.credentialFile)]).toEqual([false, false]);

    const again = await initializeOnce(tools, { ...input, binary: wrapper });
    expect(again.items.map((i) => [i.status, i.what])).toEqual([
      ["created", join(layout.dataDir, "citadel.db")],
      ["created", layout.credentialFile],
    ]);
    expect(rootKeyVerifier(parseRootKey(readFileSync(layout.credentialFile), "stored key"))).toEqual(activeVerifier(layout.dataDir));
  });
});

test("a file that is not a Citadel is refused before anything is written", async () => {
  const root = join(work, "not-citadel");
  const impostor = join(work, "impostor");
  writeFileSync(impostor, "#!/bin/sh\necho hello\n");
  chmodSync(impostor, 0o755);
  await expect(citadel(["install", "--root", root, "--binary", impostor, "--seal", "key-file"])).rejects.toThrow(/is not a Citadel binary/);
  expect(existsSync(root)).toBe(false);
});

test("a symbolic link below --root is refused before anything is written (it would lead the installer out of the root)", async () => {
  const root = join(work, "linked");
  const outside = join(work, "outside-etc");
  mkdirSync(join(root, "etc"), { recursive: true });
  mkdirSync(outside);
  symlinkSync(outside, join(root, "etc", "citadel"));
  await expect(citadel(["install", "--root", root, "--binary", wrapper, "--seal", "key-file"])).rejects.toThrow(/etc\/citadel is a symbolic link/);
  expect(readdirSync(outside)).toEqual([]);
});

describe("uninstall with a symbolic link below --root refuses before removing anything (found in review: it deleted the link's target)", () => {
  /** A root whose `link` leads to a directory outside it that holds `files` (paths below the root). */
  function linkedRoot(name: string, link: string, files: string[]): { root: string; outside: string } {
    const root = join(work, name);
    const outside = join(work, `${name}-outside`);
    for (const file of files) {
      const target = join(outside, file.slice(link.length + 1));
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, "the host's own\n");
    }
    mkdirSync(dirname(join(root, link)), { recursive: true });
    symlinkSync(outside, join(root, link));
    return { root, outside };
  }
  const listing = (dir: string) => readdirSync(dir, { recursive: true }).map(String).sort();

  test("--purge --yes: etc and var/lib linked out of the root", async () => {
    const etc = linkedRoot("purge-linked-etc", "etc", ["etc/citadel/citadel.toml", "etc/citadel/root-key.cred"]);
    const before = listing(etc.outside);
    await expect(citadel(["uninstall", "--root", etc.root, "--purge", "--yes"])).rejects.toThrow(/etc is a symbolic link/);
    expect(listing(etc.outside)).toEqual(before);

    const lib = linkedRoot("purge-linked-lib", "var/lib", ["var/lib/citadel/citadel.db", "var/lib/citadel/root.key"]);
    // A real unit file below the root: the refusal comes before it too is removed.
    mkdirSync(join(lib.root, "etc/systemd/system"), { recursive: true });
    writeFileSync(join(lib.root, "etc/systemd/system/citadel.service"), "[Unit]\n");
    await expect(citadel(["uninstall", "--root", lib.root, "--purge", "--yes"])).rejects.toThrow(/var\/lib is a symbolic link/);
    expect(listing(lib.outside)).toEqual(["citadel", "citadel/citadel.db", "citadel/root.key"]);
    expect(existsSync(join(lib.root, "etc/systemd/system/citadel.service"))).toBe(true);
  });

  test("without --purge: the binary's and the units' directories linked out of the root", async () => {
    const bin = linkedRoot("linked-bin", "usr/local/bin", ["usr/local/bin/citadel"]);
    await expect(citadel(["uninstall", "--root", bin.root])).rejects.toThrow(/usr\/local\/bin is a symbolic link/);
    expect(listing(bin.outside)).toEqual(["citadel"]);
    const units = linkedRoot("linked-units", "etc/systemd", ["etc/systemd/system/citadel.service"]);
    await expect(citadel(["uninstall", "--root", units.root])).rejects.toThrow(/etc\/systemd is a symbolic link/);
    expect(listing(units.outside)).toEqual(["system", "system/citadel.service"]);
  });
});

test("scripts/install.sh runs `<binary> install` with the remaining arguments, or explains what is missing", () => {
  const script = join(REPO, "scripts/install.sh");
  const echo = join(work, "echo-binary");
  writeFileSync(echo, '#!/bin/sh\necho "ran: $*"\n');
  chmodSync(echo, 0o755);
  const ran = Bun.spawnSync(["sh", script, echo, "--root", "/tmp/x", "--yes"]);
  expect([ran.exitCode, ran.stdout.toString()]).toEqual([0, "ran: install --root /tmp/x --yes\n"]);
  const missing = Bun.spawnSync(["sh", script, join(work, "no-such-binary")]);
  expect(missing.exitCode).toBe(1);
  expect(missing.stderr.toString()).toContain("no executable Citadel binary");
});
