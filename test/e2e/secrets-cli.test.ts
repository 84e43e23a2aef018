/**
 * The secrets CLI end to end on the compiled binary, as a user drives it: values on standard
 * input, `secrets get/list/set`, `citadel run` (the environment and the exit code), export and
 * import (a round trip, and a dry run), one-time share links, errors, and that the plaintext
 * never reaches the server's logs, its database or its write-ahead log.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { createHmac } from "node:crypto";
import { constants } from "node:os";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createShareSecret, shareUrl, shareViewProof } from "../../plugins/secrets/share-crypto.ts";
import { encryptValue, generateUserKeyPair, newWorkspaceKey, openPrivateKey, publicKeyFingerprint, publicKeyOf, unwrapWorkspaceKey, wrapWorkspaceKey } from "../../plugins/secrets/e2ee.ts";
import { E2eePins } from "../../plugins/secrets/e2ee-pins.ts";
import { encryptUnboundValue } from "../helpers/e2ee.ts";
import { atTerminal, BINARY, callApi, ensureBinary, firstLogin, freePort, oneTimePassword, startCitadel, tempDir, type RunningCitadel, type RunResult } from "../helpers/binary.ts";

/**
 * A write to citadel.db behind the server's back (a server turning on its users, played here) is
 * seen by the server within a second, once its read memo lapses (docs/secrets.md: only changes on
 * its own connection are seen at once): each such write waits that out before the CLI asks again.
 */
const memoLapsed = () => Bun.sleep(1_100);

const data = tempDir("citadel-e2e-secrets-");
/** The user's home (the CLI's config: no stored login) and where exported files go. */
const home = tempDir("citadel-e2e-secrets-home-");
let citadel: RunningCitadel;
let port: number;
let token: string;
let ca: string;
let workspace: string;

// Distinctive values, so that a search of the server's files can only find them if they leaked.
const tag = crypto.randomUUID().replaceAll("-", "");
const DB_PASSWORD = `pw-${tag}-Zq9!`;
const TLS_KEY_LINES = [`-----BEGIN PRIVATE KEY----- ${tag}`, `line two has "quotes", a $DOLLAR, a back\\slash and 'single' ones`, "  indented line  ", "-----END PRIVATE KEY-----"];
const TLS_KEY = TLS_KEY_LINES.join("\n");
const SHARED = `shared-${tag}-one-time`;
const E2EE_VALUE = `e2ee-${tag}-only-clients-see-this`;
/** The passphrase of the owner's end-to-end encryption key pair: a space at its end, part of it typed or read from a file. */
const E2EE_PASSPHRASE = "a long passphrase for e2ee ";
const PLAINTEXTS = { DB_PASSWORD, TLS_KEY, TLS_KEY_LINE: TLS_KEY_LINES[1]!, SHARED, E2EE_VALUE };

const api = (method: string, path: string, body?: unknown) => callApi(citadel.url, ca, token, method, path, body);

/**
 * Runs `citadel --data DIR <args>` as a user would (the instance on this machine, the token in
 * CITADEL_TOKEN), with `stdin` as its standard input, or its standard output going to `stdoutFile`.
 */
