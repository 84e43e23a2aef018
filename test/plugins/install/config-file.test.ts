/** The installed config: the documented example with this installation's keys set, valid for the schema. */
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readInstalledConfig, renderInstalledConfig } from "../../../plugins/install/config-file.ts";
import { ConfigError } from "../../../src/config/error.ts";
import { loadConfig } from "../../../src/config/load.ts";
import { configSchema } from "../../../src/main.ts";

const example = await Bun.file(new URL("../../../config/citadel.example.toml", import.meta.url)).text();
const settings = { dataDir: "/var/lib/citadel", sealMethod: "systemd_credential", credential: "citadel-root-key" } as const;

test("only the installation's keys differ from the example, each set in its own table beside its documentation", () => {
  const text = renderInstalledConfig(settings);
  const body = (t: string) => t.split("\n").filter((l) => !l.startsWith("# ") && l !== "#");
  const changed = body(text).filter((line, i) => line !== body(example)[i]);
  expect(changed).toEqual(['data_dir = "/var/lib/citadel"', 'method = "systemd_credential"', 'credential = "citadel-root-key"']);
  expect(text).toContain('[seal]\n# key_file: read seal.key_file at start');
  expect(text.startsWith("# Citadel configuration, written by `citadel install`")).toBe(true);
});

test("the schema accepts it and reads back what was set, for every seal method", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-config-file-"));
  try {
    for (const sealMethod of ["key_file", "systemd_credential", "shamir"] as const) {
      const path = join(dir, `${sealMethod}.toml`);
      writeFileSync(path, renderInstalledConfig({ ...settings, sealMethod }));
      const { config } = loadConfig({ schema: configSchema, env: {}, configFlag: path, cwd: dir });
      expect([config.data_dir, config.seal.method, config.seal.credential]).toEqual(["/var/lib/citadel", sealMethod, "citadel-root-key"]);
      expect(readInstalledConfig(path)).toEqual({ dataDir: "/var/lib/citadel", method: sealMethod, keyFile: "root.key", backupDir: "backups" });
    }
    expect(readInstalledConfig(join(dir, "absent.toml"))).toBeNull();
    writeFileSync(join(dir, "broken.toml"), "[seal\n");
    expect(() => readInstalledConfig(join(dir, "broken.toml"))).toThrow(/broken\.toml: .*move it away/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("data_dir is read as the service resolves it: from its working directory /, .citadel when absent (found in review)", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-config-file-"));
  try {
    const dataDirOf = (text: string) => {
      writeFileSync(join(dir, "citadel.toml"), text);
      return readInstalledConfig(join(dir, "citadel.toml"))!.dataDir;
    };
    expect(dataDirOf('data_dir = "/srv/citadel/"\n')).toBe("/srv/citadel");
    expect(dataDirOf('data_dir = "srv/citadel"\n')).toBe("/srv/citadel");
    expect(dataDirOf("[seal]\n")).toBe("/.citadel");
    expect(() => dataDirOf("data_dir = 5\n")).toThrow("data_dir must be a string (a path), not 5"); // it was a TypeError from path.resolve
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("[seal] and [backup] dir are checked as serve would, naming the key (found in review: an unknown method and a key_file that is no string were taken on trust)", () => {
  const dir = mkdtempSync(join(tmpdir(), "citadel-config-file-"));
  try {
    const read = (text: string) => {
      writeFileSync(join(dir, "citadel.toml"), text);
      return readInstalledConfig(join(dir, "citadel.toml"));
    };
    expect(() => read('[seal]\nmethod = "keyfile"\n')).toThrow(new ConfigError(`${join(dir, "citadel.toml")}: seal.method must be one of "key_file", "systemd_credential", "shamir", not "keyfile"; fix it, or move it away to have a new one written`));
    expect(() => read("[seal]\nmethod = 1\n")).toThrow("seal.method must be a string (a seal method), not 1");
    expect(() => read("[seal]\nkey_file = 5\n")).toThrow("seal.key_file must be a string (a path), not 5");
    expect(() => read("[backup]\ndir = true\n")).toThrow("backup.dir must be a string (a path), not true");
    expect(read('[seal]\nmethod = "shamir"\nkey_file = "/etc/k"\n')).toMatchObject({ method: "shamir", keyFile: "/etc/k" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an example without its generated header is refused instead of producing a config with two headers", () => {
  expect(() => renderInstalledConfig(settings, `# something else\n${example}`)).toThrow(/run `bun run config:example`/);
});
