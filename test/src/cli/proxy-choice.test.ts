/**
 * proxyFor (src/cli/pin.ts) against Bun's fetch itself: for each environment, the proxy the look
 * at a server's certificate takes is the one a real fetch takes, seen by two logging CONNECT
 * proxies (found in review: ALL_PROXY, NO_PROXY's host:port entries, final dots and `*.*` were
 * read apart from fetch). Should Bun's rules change, the case that drifted fails here.
 *
 * Nothing answers behind the proxies (they refuse every tunnel) and nothing listens at the
 * addresses tried: what counts is which proxy, if any, was asked for the tunnel.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { proxyFor } from "../../../src/cli/pin.ts";
import { connectProxy, type ConnectProxy } from "../../helpers/connect-proxy.ts";

const VARIABLES = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY"] as const;
type Environment = Partial<Record<(typeof VARIABLES)[number], string>>;

/** Which way a request goes: through proxy A or B, straight to the server, or refused for its proxy. */
type Way = "A" | "B" | "direct" | "refused";

let a: ConnectProxy;
let b: ConnectProxy;
beforeAll(async () => {
  [a, b] = await Promise.all([connectProxy({}), connectProxy({})]);
});
afterAll(async () => {
  await Promise.all([a.stop(), b.stop()]);
});

/** `environment` with A and B standing for the two proxies' URLs, A_WITHOUT_SCHEME for A's host and port alone. */
const withProxies = (environment: Environment): Environment =>
  Object.fromEntries(Object.entries(environment).map(([name, value]) => [name, value.replace("A_WITHOUT_SCHEME", new URL(a.url).host).replace(/\bA\b/, a.url).replace(/\bB\b/, b.url)]));

/** The way proxyFor picks. */
function wayOfProxyFor(url: string, environment: Environment): Way {
  try {
    const proxy = proxyFor(new URL(url), environment);
    return proxy === null ? "direct" : proxy.origin === new URL(a.url).origin ? "A" : proxy.origin === new URL(b.url).origin ? "B" : "direct";
  } catch {
    return "refused";
  }
}

