/**
 * The reference for scripts/bench/http.ts: bare Bun.serve answering what /v1/system/info
 * answers. With --headers it also sends the headers Citadel sends on every response, to
 * tell Bun's cost of writing headers apart from Citadel's own work.
 * Usage: bun bare-server.ts <port> [--headers] [cert.pem key.pem]
 */
import { securityHeaders } from "../../src/http/security-headers.ts";

const args = process.argv.slice(2);
const withHeaders = args.includes("--headers");
const [port, cert, key] = args.filter((a) => a !== "--headers");
const tls = Boolean(cert && key);
const headers = securityHeaders({ tls });
const startedAt = Date.now();
const info = () => ({ version: "0.1.0", commit: "0123456789ab", build_time: "2026-01-01T00:00:00.000Z", uptime_seconds: (Date.now() - startedAt) / 1000 });

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(port ?? 0),
  ...(tls ? { tls: { cert: await Bun.file(cert!).text(), key: await Bun.file(key!).text() } } : {}),
  development: false,
  fetch: withHeaders
    ? () => new Response(JSON.stringify(info()), { headers: { "content-type": "application/json;charset=utf-8", ...headers, "x-request-id": Bun.randomUUIDv7() } })
    : () => Response.json(info()),
});
console.log(`listening ${server.port}`);
