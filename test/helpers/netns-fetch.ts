/**
 * One HTTPS request from inside a network namespace (the test process cannot enter one):
 * `ip netns exec NS bun test/helpers/netns-fetch.ts URL CA_FILE METHOD [TOKEN] [JSON_BODY]`
 * prints `{"status": ..., "body": ...}`.
 */
import { readFileSync } from "node:fs";

const [url, caFile, method, token, body] = process.argv.slice(2);
if (!url || !caFile || !method) {
  console.error("usage: netns-fetch.ts URL CA_FILE METHOD [TOKEN] [JSON_BODY]");
  process.exit(2);
}
const res = await fetch(url, {
  method,
  headers: { ...(body ? { "content-type": "application/json" } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
  body: body || undefined,
  tls: { ca: readFileSync(caFile, "utf8") },
});
const text = await res.text();
let parsed: unknown = text;
try {
  parsed = JSON.parse(text);
} catch {
  // not JSON: the text as it is
}
console.log(JSON.stringify({ status: res.status, body: parsed }));