/** The way fetch goes, with the proxy variables set to `environment` only, put back after. */
async function wayOfFetch(url: string, environment: Environment): Promise<Way> {
  const saved = VARIABLES.map((name) => [name, process.env[name]] as const);
  for (const name of VARIABLES) delete process.env[name];
  Object.assign(process.env, environment);
  a.tunnels.length = 0;
  b.tunnels.length = 0;
  try {
    const failure = await fetch(url, { tls: { rejectUnauthorized: false }, signal: AbortSignal.timeout(3_000) }).then(
      () => null,
      (error: { code?: string }) => error,
    );
    if (a.tunnels.length > 0) return "A";
    if (b.tunnels.length > 0) return "B";
    return failure?.code === "UnsupportedProxyProtocol" ? "refused" : "direct";
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

// Names under .test (RFC 6761) resolve nowhere, addresses at port 9 refuse: a request that goes
// straight to the server fails at once, having asked no proxy.
const AT = "https://citadel.test:8443/";
const CASES: Array<[string, string, Environment, Way]> = [
  ["HTTPS_PROXY", AT, { HTTPS_PROXY: "A" }, "A"],
  ["https_proxy before HTTPS_PROXY", AT, { https_proxy: "A", HTTPS_PROXY: "B" }, "A"],
  ["empty is unset", AT, { https_proxy: "", HTTPS_PROXY: "A" }, "A"],
  ['"" names none', AT, { https_proxy: '""', HTTPS_PROXY: "A" }, "direct"],
  ["HTTP_PROXY is not for https:", AT, { HTTP_PROXY: "A" }, "direct"],
  ["ALL_PROXY", AT, { ALL_PROXY: "A" }, "A"],
  ["all_proxy before ALL_PROXY", AT, { all_proxy: "A", ALL_PROXY: "B" }, "A"],
  ["HTTPS_PROXY before all_proxy", AT, { HTTPS_PROXY: "B", all_proxy: "A" }, "B"],
  ["https_proxy before ALL_PROXY", AT, { https_proxy: "B", ALL_PROXY: "A" }, "B"],
  ['HTTPS_PROXY "" leaves it to ALL_PROXY', AT, { HTTPS_PROXY: '""', ALL_PROXY: "A" }, "A"],
  ["HTTPS_PROXY '' leaves it to ALL_PROXY", AT, { HTTPS_PROXY: "''", ALL_PROXY: "A" }, "A"],
  ['all_proxy "" names none', AT, { all_proxy: '""', ALL_PROXY: "A" }, "direct"],
  ["a proxy without a scheme is http:", AT, { HTTPS_PROXY: "A_WITHOUT_SCHEME" }, "A"],
  ["an ALL_PROXY without a scheme is http:", AT, { ALL_PROXY: "A_WITHOUT_SCHEME" }, "A"],
  ["HTTPS_PROXY socks5: is refused", AT, { HTTPS_PROXY: "socks5://127.0.0.1:9" }, "refused"],
  ["HTTPS_PROXY socks5: is refused, ALL_PROXY or not", AT, { HTTPS_PROXY: "socks5://127.0.0.1:9", ALL_PROXY: "A" }, "refused"],
  ["ALL_PROXY socks5: is ignored", AT, { ALL_PROXY: "socks5://127.0.0.1:9" }, "direct"],
  ["a proxy that is no URL is ignored", AT, { HTTPS_PROXY: "http://[bad", ALL_PROXY: "A" }, "direct"],
  ["NO_PROXY applies to ALL_PROXY", AT, { ALL_PROXY: "A", NO_PROXY: "citadel.test" }, "direct"],
  ["NO_PROXY the host", AT, { HTTPS_PROXY: "A", NO_PROXY: "example.com, citadel.test" }, "direct"],
  ["NO_PROXY in any case", AT, { HTTPS_PROXY: "A", NO_PROXY: "CITADEL.TEST" }, "direct"],
  ["no_proxy before NO_PROXY", AT, { HTTPS_PROXY: "A", no_proxy: "other.test", NO_PROXY: "citadel.test" }, "A"],
  ["NO_PROXY a domain", "https://a.citadel.test:8443/", { HTTPS_PROXY: "A", NO_PROXY: "citadel.test" }, "direct"],
  ["NO_PROXY .domain", "https://a.citadel.test:8443/", { HTTPS_PROXY: "A", NO_PROXY: ".citadel.test" }, "direct"],
  ["NO_PROXY *.domain", AT, { HTTPS_PROXY: "A", NO_PROXY: "*.citadel.test" }, "direct"],
  ["NO_PROXY not a suffix of the name", "https://xcitadel.test:8443/", { HTTPS_PROXY: "A", NO_PROXY: "citadel.test" }, "A"],
  ["NO_PROXY ..domain", AT, { HTTPS_PROXY: "A", NO_PROXY: "..test" }, "A"],
  ["NO_PROXY *", AT, { HTTPS_PROXY: "A", NO_PROXY: " * " }, "direct"],
  ["NO_PROXY * among others", AT, { HTTPS_PROXY: "A", NO_PROXY: "foo,*" }, "direct"],
  ["NO_PROXY *.* is not everything", AT, { HTTPS_PROXY: "A", NO_PROXY: "*.*" }, "A"],
  ["NO_PROXY ** is not everything", AT, { HTTPS_PROXY: "A", NO_PROXY: "**" }, "A"],
  ["NO_PROXY *name is nothing", AT, { HTTPS_PROXY: "A", NO_PROXY: "*test" }, "A"],
  ["NO_PROXY *:port is nothing", AT, { HTTPS_PROXY: "A", NO_PROXY: "*:8443" }, "A"],
  ["NO_PROXY host:port, that port", AT, { HTTPS_PROXY: "A", NO_PROXY: "citadel.test:8443" }, "direct"],
  ["NO_PROXY host:port, another port", AT, { HTTPS_PROXY: "A", NO_PROXY: "citadel.test:9999" }, "A"],
  ["NO_PROXY host:443, the default port", "https://citadel.test/", { HTTPS_PROXY: "A", NO_PROXY: "citadel.test:443" }, "direct"],
  ["NO_PROXY host:port, not the default port", "https://citadel.test/", { HTTPS_PROXY: "A", NO_PROXY: "citadel.test:8443" }, "A"],
  ["NO_PROXY host:0port, a number", AT, { HTTPS_PROXY: "A", NO_PROXY: "citadel.test:08443" }, "direct"],
  ["NO_PROXY host:word is nothing", AT, { HTTPS_PROXY: "A", NO_PROXY: "citadel.test:abc" }, "A"],
  ["NO_PROXY :port is nothing", AT, { HTTPS_PROXY: "A", NO_PROXY: ":8443" }, "A"],
  ["NO_PROXY domain:port", "https://a.citadel.test:8443/", { HTTPS_PROXY: "A", NO_PROXY: ".citadel.test:8443" }, "direct"],
  ["a final dot on the host", "https://citadel.test.:8443/", { HTTPS_PROXY: "A", NO_PROXY: "citadel.test" }, "direct"],
  ["a final dot on the entry", AT, { HTTPS_PROXY: "A", NO_PROXY: "citadel.test." }, "direct"],
  ["a final dot on the entry, with a port", AT, { HTTPS_PROXY: "A", NO_PROXY: "citadel.test.:8443" }, "direct"],
  ["two final dots on the entry", AT, { HTTPS_PROXY: "A", NO_PROXY: "citadel.test.." }, "A"],
  ["NO_PROXY an address range", "https://127.0.0.1:9/", { HTTPS_PROXY: "A", NO_PROXY: "127.0.0.0/8" }, "direct"],
  ["NO_PROXY another address range", "https://127.0.0.1:9/", { HTTPS_PROXY: "A", NO_PROXY: "10.0.0.0/8" }, "A"],
  ["NO_PROXY a range with a port is nothing", "https://127.0.0.1:9/", { HTTPS_PROXY: "A", NO_PROXY: "127.0.0.0/8:9" }, "A"],
  ["NO_PROXY address:port", "https://127.0.0.1:9/", { HTTPS_PROXY: "A", NO_PROXY: "127.0.0.1:9" }, "direct"],
  ["NO_PROXY address:another port", "https://127.0.0.1:9/", { HTTPS_PROXY: "A", NO_PROXY: "127.0.0.1:8443" }, "A"],
  ["NO_PROXY an IPv6 address", "https://[::1]:9/", { HTTPS_PROXY: "A", NO_PROXY: "::1" }, "direct"],
  ["NO_PROXY [IPv6]:port", "https://[::1]:9/", { HTTPS_PROXY: "A", NO_PROXY: "[::1]:9" }, "direct"],
  ["NO_PROXY IPv6 and a port without brackets is another address", "https://[::1]:9/", { HTTPS_PROXY: "A", NO_PROXY: "::1:9" }, "A"],
];

describe("proxyFor picks the proxy Bun's fetch picks", () => {
  test.each(CASES)("%s", async (_case, url, environment, expected) => {
    const named = withProxies(environment);
    expect({ proxyFor: wayOfProxyFor(url, named), fetch: await wayOfFetch(url, named) }).toEqual({ proxyFor: expected, fetch: expected });
  }, 10_000);
});
