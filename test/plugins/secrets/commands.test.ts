/** What the secrets commands check before they ask the server (the whole flow: test/e2e/secrets-cli.test.ts). */
import { describe, expect, test } from "bun:test";
import { generateToken } from "../../../src/auth/tokens.ts";
import { secretsCommands } from "../../../plugins/secrets/commands.ts";
import { runCommand } from "../../helpers/command.ts";

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
