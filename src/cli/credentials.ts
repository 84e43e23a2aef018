/**
 * The CLI's stored login: `citadel login` runs the device flow (RFC 8628) against a server
 * and keeps the token, the server's URL and how it is pinned (its certificate, by its public key: see pin.ts) in
 * ~/.config/citadel/config.json, mode 0600. A file that others can read is refused: it holds
 * a credential.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../files.ts";
import { isLoopbackHost } from "../net/ip.ts";
import type { ApiClient, CommandContext } from "../plugin.ts";
import { ApiError, createApiClient } from "./api-client.ts";
import { UsageError } from "./command-line.ts";
import { certificateSeen, givenPin, keyPinOf, NOT_THE_PINNED_CERTIFICATE, pinOfServer, storedTrust } from "./pin.ts";
import { normalizedServerUrl, serverUrlProblem } from "./server-url.ts";

export interface StoredLogin {
  server: string;
  token: string;
  token_id: string;
  /** The server's public key pin (sha256//...), kept alone when no certificate over it is (`certificate`); absent for a publicly trusted server. */
  pin?: string;
  /**
   * The server's certificate (PEM) last seen: pinned by its public key (the login's pin, kept as
   * this certificate alone), and pinned itself at once, without looking at what the server
   * presents first (see pin.ts, withPinnedCertificate); one renewed over the same key replaces it
   * once the server answered over it (upgradeStoredPin). Logins pinned a certificate so before pins
   * named the key.
   */
  certificate?: string;
}

/** What a stored login trusts its server by (ApiClientOptions.trust): the certificate last seen, else its key pin (storedTrust). */
export function trustOf(login: StoredLogin): string | undefined {
  return storedTrust(login.pin, login.certificate);
}

export class CredentialsFileError extends Error {
  override readonly name = "CredentialsFileError";
}

export function credentialsPath(configHome: string): string {
  return join(configHome, "citadel", "config.json");
}

/** The stored login, or null; refuses a file group or others can read. */
export function readStoredLogin(configHome: string): StoredLogin | null {
  const path = credentialsPath(configHome);
  if (!existsSync(path)) return null;
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new CredentialsFileError(`${path} is readable by others (mode ${mode.toString(8)}): it holds a token. Run: chmod 600 ${path} (and consider the token leaked: citadel token revoke)`);
  }
  let stored: unknown;
  try {
    stored = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw new CredentialsFileError(`${path} is not valid JSON; remove it and run citadel login`);
  }
  // Every command reads it: one of another shape failed later, far from it ("baseUrl.replace").
  if (!isStoredLogin(stored)) throw new CredentialsFileError(`${path} is not a stored login (a server URL, a token and its id); remove it and run citadel login`);
  return withoutStoredPassword(path, stored);
}

/**
 * A login an earlier version stored with user:password@ in its server's URL (since refused: it
 * was kept and shown) is taken without it, and stored so: refused instead, `citadel logout`
 * could no longer revoke its token (found in review).
 */
/** `url` with no user name or password, as parsed (a password may hold an unencoded "@"). */
function withoutUserinfo(url: string): string {
  const parsed = URL.parse(url);
  if (parsed === null || (parsed.username === "" && parsed.password === "")) return url;
  parsed.username = "";
  parsed.password = "";
  return parsed.href;
}

function withoutStoredPassword(path: string, stored: StoredLogin): StoredLogin {
  const url = URL.parse(stored.server)!;
  if (url.username === "" && url.password === "") return stored;
  const login = { ...stored, server: normalizedServerUrl(withoutUserinfo(stored.server)) };
  try {
    writeFileAtomic(path, `${JSON.stringify(login, null, 2)}\n`, 0o600);
  } catch {
    // Read-only here: the login still works without it; the next login rewrites the file.
  }
  return login;
}

/**
 * The shape of a stored login, whatever its server's scheme: a login an earlier version stored
 * to an http:// server elsewhere (since refused at login) is read, and refused only where it
 * would be used (refuseLoginInTheClear). Refused here, it failed every command, those naming
 * another server too, and `citadel logout` could no longer revoke its token (found in review).
 */
