/**
 * `citadel secrets export` reads so that the audit log records an export (found in review: it
 * read the values as a list, and its reads said `list`): a plain workspace's values from the
 * export route, as JSON, an end-to-end-encrypted one's as a list declared an export
 * (purpose=export), decrypted here; against a server from before the purpose, as a list. The
 * file is printed here, never as the server sent it (found in review: the export route's text was
 * printed as it came), and is what the client printed before (test/e2e/secrets-cli.test.ts checks
 * it byte for byte).
 */
import { afterEach, beforeEach, describe, expect, spyOn, test } from "bun:test";
import { ApiError } from "../../../src/cli/api-client.ts";
import { secretsCommands } from "../../../plugins/secrets/commands.ts";
import { printDotenv, printJsonSecrets } from "../../../plugins/secrets/dotenv.ts";
import { encryptValue, wrapWorkspaceKey } from "../../../plugins/secrets/e2ee.ts";
import { runCommand, type SentRequest } from "../../helpers/command.ts";
import { e2eeCliFixture, ME, WS } from "../../helpers/e2ee-cli.ts";

const fixture = e2eeCliFixture("export-command");
const { phraseFile, mine, workspaceKey, newHome } = fixture;
const sealed = await fixture.sealed();

const LIST = `${WS}/environments/development/secrets`;
const VALUES = { DB_PASSWORD: "it's a secret", TLS_KEY: "line one\nline two" };
const ENTRIES = Object.entries(VALUES).map(([name, value]) => ({ name, value }));
/** The export route's answer for VALUES: what a server sends for format=json. */
const EXPORTED_JSON = printJsonSecrets(ENTRIES);

let stdout: string[];
let spy: { mockRestore(): void };
beforeEach(() => {
  stdout = [];
  spy = spyOn(process.stdout, "write").mockImplementation((chunk: unknown) => (stdout.push(String(chunk)), true));
});
afterEach(() => spy.mockRestore());

/**
 * A server with VALUES in ws_1's development environment, encrypted or not; `older`: from before
 * a list took a purpose (it refuses the parameter, as it refuses any it does not know).
 */
function server(encrypted: boolean, { older = false, exportRoute = {} as Record<string, string> } = {}) {
  const item = (name: keyof typeof VALUES) => ({
    name,
    version: 1,
    value: encrypted ? encryptValue(workspaceKey, VALUES[name], { workspace: "ws_1", environment: "development", name, version: 1, keyVersion: 1 }) : VALUES[name],
    key_version: encrypted ? 1 : null,
  });
  return (r: SentRequest): unknown => {
    const route = `${r.method} ${r.path}`;
    if (route === `GET ${WS}/settings`) return { e2ee: encrypted, environments: [] };
    if (route === `GET ${WS}/e2ee/my-key`) return { key_version: 1, wrapped: wrapWorkspaceKey(workspaceKey, mine.publicKey, { workspace: "ws_1", user: ME }) };
    if (route === "GET /v1/iam/me") return { id: ME };
    if (route === "GET /v1/secrets/me/keypair") return { public_key: mine.publicKey, sealed_private_key: sealed };
    const exportFormat = /^GET \/v1\/secrets\/workspaces\/ws_1\/environments\/development\/export\?format=(\w+)$/.exec(route)?.[1];
    if (exportFormat !== undefined) return exportRoute[exportFormat] ?? (exportFormat === "json" ? EXPORTED_JSON : "the export route's file\n");
    if (route === `GET ${LIST}?values=true&purpose=export` && older) {
      throw new ApiError("query.purpose: unknown parameter (validation_failed, request 6849abf839be5b55-j)", 422, "validation_failed");
    }
    if (route === `GET ${LIST}?values=true&purpose=export` || route === `GET ${LIST}?values=true`) return { items: [item("DB_PASSWORD"), item("TLS_KEY")] };
    throw new Error(`unexpected request ${route}`);
  };
}

const exported = (answer: (r: SentRequest) => unknown, options: Record<string, string> = {}) =>
  runCommand(secretsCommands, "secrets export", { options: { workspace: "ws_1", "passphrase-file": phraseFile, ...options }, answer, configHome: newHome() });
const reads = (requests: SentRequest[]) => requests.map((r) => r.path).filter((path) => path.includes("/environments/"));

describe("secrets export is audited as an export (found in review: its reads said list)", () => {
  test("a plain workspace: the export route's values as JSON, printed here in either format; no list of values", async () => {
    for (const [format, file] of [["dotenv", printDotenv(ENTRIES)], ["json", EXPORTED_JSON]]) {
      stdout.length = 0;
      const run = await exported(server(false), { format: format! });
      expect([run.code, run.error]).toEqual([0, null]);
      expect(reads(run.requests)).toEqual([`${WS}/environments/development/export?format=json`]);
      expect(stdout.join("")).toBe(file!);
    }
  });

  test("a plain workspace: the server's text is never printed as it is (found in review: an older server's .env ran a value's backticks once sourced)", async () => {
    // An older server's .env, from before `...` was escaped, and a hostile one's: asked for JSON, it is not asked for.
    const olderDotenv = { dotenv: "DB_PASSWORD=\"`touch /tmp/pwned`\"\n" };
    const run = await exported(server(false, { exportRoute: olderDotenv }));
    expect([run.code, run.error]).toEqual([0, null]);
    expect(stdout.join("")).toBe(printDotenv(ENTRIES));
    // Values a shell would run, from the JSON: quoted here as printDotenv quotes them.
    const dangerous = { NOTE: "it's `touch /tmp/pwned` $(id)", NEXT: "one\nLD_PRELOAD=/tmp/x.so" };
    stdout.length = 0;
    const quoted = await exported(server(false, { exportRoute: { json: JSON.stringify(dangerous) } }));
    expect([quoted.code, quoted.error]).toEqual([0, null]);
    expect(stdout.join("")).toBe('NOTE="it\'s \\`touch /tmp/pwned\\` \\$(id)"\nNEXT="one\\nLD_PRELOAD=/tmp/x.so"\n');
    // A proxy's page, dotenv text, a bad name, a repeated one, a value not a string: refused, nothing printed.
    const answers = [
      "<html><body>502 Bad Gateway</body></html>",
      "DB_PASSWORD=`touch /tmp/pwned`\n",
      '{"BAD NAME": "x"}',
      '{"A": "1", "A": "2"}',
      '{"A": 1}',
    ];
    for (const answer of answers) {
      stdout.length = 0;
      const refused = await exported(server(false, { exportRoute: { json: answer } }));
      expect(refused.code).toBe(1);
      expect(refused.error).toBeInstanceOf(ApiError);
      expect(refused.error!.message).toStartWith(`unexpected answer from https://citadel.test:8443${WS}/environments/development/export?format=json: `);
      expect(stdout.join("")).toBe("");
    }
  });

  test("an end-to-end-encrypted workspace: a list declared an export, decrypted and printed here", async () => {
    const run = await exported(server(true));
    expect([run.code, run.error]).toEqual([0, null]);
    expect(reads(run.requests)).toEqual([`${LIST}?values=true&purpose=export`]);
    expect(stdout.join("")).toBe(printDotenv(ENTRIES));
  });

  test("an end-to-end-encrypted workspace on a server from before the purpose: the list read as before", async () => {
    const run = await exported(server(true, { older: true }), { format: "json" });
    expect([run.code, run.error]).toEqual([0, null]);
    expect(reads(run.requests)).toEqual([`${LIST}?values=true&purpose=export`, `${LIST}?values=true`]);
    expect(JSON.parse(stdout.join(""))).toEqual(VALUES);
  });
});
