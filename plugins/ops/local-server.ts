/**
 * Asks the Citadel this machine's config describes how it is: /healthz, /readyz, the seal
 * status and (with an operator token) the key status. Trusts only the configured certificate
 * (and the system's roots, for an operator's CA-issued one), as the CLI's local client does,
 * so an answer proves it is this Citadel. Never throws: what failed is in the answer.
 */
import { readFileSync } from "node:fs";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { localBaseUrl } from "../../src/cli/api-client.ts";
import { dataPath } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";

/** The parts of GET /v1/sys/seal-status the doctor reads. */
const SealAnswer = Type.Object({
  sealed: Type.Boolean(),
  initialized: Type.Boolean(),
  method: Type.Union([Type.String(), Type.Null()]),
  threshold: Type.Union([Type.Number(), Type.Null()]),
  progress: Type.Number(),
  key_id: Type.Union([Type.String(), Type.Null()]),
});
export type SealView = Static<typeof SealAnswer>;

/** The parts of GET /v1/sys/keys the doctor and the report read. */
const KeysAnswer = Type.Object({
  root: Type.Object({
    id: Type.String(),
    method: Type.String(),
    shares: Type.Union([Type.Number(), Type.Null()]),
    threshold: Type.Union([Type.Number(), Type.Null()]),
    created_at: Type.String(),
    age_days: Type.Number(),
  }),
  pending_root: Type.Union([Type.Object({ id: Type.String(), method: Type.String() }), Type.Null()]),
  active_kek: Type.Number(),
  keks: Type.Array(Type.Object({ version: Type.Number(), created_at: Type.String(), retired_at: Type.Union([Type.String(), Type.Null()]), age_days: Type.Number() })),
  deks_to_rewrap: Type.Number(),
  /** Data keys that do not unwrap, which no rotation moves (a server before it had none: absent). */
  deks_damaged: Type.Optional(Type.Number()),
  rotation_days: Type.Number(),
  rotation_due: Type.Boolean(),
});
export type KeysView = Static<typeof KeysAnswer>;

/** Said of a 200 from GET /v1/sys/keys that is not the key status this binary reads. */
export const UNEXPECTED_KEYS_ANSWER = "unexpected answer from GET /v1/sys/keys";

export interface ServerView {
  /** Where this Citadel should answer; null when http.port is 0 (a random port). */
  url: string | null;
  /** Who holds the port: this Citadel, something else (wrong certificate, not Citadel), or nobody. */
  listener: "citadel" | "other" | "none" | "unknown";
  /** Why it is not "citadel". */
  error: string | null;
  ready: { ok: boolean; detail: string } | null;
  seal: SealView | null;
  keys: KeysView | null;
  /** Why there is no key status (no token, not an operator, sealed, an answer of another shape). */
  keysProblem: string | null;
}

/**
 * What the local server says about itself; a server that does not answer is a finding, not an error.
 * `withheld`: why the operator's token is not sent to this one (commands.ts), when there is one.
 */
export async function askLocalServer(config: Config, { token, withheld = null }: { token: string | undefined; withheld?: string | null }, timeoutMs = 3000): Promise<ServerView> {
  const url = localBaseUrl(config);
  const view: ServerView = { url, listener: "unknown", error: null, ready: null, seal: null, keys: null, keysProblem: null };
  if (url === null) {
    view.error = "http.port is 0 (a random port): there is no fixed address to ask";
    return view;
  }
  let ca: string[] | undefined;
  if (config.http.tls.enabled) {
    try {
      const certificate = readFileSync(dataPath(config, config.http.tls.cert_file), "utf8");
      ca = [...(await import("node:tls")).rootCertificates, certificate];
    } catch {
      view.error = `cannot read the TLS certificate ${dataPath(config, config.http.tls.cert_file)}`;
      return view;
    }
  }
  const get = async (path: string, bearer?: string) => {
    const response = await fetch(`${url}${path}`, {
      signal: AbortSignal.timeout(timeoutMs),
      headers: bearer ? { authorization: `Bearer ${bearer}` } : {},
      ...(ca ? { tls: { ca } } : {}),
    });
    const text = await response.text();
    let body: any = null;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: not Citadel, or not this route
    }
    return { status: response.status, body };
  };

  try {
    const health = await get("/healthz");
    if (health.status !== 200 || health.body?.status !== "ok") {
      view.listener = "other";
      view.error = `${url}/healthz answered HTTP ${health.status}, not as Citadel does`;
      return view;
    }
    view.listener = "citadel";
  } catch (error) {
    const raw = (error as { code?: unknown }).code;
    const code = typeof raw === "string" ? raw : error instanceof Error ? error.name : "";
    if (/ECONNREFUSED|ConnectionRefused/i.test(code)) view.listener = "none";
    else if (/CERT|SSL|TLS|SELF_SIGNED|VERIFY|HANDSHAKE|EPROTO/i.test(code)) view.listener = "other";
    else view.listener = "unknown";
    view.error =
      view.listener === "none"
        ? `nothing listens on ${url}`
        : view.listener === "other"
          ? `something answers on ${url} without this Citadel's certificate (${code})`
          : `${url} did not answer (${code || (error as Error).message})`;
    return view;
  }

  const attempt = async <T>(fn: () => Promise<T>): Promise<T | null> => {
    try {
      return await fn();
    } catch {
      return null;
    }
  };
  const ready = await attempt(() => get("/readyz"));
  if (ready) view.ready = { ok: ready.status === 200, detail: ready.status === 200 ? "ready" : String(ready.body?.detail ?? `HTTP ${ready.status}`) };
  const seal = await attempt(() => get("/v1/sys/seal-status"));
  // Whatever holds the port may answer anything: a body of another shape is no answer.
  if (seal?.status === 200 && Value.Check(SealAnswer, seal.body)) view.seal = seal.body;

  if (withheld) view.keysProblem = `the token is not sent to it: ${withheld}`;
  else if (!token) view.keysProblem = "the key status needs an operator's token (CITADEL_TOKEN, or citadel login)";
  // Over plain HTTP whatever holds the port would get the token (a local user can bind it
  // while Citadel is stopped): the key ages come from the database file instead.
  else if (!config.http.tls.enabled) view.keysProblem = "not sending the token over plain HTTP; key ages are read from the database";
  else {
    const keys = await attempt(() => get("/v1/sys/keys", token));
    if (keys?.status === 200 && Value.Check(KeysAnswer, keys.body)) view.keys = keys.body;
    else if (keys?.status === 200) view.keysProblem = UNEXPECTED_KEYS_ANSWER;
    else view.keysProblem = keys ? `GET /v1/sys/keys: ${keys.body?.detail ?? `HTTP ${keys.status}`}` : "GET /v1/sys/keys did not answer";
  }
  return view;
}