async function cli(args: string[], opts: { stdin?: string | Uint8Array; stdoutFile?: string; env?: Record<string, string>; local?: boolean } = {}): Promise<RunResult> {
  const env = { ...cliEnv(), ...opts.env };
  const proc = Bun.spawn([BINARY, ...(opts.local === false ? [] : ["--data", data.path]), ...args], {
    env,
    cwd: home.path,
    stdin: opts.stdin === undefined ? "ignore" : typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin,
    stdout: opts.stdoutFile ? Bun.file(opts.stdoutFile) : "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([opts.stdoutFile ? "" : new Response(proc.stdout as ReadableStream).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** Like cli, but fails the test (showing standard error) unless the command exits 0. */
async function ok(args: string[], opts: Parameters<typeof cli>[1] = {}): Promise<string> {
  const r = await cli(args, opts);
  if (r.code !== 0) throw new Error(`citadel ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const WS = () => ["-w", workspace];

/** The reasons of the workspace's last `count` reads of values (secrets.secret.read), sorted. */
async function readReasons(ws: string, count: number): Promise<string[]> {
  const page = await api("GET", `/v1/audit/events?action=secrets.secret.read&workspace=${ws}&limit=${count}`);
  return (page.body.events as Array<{ reason: string }>).map((e) => e.reason).sort();
}

/** The environment a user's CLI runs in: this machine's instance, the token in CITADEL_TOKEN, a private HOME. */
const cliEnv = () => ({ PATH: process.env.PATH ?? "", HOME: home.path, XDG_CONFIG_HOME: home.path, CITADEL_HTTP_PORT: String(port), CITADEL_TOKEN: token });

/** `citadel --data DIR <args>` at a terminal, answering its questions (see atTerminal). */
const cliAtTerminal = (args: string[], answers: Array<{ question: string; typed: string }>) => atTerminal(["--data", data.path, ...args], cliEnv(), answers, home.path);

/** POST .../view with the proof the link's key gives (what `citadel share open` sends). */
function viewShare(url: string) {
  const link = new URL(url);
  const proof = createHmac("sha256", Buffer.from(link.hash.slice(1), "base64url")).update("citadel share view proof v1").digest("base64url");
  return fetch(`${citadel.url}${link.pathname}/view`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ proof }), tls: { ca } });
}

beforeAll(async () => {
  await ensureBinary();
  port = await freePort();
  // Share links are opened many times over here, each a peek and a view from one address: the
  // strict per-address bucket they share with logins would refuse some (iam-cli.test.ts does the same).
  citadel = await startCitadel(["--data", data.path], { CITADEL_HTTP_PORT: String(port), CITADEL_RATE_LIMIT_AUTH_BURST: "100" });
  ca = readFileSync(join(data.path, "tls/cert.pem"), "utf8");
  token = await firstLogin(citadel.url, ca, oneTimePassword(citadel.stderr()));
  const me = await api("GET", "/v1/iam/me");
  expect(me.status).toBe(200);
  const org = me.body.organizations[0].id as string;
  const created = await api("POST", `/v1/iam/orgs/${org}/workspaces`, { name: "e2e-secrets" });
  expect(created.status).toBe(200);
  workspace = created.body.id;
  expect(workspace).toMatch(/^ws_/);
}, 30_000);

afterAll(() => {
  citadel?.proc.kill("SIGKILL");
  data.remove();
  home.remove();
});

describe("citadel secrets", () => {
  test("set from standard input (one line and several), get prints the value exactly, list shows names only", async () => {
    // A value piped in: its one trailing newline is dropped (as `echo value | citadel secrets set`).
    expect(await ok(["secrets", "set", "DB_PASSWORD", ...WS(), "-e", "development"], { stdin: `${DB_PASSWORD}\n` })).toBe("DB_PASSWORD: version 1\n");
    expect(await ok(["secrets", "set", "TLS_KEY", ...WS(), "-e", "development", "--note", "not secret"], { stdin: `${TLS_KEY}\n` })).toBe("TLS_KEY: version 1\n");

    expect(await ok(["secrets", "get", "DB_PASSWORD", ...WS(), "-e", "development"])).toBe(`${DB_PASSWORD}\n`);
    expect(await ok(["secrets", "get", "TLS_KEY", ...WS(), "-e", "development"])).toBe(`${TLS_KEY}\n`);
    // development is the default environment.
    expect(await ok(["secrets", "get", "TLS_KEY", ...WS()])).toBe(`${TLS_KEY}\n`);

    const got = JSON.parse(await ok(["secrets", "get", "TLS_KEY", ...WS(), "--json"]));
    expect(got).toMatchObject({ name: "TLS_KEY", version: 1, value: TLS_KEY });

    const list = await ok(["secrets", "list", ...WS(), "-e", "development"]);
    expect(list).toContain("DB_PASSWORD");
    expect(list).toContain("TLS_KEY");
    expect(list.split("\n")[0]).toMatch(/^NAME\s+VERSION\s+UPDATED\s+BY/);
    for (const value of Object.values(PLAINTEXTS)) expect(list).not.toContain(value);
    expect(list).not.toContain(tag);

    const listJson = await ok(["secrets", "list", ...WS(), "-e", "development", "--json"]);
    expect(listJson).not.toContain(tag);
    const parsed = JSON.parse(listJson) as { items: Array<{ name: string; version: number; value?: string }> };
    expect(parsed.items.map((s) => s.name).sort()).toEqual(["DB_PASSWORD", "TLS_KEY"]);
    for (const s of parsed.items) {
      expect(s.version).toBe(1);
      expect(s.value).toBeUndefined();
    }

    // Another environment is separate.
    expect(await ok(["secrets", "list", ...WS(), "-e", "staging"])).toBe("no secrets in staging\n");
  });

  test("citadel run: the secrets are in the command's environment, and its exit code is passed through", async () => {
    const run = (...command: string[]) => cli(["run", ...WS(), "-e", "development", "--", ...command], { env: { UNRELATED: "kept" } });
    const password = await run("sh", "-c", 'printf %s "$DB_PASSWORD"');
    expect(password).toEqual({ code: 0, stdout: DB_PASSWORD, stderr: "" });
    const key = await run("sh", "-c", 'printf %s "$TLS_KEY"');
    expect(key.stdout).toBe(TLS_KEY);
    // The caller's own environment is kept alongside.
    const env = await run("env");
    expect(env.code).toBe(0);
    expect(env.stdout.split("\n")).toContain(`DB_PASSWORD=${DB_PASSWORD}`);
    expect(env.stdout.split("\n")).toContain("UNRELATED=kept");
    // ...but not Citadel's token: the command asked for secrets, not for the right to fetch more.
    expect(env.stdout).not.toContain("CITADEL_TOKEN");
    expect(env.stdout).not.toContain(token);
    // Arguments after -- are the command's, flags included.
    expect((await run("sh", "-c", 'printf "%s|" "$@"', "sh", "-w", "--json", "x y")).stdout).toBe("-w|--json|x y|");

    const seven = await run("sh", "-c", "exit 7");
    expect(seven.code).toBe(7);
    expect(seven.stderr).toBe("");
    expect((await run("false")).code).toBe(1);
    // A child killed by a signal: 128 + its number, as a shell reports it, whichever signal (found in review: 129 for all but four).
    expect((await run("sh", "-c", "kill -TERM $$")).code).toBe(128 + 15);
    expect((await run("sh", "-c", "kill -USR1 $$")).code).toBe(128 + constants.signals.SIGUSR1);
    expect((await run("sh", "-c", "kill -PIPE $$")).code).toBe(128 + constants.signals.SIGPIPE);

    // Not found: 127; found but not executable: 126, as a shell says, with the reason.
    const missing = await run("/nonexistent/command-xyz");
    expect(missing).toEqual({ code: 127, stdout: "", stderr: "citadel: cannot run /nonexistent/command-xyz: not found (ENOENT)\n" });
    expect((await run("no-such-command-xyz")).code).toBe(127);
    const script = join(home.path, "not-executable.sh");
    writeFileSync(script, "#!/bin/sh\necho ran\n", { mode: 0o644 });
    const notExecutable = await run(script);
    expect(notExecutable).toEqual({ code: 126, stdout: "", stderr: `citadel: cannot run ${script}: not executable, or a directory (EACCES)\n` });
  });

  /**
   * `citadel run` running a command that counts the signals it gets (test/fixtures/count-signals.ts):
   * at a terminal of its own (a pseudo-terminal whose foreground process group citadel leads),
   * there with standard input not a terminal (`echo x | citadel run ...` at a prompt), or with
   * standard input not a terminal and a process group of its own (setsid). `deliver`
   * sends signals (or types keys), saying what the command should answer; then SIGTERM to
   * citadel alone is answered by the command with its counts. At the terminal, citadel is held
   * still (SIGSTOP) while they arrive, so that a copy it passed on comes clearly after the
   * first: the command's runtime merges signals that arrive together.
   */
  async function countSignals(where: "terminal" | "terminal, input not" | "no terminal", deliver: (send: (signal: NodeJS.Signals, to: "citadel" | "group") => void, type: (keys: string) => void, resize: () => void) => Array<`${NodeJS.Signals} 1`>): Promise<{ code: number; counts: unknown }> {
    const fixture = join(import.meta.dir, "../fixtures/count-signals.ts");
    const command = [BINARY, "--data", data.path, "run", ...WS(), "--", process.execPath, fixture];
    let out = "";
    const decoder = new TextDecoder();
    const seen = (bytes: Uint8Array) => void (out += decoder.decode(bytes, { stream: true }).replaceAll("\r", ""));
    let outputEnded = () => {};
    const ended = new Promise<void>((resolve) => (outputEnded = resolve));
    const atTerminal = where !== "no terminal";
    // Input not the terminal: the shell gives citadel /dev/null instead, and becomes citadel (exec), same pid.
    const started = where === "terminal, input not" ? ["sh", "-c", 'exec "$@" < /dev/null', "sh", ...command] : command;
    const proc = atTerminal
      ? Bun.spawn(started, { env: cliEnv(), cwd: home.path, terminal: { data: (_, bytes) => seen(bytes), exit: () => outputEnded() } })
      : Bun.spawn(["setsid", ...command], { env: cliEnv(), cwd: home.path, stdin: "ignore", stdout: "pipe", stderr: "inherit" });
    if (proc.stdout instanceof ReadableStream) {
      const stdout = proc.stdout as ReadableStream<Uint8Array>;
      void (async () => {
        for await (const bytes of stdout) seen(bytes);
      })().finally(outputEnded);
    }
    /** Sends `signal` to citadel or its process group (it leads one: -pid), unless it is gone. */
    const send = (signal: NodeJS.Signals, to: "citadel" | "group") => {
      try {
        process.kill(to === "group" ? -proc.pid : proc.pid, signal);
      } catch (error) {
        if ((error as { code?: string }).code !== "ESRCH") throw error;
      }
    };
    const waitFor = async (line: string) => {
      while (!out.includes(`${line}\n`)) {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`citadel ended before the command said ${line}: ${out}`);
        await Bun.sleep(10);
      }
    };
    try {
      await waitFor("ready");
      const hold = atTerminal;
      if (hold) send("SIGSTOP", "citadel");
      for (const line of deliver(send, (keys) => proc.terminal!.write(keys), () => proc.terminal!.resize(100, 40))) await waitFor(line);
      if (hold) send("SIGCONT", "citadel");
      await Bun.sleep(300); // room for a copy passed on, were one sent
      send("SIGTERM", "citadel");
      await proc.exited;
      await ended;
    } finally {
      send("SIGKILL", "group"); // a command left behind (citadel died of a signal)
      proc.terminal?.close();
    }
    const last = out.trim().split("\n").at(-1)!;
    return { code: await proc.exited, counts: last.startsWith("{") ? JSON.parse(last) : last };
  }
  const NONE = { SIGINT: 0, SIGQUIT: 0, SIGHUP: 0, SIGUSR1: 0, SIGUSR2: 0, SIGWINCH: 0 };

  test("citadel run at a terminal: Ctrl-C, Ctrl-\\ and a hang-up, sent to the process group, reach the command once (found in review: SIGINT twice, then SIGHUP twice)", async () => {
    expect(await countSignals("terminal", (_, type) => (type("\x03"), ["SIGINT 1"]))).toEqual({ code: 0, counts: { ...NONE, SIGINT: 1 } });
    expect(await countSignals("terminal", (_, type) => (type("\x1c"), ["SIGQUIT 1"]))).toEqual({ code: 0, counts: { ...NONE, SIGQUIT: 1 } });
    expect(await countSignals("terminal", (send) => (send("SIGHUP", "group"), ["SIGHUP 1"]))).toEqual({ code: 0, counts: { ...NONE, SIGHUP: 1 } });
    // A resize, sent by the terminal to its foreground group as Ctrl-C is: once (found in a re-review: twice).
    expect(await countSignals("terminal", (_send, _type, resize) => (resize(), ["SIGWINCH 1"]))).toEqual({ code: 0, counts: { ...NONE, SIGWINCH: 1 } });
    // In the terminal's foreground with its input from elsewhere (`echo x | citadel run ...`): once too.
    expect(await countSignals("terminal, input not", (_, type) => (type("\x03"), ["SIGINT 1"]))).toEqual({ code: 0, counts: { ...NONE, SIGINT: 1 } });
  }, 30_000);

  test("citadel run leading its terminal's session (ssh -t host citadel run ..., docker exec -it): a hang-up reaches the command (found in a re-review: the kernel's HUP came to citadel alone and was kept)", async () => {
    const file = join(home.path, "hup-seen");
    writeFileSync(file, "");
    // The command notes its start and a SIGHUP in the file, and ends at the HUP.
    const script = `const { appendFileSync } = require("node:fs"); const f = process.argv[1]; process.on("SIGHUP", () => { appendFileSync(f, "HUP\\n"); process.exit(0); }); appendFileSync(f, "ready\\n"); setInterval(() => {}, 1000);`;
    const proc = Bun.spawn([BINARY, "--data", data.path, "run", ...WS(), "--", process.execPath, "-e", script, file], { env: cliEnv(), cwd: home.path, terminal: { data() {} } });
    try {
      for (const until = Date.now() + 10_000; !readFileSync(file, "utf8").includes("ready") && Date.now() < until; ) await Bun.sleep(20);
      proc.terminal!.close(); // the terminal hangs up
      for (const until = Date.now() + 10_000; !readFileSync(file, "utf8").includes("HUP") && Date.now() < until; ) await Bun.sleep(20);
      expect(readFileSync(file, "utf8")).toBe("ready\nHUP\n");
    } finally {
      proc.kill("SIGKILL");
    }
  }, 30_000);

  test.skipIf(!Bun.which("setsid"))("citadel run: INT, QUIT, HUP, USR1, USR2 and WINCH sent to citadel alone reach the command, and citadel stays to pass its exit code on (found in review: USR1 killed citadel, INT never arrived)", async () => {
    const all = ["SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH"] as const;
    const passedOn = await countSignals("no terminal", (send) => {
      for (const signal of all) send(signal, "citadel");
      return all.map((signal) => `${signal} 1` as const);
    });
    expect(passedOn).toEqual({ code: 0, counts: { SIGINT: 1, SIGQUIT: 1, SIGHUP: 1, SIGUSR1: 1, SIGUSR2: 1, SIGWINCH: 1 } });
  }, 20_000);

  test("export, import into another environment, export again: the same file; a dry run changes nothing", async () => {
    const exported = join(home.path, "development.env");
    // `citadel secrets export ... > development.env`
    await ok(["secrets", "export", ...WS(), "-e", "development"], { stdoutFile: exported });
    // Audited as an export, as the API's export is (found in review: the CLI's reads said list).
    expect(await readReasons(workspace, 2)).toEqual(["development/DB_PASSWORD export", "development/TLS_KEY export"]);
    const first = readFileSync(exported, "utf8");
    // One line per secret (found in review: a value's further lines were read as variables by
    // line-based readers): a value single-quoted when that holds it, else double-quoted and
    // escaped as a shell reads it (\\ \" \$), line ends as \n. Sourced, the file runs nothing
    // and gives the same values, but for the line ends, which a shell keeps as written.
    const quotedTlsKey = TLS_KEY.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("$", "\\$").replaceAll("\n", "\\n");
    expect(first).toBe(`DB_PASSWORD='${DB_PASSWORD}'\nTLS_KEY="${quotedTlsKey}"\n`);
    const sourced = Bun.spawnSync(["bash", "-c", 'set -a; . "$1"; printf %s "$TLS_KEY"', "bash", exported], { env: { PATH: process.env.PATH ?? "" } });
    expect(sourced.stdout.toString()).toBe(TLS_KEY.replaceAll("\n", "\\n"));

    const imported = await ok(["secrets", "import", exported, ...WS(), "-e", "staging"]);
    expect(imported).toStartWith("imported: 2 new, 0 updated, 0 unchanged, 0 skipped");
    expect(imported).not.toContain(tag);

    const second = join(home.path, "staging.env");
    await ok(["secrets", "export", ...WS(), "-e", "staging"], { stdoutFile: second });
    expect(readFileSync(second, "utf8")).toBe(first);
    expect(await ok(["secrets", "get", "TLS_KEY", ...WS(), "-e", "staging"])).toBe(`${TLS_KEY}\n`);

    // As JSON too.
    const json = JSON.parse(await ok(["secrets", "export", ...WS(), "-e", "staging", "--format", "json"]));
    expect(json).toEqual({ DB_PASSWORD, TLS_KEY });
    // --json is that format, not a .env file on standard output (found in review); with --format dotenv it is refused.
    expect(JSON.parse(await ok(["secrets", "export", ...WS(), "-e", "staging", "--json"]))).toEqual(json);
    const both = await cli(["secrets", "export", ...WS(), "-e", "staging", "--json", "--format", "dotenv"]);
    expect([both.code, both.stdout]).toEqual([2, ""]);
    expect(both.stderr).toStartWith("citadel: --json with --format dotenv: give one\n");

    const versions = async () => (JSON.parse(await ok(["secrets", "list", ...WS(), "-e", "staging", "--json"])).items as Array<{ name: string; version: number }>).map((s) => `${s.name}@${s.version}`).sort();
    expect(await versions()).toEqual(["DB_PASSWORD@1", "TLS_KEY@1"]);

    const again = await ok(["secrets", "import", exported, ...WS(), "-e", "staging", "--dry-run"]);
    expect(again).toStartWith("would import: 0 new, 0 updated, 2 unchanged, 0 skipped");
    const againJson = JSON.parse(await ok(["secrets", "import", exported, ...WS(), "-e", "staging", "--dry-run", "--json"]));
    expect(againJson).toMatchObject({ created: 0, updated: 0, unchanged: 2, skipped: 0 });
    expect(await versions()).toEqual(["DB_PASSWORD@1", "TLS_KEY@1"]);

    // A dry run of a file that would change things reports them and still changes nothing.
    const changed = join(home.path, "changed.env");
    writeFileSync(changed, `DB_PASSWORD=other-${tag}\nNEW_ONE=x\n`);
    const plan = await ok(["secrets", "import", changed, ...WS(), "-e", "staging", "--dry-run"]);
    expect(plan).toStartWith("would import: 1 new, 1 updated, 0 unchanged, 0 skipped");
    expect(plan).not.toContain(tag);
    expect(await versions()).toEqual(["DB_PASSWORD@1", "TLS_KEY@1"]);
    expect(await ok(["secrets", "get", "DB_PASSWORD", ...WS(), "-e", "staging"])).toBe(`${DB_PASSWORD}\n`);
  });

  test.skipIf(!Bun.which("script"))("a value typed at a terminal is kept as typed, spaces at its ends included, as a piped one is (found in review: trimmed)", async () => {
    const typed = "  padded at both ends  ";
    const set = await cliAtTerminal(["secrets", "set", "PADDED", ...WS(), "-e", "production"], [{ question: "Value of PADDED: ", typed }]);
    expect(set).toEqual({ code: 0, screen: expect.stringContaining("PADDED: version 1") });
    expect(await ok(["secrets", "get", "PADDED", ...WS(), "-e", "production"])).toBe(`${typed}\n`);
  }, 20_000);

  test("an empty or closed standard input stores nothing unless --allow-empty says an empty value is meant (found in review)", async () => {
    const set = (stdin?: string, ...flags: string[]) => cli(["secrets", "set", "MAYBE_EMPTY", ...WS(), "-e", "production", ...flags], { stdin });
    for (const stdin of [undefined, ""]) {
      expect(await set(stdin)).toEqual({ code: 1, stdout: "", stderr: "citadel: no value for MAYBE_EMPTY: standard input was empty or closed, so nothing was stored (--allow-empty stores an empty value)\n" });
    }
    // A newline alone was said to be an empty or closed input (found in review).
    const newline = "citadel: no value for MAYBE_EMPTY: the value is empty (standard input held a newline alone), so nothing was stored (--allow-empty stores an empty value)\n";
    expect(await set("\n")).toEqual({ code: 1, stdout: "", stderr: newline });
    expect((await api("GET", `/v1/secrets/workspaces/${workspace}/environments/production/secrets/MAYBE_EMPTY`)).status).toBe(404);
    expect(await ok(["secrets", "set", "--help"])).toContain("--allow-empty");
    expect((await set("", "--allow-empty")).stdout).toBe("MAYBE_EMPTY: version 1\n");
    expect(await ok(["secrets", "get", "MAYBE_EMPTY", ...WS(), "-e", "production"])).toBe("\n");
  });

  test("errors: a missing secret, an invalid name, no workspace", async () => {
    const missing = await cli(["secrets", "get", "NOPE", ...WS()]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toStartWith("citadel: ");
    expect(missing.stderr).toContain("No secret named NOPE in development");

    for (const name of ["bad-name", "1STARTS_WITH_DIGIT", "has space"]) {
      const bad = await cli(["secrets", "set", name, ...WS()], { stdin: `${DB_PASSWORD}\n` });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toStartWith("citadel: ");
      expect(bad.stderr).toContain("letters, digits and _");
      expect(bad.stderr).not.toContain(tag);
    }
    expect((await ok(["secrets", "list", ...WS(), "--json"])).match(/"name"/g)).toHaveLength(2);

    const noWorkspace = await cli(["secrets", "get", "DB_PASSWORD"]);
    expect(noWorkspace.code).toBe(2); // a usage error
    expect(noWorkspace.stderr).toContain("--workspace");

    const noEnv = await cli(["secrets", "get", "DB_PASSWORD", ...WS(), "-e", "nowhere"]);
    expect(noEnv.code).toBe(1);
    expect(noEnv.stderr).toContain("No environment named nowhere");
  });
});

describe("what the review found in the everyday commands", () => {
  test("a value or a file that is not UTF-8 text is refused as a usage error (exit 2, found in review: 1), not stored with U+FFFD in place of its bytes", async () => {
    const binary = await cli(["secrets", "set", "BINARY_VALUE", ...WS()], { stdin: new Uint8Array([0x6b, 0xff, 0xfe, 0x7a]) });
    expect([binary.code, binary.stderr]).toEqual([2, expect.stringContaining("standard input is not UTF-8 text")]);
    const latin1 = join(home.path, "latin1.env");
    writeFileSync(latin1, Buffer.concat([Buffer.from("LATIN=caf"), Buffer.from([0xe9, 0x0a])]));
    const imported = await cli(["secrets", "import", latin1, ...WS()]);
    expect([imported.code, imported.stderr]).toEqual([2, expect.stringContaining(`${latin1} is not UTF-8 text`)]);
    const piped = await cli(["secrets", "import", "-", ...WS()], { stdin: Buffer.concat([Buffer.from("LATIN=caf"), Buffer.from([0xe9, 0x0a])]) });
    expect([piped.code, piped.stderr]).toEqual([2, expect.stringContaining("standard input is not UTF-8 text")]);
    for (const name of ["BINARY_VALUE", "LATIN"]) expect((await cli(["secrets", "get", name, ...WS()])).code).toBe(1); // nothing stored
    // A Windows editor's byte order mark is no part of the value (it was not before either).
    await ok(["secrets", "set", "FROM_NOTEPAD", ...WS()], { stdin: new Uint8Array([0xef, 0xbb, 0xbf, 0x61, 0x0a]) });
    expect(await ok(["secrets", "get", "FROM_NOTEPAD", ...WS()])).toBe("a\n");
  });

  test("a value or an import without end is refused once past what a server takes, not read whole (found in review: `< <(yes)` grew to gigabytes)", async () => {
    /** `yes | citadel ARGS`: standard input that never ends. */
    const fromYes = async (args: string[]) => {
      const proc = Bun.spawn(["sh", "-c", 'yes | "$@"', "sh", BINARY, "--data", data.path, ...args], { env: cliEnv(), cwd: home.path, stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      return { code, stdout, stderr };
    };
    const valueTooLarge = "citadel: standard input holds more than 1 MiB, the largest value a Citadel server takes (secrets.max_value_bytes at its most): nothing was read further or sent\n";
    expect(await fromYes(["secrets", "set", "ENDLESS", ...WS()])).toEqual({ code: 2, stdout: "", stderr: expect.stringContaining(valueTooLarge) });
    expect(await fromYes(["share"])).toEqual({ code: 2, stdout: "", stderr: expect.stringContaining(valueTooLarge) });
    const importTooLarge = (what: string) => `citadel: ${what} is larger than 64 MiB, the most a Citadel server takes in one request (http.body_limit_bytes at its most): import it in parts\n`;
    expect(await fromYes(["secrets", "import", "-", ...WS()])).toEqual({ code: 2, stdout: "", stderr: expect.stringContaining(importTooLarge("standard input")) });
    expect(await cli(["secrets", "import", "/dev/zero", ...WS()])).toEqual({ code: 2, stdout: "", stderr: expect.stringContaining(importTooLarge("/dev/zero")) });
    expect((await cli(["secrets", "get", "ENDLESS", ...WS()])).code).toBe(1); // nothing stored
  }, 30_000);

  test("an export read through a pipe by a slow reader arrives whole (found in review: cut at 64 KiB, exit 0)", async () => {
    for (const name of ["BIG_ONE", "BIG_TWO"]) await ok(["secrets", "set", name, ...WS()], { stdin: `${name}-${tag}-${"x".repeat(60_000)}` });
    const file = join(home.path, "whole.env");
    await ok(["secrets", "export", ...WS()], { stdoutFile: file });
    const whole = readFileSync(file, "utf8");
    expect(whole.length).toBeGreaterThan(120_000); // more than a pipe holds
    // A reader that comes late, once the command has written all it will: a shell's pipe (the
    // test's own would be read at once), and the command's exit code kept.
    const piped = join(home.path, "piped.env");
    const shell = `"$0" --data "$1" secrets export -w "$2"; echo $? > "$3.code"`;
    const proc = Bun.spawn(["sh", "-c", `(${shell}) | (sleep 0.5; cat > "$3")`, BINARY, data.path, workspace, piped], { env: cliEnv(), cwd: home.path, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    expect(await proc.exited).toBe(0);
    const received = readFileSync(piped, "utf8");
    expect([readFileSync(`${piped}.code`, "utf8").trim(), received.length, received === whole]).toEqual(["0", whole.length, true]);
  });

  test("a secret named __proto__ reaches citadel run's command like any other", async () => {
    await ok(["secrets", "set", "__proto__", ...WS(), "-e", "staging"], { stdin: "proto-value\n" });
    expect(await ok(["run", ...WS(), "-e", "staging", "--", "sh", "-c", 'printf %s "${__proto__-UNSET}"'])).toBe("proto-value");
  });

  test("a name that is not a secret's is a usage error before any request: `..` made the environment's own path", async () => {
    for (const command of [["delete"], ["get"], ["history"], ["rollback"]]) {
      const refused = await cli(["secrets", ...command, "..", ...(command[0] === "rollback" ? ["1"] : []), ...WS(), "-e", "staging"]);
      expect([command[0], refused.code, refused.stderr]).toEqual([command[0], 2, expect.stringContaining("a secret's name is an environment variable name")]);
    }
  });
});

describe("values, tokens and commands: what a review of the CLI found", () => {
  test.skipIf(!Bun.which("script"))("a value of several lines pasted at the prompt is refused, not stored cut to its first line", async () => {
    const pasted = await cliAtTerminal(["secrets", "set", "PASTED_KEY", ...WS()], [{ question: "Value of PASTED_KEY: ", typed: TLS_KEY_LINES.join("\r") }]);
    expect(pasted.code).toBe(1);
    expect(pasted.screen).toContain("a value of several lines was pasted, and a prompt reads one: pipe it on standard input instead");
    expect((await cli(["secrets", "get", "PASTED_KEY", ...WS()])).code).toBe(1); // nothing stored
  }, 20_000);

  test("a value piped in loses its final newline only: a carriage return before it is kept, so get | set copies a value exactly (found in review)", async () => {
    await ok(["secrets", "set", "ENDS_WITH_CR", ...WS()], { stdin: "windows line\r\n" });
    expect(JSON.parse(await ok(["secrets", "get", "ENDS_WITH_CR", ...WS(), "--json"])).value).toBe("windows line\r");
    await ok(["secrets", "set", "COPIED_CR", ...WS()], { stdin: await ok(["secrets", "get", "ENDS_WITH_CR", ...WS()]) });
    expect(JSON.parse(await ok(["secrets", "get", "COPIED_CR", ...WS(), "--json"])).value).toBe("windows line\r");
  });

  test("an import that would skip a deleted secret writes nothing and fails, naming it: all or nothing (found in review: skipped, the rest written, exit 0)", async () => {
    await ok(["secrets", "set", "GONE_Q3", ...WS()], { stdin: "old" });
    await ok(["secrets", "delete", "GONE_Q3", ...WS()]);
    const file = "GONE_Q3=new\nBESIDE_Q3=beside\n";
    const refused = await cli(["secrets", "import", "-", ...WS()], { stdin: file });
    expect(refused).toEqual({ code: 1, stdout: "", stderr: "citadel: cannot import GONE_Q3 (deleted: restore or purge it first): nothing was imported\n" });
    expect((await cli(["secrets", "get", "BESIDE_Q3", ...WS()])).code).toBe(1); // nothing written
    const dryRun = await cli(["secrets", "import", "-", ...WS(), "--dry-run"], { stdin: file });
    expect([dryRun.code, dryRun.stdout, dryRun.stderr]).toEqual([1, expect.stringContaining("skip      GONE_Q3 (deleted: restore or purge it first)"), "citadel: cannot import GONE_Q3 (deleted: restore or purge it first): the import would write nothing\n"]);
    // --no-overwrite leaves every existing name alone, a deleted one too: the rest is written.
    expect(await ok(["secrets", "import", "-", ...WS(), "--no-overwrite"], { stdin: file })).toContain("1 new, 0 updated, 0 unchanged, 1 skipped");
    expect(await ok(["secrets", "get", "BESIDE_Q3", ...WS()])).toBe("beside\n");
  });

  test("citadel run: the secrets win over the caller's variables, the command is found with the caller's PATH, and loader variables are refused unless allowed", async () => {
    await ok(["secrets", "env", "create", "runner", ...WS()]);
    const secrets = { PATH: "/nowhere/from-a-secret", SHADOWED: "the secret's" };
    for (const [name, value] of Object.entries(secrets)) await ok(["secrets", "set", name, ...WS(), "-e", "runner"], { stdin: value });
    const run = (args: string[], command: string[]) => cli(["run", ...WS(), "-e", "runner", ...args, "--", ...command], { env: { SHADOWED: "the caller's" } });
    // A PATH picks which programs run: refused unless allowed (found in a re-review).
    const refusedPath = await run([], ["sh", "-c", "echo ran"]);
    expect([refusedPath.code, refusedPath.stdout, refusedPath.stderr]).toEqual([2, "", expect.stringContaining(`hold PATH, which make programs load code`)]);
    // Found with the caller's PATH (found in review: looked up in the secret's, so not found), given the secret's.
    const allowed = ["--allow-loader-variables"];
    expect(await run(allowed, ["sh", "-c", 'printf "%s|%s" "$PATH" "$SHADOWED"'])).toEqual({ code: 0, stdout: "/nowhere/from-a-secret|the secret's", stderr: "" });
    expect(await run(allowed, ["sh", "-c", 'printf %s "$0"'])).toEqual({ code: 0, stdout: "sh", stderr: "" }); // its name as given

    // Secrets that make programs load or run code (found in review: passed on to the command;
    // SHELLOPTS=xtrace with PS4=$(...) ran a command in every bash script, found in a re-review).
    for (const [name, value] of Object.entries({ LD_LIBRARY_PATH: "/nowhere/libs", NODE_OPTIONS: "--no-warnings", SHELLOPTS: "xtrace", PS4: "$(touch /nowhere)" })) {
      await ok(["secrets", "set", name, ...WS(), "-e", "runner"], { stdin: value });
    }
    const refused = await run([], ["sh", "-c", "echo ran"]);
    expect([refused.code, refused.stdout]).toEqual([2, ""]);
    expect(refused.stderr).toContain(`citadel: the secrets of ${workspace}/runner hold LD_LIBRARY_PATH, NODE_OPTIONS, PATH, PS4, SHELLOPTS, which make programs load code: refusing to start the command with them (--allow-variable LD_LIBRARY_PATH,NODE_OPTIONS,PATH,PS4,SHELLOPTS passes these on, --allow-loader-variables any)`);
    expect(await run(allowed, ["sh", "-c", 'printf %s "$LD_LIBRARY_PATH"'])).toEqual({ code: 0, stdout: "/nowhere/libs", stderr: "" });
    // Or those named alone (found in review: everyday names such as NODE_PATH had only the flag that lets LD_PRELOAD through too).
    const named = await run(["--allow-variable", "PATH,PS4,SHELLOPTS", "--allow-variable=LD_LIBRARY_PATH,NODE_OPTIONS,PATH"], ["sh", "-c", "echo ran"]);
    expect([named.code, named.stderr]).toEqual([2, expect.stringContaining("hold PS4, SHELLOPTS, which make programs load code")]); // the last one given counts
    expect(await run(["--allow-variable", "LD_LIBRARY_PATH,NODE_OPTIONS,PATH,PS4,SHELLOPTS"], ["sh", "-c", 'printf %s "$NODE_OPTIONS"'])).toEqual({ code: 0, stdout: "--no-warnings", stderr: "" });

    // A caller without PATH: the command is looked for where execvp(3) looks (found in a re-review: 127).
    const bare = Bun.spawn([BINARY, "--data", data.path, "run", ...WS(), "-e", "development", "--", "sh", "-c", "echo found"], {
      env: { HOME: home.path, XDG_CONFIG_HOME: home.path, CITADEL_HTTP_PORT: String(port), CITADEL_TOKEN: token },
      cwd: home.path,
      stdout: "pipe",
      stderr: "pipe",
    });
    expect([await bare.exited, await new Response(bare.stdout).text()]).toEqual([0, "found\n"]);
  });
});

describe("workspace administration from the CLI", () => {
  test("history, delete and restore", async () => {
    await ok(["secrets", "set", "SHORT_LIVED", ...WS(), "-e", "staging"], { stdin: "one\n" });
    await ok(["secrets", "set", "SHORT_LIVED", ...WS(), "-e", "staging"], { stdin: "two\n" });
    const history = await ok(["secrets", "history", "SHORT_LIVED", ...WS(), "-e", "staging"]);
    expect(history).toMatch(/^VERSION\s+ORIGIN/);
    expect(history).toMatch(/2\s+set\s+\S+\s+\S+\s+current/);
    expect(await ok(["secrets", "delete", "SHORT_LIVED", ...WS(), "-e", "staging"])).toContain("deleted");
    expect((await cli(["secrets", "get", "SHORT_LIVED", ...WS(), "-e", "staging"])).code).toBe(1);
    expect(await ok(["secrets", "restore", "SHORT_LIVED", ...WS(), "-e", "staging"])).toContain("restored at version 2");
    expect(await ok(["secrets", "get", "SHORT_LIVED", ...WS(), "-e", "staging"])).toBe("two\n");
  });

  test("purge: refused without --yes, then every version is gone for good (found in an operator's walkthrough)", async () => {
    await ok(["secrets", "set", "DOOMED", ...WS(), "-e", "staging"], { stdin: "doomed\n" });
    await ok(["secrets", "delete", "DOOMED", ...WS(), "-e", "staging"]);
    const refused = await cli(["secrets", "purge", "DOOMED", ...WS(), "-e", "staging"]);
    expect([refused.code, refused.stderr]).toEqual([2, expect.stringContaining("add --yes")]);
    expect(await ok(["secrets", "purge", "DOOMED", ...WS(), "-e", "staging", "--yes"])).toBe("DOOMED purged: every version is gone\n");
    const restore = await cli(["secrets", "restore", "DOOMED", ...WS(), "-e", "staging"]);
    expect([restore.code, restore.stderr]).toEqual([1, expect.stringContaining("No deleted secret named DOOMED")]);
  });

  test("environments, their protection, a new data key, webhooks", async () => {
    expect(await ok(["secrets", "env", "create", "qa", ...WS()])).toContain("environment qa added");
    expect(await ok(["secrets", "env", "protect", "qa", "admins", ...WS()])).toContain("qa: admins");
    const envs = await ok(["secrets", "env", "list", ...WS()]);
    expect(envs).toMatch(/qa\s+admins/);
    expect(envs).toMatch(/production\s+members/);
    const bad = await cli(["secrets", "env", "protect", "qa", "everyone", ...WS()]);
    expect(bad.code).not.toBe(0);
    expect(await ok(["secrets", "rotate-key", ...WS()])).toMatch(/data key version 2; \d+ stored versions re-encrypted/);
    expect(await ok(["secrets", "get", "DB_PASSWORD", ...WS()])).toBe(`${DB_PASSWORD}\n`);
    expect(await ok(["secrets", "webhook", "list", ...WS()])).toBe("no webhooks\n");
    const refused = await cli(["secrets", "webhook", "add", "https://hooks.example.org/x", ...WS()]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("webhook_allowed_urls"); // off by default: no outbound connection
  });
});

describe("flag values the CLI does not understand", () => {
  test("are refused, not silently dropped or replaced by a default", async () => {
    // --rotation-days abc: Number("abc") is NaN, which JSON sends as null ("no reminder").
    const days = await cli(["secrets", "set", "ROTATED", ...WS(), "-e", "production", "--rotation-days", "abc"], { stdin: "x\n" });
    expect(days.code).not.toBe(0);
    expect(days.stderr).toContain("rotation");
    // --format yaml: not a format export knows; it must not print a .env file instead.
    const format = await cli(["secrets", "export", ...WS(), "-e", "development", "--format", "yaml"]);
    expect(format.code).not.toBe(0);
    expect(format.stdout).toBe("");
  });
});

describe("citadel share", () => {
  test("share open reads the link from standard input when not given, keeping its key off the command line (found in review)", async () => {
    const made = await cli(["share"], { stdin: `${SHARED}\n` });
    const url = made.stdout.trim();
    expect(await cli(["share", "open"], { stdin: `${url}\n` })).toEqual({ code: 0, stdout: `${SHARED}\n`, stderr: "" });
    // Standard input cannot carry both the link and the passphrase, nor the value and the passphrase.
    const both = await cli(["share", "open", "-", "--passphrase-file", "-"], { stdin: `${url}\n` });
    expect([both.code, both.stderr]).toEqual([2, expect.stringContaining("citadel: --passphrase-file -: standard input carries the link; give the passphrase in a file")]);
    const value = await cli(["share", "--passphrase-file", "-"], { stdin: "value\n" });
    expect([value.code, value.stderr]).toEqual([2, expect.stringContaining("citadel: --passphrase-file -: standard input carries the value to share; give the passphrase in a file")]);
  });

  test("a one-time link: opened once, then used up (410)", async () => {
    const made = await cli(["share"], { stdin: `${SHARED}\n` });
    expect(made.code).toBe(0);
    const url = made.stdout.trim();
    expect(url).toStartWith(`${citadel.url}/v1/secrets/shares/shr_`);
    expect(url).toMatch(/#[A-Za-z0-9_-]{20,}$/);
    expect(made.stderr).toContain("1 view(s)");
    expect(made.stdout + made.stderr).not.toContain(SHARED);

    // Without the fragment the server cannot be asked for the value: a link cut short is a usage error, as a missing one.
    const cut = await cli(["share", "open", url.slice(0, url.indexOf("#"))]);
    expect(cut.code).toBe(2);
    expect(cut.stderr).toContain("no key after '#'");

    const opened = await cli(["share", "open", url]);
    expect(opened).toEqual({ code: 0, stdout: `${SHARED}\n`, stderr: "" });

    const twice = await cli(["share", "open", url]);
    expect(twice.code).not.toBe(0);
    expect(twice.stdout).toBe("");
    expect(twice.stderr).toContain("used up");
    expect(twice.stderr).toContain("gone");

    // What the server answers a further view with the right proof: 410 Gone.
    const res = await viewShare(url);
    expect(res.status).toBe(410);
    expect(((await res.json()) as { code: string }).code).toBe("gone");
  });

  test("the recipient, with no Citadel or login of their own, opens the link from what it says", async () => {
    // Someone else's machine: an empty home and working directory, no stored login. It trusts
    // the instance's certificate the way any HTTPS client can be told to (as if it came from a
    // public CA), so only the link itself says where the value is.
    const made = await cli(["share", "--views", "2"], { stdin: `${SHARED}\n` });
    expect(made.code).toBe(0);
    const url = made.stdout.trim();
    const elsewhere = tempDir("citadel-e2e-recipient-");
    const recipient = async (env: Record<string, string> = {}) => {
      const proc = Bun.spawn([BINARY, "share", "open", url], {
        env: { PATH: process.env.PATH ?? "", HOME: elsewhere.path, XDG_CONFIG_HOME: elsewhere.path, NODE_EXTRA_CA_CERTS: join(elsewhere.path, "ca.pem"), ...env },
        cwd: elsewhere.path,
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      return { code, stdout, stderr };
    };
    try {
      writeFileSync(join(elsewhere.path, "ca.pem"), ca);
      // Naming the server again works (and shows the certificate is trusted this way)...
      expect(await recipient({ CITADEL_SERVER: new URL(url).origin })).toEqual({ code: 0, stdout: `${SHARED}\n`, stderr: "" });
      // ...but the link alone must be enough: it already says which server holds the value.
      expect(await recipient()).toEqual({ code: 0, stdout: `${SHARED}\n`, stderr: "" });
    } finally {
      elsewhere.remove();
      while ((await viewShare(url)).status === 200); // spend what is left
    }
  });
});

const SHARE_PHRASE = "told by phone ";
const phraseFile = () => join(home.path, "share-passphrase");
const wrongFile = () => join(home.path, "share-passphrase-wrong");

/**
 * A link with a passphrase, sealed here and given to the server. `checked`: as `citadel share
 * --passphrase` makes it now, with the passphrase proof; else as a client made before did.
 */
async function passphraseLink(views: number, checked = false): Promise<string> {
  const org = (await api("GET", "/v1/iam/me")).body.organizations[0].id as string;
  const sealed = await createShareSecret(SHARED, SHARE_PHRASE);
  const proof = checked ? { passphrase_proof: sealed.passphraseProof, passphrase_kdf: sealed.passphraseKdf } : {};
  const made = await api("POST", `/v1/secrets/orgs/${org}/shares`, { ciphertext: sealed.ciphertext, view_proof: shareViewProof(sealed.linkKey), passphrase: true, max_views: views, ...proof });
  expect(made.status).toBe(200);
  return shareUrl(citadel.url, made.body.id, sealed.linkKey);
}

describe("citadel share open, a link with a passphrase made before the server checked passphrases", () => {
  const PHRASE = SHARE_PHRASE;

  beforeAll(() => {
    writeFileSync(phraseFile(), `${PHRASE}\n`, { mode: 0o600 });
    writeFileSync(wrongFile(), "not the passphrase\n", { mode: 0o600 });
  });

  test("no view is spent until the passphrase is in hand (found in review: a missing one cost the value)", async () => {
    const url = await passphraseLink(1);
    // Neither a file nor a terminal to ask at: a usage error, before the view.
    const none = await cli(["share", "open", url]);
    expect([none.code, none.stderr]).toEqual([2, expect.stringContaining("give the passphrase with --passphrase-file")]);
    // A file that cannot be read: named, before the view; a usage error, as any input file (found in review: exit 1).
    const missing = await cli(["share", "open", url, "--passphrase-file", join(home.path, "no-such-file")]);
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringContaining("no-such-file: no such file")]);
    // The link's one view is still there for the right passphrase.
    expect(await cli(["share", "open", url, "--passphrase-file", phraseFile()])).toEqual({ code: 0, stdout: `${SHARED}\n`, stderr: "" });
  });

  test("a wrong passphrase without a terminal fails, saying the view is spent", async () => {
    const url = await passphraseLink(2);
    const wrong = await cli(["share", "open", url, "--passphrase-file", wrongFile()]);
    expect([wrong.code, wrong.stdout, wrong.stderr]).toEqual([1, "", "citadel: the passphrase is wrong; the view this took is spent (1 view(s) left)\n"]);
    expect(await cli(["share", "open", url, "--passphrase-file", phraseFile()])).toEqual({ code: 0, stdout: `${SHARED}\n`, stderr: "" });
  });

  test.skipIf(!Bun.which("script"))("at a terminal, a mistyped passphrase is asked again: the one view is not lost", async () => {
    const url = await passphraseLink(1);
    const typed = await cliAtTerminal(["share", "open", url], [
      { question: "Passphrase for the link: ", typed: "a typo" },
      { question: "try again", typed: PHRASE },
    ]);
    expect(typed).toEqual({ code: 0, screen: expect.stringContaining(`${SHARED}\n`) });
    expect(typed.screen).toContain("That passphrase does not open it");
  });
});

describe("citadel share open, a link whose passphrase the server checks before a view", () => {
  beforeAll(() => {
    writeFileSync(phraseFile(), `${SHARE_PHRASE}\n`, { mode: 0o600 });
    writeFileSync(wrongFile(), "not the passphrase\n", { mode: 0o600 });
  });

  test("a wrong passphrase without a terminal fails, saying the view was NOT spent", async () => {
    const url = await passphraseLink(1, true);
    const wrong = await cli(["share", "open", url, "--passphrase-file", wrongFile()]);
    expect([wrong.code, wrong.stdout, wrong.stderr]).toEqual([1, "", "citadel: the passphrase is wrong; the view was NOT spent (4 more wrong passphrase(s) burn the link)\n"]);
    // The link's one view is still there.
    expect(await cli(["share", "open", url, "--passphrase-file", phraseFile()])).toEqual({ code: 0, stdout: `${SHARED}\n`, stderr: "" });
  });

  test.skipIf(!Bun.which("script"))("at a terminal, a wrong passphrase is asked again before any view is spent; three wrong ones end it, the view still there", async () => {
    const url = await passphraseLink(1, true);
    const threeWrong = await cliAtTerminal(["share", "open", url], [
      { question: "Passphrase for the link: ", typed: "a typo" },
      { question: "try again", typed: "another typo" },
      { question: "Passphrase for the link: ", typed: "a third" },
    ]);
    expect(threeWrong).toEqual({ code: 1, screen: expect.stringContaining("the passphrase is wrong; the view was NOT spent") });
    expect(threeWrong.screen.match(/That passphrase is wrong \(no view was spent; [43] more wrong passphrase\(s\) burn the link\): try again\./g)).toHaveLength(2);
    // With one try left it is not asked again: the next wrong one would destroy the value (found in review).
    const lastTry = await cliAtTerminal(["share", "open", url], [{ question: "Passphrase for the link: ", typed: "a fourth" }]);
    expect(lastTry).toEqual({ code: 1, screen: expect.stringContaining("1 more wrong passphrase(s) burn the link: the next wrong one destroys the value") });
    const typed = await cliAtTerminal(["share", "open", url], [{ question: "Passphrase for the link: ", typed: SHARE_PHRASE }]);
    expect(typed).toEqual({ code: 0, screen: expect.stringContaining(`${SHARED}\n`) });
  });

  test.skipIf(!Bun.which("script"))("citadel share --passphrase makes such a link: the link alone no longer spends its view", async () => {
    const made = await cliAtTerminal(["share", "--passphrase"], [
      { question: "Value to share: ", typed: SHARED },
      { question: "Passphrase for the link: ", typed: SHARE_PHRASE },
      { question: "Passphrase for the link again: ", typed: SHARE_PHRASE },
    ]);
    expect(made.code).toBe(0);
    const url = made.screen.match(/https:\/\/\S+\/v1\/secrets\/shares\/shr_\S+#[A-Za-z0-9_-]+/)?.[0] ?? "";
    const linkAlone = await viewShare(url);
    expect([linkAlone.status, ((await linkAlone.json()) as { errors: Array<{ field: string }> }).errors[0]?.field]).toEqual([422, "passphrase_proof"]);
    expect(await cli(["share", "open", url, "--passphrase-file", phraseFile()])).toEqual({ code: 0, stdout: `${SHARED}\n`, stderr: "" });
  });
});

describe("a passphrase being chosen at a terminal is typed twice (found in review: a slip sealed the key pair with a passphrase nobody knew)", () => {
  test.skipIf(!Bun.which("script"))("share --passphrase and secrets e2ee init --yes: two that differ make nothing", async () => {
    const link = await cliAtTerminal(["share", "--passphrase"], [
      { question: "Value to share: ", typed: SHARED },
      { question: "Passphrase for the link: ", typed: "one passphrase" },
      { question: "Passphrase for the link again: ", typed: "another one" },
    ]);
    expect([link.code, link.screen]).toEqual([1, expect.stringContaining("the two passphrases differ: no link was made")]);
    const pair = await cliAtTerminal(["secrets", "e2ee", "init", "--yes"], [
      { question: "New end-to-end encryption passphrase: ", typed: "a first long passphrase" },
      { question: "New end-to-end encryption passphrase again: ", typed: "a first long passphrase." },
    ]);
    expect([pair.code, pair.screen]).toEqual([1, expect.stringContaining("the two passphrases differ: no key pair was made")]);
    expect((await api("GET", "/v1/secrets/me/keypair")).status).toBe(404); // none was registered (the owner makes one below)
  });
});

describe("an end-to-end-encrypted workspace", () => {
  test("key pair, encryption on, set and get through the CLI: the server holds ciphertext only", async () => {
    const vault = (await api("POST", `/v1/iam/orgs/${(await api("GET", "/v1/iam/me")).body.organizations[0].id}/workspaces`, { name: "vault" })).body.id as string;
    const phrase = join(home.path, "passphrase");
    const PHRASE = E2EE_PASSPHRASE;
    writeFileSync(phrase, `${PHRASE}\n`, { mode: 0o600 });
    await ok(["secrets", "e2ee", "init", "--passphrase-file", phrase]);
    await ok(["secrets", "e2ee", "enable", "-w", vault, "--passphrase-file", phrase]);
    await ok(["secrets", "set", "E2EE_VALUE", "-w", vault, "--passphrase-file", phrase], { stdin: E2EE_VALUE });
    expect(await ok(["secrets", "get", "E2EE_VALUE", "-w", vault, "--passphrase-file", phrase])).toBe(`${E2EE_VALUE}\n`);
    if (Bun.which("script")) {
      // Typed at the terminal, the passphrase is the file's: the space at its end counts (found in review: trimmed).
      const typed = await cliAtTerminal(["secrets", "get", "E2EE_VALUE", "-w", vault], [{ question: "End-to-end encryption passphrase: ", typed: PHRASE }]);
      expect(typed).toEqual({ code: 0, screen: expect.stringContaining(`${E2EE_VALUE}\n`) });
    }
    const raw = await api("GET", `/v1/secrets/workspaces/${vault}/environments/development/secrets/E2EE_VALUE`);
    expect(raw.body.e2ee).toBe(true);
    expect(raw.body.value).toStartWith("c2.v.");
    expect(await ok(["run", "-w", vault, "--passphrase-file", phrase, "--", "sh", "-c", 'printf %s "$E2EE_VALUE"'])).toBe(E2EE_VALUE);
    // Exported, decrypted here: the read is recorded as an export, in the client's word (found in review: it said list).
    expect(await ok(["secrets", "export", "-w", vault, "--passphrase-file", phrase])).toBe(`E2EE_VALUE=${E2EE_VALUE}\n`);
    expect(await readReasons(vault, 1)).toEqual(["development/E2EE_VALUE export (declared by the client)"]);
    // Each value names the version it is stored as: set again it is encrypted for version 2, and
    // a rollback is decrypted and re-encrypted here (the server refuses to copy a ciphertext).
    const secretPath = `/v1/secrets/workspaces/${vault}/environments/development/secrets/E2EE_VALUE`;
    expect(await ok(["secrets", "set", "E2EE_VALUE", "-w", vault, "--passphrase-file", phrase], { stdin: "replaced" })).toBe("E2EE_VALUE: version 2\n");
    expect((await api("POST", `${secretPath}/rollback`, { version: 1 })).status).toBe(409);
    expect(await ok(["secrets", "rollback", "E2EE_VALUE", "1", "-w", vault, "--passphrase-file", phrase])).toBe("E2EE_VALUE: version 3 (the value of version 1)\n");
    expect(await cli(["secrets", "get", "E2EE_VALUE", "-w", vault, "--passphrase-file", phrase])).toEqual({ code: 0, stdout: `${E2EE_VALUE}\n`, stderr: "" });
    // The server hands version 2's value as the current version 3: refused, nothing printed.
    const database = new Database(join(data.path, "citadel.db"));
    const ciphertextOf = (version: number) => database.query<{ ciphertext: Uint8Array }, [string, number]>("SELECT ciphertext FROM secret_versions WHERE secret_id = ? AND version = ?").get(raw.body.id, version)!.ciphertext;
    const setCiphertext = (version: number, ciphertext: Uint8Array) => database.query("UPDATE secret_versions SET ciphertext = ? WHERE secret_id = ? AND version = ?").run(ciphertext, raw.body.id, version);
    const third = ciphertextOf(3);
    try {
      setCiphertext(3, ciphertextOf(2));
      await memoLapsed();
      const rolledBack = await cli(["secrets", "get", "E2EE_VALUE", "-w", vault, "--passphrase-file", phrase]);
      expect(rolledBack).toEqual({ code: 1, stdout: "", stderr: "citadel: the server served development/E2EE_VALUE as version 3, but its value was written as version 2: refused (an older value passed off as a newer one, or a damaged one)\n" });
    } finally {
      setCiphertext(3, third);
      await memoLapsed();
      database.close();
    }
    // Enabling it again is refused before anything is sent: the key the value is encrypted with stays (found in review).
    const myKey = async (ws: string) => (await api("GET", `/v1/secrets/workspaces/${ws}/e2ee/my-key`)).body as { key_version: number; wrapped: string };
    const wrappedBefore = (await myKey(vault)).wrapped;
    const enabledTwice = await cli(["secrets", "e2ee", "enable", "-w", vault, "--passphrase-file", phrase]);
    expect([enabledTwice.code, enabledTwice.stderr]).toEqual([1, expect.stringContaining(`${vault} is end-to-end encrypted already`)]);
    expect((await myKey(vault)).wrapped).toBe(wrappedBefore);
    expect(await ok(["secrets", "get", "E2EE_VALUE", "-w", vault, "--passphrase-file", phrase])).toBe(`${E2EE_VALUE}\n`);
    // Turned off (while empty) and on again: this machine says what it saw, and after forget the key starts over.
    const scratch = (await api("POST", `/v1/iam/orgs/${(await api("GET", "/v1/iam/me")).body.organizations[0].id}/workspaces`, { name: "scratch" })).body.id as string;
    await ok(["secrets", "e2ee", "enable", "-w", scratch, "--passphrase-file", phrase]);
    expect((await api("PATCH", `/v1/secrets/workspaces/${scratch}/settings`, { e2ee: false })).status).toBe(200);
    const seenBefore = await cli(["secrets", "e2ee", "enable", "-w", scratch, "--passphrase-file", phrase]);
    expect([seenBefore.code, seenBefore.stderr]).toEqual([1, expect.stringContaining(`citadel secrets e2ee forget -w ${scratch}`)]);
    expect((await api("GET", `/v1/secrets/workspaces/${scratch}/settings`)).body.e2ee).toBe(false); // refused before anything changed
    await ok(["secrets", "e2ee", "forget", "-w", scratch]);
    await ok(["secrets", "e2ee", "enable", "-w", scratch, "--passphrase-file", phrase]);
    expect((await myKey(scratch)).key_version).toBe(1);
    await ok(["secrets", "set", "AFTER", "-w", scratch, "--passphrase-file", phrase], { stdin: "again" });
    expect(await ok(["secrets", "get", "AFTER", "-w", scratch, "--passphrase-file", phrase])).toBe("again\n");
    // A NUL cannot be in an environment variable: refused here as the server refuses it in a plain workspace (found in review).
    const withNul = await cli(["secrets", "set", "HAS_NUL", "-w", scratch, "--passphrase-file", phrase], { stdin: "before\0after" });
    expect([withNul.code, withNul.stderr]).toEqual([1, "citadel: HAS_NUL: a value may not contain a NUL character (an environment variable cannot hold one)\n"]);
    const nulFile = join(home.path, "nul.json");
    writeFileSync(nulFile, JSON.stringify({ FINE: "x", HAS_NUL: "before\0after" }));
    expect(await cli(["secrets", "import", nulFile, "-w", scratch, "--passphrase-file", phrase])).toMatchObject({ code: 1, stderr: expect.stringContaining("HAS_NUL: a value may not contain a NUL character") });
    expect((await api("GET", `/v1/secrets/workspaces/${scratch}/environments/development/secrets`)).body.items.map((i: { name: string }) => i.name)).toEqual(["AFTER"]);
    // One stored before the CLI checked: \`run\` names it, rather than "cannot run sh".
    const me = (await api("GET", "/v1/iam/me")).body.id as string;
    const privateKey = await openPrivateKey((await api("GET", "/v1/secrets/me/keypair")).body.sealed_private_key, PHRASE);
    const scratchKey = unwrapWorkspaceKey((await myKey(scratch)).wrapped, privateKey, { workspace: scratch, user: me });
    const stored = encryptValue(scratchKey, "before\0after", { workspace: scratch, environment: "development", name: "HAS_NUL", version: 1, keyVersion: 1 });
    expect((await api("PUT", `/v1/secrets/workspaces/${scratch}/environments/development/secrets/HAS_NUL`, { value: stored })).status).toBe(200);
    const ranWithNul = await cli(["run", "-w", scratch, "--passphrase-file", phrase, "--", "sh", "-c", "echo ran"]);
    expect(ranWithNul).toEqual({ code: 1, stdout: "", stderr: "citadel: cannot pass HAS_NUL to the command: its value holds a NUL character, which an environment variable cannot (set it again without one)\n" });
    // The key this citadel made binds values: the server refuses a value of the format before (found in review).
    const vaultKey = unwrapWorkspaceKey((await myKey(vault)).wrapped, privateKey, { workspace: vault, user: me });
    const unboundInVault = encryptUnboundValue(vaultKey, "from an older client", { workspace: vault, environment: "development", name: "OLD_FORMAT" });
    expect((await api("PUT", `/v1/secrets/workspaces/${vault}/environments/development/secrets/OLD_FORMAT`, { value: unboundInVault })).status).toBe(422);
    // A new workspace key: values re-encrypted on this machine; the old version still reads.
    const rotated = await ok(["secrets", "e2ee", "rotate", "-w", vault, "--passphrase-file", phrase]);
    expect(rotated).toContain("key version 2, 1 values re-encrypted");
    expect(await ok(["secrets", "get", "E2EE_VALUE", "-w", vault, "--passphrase-file", phrase])).toBe(`${E2EE_VALUE}\n`);
    expect(await ok(["secrets", "get", "E2EE_VALUE", "-w", vault, "--version", "1", "--passphrase-file", phrase])).toBe(`${E2EE_VALUE}\n`);

    // A workspace an older citadel began (its key carries no mark), with a value it wrote (no version): it reads, said on standard error.
    const legacy = (await api("POST", `/v1/iam/orgs/${(await api("GET", "/v1/iam/me")).body.organizations[0].id}/workspaces`, { name: "legacy" })).body.id as string;
    const legacyKey = newWorkspaceKey();
    await api("PATCH", `/v1/secrets/workspaces/${legacy}/settings`, { e2ee: true });
    expect((await api("PUT", `/v1/secrets/workspaces/${legacy}/e2ee/keys/${me}`, { wrapped: wrapWorkspaceKey(legacyKey, publicKeyOf(privateKey), { workspace: legacy, user: me }) })).status).toBe(200);
    const legacyPath = `/v1/secrets/workspaces/${legacy}/environments/development/secrets/OLD_FORMAT`;
    const unbound = encryptUnboundValue(legacyKey, "from an older client", { workspace: legacy, environment: "development", name: "OLD_FORMAT" });
    expect((await api("PUT", legacyPath, { value: unbound })).status).toBe(200);
    const oldFormat = await cli(["secrets", "get", "OLD_FORMAT", "-w", legacy, "--passphrase-file", phrase]);
    expect(oldFormat).toEqual({ code: 0, stdout: "from an older client\n", stderr: expect.stringContaining("development/OLD_FORMAT (and maybe others) was written before values named their version") });
    // Rotated by this citadel: the value is re-encrypted bound, under a key marked so.
    expect(await ok(["secrets", "e2ee", "rotate", "-w", legacy, "--passphrase-file", phrase])).toContain("key version 2, 1 values re-encrypted");
    expect((await api("GET", legacyPath)).body.value).toStartWith("c2.v.");
    expect(await cli(["secrets", "get", "OLD_FORMAT", "-w", legacy, "--passphrase-file", phrase])).toEqual({ code: 0, stdout: "from an older client\n", stderr: "" });
    // The server copies the old unbound ciphertext, and its key version, into the current row: refused as current (found in review: printed with a note)...
    const legacyDb = new Database(join(data.path, "citadel.db"));
    const legacyId = (await api("GET", legacyPath)).body.id as string;
    const row = (version: number) => legacyDb.query<{ ciphertext: Uint8Array; key_version: number }, [string, number]>("SELECT ciphertext, key_version FROM secret_versions WHERE secret_id = ? AND version = ?").get(legacyId, version)!;
    const setRow = (version: number, r: { ciphertext: Uint8Array; key_version: number }) => legacyDb.query("UPDATE secret_versions SET ciphertext = ?, key_version = ? WHERE secret_id = ? AND version = ?").run(r.ciphertext, r.key_version, legacyId, version);
    const second = row(2);
    try {
      setRow(2, row(1));
      await memoLapsed();
      const downgraded = await cli(["secrets", "get", "OLD_FORMAT", "-w", legacy, "--passphrase-file", phrase]);
      expect([downgraded.code, downgraded.stdout, downgraded.stderr]).toEqual([1, "", expect.stringContaining("citadel: development/OLD_FORMAT is served as its current value in the format from before values named their version (c1.v.), but the workspace key (version 2) was made by a citadel that binds every value")]);
      const rotatedAgain = await cli(["secrets", "e2ee", "rotate", "-w", legacy, "--passphrase-file", phrase]);
      expect([rotatedAgain.code, rotatedAgain.stderr]).toEqual([1, expect.stringContaining("is served as its current value in the format from before")]);
    } finally {
      setRow(2, second);
      await memoLapsed();
      legacyDb.close();
    }
    // ...while the history it is part of still reads, said on standard error.
    const history = await cli(["secrets", "get", "OLD_FORMAT", "-w", legacy, "--version", "1", "--passphrase-file", phrase]);
    expect(history).toEqual({ code: 0, stdout: "from an older client\n", stderr: expect.stringContaining("was written before values named their version") });

    // Four imports of the same names at once all succeed, each value readable (found in review: one of four exited 1 on a plain conflict).
    const busy = (await api("POST", `/v1/iam/orgs/${(await api("GET", "/v1/iam/me")).body.organizations[0].id}/workspaces`, { name: "busy" })).body.id as string;
    await ok(["secrets", "e2ee", "enable", "-w", busy, "--passphrase-file", phrase]);
    const files = [1, 2, 3, 4].map((n) => {
      const file = join(home.path, `concurrent-${n}.env`);
      writeFileSync(file, `A=a${n}\nB=b${n}\n`);
      return file;
    });
    const imports = await Promise.all(files.map((file) => cli(["secrets", "import", file, "-w", busy, "--passphrase-file", phrase])));
    expect(imports.map((r) => [r.code, r.stderr])).toEqual(files.map(() => [0, ""]));
    expect(((await api("GET", `/v1/secrets/workspaces/${busy}/environments/development/secrets/A/versions`)).body.versions as unknown[]).length).toBe(files.length);
    const lastA = await ok(["secrets", "get", "A", "-w", busy, "--passphrase-file", phrase]);
    expect(lastA).toMatch(/^a[1-4]\n$/);
    expect(await ok(["secrets", "get", "B", "-w", busy, "--passphrase-file", phrase])).toBe(`b${lastA.trim().slice(1)}\n`); // one import's values, all of them

    // A member's public key is checked against the one a key was wrapped to before: a server
    // handing its own in their place would read the workspace key (E2eePins.checkMemberKey).
    const org = (await api("GET", "/v1/iam/me")).body.organizations[0].id as string;
    const bobEmail = `bob-${crypto.randomUUID().slice(0, 8)}@example.org`; // not the tag: an address is no secret, the server keeps it
    const bob = (await api("POST", "/v1/iam/users", { email: bobEmail })).body.user.id as string;
    expect((await api("POST", `/v1/iam/orgs/${org}/members`, { email: bobEmail, role: "editor" })).status).toBe(200);
    const bobsKey = generateUserKeyPair().publicKey;
    const serverKey = generateUserKeyPair().publicKey;
    const members = new Database(join(data.path, "citadel.db"));
    try {
      // Bob's key pair as his own CLI would have registered it (its sealed half is not used here).
      members.query("INSERT INTO secrets_user_keys (user_id, public_key, sealed_private_key, created_at) VALUES (?, ?, 'c1.pk.unused', 0)").run(bob, bobsKey);
      await memoLapsed();
      const grant = (...extra: string[]) => cli(["secrets", "e2ee", "grant", bob, "-w", vault, "--passphrase-file", phrase, ...extra]);
      const misread = await grant("--fingerprint", publicKeyFingerprint(serverKey));
      expect([misread.code, misread.stderr]).toEqual([1, expect.stringContaining(`whose fingerprint is ${publicKeyFingerprint(bobsKey)}, not ${publicKeyFingerprint(serverKey)}`)]);
      // The first time, the server's word alone is not enough: the fingerprint is asked for.
      const unchecked = await grant();
      expect([unchecked.code, unchecked.stderr]).toEqual([1, expect.stringContaining(`never checked on this machine, the public key the server hands for ${bob} (${publicKeyFingerprint(bobsKey)})`)]);
      expect(unchecked.stderr).toContain(`--fingerprint ${publicKeyFingerprint(bobsKey)}`);
      // As Bob read it out: without its prefix, with spaces around.
      const granted = await grant("--fingerprint", ` ${publicKeyFingerprint(bobsKey).slice("SHA256:".length)} `);
      expect([granted.code, granted.stdout]).toEqual([0, expect.stringContaining(`their public key: ${publicKeyFingerprint(bobsKey)}`)]);
      const mine = (await api("GET", "/v1/secrets/me/keypair")).body.public_key as string;
      expect(await ok(["secrets", "e2ee", "fingerprint", "--passphrase-file", phrase])).toBe(`${(await api("GET", "/v1/iam/me")).body.id}: ${publicKeyFingerprint(mine)}\n`);

      // The server hands its own key for Bob: refused, before anything is sent.
      members.query("UPDATE secrets_user_keys SET public_key = ? WHERE user_id = ?").run(serverKey, bob);
      await memoLapsed();
      for (const command of [["grant", bob], ["rotate"]]) {
        const refused = await cli(["secrets", "e2ee", ...command, "-w", vault, "--passphrase-file", phrase]);
        expect([refused.code, refused.stderr]).toEqual([1, expect.stringContaining(`the server hands a different public key for ${bob}`)]);
      }
      // A machine that never wrapped a key to Bob (played by forgetting him) does not take the server's word either.
      expect(await ok(["secrets", "e2ee", "forget", "--user", bob])).toContain(`${bob}: forgotten`);
      const rotateUnchecked = await cli(["secrets", "e2ee", "rotate", "-w", vault, "--passphrase-file", phrase]);
      expect([rotateUnchecked.code, rotateUnchecked.stderr]).toEqual([1, expect.stringContaining(`--trust ${bob}=${publicKeyFingerprint(serverKey)}`)]);
      expect((await api("GET", `/v1/secrets/workspaces/${vault}/e2ee/my-key`)).body.key_version).toBe(2); // no rotation sent anything
      expect(JSON.parse(readFileSync(join(home.path, "citadel", "e2ee-pins.json"), "utf8")).servers[new URL(citadel.url).origin][vault].members).toEqual({}); // nothing refused was remembered
      // A user named twice in --trust (the server's suggestion could be made to read that way) is refused, not overridden.
      const twice = await cli(["secrets", "e2ee", "rotate", "-w", vault, "--passphrase-file", phrase, "--trust", `${bob}=${publicKeyFingerprint(bobsKey)},${bob}=${publicKeyFingerprint(serverKey)}`]);
      expect([twice.code, twice.stderr]).toEqual([2, expect.stringContaining(`--trust names ${bob} twice`)]); // a usage error
      // A holder whose "id" is text of the server's choosing is refused before it is printed or trusted.
      const forged = `${bob}=${publicKeyFingerprint(bobsKey)},${bob}`;
      members.query("INSERT INTO secrets_workspace_keys (workspace_id, key_version, user_id, wrapped, wrapped_by, created_at) SELECT workspace_id, key_version, ?, wrapped, wrapped_by, created_at FROM secrets_workspace_keys WHERE user_id = ? AND workspace_id = ?").run(forged, bob, vault);
      await memoLapsed();
      const odd = await cli(["secrets", "e2ee", "rotate", "-w", vault, "--passphrase-file", phrase]);
      expect([odd.code, odd.stderr]).toEqual([1, expect.stringContaining("the server listed a holder: ")]);
      expect(odd.stderr).toContain("is not a user id");
      members.query("DELETE FROM secrets_workspace_keys WHERE user_id = ?").run(forged);
      await memoLapsed();

      // Bob really made a new key pair (the server drops the keys wrapped to his old one) and
      // read its fingerprint out: a rotation with it checked wraps the new key for him.
      const rotated = await ok(["secrets", "e2ee", "rotate", "-w", vault, "--passphrase-file", phrase, "--trust", `${bob}=${publicKeyFingerprint(serverKey)}`]);
      expect(rotated).toContain(`key version 3, 1 values re-encrypted, wrapped for ${(await api("GET", "/v1/iam/me")).body.id}, ${bob}`);
      expect(await grant()).toMatchObject({ code: 1, stderr: expect.stringContaining("holds the workspace key already") }); // pinned now: only the server's own rule is left
    } finally {
      members.close();
    }

    // A server that turns on its users is caught by what this machine saw (E2eePins). Played
    // here by writing its database behind it.
    const db = new Database(join(data.path, "citadel.db"));
    try {
      db.run("UPDATE secrets_workspaces SET e2ee = 0 WHERE workspace_id = ?", [vault]);
      await memoLapsed();
      const downgraded = await cli(["secrets", "set", "LEAKED", "-w", vault, "--passphrase-file", phrase], { stdin: `leak-${tag}` });
      expect([downgraded.code, downgraded.stderr]).toEqual([1, expect.stringContaining("not end-to-end encrypted, but this machine has used it encrypted")]);
      expect((await api("GET", `/v1/secrets/workspaces/${vault}/environments/development/secrets/LEAKED`)).status).toBe(404);
      db.run("UPDATE secrets_workspaces SET e2ee = 1 WHERE workspace_id = ?", [vault]);
      await memoLapsed();
      // A key of the server's own, wrapped to my (public) key, for the version I already hold.
      const me = (await api("GET", "/v1/iam/me")).body.id as string;
      const mine = (await api("GET", "/v1/secrets/me/keypair")).body.public_key as string;
      const planted = wrapWorkspaceKey(newWorkspaceKey(), mine, { workspace: vault, user: me });
      expect(db.query("UPDATE secrets_workspace_keys SET wrapped = ? WHERE workspace_id = ? AND user_id = ? AND key_version = 3").run(planted, vault, me).changes).toBe(1);
      await memoLapsed();
      const swapped = await cli(["secrets", "get", "E2EE_VALUE", "-w", vault, "--passphrase-file", phrase]);
      expect([swapped.code, swapped.stderr]).toEqual([1, expect.stringContaining("the server handed a different key for version 3")]);
      // A public key of its own in place of mine, for the next workspace to be encrypted.
      const spare = (await api("POST", `/v1/iam/orgs/${(await api("GET", "/v1/iam/me")).body.organizations[0].id}/workspaces`, { name: "spare" })).body.id as string;
      db.query("UPDATE secrets_user_keys SET public_key = ? WHERE user_id = ?").run(generateUserKeyPair().publicKey, me);
      await memoLapsed();
      const lied = await cli(["secrets", "e2ee", "enable", "-w", spare, "--passphrase-file", phrase]);
      expect([lied.code, lied.stderr]).toEqual([1, expect.stringContaining("the server's copy of your public key is not the one of your private key")]);
      expect((await api("GET", `/v1/secrets/workspaces/${spare}/settings`)).body.e2ee).toBe(false); // refused before anything changed
    } finally {
      db.close();
    }

    writeFileSync(phrase, "the wrong passphrase\n");
    const wrong = await cli(["secrets", "get", "E2EE_VALUE", "-w", vault, "--passphrase-file", phrase]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain("passphrase");
  }, 120_000); // some fifty commands, each a start of the binary that opens the private key with argon2id: 20 s on an idle 2-core host with another test file running beside it
});

describe("a write-only token (secrets:write) from the CLI (found in review: set and import asked for secrets:read)", () => {
  const writeOnlyToken = async () => JSON.parse(await ok(["token", "create", "writer", "--scope", "secrets:write", "--json"])).token as string;

  test("stores values, with set and import, in a workspace that is not end-to-end encrypted", async () => {
    const writer = { CITADEL_TOKEN: await writeOnlyToken() };
    expect(await ok(["secrets", "set", "WRITTEN_BLIND", ...WS()], { stdin: "blind-value\n", env: writer })).toBe("WRITTEN_BLIND: version 1\n");
    expect(await ok(["secrets", "import", "-", ...WS()], { stdin: "IMPORTED_BLIND=imported-value\n", env: writer })).toContain("1 new");
    expect(await ok(["secrets", "get", "WRITTEN_BLIND", ...WS()])).toBe("blind-value\n");
    expect(await ok(["secrets", "get", "IMPORTED_BLIND", ...WS()])).toBe("imported-value\n");
    const read = await cli(["secrets", "get", "WRITTEN_BLIND", ...WS()], { env: writer });
    expect([read.code, read.stderr]).toEqual([1, expect.stringContaining("secrets:read")]); // reading still needs the scope
  });

  test("never sends a value in the clear to a workspace encrypted end to end: refused here when this machine saw it so, else by the server", async () => {
    const org = (await api("GET", "/v1/iam/me")).body.organizations[0].id;
    const sealed = (await api("POST", `/v1/iam/orgs/${org}/workspaces`, { name: "sealed-for-writers" })).body.id as string;
    expect((await api("PATCH", `/v1/secrets/workspaces/${sealed}/settings`, { e2ee: true })).status).toBe(200);
    const writer = await writeOnlyToken();
    const machine = tempDir("citadel-e2e-secrets-writer-");
    try {
      // As each machine's CLI: its own config home, where it keeps what it saw (E2eePins).
      const writeFrom = (home: string, args: string[], stdin: string) => cli([...args, "-w", sealed], { stdin, env: { CITADEL_TOKEN: writer, HOME: home, XDG_CONFIG_HOME: home } });
      const set = (home: string) => writeFrom(home, ["secrets", "set", "PLAIN_TRY"], "would-be-plaintext");
      const imported = (home: string) => writeFrom(home, ["secrets", "import", "-"], "PLAIN_TRY=would-be-plaintext\n");

      // Never seen here: sent as it is, and refused by the server, which takes ciphertext only there.
      for (const attempt of [await set(machine.path), await imported(machine.path)]) {
        expect([attempt.code, attempt.stderr]).toEqual([1, expect.stringContaining("this workspace is end-to-end encrypted: send the value encrypted by the client")]);
      }
      // Seen encrypted here: refused before anything is sent.
      E2eePins.forCli(machine.path).pin(citadel.url, sealed);
      for (const attempt of [await set(machine.path), await imported(machine.path)]) {
        expect([attempt.code, attempt.stderr]).toEqual([1, expect.stringContaining(`this token may not read workspace ${sealed}'s settings (it lacks secrets:read), and this machine has used the workspace end-to-end encrypted`)]);
      }
    } finally {
      machine.remove();
    }
    expect((await api("GET", `/v1/secrets/workspaces/${sealed}/environments/development/secrets?deleted=true`)).body.items).toEqual([]); // nothing stored
  });
});