function isStoredLogin(value: unknown): value is StoredLogin {
  if (typeof value !== "object" || value === null) return false;
  const { server, token, token_id, pin, certificate } = value as Record<string, unknown>;
  const optionalText = (field: unknown) => field === undefined || typeof field === "string";
  return typeof server === "string" && serverUrlProblem(asHttps(withoutUserinfo(server))) === null && typeof token === "string" && typeof token_id === "string" && optionalText(pin) && optionalText(certificate);
}

/** `url` with https:// for http://: checked so, a URL is checked for all but its scheme. */
const asHttps = (url: string) => url.replace(/^http:/i, "https:");

/** A login over plain HTTP to another machine than this one: its token crosses the network in the clear. */
function isLoginInTheClear(login: StoredLogin): boolean {
  const url = new URL(login.server);
  return url.protocol === "http:" && !isLoopbackHost(url.hostname);
}

/**
 * Refuses to use a stored login whose token would cross the network in the clear (one stored
 * before such were refused at login): a command sent it at every request. Logging in again
 * over HTTPS replaces it and revokes its token; `citadel logout` revokes it too.
 */
export function refuseLoginInTheClear(login: StoredLogin): void {
  if (!isLoginInTheClear(login)) return;
  throw new CredentialsFileError(
    `the stored login is to ${login.server}, plain HTTP to another machine: its token would cross the network in the clear, so it is not sent. Log in again over HTTPS (citadel login --server https://${new URL(login.server).hostname}:PORT, the address it serves HTTPS on), which revokes this token, or revoke it with citadel logout`,
  );
}

function writeStoredLogin(configHome: string, login: StoredLogin): string {
  const path = credentialsPath(configHome);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileAtomic(path, `${JSON.stringify(login, null, 2)}\n`, 0o600);
  chmodSync(path, 0o600);
  return path;
}

/**
 * The key pin of the server's certificate, once it is checked against what the operator gave
 * (--fingerprint: a key pin, or the certificate's SHA-256 fingerprint as earlier versions printed it).
 */
export async function pinGiven(server: string, given: string): Promise<string> {
  const wanted = givenPin(given); // a usage error (exit 2) before the server is reached
  try {
    return await pinOfServer(server, wanted);
  } catch (error) {
    const { code } = error as { code?: string };
    if (code === NOT_THE_PINNED_CERTIFICATE) throw new ApiError((error as Error).message);
    throw new ApiError(`cannot reach ${server}: ${code ?? (error instanceof Error ? error.message : String(error))}`);
  }
}

/**
 * Keeps the certificate over the key `pin` the server answered over last (certificateSeen), in
 * place of the one the stored login holds, once the server renewed it: the next command pins it at
 * once, with no look at the server first (found in review: the look, routed apart from fetch,
 * locked out logins that worked). The file is written only when that certificate changed, and
 * only while it still holds that login (another `citadel login` may have replaced it); best
 * effort: the login works without it, looking at the server once more next time.
 */
export function upgradeStoredPin(configHome: string, login: StoredLogin, pin: string): void {
  const certificate = certificateSeen(login.server, pin);
  if (certificate === undefined || certificate === login.certificate) return;
  try {
    const current = readStoredLogin(configHome);
    if (current === null || current.token !== login.token || current.certificate !== login.certificate || current.pin !== login.pin) return;
    writeFileAtomic(credentialsPath(configHome), `${JSON.stringify({ ...current, certificate }, null, 2)}\n`, 0o600);
  } catch {
    // Read-only here, or the file changed meanwhile: the certificate kept before still works, or a look finds the new one.
  }
}

/** What a login keeps of how its server is pinned: the certificate over `pin` it answered over, else the pin alone. */
function pinnedToKeep(server: string, pin: string | undefined): Pick<StoredLogin, "pin" | "certificate"> {
  if (pin === undefined) return {};
  const certificate = certificateSeen(server, pin);
  return certificate === undefined ? { pin } : { certificate };
}

/** What `citadel login` asks for unless --scope says otherwise (never the administrative iam:admin). */
export const LOGIN_SCOPE = "read write iam:self";

interface DeviceStart {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  expires_in: number;
  interval: number;
}

