/** What the DNS commands check before they ask the server (the whole flow: test/e2e/dns.test.ts). */
import { describe, expect, test } from "bun:test";
import { dnsCommands } from "../../../plugins/dns/commands.ts";
import { runCommand } from "../../helpers/command.ts";

describe("dns tsig create --algorithm (found in review: the server's message named the request's field)", () => {
  test("an algorithm Citadel does not have is a usage error listing those it has, before any request", async () => {
    const run = await runCommand(dnsCommands, "dns tsig create", { args: ["transfer.example"], options: { algorithm: "hmac-md5" } });
    expect([run.code, run.error?.message, run.requests]).toEqual([2, "--algorithm: one of hmac-sha256, hmac-sha384, hmac-sha512", []]);
  });
});