describe("destructive commands ask for --yes, then answer the server's confirmation", () => {
  test("keys rekey and dns zone delete", async () => {
    const refused = await cli(["keys", "rekey"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("--yes");
    expect(await ok(["keys", "rekey", "--yes"])).toContain("The root key is now");
    expect(await ok(["secrets", "get", "DB_PASSWORD", ...WS()])).toBe(`${DB_PASSWORD}\n`); // still readable
    await ok(["dns", "zone", "create", "e2e.example"]);
    // --ns takes host names: absolute with or without the final dot; the first is the SOA's primary.
    const hosted = JSON.parse(await ok(["dns", "zone", "create", "ns.e2e.example", "--ns", "ns1.example.net,ns2.example.net.", "--json"]));
    expect(hosted.soa.mname).toBe("ns1.example.net.");
    const apex = JSON.parse(await ok(["dns", "zone", "show", "ns.e2e.example", "--json"]));
    expect(apex.records.filter((r: { type: string }) => r.type === "NS").map((r: { data: string }) => r.data).sort()).toEqual(["ns1.example.net.", "ns2.example.net."]);
    expect(await ok(["dns", "zone", "delete", "ns.e2e.example", "--yes"])).toContain("deleted");
    expect((await cli(["dns", "zone", "delete", "e2e.example"])).code).not.toBe(0);
    expect(await ok(["dns", "zone", "delete", "e2e.example", "--yes"])).toContain("deleted");
    expect(await ok(["dns", "zone", "list"])).not.toContain("e2e.example");
  });
});

describe("what the server keeps", () => {
  test("its logs, database and write-ahead log never hold a plaintext value", async () => {
    const needles = Object.entries(PLAINTEXTS).flatMap(([name, value]) => [
      [name, Buffer.from(value)],
      [`${name} (as JSON)`, Buffer.from(JSON.stringify(value).slice(1, -1))],
    ]) as Array<[string, Buffer]>;
    needles.push(["the tag", Buffer.from(tag)]);
    const check = () => {
      const files = readdirSync(data.path).filter((f) => f.startsWith("citadel.db"));
      expect(files).toContain("citadel.db");
      const haystacks: Array<[string, Buffer]> = [
        ...files.map((f) => [f, readFileSync(join(data.path, f))] as [string, Buffer]),
        ["serve stdout", Buffer.from(citadel.logs().map((l) => JSON.stringify(l)).join("\n"))],
        ["serve stderr", Buffer.from(citadel.stderr())],
      ];
      const leaks = haystacks.flatMap(([where, hay]) => needles.filter(([, needle]) => hay.includes(needle)).map(([what]) => `${what} in ${where}`));
      expect(leaks).toEqual([]);
    };
    check(); // while running: recent pages are in the WAL
    expect(readdirSync(data.path)).toContain("citadel.db-wal");
    expect((await citadel.stop()).code).toBe(0);
    check(); // after the checkpoint on shutdown
  });
});