/** `citadel login`: the device flow, then the token stored for later commands. */
export async function loginWithDeviceFlow(ctx: CommandContext): Promise<number> {
  const local = typeof ctx.options.server !== "string";
  const problem = local ? null : serverUrlProblem(String(ctx.options.server));
  if (problem) throw new UsageError(`--server: ${problem}`);
  const named = local ? null : normalizedServerUrl(String(ctx.options.server));
  const base = local ? await ctx.api({ anonymous: true }) : null;
  const server = named ?? base!.baseUrl;
  let pin: string | undefined;
  if (typeof ctx.options.fingerprint === "string") pin = await pinGiven(server, ctx.options.fingerprint);
  else if (local && base!.pinned) pin = keyPinOf(base!.pinned);
  const api = local && !pin ? base! : createApiClient({ baseUrl: server, trust: pin });

  const scope = typeof ctx.options.scope === "string" ? ctx.options.scope : LOGIN_SCOPE;
  const token = await deviceToken(ctx, api, scope);
  return keepToken(ctx, server, pin, token);
}

/** Shows the code to approve, then polls until it is approved; the access token issued. */
async function deviceToken(ctx: CommandContext, api: ApiClient, scope: string): Promise<string> {
  const start = await api.request<DeviceStart>("POST", "/oauth/device/code", { client_name: `citadel CLI on ${hostname()}`, scope });
  ctx.err(`Open ${start.verification_uri_complete}`);
  ctx.err(`and check that it shows the code ${start.user_code}, then approve. Waiting...`);
  let interval = start.interval;
  let rateLimited = 0; // the seconds a 429 asked for, waited instead of the interval when longer
  const deadline = Date.now() + start.expires_in * 1000;
  while (Date.now() < deadline) {
    await Bun.sleep(Math.max(interval, rateLimited) * 1000);
    rateLimited = 0;
    try {
      const token = await api.request<{ access_token: string }>("POST", "/oauth/token", { grant_type: "urn:ietf:params:oauth:grant-type:device_code", device_code: start.device_code });
      return token.access_token;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.code === "authorization_pending") continue;
      if (error.code === "slow_down") {
        interval += 5;
        continue;
      }
      // Polls share the per-address login limit: logins behind one NAT address run into it while
      // the approval may still come. Waited out, like slow_down, until the code expires (found in review).
      if (error.status === 429) {
        rateLimited = rateLimitWait(error);
        continue;
      }
      if (error.code === "access_denied") throw new ApiError("the login was denied");
      if (error.code === "expired_token") throw new ApiError("the login code expired before it was approved; run citadel login again");
      throw error;
    }
  }
  throw new ApiError("the login code expired before it was approved; run citadel login again");
}

/** The longest a rate-limited poll waits before trying again, whatever the server asks. */
const MAX_RATE_LIMIT_WAIT_SECONDS = 60;

/** The seconds a 429's Retry-After asks to wait, at most MAX_RATE_LIMIT_WAIT_SECONDS; one when it names none. */
function rateLimitWait(error: ApiError): number {
  return Math.min(error.facts.retryAfterSeconds ?? 1, MAX_RATE_LIMIT_WAIT_SECONDS);
}

/**
 * Stores a token just issued, once it has shown that it works. One that cannot be kept is
 * revoked: nobody would hold it, yet it would stay valid until it expired.
 */
async function keepToken(ctx: CommandContext, server: string, pin: string | undefined, token: string): Promise<number> {
  const client = createApiClient({ baseUrl: server, trust: pin, token });
  const id = token.split("_")[2]!;
  const previous = previousLogin(ctx.configHome);
  let email: string;
  let path: string;
  try {
    email = (await client.request<{ email: string }>("GET", "/v1/iam/me")).email;
    path = writeStoredLogin(ctx.configHome, { server, token, token_id: id, ...pinnedToKeep(server, pin) });
  } catch (error) {
    const revoked = await client.request("POST", "/v1/iam/logout", {}).then(
      () => "the token just issued was revoked",
      () => `the token just issued (id ${id}) could not be revoked either: revoke it (citadel token revoke ${id}), else it stays valid until it expires`,
    );
    const message = `${error instanceof Error ? error.message : String(error)}; ${revoked}`;
    throw error instanceof ApiError ? new ApiError(message, error.status, error.code) : new Error(message);
  }
  ctx.out(ctx.json ? JSON.stringify({ server, user: email, credentials: path }) : `Logged in to ${server} as ${email}; the token is in ${path} (mode 0600).`);
  if (previous && previous.token !== token) ctx.err(await logOutPrevious(previous, server));
  return 0;
}

