import { describe, expect, test } from "bun:test";
import { normalizedServerUrl, serverUrlProblem } from "../../../src/cli/server-url.ts";

describe("serverUrlProblem", () => {
  test("an http(s) URL with a host, a port and a path is accepted", () => {
    for (const url of ["https://citadel.example:8443", "https://citadel.example:8443/", "http://127.0.0.1:8443/citadel", "https://[::1]:8443"]) expect([url, serverUrlProblem(url)]).toEqual([url, null]);
  });

  test("http:// only to a loopback host: a token, a password or a node's enrollment key would cross the network in the clear (found in review)", () => {
    for (const url of ["http://localhost:8443", "http://127.0.0.2:8443", "http://[::1]:8443/citadel", "http://[::ffff:127.0.0.1]:8443"]) expect([url, serverUrlProblem(url)]).toEqual([url, null]);
    for (const url of ["http://citadel.example:8443", "http://192.0.2.1", "http://[2001:db8::1]:8443", "http://localhost.example.org", "http://127.0.0.1.nip.io"]) {
      expect([url, serverUrlProblem(url)]).toEqual([url, "an https:// URL: http:// only to this machine (a loopback address), as a token or a key would cross the network in the clear"]);
    }
  });

  test("user:password@ is refused: the URL is kept and shown (found in review: login stored and printed the password)", () => {
    for (const url of ["https://user:hunter2@127.0.0.1:8443", "https://user@127.0.0.1", "https://:hunter2@127.0.0.1"]) {
      expect([url, serverUrlProblem(url)]).toEqual([url, "no user:password@ in the URL: it is kept and shown (the stored login, a node's state, messages); a token or a node's key authenticates"]);
    }
  });

  test("spaces and control characters, around the URL or in it, are refused: the parser drops them, so the text checked was not the text used (found in review)", () => {
    for (const url of ["https://127.0.0.1:8443 ", " https://127.0.0.1:8443", "https://h/ ", "https://h/\n", "https://h\t/citadel", "https://h/a\u0000", "https://h/\u00a0"]) {
      expect([url, serverUrlProblem(url)]).toEqual([url, "no spaces or control characters in the URL (nor around it)"]);
    }
  });
});

describe("normalizedServerUrl", () => {
  test("one spelling per server: as parsed (lower-case host, no default port), without trailing slashes", () => {
    expect(normalizedServerUrl("https://citadel.example:8443/")).toBe("https://citadel.example:8443");
    expect(normalizedServerUrl("https://Citadel.Example:443//")).toBe("https://citadel.example");
    expect(normalizedServerUrl("https://h/citadel/")).toBe("https://h/citadel");
    expect(normalizedServerUrl("https://[::1]:8443/")).toBe("https://[::1]:8443");
  });
});
