/**
 * Keys and the audit log on the compiled binary: the key file's mode, Shamir unseal through
 * the CLI, a systemd credential, a crash under write load, and what the files on disk hold.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BINARY, binaryTestScope, firstLogin, freePort, oneTimePassword, runCitadel, type RunningCitadel, startCitadel } from "../helpers/binary.ts";
import { pinnedGet } from "../helpers/pinned-https.ts";

const { running, removed: dirs, dir: dataDir } = binaryTestScope();

async function start(data: string, env: Record<string, string> = {}) {
  const port = await freePort();
  const citadel = await startCitadel(["--data", data], { CITADEL_HTTP_PORT: String(port), ...env });
  running.push(citadel);
  return { citadel, port, env: { CITADEL_HTTP_PORT: String(port), ...env } };
}

/** The operator's session token on a first-started instance (the one-time password is changed). */
async function operatorToken(data: string, citadel: RunningCitadel, password = oneTimePassword(citadel.stderr())) {
  return firstLogin(citadel.url, readFileSync(join(data, "tls/cert.pem"), "utf8"), password);
}

/** An HTTPS request to the instance, trusting only its own certificate. */
async function api(data: string, port: number, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, token?: string) {
  const ca = readFileSync(join(data, "tls/cert.pem"), "utf8");
  const res = await fetch(`https://127.0.0.1:${port}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    tls: { ca },
  });
  return { status: res.status, body: (await res.json()) as any };
}

describe("the embedded default's key file", () => {
  test("is created 0600 on first start, and a key file readable by others stops start-up naming it", async () => {
    const data = dataDir();
    const { citadel } = await start(data);
    expect(readFileSync(join(data, "root.key"), "utf8")).toMatch(/^[0-9a-f]{64}\n$/);
    expect(citadel.logs().find((l) => l.msg === "initialized the root key")).toBeDefined();
    expect((await citadel.stop()).code).toBe(0);
    chmodSync(join(data, "root.key"), 0o640);
    const refused = await runCitadel(["serve", "--data", data]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`root key file ${join(data, "root.key")} is readable by group or others (mode 640)`);
  });
});

describe("a damaged key hierarchy (found in review)", () => {
  /** Flips the last byte of KEK `version`'s wrap in the stopped instance's database. */
  function damageKek(data: string, version: number) {
    const db = new Database(join(data, "citadel.db"));
    try {
      const { wrapped } = db.query("SELECT wrapped FROM kek_wraps WHERE kek_version = ?").get(version) as { wrapped: Uint8Array };
      const altered = Buffer.from(wrapped);
      altered[altered.length - 1]! ^= 1;
      db.run("UPDATE kek_wraps SET wrapped = ? WHERE kek_version = ?", [altered, version]);
    } finally {
      db.close();
    }
  }

  test("an active KEK that does not open stops the start (exit 1, as a wrong key) naming it and the remedy; doctor fails it too (it started, /readyz 200, every login a 500)", async () => {
    const data = dataDir();
    const { citadel } = await start(data);
    expect((await citadel.stop()).code).toBe(0);
    damageKek(data, 1); // the only KEK, no rotation pending
    const refused = await runCitadel(["serve", "--data", data], { CITADEL_HTTP_PORT: String(await freePort()) });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/citadel: KEK v1 does not open with root key [0-9a-f]{8} \(its wrap damaged or altered\), and it is the active one: .*restore a backup made before the damage/);
    const doctor = await runCitadel(["doctor", "--data", data]);
    expect(doctor.code).toBe(1);
    expect(doctor.stdout + doctor.stderr).toContain("and it is the active one: Citadel cannot unseal");
  });
});

describe("Shamir shares", () => {
  test("init prints the shares once; serve starts sealed; citadel unseal takes them one at a time", async () => {
    const data = dataDir();
    const env = { CITADEL_SEAL_METHOD: "shamir" };
    // A scheme that could never unseal is a usage error naming the flag, before anything is made (found in review: exit 1).
    const impossible = await runCitadel(["init", "--data", data, "--shares", "2", "--threshold", "3"], env);
    expect([impossible.code, impossible.stderr]).toEqual([2, expect.stringContaining("--shares: 2 shares cannot meet a threshold of 3")]);
    const thresholdAlone = await runCitadel(["init", "--data", data, "--threshold", "6"], env);
    expect([thresholdAlone.code, thresholdAlone.stderr]).toEqual([2, expect.stringContaining("--threshold: 5 shares cannot meet a threshold of 6: at least as many shares as the threshold (5 shares by default: give --shares too)")]);
    const init = await runCitadel(["init", "--data", data, "--shares", "5", "--threshold", "3", "--json"], env);
    expect(init.code).toBe(0);
    const summary = JSON.parse(init.stdout);
    const shares: string[] = summary.shares;
    expect(summary.owner).toBe("admin@localhost");
    expect(shares).toHaveLength(5);
    expect(readdirSync(data)).not.toContain("root.key"); // the key exists only as shares
    // Started without the variable, the config says key_file: refused with both methods named.
    const other = await runCitadel(["serve", "--data", data]);
    expect([other.code, other.stderr]).toEqual([2, expect.stringContaining('root key was made for seal method shamir, but the config says key_file: set seal.method = "shamir"')]);

    const { citadel, port, env: runEnv } = await start(data, env);
    expect(citadel.logs().find((l) => l.msg === "listening")?.sealed).toBe(true);
    const sealed = (await api(data, port, "GET", "/v1/system/info")).body;
    expect([sealed.code, sealed.detail]).toEqual(["sealed", "Citadel is sealed: give it key shares with `citadel unseal`."]);
    expect((await pinnedGet(citadel.url, citadel.fingerprint!, "/readyz")).status).toBe(503);

    const wrong = await runCitadel(["unseal", "--data", data, "citadel-share-00000000-1-" + "0".repeat(64) + "-00000000"], runEnv);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^citadel: .*checksum/);
    // A share given, then forgotten: --reset says so (it said "Share accepted: 0 of 3").
    expect((await runCitadel(["unseal", "--data", data, shares[1]!], runEnv)).stdout.trim()).toBe("Share accepted: 1 of 3.");
    expect((await runCitadel(["unseal", "--data", data, "--reset"], runEnv)).stdout.trim()).toBe("The shares given so far are forgotten: 0 of 3.");
    for (const [i, share] of [shares[4], shares[0], shares[2]].entries()) {
      // From standard input, as `citadel unseal < share.txt` (so no share lands in shell history).
      const proc = Bun.spawn([BINARY, "unseal", "--data", data], { env: { PATH: process.env.PATH ?? "", ...runEnv }, stdin: new TextEncoder().encode(`${share}\n`), stdout: "pipe", stderr: "pipe" });
      const out = await new Response(proc.stdout).text();
      expect(await proc.exited).toBe(0);
      expect(out.trim()).toBe(i < 2 ? `Share accepted: ${i + 1} of 3.` : "Unsealed.");
    }
    const token = await operatorToken(data, citadel, summary.one_time_password);
    expect((await api(data, port, "GET", "/v1/system/info", undefined, {}, token)).status).toBe(200);
    const status = await runCitadel(["keys", "status", "--data", data, "--json"], { ...runEnv, CITADEL_TOKEN: token });
    expect(JSON.parse(status.stdout).root).toMatchObject({ method: "shamir", shares: 5, threshold: 3 });
    expect((await citadel.stop()).code).toBe(0);
  });
});

describe("init never loses the root key it made (found in review)", () => {
  test("a setup that fails after the key was made still hands out the shares; init again finishes, and they unseal", async () => {
    const data = dataDir();
    const env = { CITADEL_SEAL_METHOD: "shamir" };
    const failed = await runCitadel(["init", "--data", data, "--shares", "3", "--threshold", "2", "--email", "not an email"], env);
    expect(failed.code).not.toBe(0);
    const shares = failed.stderr.match(/citadel-share-\S+/g) ?? [];
    expect(shares).toHaveLength(3);
    expect(failed.stderr).toContain("These shares are the only way to unseal it");
    const again = await runCitadel(["init", "--data", data, "--json"], env);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ created: false, owner: "admin@localhost" });
    const { citadel, env: runEnv } = await start(data, env);
    for (const share of shares.slice(0, 2)) expect((await runCitadel(["unseal", "--data", data, share], runEnv)).code).toBe(0);
    // The CLI has its answer before the server's log line has come through its pipe: waited for, not assumed.
    const unsealed = () => citadel.logs().some((l) => l.msg === "unsealed");
    for (let i = 0; i < 100 && !unsealed(); i++) await Bun.sleep(50);
    expect(unsealed()).toBe(true);
    expect((await citadel.stop()).code).toBe(0);
  });

  test("a --key-out file that exists already stops init before any key is made", async () => {
    const data = dataDir();
    const env = { CITADEL_SEAL_METHOD: "systemd_credential" };
    const taken = join(data, "..", `${data.split("/").pop()}-taken.key`);
    writeFileSync(taken, "someone else's file\n");
    dirs.push({ remove: () => Bun.spawnSync(["rm", "-f", taken]) });
    const refused = await runCitadel(["init", "--data", data, "--key-out", taken], env);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("EEXIST");
    expect(readFileSync(taken, "utf8")).toBe("someone else's file\n");
    const init = await runCitadel(["init", "--data", data, "--key-out", "-", "--json"], env);
    expect(init.code).toBe(0);
    expect(init.stdout).toMatch(/^[0-9a-f]{64}$/m); // a key made now: the refused run committed none
  });
});

describe("systemd credential", () => {
  test("init hands the key out once; serve reads it from $CREDENTIALS_DIRECTORY", async () => {
    const data = dataDir();
    const credentials = join(data, "..", `${data.split("/").pop()}-creds`);
    mkdirSync(credentials, { mode: 0o700 });
    dirs.push({ remove: () => Bun.spawnSync(["rm", "-rf", credentials]) });
    const env = { CITADEL_SEAL_METHOD: "systemd_credential" };
    expect((await runCitadel(["init", "--data", data], env)).stderr).toContain("--key-out");
    const init = await runCitadel(["init", "--data", data, "--key-out", "-"], env);
    expect(init.code).toBe(0);
    expect(init.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    writeFileSync(join(credentials, "citadel-root-key"), init.stdout, { mode: 0o400 });
    const { citadel } = await start(data, { ...env, CREDENTIALS_DIRECTORY: credentials });
    expect(citadel.logs().find((l) => l.msg === "listening")?.sealed).toBe(false);
    expect((await citadel.stop()).code).toBe(0);
    const missing = await runCitadel(["serve", "--data", data], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("$CREDENTIALS_DIRECTORY is not set");
  });
});

describe("a seal migration (found missing: a rekey kept the seal method)", () => {
  test("key file to Shamir shares with keys rekey --seal: the old key serves until a start with shamir, the new shares then unseal and take over", async () => {
    const data = dataDir();
    const first = await start(data);
    const token = await operatorToken(data, first.citadel);
    const cli = (args: string[], env: Record<string, string>) => runCitadel([...args, "--data", data], { ...env, CITADEL_TOKEN: token });
    const workspace = JSON.parse((await cli(["workspace", "create", "ops", "--json"], first.env)).stdout).id as string;
    const set = Bun.spawn([BINARY, "secrets", "set", "DB_PASSWORD", "-w", workspace, "--data", data], {
      env: { PATH: process.env.PATH ?? "", ...first.env, CITADEL_TOKEN: token },
      stdin: new TextEncoder().encode("kept across the migration\n"),
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await set.exited).toBe(0);

    const rekeyed = await cli(["keys", "rekey", "--seal", "shamir", "--shares", "3", "--threshold", "2", "--yes"], first.env);
    expect([rekeyed.code, rekeyed.stderr]).toEqual([0, ""]);
    const shares = rekeyed.stdout.match(/citadel-share-\S+/g) ?? [];
    expect(shares).toHaveLength(3);
    expect(rekeyed.stdout).toContain('set method = "shamir" under [seal] in the config file');
    const status = JSON.parse((await cli(["keys", "status", "--json"], first.env)).stdout);
    expect([status.root.method, status.pending_root?.method]).toEqual(["key_file", "shamir"]);
    expect((await first.citadel.stop()).code).toBe(0);

    // Still configured for the key file: it starts from it, and the migration waits.
    const onKeyFile = await start(data);
    expect(onKeyFile.citadel.logs().find((l) => l.msg === "listening")?.sealed).toBe(false);
    expect(JSON.parse((await cli(["keys", "status", "--json"], onKeyFile.env)).stdout).pending_root?.method).toBe("shamir");
    expect((await onKeyFile.citadel.stop()).code).toBe(0);

    // With seal.method = "shamir": sealed, asking for the new shares, and warning of the key file left behind.
    const shamir = await start(data, { CITADEL_SEAL_METHOD: "shamir" });
    expect(shamir.citadel.logs().find((l) => l.msg === "listening")?.sealed).toBe(true);
    expect(shamir.citadel.logs().some((l) => String(l.msg).startsWith("seal.method is shamir, but the key file still holds this Citadel's root key"))).toBe(true);
    const sealStatus = JSON.parse((await runCitadel(["unseal", "--data", data, "--json", shares[1]!], shamir.env)).stdout);
    expect(sealStatus.status).toMatchObject({ sealed: true, method: "shamir", threshold: 2, progress: 1 });
    expect((await runCitadel(["unseal", "--data", data, shares[2]!], shamir.env)).stdout.trim()).toBe("Unsealed.");
    const after = JSON.parse((await cli(["keys", "status", "--json"], shamir.env)).stdout);
    expect([after.root.method, after.root.threshold, after.pending_root]).toEqual(["shamir", 2, null]);
    // What was stored under the old key reads, the session made then still works, and the audit chain verifies.
    expect((await cli(["secrets", "get", "DB_PASSWORD", "-w", workspace], shamir.env)).stdout.trim()).toBe("kept across the migration");
    expect((await runCitadel(["audit", "verify", "--data", data], { ...shamir.env, CITADEL_TOKEN: token })).code).toBe(0);
    expect((await shamir.citadel.stop()).code).toBe(0);

    // The old key file opens nothing now; a start configured for it is refused naming both methods.
    const refused = await runCitadel(["serve", "--data", data]);
    expect([refused.code, refused.stderr]).toEqual([2, expect.stringContaining('root key was made for seal method shamir, but the config says key_file')]);
  });
});

describe("citadel recover (found missing: the only operator's lost second factor had no way back)", () => {
  test("on the host, while Citadel runs: a one-time password, the old logins ended; refused without --yes or where no Citadel is", async () => {
    const data = dataDir();
    const { citadel, env } = await start(data);
    const token = await operatorToken(data, citadel);
    const whoami = () => runCitadel(["whoami", "--data", data], { ...env, CITADEL_TOKEN: token });
    expect((await whoami()).code).toBe(0);

    const unconfirmed = await runCitadel(["recover", "admin@localhost", "--data", data], env);
    expect([unconfirmed.code, unconfirmed.stderr]).toEqual([2, expect.stringContaining("add --yes")]);
    const empty = dataDir();
    const nowhere = await runCitadel(["recover", "admin@localhost", "--data", empty, "--yes"]);
    expect([nowhere.code, nowhere.stderr]).toEqual([2, expect.stringContaining(`no Citadel in ${empty}`)]);
    expect(readdirSync(empty)).toEqual([]); // nothing made there

    const recovered = await runCitadel(["recover", "admin@localhost", "--data", data, "--yes", "--json"], env);
    expect([recovered.code, recovered.stderr]).toEqual([0, ""]);
    const { operator, one_time_password: password } = JSON.parse(recovered.stdout);
    expect(operator).toBe("admin@localhost");
    // Another process wrote the database: the server sees it within a second.
    let refused = await whoami();
    for (let i = 0; i < 30 && refused.code === 0; i++, refused = await whoami()) await Bun.sleep(100);
    expect(refused.code).toBe(1);
    const fresh = await firstLogin(citadel.url, readFileSync(join(data, "tls/cert.pem"), "utf8"), password);
    expect((await runCitadel(["whoami", "--data", data, "--json"], { ...env, CITADEL_TOKEN: fresh })).code).toBe(0);
    expect((await citadel.stop()).code).toBe(0);
  });

  test("--clear-allowlist: an organization's allowlist that refuses the operator on the host too is emptied while Citadel runs, audited (found in review)", async () => {
    const data = dataDir();
    const { citadel, env, port } = await start(data);
    const token = await operatorToken(data, citadel);
    const org = await api(data, port, "GET", "/v1/iam/orgs", undefined, {}, token).then((r) => r.body.items[0].id as string);
    // Set from an address the operators no longer have (written as the API would have).
    const db = new Database(join(data, "citadel.db"));
    db.query("UPDATE organizations SET ip_allowlist = '[\"10.0.0.0/8\"]' WHERE id = ?").run(org);
    db.close();
    // Asked with a read: the server sees another process's write within a second (its read
    // memo), and a PATCH sent before then would have been taken, emptying the list itself.
    const look = () => api(data, port, "GET", `/v1/iam/orgs/${org}`, undefined, {}, token);
    const eventually = async (status: number) => {
      let res = await look();
      for (let i = 0; i < 30 && res.status !== status; i++, res = await look()) await Bun.sleep(100);
      return res.status;
    };
    expect(await eventually(403)).toBe(403);
    expect((await api(data, port, "PATCH", `/v1/iam/orgs/${org}`, { ip_allowlist: [] }, {}, token)).status).toBe(403);

    const unconfirmed = await runCitadel(["recover", "--clear-allowlist", org, "--data", data], env);
    expect([unconfirmed.code, unconfirmed.stderr]).toEqual([2, expect.stringContaining(`this empties the address allowlist of ${org}: add --yes`)]);
    const unknown = await runCitadel(["recover", "--clear-allowlist", "org_nonexistent", "--data", data, "--yes"], env);
    expect([unknown.code, unknown.stderr]).toEqual([1, expect.stringContaining("no organization or workspace org_nonexistent")]);
    const cleared = await runCitadel(["recover", "--clear-allowlist", org, "--data", data, "--yes", "--json"], env);
    expect([cleared.code, cleared.stderr]).toEqual([0, ""]);
    expect(JSON.parse(cleared.stdout)).toEqual({ allowlist_cleared: { organization: org, was: ["10.0.0.0/8"] } });
    expect(await eventually(200)).toBe(200); // the server sees another process's write within a second
    expect((await citadel.stop()).code).toBe(0);

    const audit = new Database(join(data, "citadel.db"), { readonly: true });
    const reasons = audit.query<{ reason: string }, [string]>("SELECT reason FROM audit_events WHERE action = 'iam.organization.update' AND resource_id = ? ORDER BY seq").all(org);
    audit.close();
    expect(reasons[0]!.reason).toMatch(/^host-local recovery by uid \d+: ip_allowlist=\[\] \(any address\), was \[10\.0\.0\.0\/8\]$/);
  });

  test("it changes nothing but the account: no config, certificate or schema made, and a database of another version is refused as it is (found in review)", async () => {
    const data = dataDir();
    expect((await runCitadel(["init", "--data", data])).code).toBe(0);
    rmSync(join(data, "citadel.toml"));
    rmSync(join(data, "tls"), { recursive: true });
    expect((await runCitadel(["recover", "admin@localhost", "--data", data, "--yes"])).code).toBe(0);
    // What init left (the key and the data directory's lock) and nothing more.
    expect(readdirSync(data).filter((f) => !f.startsWith("citadel.db")).sort()).toEqual(["citadel.lock", "root.key"]);

    // A database this binary would first migrate (as if made by an older one): refused, not migrated.
    const db = new Database(join(data, "citadel.db"));
    const last = db.query<{ owner: string; id: string }, []>("SELECT owner, id FROM citadel_migrations ORDER BY applied_at DESC, id DESC LIMIT 1").get()!;
    db.query("DELETE FROM citadel_migrations WHERE owner = ? AND id = ?").run(last.owner, last.id);
    db.close();
    const older = await runCitadel(["recover", "admin@localhost", "--data", data, "--yes"]);
    expect([older.code, older.stderr]).toEqual([1, expect.stringContaining(`this citadel is newer than the database (it would apply ${last.owner}/${last.id})`)]);

    const empty = dataDir();
    writeFileSync(join(empty, "citadel.db"), "");
    const notOne = await runCitadel(["recover", "admin@localhost", "--data", empty, "--yes"]);
    expect([notOne.code, notOne.stderr]).toEqual([1, expect.stringContaining("this is not an initialized Citadel database")]);
    expect(readdirSync(empty).filter((f) => !f.startsWith("citadel.db"))).toEqual([]);
  });
});

describe("audit forwarding", () => {
  test("to the journal: every committed event as a JSON line on standard output, in order, without personal data", async () => {
    const data = dataDir();
    const { citadel } = await start(data, { CITADEL_AUDIT_FORWARD_TO: "journal" });
    await operatorToken(data, citadel); // a login and a password change: audited
    const forwarded = () => citadel.logs().filter((l) => l.msg === "audit event").map((l) => l.event as { action: string; outcome: string; seq: number });
    for (let i = 0; i < 50 && !forwarded().some((e) => e.action === "iam.password.change"); i++) await Bun.sleep(50);
    const events = forwarded();
    expect(events.map((e) => e.action)).toContain("sys.init"); // the first start's own events too (found in review)
    expect(events.map((e) => e.action)).toContain("iam.login");
    expect(events.map((e) => e.action)).toContain("iam.password.change");
    expect(events.map((e) => e.seq)).toEqual([...events.map((e) => e.seq)].sort((a, b) => a - b)); // in order
    expect(JSON.stringify(events)).not.toContain("127.0.0.1"); // the client address is personal data
    expect((await citadel.stop()).code).toBe(0);
  });

  test("to a file: citadel init's events are forwarded too, at the first start (found in review)", async () => {
    const data = dataDir();
    const env = { CITADEL_AUDIT_FORWARD_TO: "file" };
    expect((await runCitadel(["init", "--data", data], env)).code).toBe(0);
    const { citadel } = await start(data, env);
    expect((await citadel.stop()).code).toBe(0);
    const actions = readFileSync(join(data, "audit.jsonl"), "utf8").trimEnd().split("\n").map((line) => JSON.parse(line).action);
    expect(actions.slice(0, 3)).toEqual(["sys.init", "iam.user.create", "iam.organization.create"]);
    expect(actions).toContain("sys.unseal");
  });

  test("to a syslog collector on this host: the first start's events, octet-counted RFC 5424 messages in plain TCP", async () => {
    let received = Buffer.alloc(0);
    const collector = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (_socket, data) => void (received = Buffer.concat([received, data])) } });
    try {
      const data = dataDir();
      const env = { CITADEL_AUDIT_FORWARD_TO: "syslog", CITADEL_AUDIT_FORWARD_SYSLOG_ADDRESS: "127.0.0.1", CITADEL_AUDIT_FORWARD_SYSLOG_PORT: String(collector.port), CITADEL_AUDIT_FORWARD_SYSLOG_TLS: "false" };
      const { citadel } = await start(data, env);
      expect((await citadel.stop()).code).toBe(0);
      const messages: string[] = [];
      for (let i = 0; i < 100 && !messages.some((m) => m.includes('"action":"sys.unseal"')); i++) {
        await Bun.sleep(20);
        messages.length = 0;
        for (let rest = received; rest.length > 0; ) {
          const space = rest.indexOf(0x20);
          const length = Number(rest.subarray(0, space).toString());
          messages.push(rest.subarray(space + 1, space + 1 + length).toString());
          rest = rest.subarray(space + 1 + length);
        }
      }
      const actions = messages.map((m) => /^<85>1 \S+ \S+ citadel \d+ (\S+) - /.exec(m)?.[1]);
      expect(actions[0]).toBe("sys.init"); // forwarded from the first event on, authpriv.notice
      expect(actions).toEqual(expect.arrayContaining(["sys.unseal", "iam.user.create", "iam.organization.create"]));
    } finally {
      collector.stop(true);
    }
  });
});

describe("audit forwarding to a collector that accepts and never answers", () => {
  test("SIGTERM still stops it cleanly: the round waiting on the TLS handshake is given up, exit code 0, the store closed (found in review)", async () => {
    let connections = 0;
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: () => void connections++, data() {} } });
    try {
      const data = dataDir();
      const { citadel } = await start(data, { CITADEL_AUDIT_FORWARD_TO: "syslog", CITADEL_AUDIT_FORWARD_SYSLOG_ADDRESS: "127.0.0.1", CITADEL_AUDIT_FORWARD_SYSLOG_PORT: String(silent.port) });
      while (connections === 0) await Bun.sleep(5); // the first round waits on the handshake
      expect((await citadel.stop()).code).toBe(0);
      const messages = citadel.logs().map((l) => l.msg);
      expect(messages).toContain("stopped");
      expect(messages).not.toContain("stopping took too long; giving up");
      // Closed: the last connection's close checkpoints the WAL into citadel.db and removes it.
      expect(readdirSync(data).filter((f) => f.startsWith("citadel.db"))).toEqual(["citadel.db"]);
    } finally {
      silent.stop(true);
    }
  });
});

describe("durability and what is on disk", () => {
  test("killed with SIGKILL under audited write load: every acknowledged write survives and the chain verifies", async () => {
    const data = dataDir();
    const { citadel, port, env } = await start(data);
    const token = await operatorToken(data, citadel);
    const acknowledged: string[] = [];
    let stop = false;
    const writer = async (n: number) => {
      for (let i = 0; !stop; i++) {
        try {
          const res = await api(data, port, "POST", "/v1/audit/notes", { text: `load ${n}-${i}` }, {}, token);
          if (res.status === 200) acknowledged.push(res.body.id);
        } catch {
          return; // the connection died with the process
        }
      }
    };
    const writers = Array.from({ length: 16 }, (_, n) => writer(n));
    while (acknowledged.length < 300) await Bun.sleep(5);
    citadel.proc.kill("SIGKILL");
    stop = true;
    await Promise.all(writers);
    await citadel.proc.exited;

    const again = await start(data);
    const stored = new Set<string>();
    for (let cursor: string | null = ""; cursor !== null; ) {
      const page = await api(data, again.port, "GET", `/v1/audit/events?action=audit.note.create&limit=1000${cursor ? `&cursor=${cursor}` : ""}`, undefined, {}, token);
      for (const e of page.body.events) stored.add(e.id);
      cursor = page.body.next_cursor;
    }
    const lost = acknowledged.filter((id) => !stored.has(id));
    expect(lost).toEqual([]);
    const verify = await runCitadel(["audit", "verify", "--data", data], env);
    expect(verify.stderr).toBe("");
    expect(verify.code).toBe(0);
    expect(verify.stdout).toStartWith("OK: ");
    expect((await again.citadel.stop()).code).toBe(0);
  });

  test("the database, its WAL and the logs hold no personal data in clear and no key", async () => {
    const data = dataDir();
    const { citadel, port, env } = await start(data);
    const password = oneTimePassword(citadel.stderr());
    const token = await operatorToken(data, citadel, password);
    const marker = "Marker-Agent/7.3 (grep me)";
    for (let i = 0; i < 20; i++) await api(data, port, "POST", "/v1/audit/notes", { text: `note ${i}` }, { "user-agent": marker }, token);
    await api(data, port, "POST", "/v1/sys/keys/rotate", undefined, {}, token);
    const checkpointFile = join(data, "..", `${data.split("/").pop()}-checkpoint.json`);
    dirs.push({ remove: () => Bun.spawnSync(["rm", "-f", checkpointFile]) });
    expect((await runCitadel(["audit", "checkpoint", "--data", data, "--out", checkpointFile], { ...env, CITADEL_TOKEN: token })).code).toBe(0);
    const rootKeyHex = readFileSync(join(data, "root.key"), "utf8").trim();
    // While it runs (the WAL holds recent pages) and after it stops.
    for (const phase of ["running", "stopped"]) {
      if (phase === "stopped") expect((await citadel.stop()).code).toBe(0);
      const files = readdirSync(data).filter((f) => f.startsWith("citadel.db")).map((f) => join(data, f));
      expect(files.length).toBeGreaterThanOrEqual(1);
      const haystacks = [...files.map((f) => readFileSync(f)), Buffer.from(citadel.logs().map((l) => JSON.stringify(l)).join("\n")), Buffer.from(citadel.stderr())];
      for (const hay of haystacks) {
        expect(hay.includes(Buffer.from(marker))).toBe(false);
        expect(hay.includes(Buffer.from(token))).toBe(false);
        expect(hay.includes(Buffer.from(rootKeyHex))).toBe(false);
        expect(hay.includes(Buffer.from(rootKeyHex, "hex"))).toBe(false);
      }
    }
    const verify = await runCitadel(["audit", "verify", "--data", data, "--checkpoint", checkpointFile], env);
    expect(verify.code).toBe(0);
  });
});

describe("operator commands against a key-file Citadel (found in review)", () => {
  let data: string;
  let cli: (args: string[]) => ReturnType<typeof runCitadel>;
  let note: (text: string) => ReturnType<typeof api>;
  beforeAll(async () => {
    data = dataDir();
    const unlimited = Object.fromEntries(["PER_ADDRESS", "PER_ORGANIZATION"].flatMap((scope) => [[`CITADEL_RATE_LIMIT_${scope}_PER_SECOND`, "100000"], [`CITADEL_RATE_LIMIT_${scope}_BURST`, "100000"]]));
    const { citadel, env, port } = await start(data, unlimited); // the export test writes 1,200 notes at once
    const token = await operatorToken(data, citadel);
    cli = (args) => runCitadel([...args, "--data", data], { ...env, CITADEL_TOKEN: token });
    note = (text) => api(data, port, "POST", "/v1/audit/notes", { text }, {}, token);
  });

  test("audit export streams an export of many pieces whole, to --out (0600) or standard output (found in review: read whole, within 30 s in all)", async () => {
    for (let batch = 0; batch < 12; batch++) {
      const written = await Promise.all(Array.from({ length: 100 }, (_, i) => note(`bulk ${batch * 100 + i}`))); // the server sends 500 events a piece
      expect(written.every((w) => w.status === 200)).toBe(true);
    }
    const out = join(data, "..", `${data.split("/").pop()}-export.ndjson`);
    dirs.push({ remove: () => rmSync(out, { force: true }) });
    const toFile = await cli(["audit", "export", "--action", "audit.note.create", "--out", out]);
    expect([toFile.code, toFile.stderr]).toEqual([0, ""]);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const text = readFileSync(out, "utf8");
    const reasons = text.trimEnd().split("\n").map((line) => JSON.parse(line).reason as string);
    expect(new Set(reasons.filter((r) => r.startsWith("bulk "))).size).toBe(1200);
    const toStdout = await cli(["audit", "export", "--action", "audit.note.create"]);
    expect([toStdout.code, toStdout.stdout]).toEqual([0, text]);
  });

  test("audit erase: refused without --yes before anything is erased; with it, the server's confirmation is answered", async () => {
    const me = JSON.parse((await cli(["whoami", "--json"])).stdout).id as string;
    const refused = await cli(["audit", "erase", me]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("add --yes");
    const erased = await cli(["audit", "erase", me, "--yes", "--json"]);
    expect(erased.stderr).toBe("");
    expect(erased.code).toBe(0);
    expect(JSON.parse(erased.stdout)).toMatchObject({ subject: me, keys_destroyed: expect.any(Number) });
    const events = JSON.parse((await cli(["audit", "list", "--action", "audit.subject.erase", "--json"])).stdout).events;
    expect(events).toHaveLength(1); // the refused one never reached the server
  });

  test("audit list and export name a bad flag as the flag, not as the query field it becomes", async () => {
    for (const [args, flag] of [[["audit", "list", "--limit", "abc"], "--limit"], [["audit", "list", "--outcome", "bogus"], "--outcome"], [["audit", "export", "--format", "bogus"], "--format"]] as const) {
      const refused = await cli([...args]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toStartWith(`citadel: ${flag}: `);
      expect(refused.stderr).not.toContain("query");
    }
  });

  test("keys rekey refuses --shares and --threshold, which only Shamir has, instead of ignoring them", async () => {
    const keyFile = readFileSync(join(data, "root.key"), "utf8");
    const refused = await cli(["keys", "rekey", "--shares", "5", "--threshold", "3", "--yes"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toStartWith('citadel: --shares and --threshold are for seal.method = "shamir"; this Citadel\'s is key_file\n');
    expect(readFileSync(join(data, "root.key"), "utf8")).toBe(keyFile);
    const notANumber = await cli(["keys", "rekey", "--shares", "abc", "--yes"]);
    expect(notANumber.code).not.toBe(0);
    expect(notANumber.stderr).toContain("--shares: a whole number");
  });

  test("sealed, it says to restart it with its key file (found in review: it said `citadel unseal`, which a key file cannot use); last, as it stays sealed", async () => {
    expect((await cli(["seal"])).code).toBe(0);
    const refused = await cli(["whoami"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("Citadel is sealed: restart it (systemctl restart citadel) with its root key file in place.");
  });
});