/**
 * The login a new one replaces, or null. One whose file cannot be read is left alone: the new
 * login overwrites it either way, and a login must not fail over the token it replaces.
 */
function previousLogin(configHome: string): StoredLogin | null {
  try {
    return readStoredLogin(configHome);
  } catch {
    return null;
  }
}

/**
 * Ends the token a new login replaced, best effort: nobody holds it any more, yet it would stay
 * valid until it expired (one more live device login per `citadel login --scope`). It logs
 * itself out, which ends only that token: the personal tokens made with it stay. Returns the
 * line that says what became of it.
 */
async function logOutPrevious(previous: StoredLogin, server: string): Promise<string> {
  const name = `the previous login's token (id ${previous.token_id})`;
  // As citadel logout says it: revoking is the only way to end it, so it is sent once more.
  const inTheClear = isLoginInTheClear(previous) ? ` (it crossed the network in the clear once more to be revoked, plain HTTP to ${previous.server}, as it did at every request)` : "";
  try {
    await createApiClient({ baseUrl: previous.server, trust: trustOf(previous), token: previous.token }).request("POST", "/v1/iam/logout", {});
    return `Logged out ${name}${inTheClear}; the tokens made with it stay.`;
  } catch (error) {
    // 401: the server refuses it already (revoked, expired): nothing is left to end. Anything
    // else (unreachable; a login made without iam:self may not log itself out) is told, with
    // the revoke that works from the new login.
    if (error instanceof ApiError && error.status === 401) return `${capitalized(name)} had ended already.`;
    const where = normalizedServerUrl(previous.server) === server ? "" : ` on ${previous.server} (log in there to do so)`;
    return `${capitalized(name)} could not be logged out (${error instanceof Error ? error.message : error}): revoke it with citadel token revoke ${previous.token_id}${where} (the tokens made with it go too), else it stays valid until it expires.`;
  }
}

const capitalized = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

/**
 * `citadel logout`: ends the stored token on its server, then forgets it. Only that token: the
 * CI tokens made from this login stay (an explicit `citadel token revoke` takes children along).
 */
export async function logout(ctx: CommandContext): Promise<number> {
  const say = (loggedOut: boolean, text: string, server?: string) => ctx.out(ctx.json ? JSON.stringify({ logged_out: loggedOut, ...(server ? { server } : {}) }) : text);
  const stored = readStoredLogin(ctx.configHome);
  if (!stored) {
    say(false, "Not logged in.");
    return 0;
  }
  // Revoking is the only way to end a token, and one sent in the clear at every request is
  // exposed already: it is sent once more, and the user told so.
  if (isLoginInTheClear(stored)) ctx.err(`The login is to ${stored.server}, plain HTTP to another machine: its token crosses the network in the clear once more to be revoked (as it did at every request).`);
  try {
    await createApiClient({ baseUrl: stored.server, trust: trustOf(stored), token: stored.token }).request("POST", "/v1/iam/logout", {});
  } catch (error) {
    // 401: the server refuses the token already (revoked, expired): nothing is left to revoke.
    if (error instanceof ApiError && error.status === 401) {
      rmSync(credentialsPath(ctx.configHome));
      say(true, `Logged out; ${stored.server} already refused the token, so there was nothing to revoke: ${error.message}`, stored.server);
      return 0;
    }
    // Anything else (unreachable): forgotten here all the same, which the user asked for, and a
    // failure (exit 1) that names the token, so it can still be revoked (as logOutPrevious does).
    rmSync(credentialsPath(ctx.configHome));
    throw new ApiError(
      `the stored login is forgotten here, but its token (id ${stored.token_id}) could not be revoked on ${stored.server} (${error instanceof Error ? error.message : error}): revoke it with citadel token revoke ${stored.token_id} on ${stored.server} (log in there to do so) (the tokens made with it go too), else it stays valid until it expires`,
    );
  }
  rmSync(credentialsPath(ctx.configHome));
  say(true, "Logged out.", stored.server);
  return 0;
}
