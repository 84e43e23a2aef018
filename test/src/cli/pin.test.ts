/**
 * src/cli/pin.ts without a server: which proxy the look at a server's certificate goes
 * through, chosen as Bun's fetch chooses it (proxy-choice.test.ts asks fetch itself), and what
 * --fingerprint takes.
 */
import { describe, expect, test } from "bun:test";
import { UsageError } from "../../../src/cli/command-line.ts";
import { givenPin, proxyFor } from "../../../src/cli/pin.ts";

describe("proxyFor: the proxy fetch goes through, or null (found in review: the look ignored it)", () => {
  const PROXY = "http://proxy.lan:3128";
  const via = (host: string, env: Record<string, string>) => proxyFor(new URL(`https://${host}:8443`), env)?.href ?? null;

  test("https_proxy, else HTTPS_PROXY; empty is unset; none is none", () => {
    expect(via("citadel.test", {})).toBeNull();
    expect(via("citadel.test", { HTTPS_PROXY: PROXY })).toBe(`${PROXY}/`);
    expect(via("citadel.test", { https_proxy: PROXY, HTTPS_PROXY: "http://other:1" })).toBe(`${PROXY}/`);
    expect(via("citadel.test", { https_proxy: "", HTTPS_PROXY: PROXY })).toBe(`${PROXY}/`);
    expect(via("citadel.test", { https_proxy: '""', HTTPS_PROXY: PROXY })).toBeNull();
  });

  test("a proxy named without a scheme is an http: one; credentials are kept; another scheme is refused, not ignored", () => {
    expect(via("citadel.test", { HTTPS_PROXY: "proxy.lan:3128" })).toBe(`${PROXY}/`);
    expect(via("citadel.test", { HTTPS_PROXY: "http://u:p%40ss@proxy.lan:3128" })).toBe("http://u:p%40ss@proxy.lan:3128/");
    expect(via("citadel.test", { HTTPS_PROXY: "https://proxy.lan" })).toBe("https://proxy.lan/");
    expect(() => via("citadel.test", { HTTPS_PROXY: "socks5://proxy.lan:1080" })).toThrow("HTTPS_PROXY is not an http:// or https:// proxy's URL (socks5://proxy.lan:1080)");
  });

  test("a refused proxy is named by its scheme and host: never the password its URL carries (found in review)", () => {
    const message = (proxy: string) => {
      try {
        via("citadel.test", { HTTPS_PROXY: proxy });
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error("accepted");
    };
    expect(message("socks5://user:hunter2@proxy.lan:1080")).toBe("HTTPS_PROXY is not an http:// or https:// proxy's URL (socks5://proxy.lan:1080)");
    expect(message("socks5://:hunter2@proxy.lan")).toBe("HTTPS_PROXY is not an http:// or https:// proxy's URL (socks5://proxy.lan)");
  });

  test("NO_PROXY (no_proxy first): *, the host, a domain it lies in, an address range; any case; an entry with a port names the host at that port only", () => {
    const bypassed = (host: string, noProxy: string) => via(host, { HTTPS_PROXY: PROXY, NO_PROXY: noProxy }) === null;
    expect(bypassed("citadel.test", "*")).toBe(true);
    expect(bypassed("citadel.test", "example.com, citadel.test")).toBe(true);
    expect(bypassed("citadel.test", "CITADEL.TEST")).toBe(true);
    expect(bypassed("a.citadel.test", "citadel.test")).toBe(true);
    expect(bypassed("a.citadel.test", ".citadel.test")).toBe(true);
    expect(bypassed("a.citadel.test", "*.citadel.test")).toBe(true);
    expect(bypassed("xcitadel.test", "citadel.test")).toBe(false);
    expect(bypassed("citadel.test", "foo,,bar,")).toBe(false);
    expect(bypassed("citadel.test", "citadel.test:8443")).toBe(true);
    expect(bypassed("citadel.test", "citadel.test:443")).toBe(false);
    expect(bypassed("10.1.2.3", "10.0.0.0/8")).toBe(true);
    expect(bypassed("10.1.2.3", "10.1.2.3")).toBe(true);
    expect(bypassed("10.1.2.3", "192.168.0.0/16")).toBe(false);
    expect(bypassed("10.1.2.3", "2.3")).toBe(false);
    expect(bypassed("[::1]", "::1")).toBe(true);
    expect(bypassed("[::1]", "[::1]")).toBe(true);
    expect(via("citadel.test", { HTTPS_PROXY: PROXY, no_proxy: "other.test", NO_PROXY: "citadel.test" })).toBe(`${PROXY}/`);
    expect(via("citadel.test", { HTTPS_PROXY: PROXY, no_proxy: "", NO_PROXY: "citadel.test" })).toBeNull();
  });
});

describe("givenPin: what --fingerprint takes, checked before the server is reached (found in review: anything connected, then read as a mismatch)", () => {
  const PIN = `sha256//${"A".repeat(42)}Q=`;
  const HEX = "ab".repeat(32);
  const COLONS = Array(32).fill("AB").join(":");

  test("a key pin, its prefix in any case, spaces around it", () => {
    for (const given of [PIN, `SHA256//${PIN.slice(8)}`, ` ${PIN}\n`]) expect(givenPin(given)).toEqual({ pin: PIN });
  });

  test("64 hex digits, with or without colons, as openssl prints them too: a certificate fingerprint", () => {
    for (const given of [HEX, HEX.toUpperCase(), COLONS, `sha256 Fingerprint=${COLONS}`, `SHA256 Fingerprint=${COLONS}`]) expect(givenPin(given)).toEqual({ certificateFingerprint: HEX.toUpperCase() });
  });

  test("anything else is a usage error naming both shapes", () => {
    for (const given of [PIN.slice(8), `sha256/${PIN.slice(8)}`, `${PIN.slice(0, -2)}=`, `sha1//${PIN.slice(8)}`, "ab".repeat(20), `${HEX}ab`, `AB:${HEX.slice(2)}`, "sha1 Fingerprint=AB:CD", "", "garbage"]) {
      let thrown: unknown;
      try {
        givenPin(given);
      } catch (error) {
        thrown = error;
      }
      expect([given, thrown]).toEqual([given, expect.any(UsageError)]);
      expect((thrown as Error).message).toStartWith("--fingerprint: give the server's public key pin, sha256// and 44 base64 characters");
    }
  });
});
