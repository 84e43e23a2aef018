/**
 * CLI: citadel secrets list|get|set|delete|restore|history|rollback|rotate|import|export,
 * citadel run, citadel share (and share open|list|revoke), citadel secrets e2ee init|enable|grant|rotate.
 * Values are read from standard input (or a prompt that does not echo), never from the
 * command line, so they stay out of shell history. In an end-to-end-encrypted workspace the
 * values are encrypted and decrypted here, with the workspace key unwrapped by your private key.
 */
import { readFileSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { ApiError } from "../../src/cli/api-client.ts";
import { UsageError } from "../../src/cli/command-line.ts";
import { DecryptionError } from "../../src/crypto/aead.ts";
import { choiceOption, forStdout, integerOption, organizationOf, print, refuseApiKeyWithoutOrg, table, wholeNumber } from "../../src/cli/output.ts";
import { readValueAtTerminal, secretPrompter } from "../../src/cli/prompt.ts";
import { readPassphraseFile } from "../../src/cli/passphrase-file.ts";
import { boundedInput, boundedStdin } from "../../src/cli/input-files.ts";
import { HttpConfig } from "../../src/config/schema.ts";
import type { ApiClient, Command, CommandContext } from "../../src/plugin.ts";
import { isSecretName, parseDotenv, parseJsonSecrets, printDotenv, printJsonSecrets, type SecretEntry } from "./dotenv.ts";
import { NO_KEY_PAIR, NOT_A_MEMBER } from "./e2ee-keys.ts";
import { KEY_CONFLICT } from "./service.ts";
import { E2eePinError, E2eePins, normalizeFingerprint } from "./e2ee-pins.ts";
import { decryptValue, encryptValue, generateUserKeyPair, isVersionBound, newWorkspaceKey, openPrivateKey, publicKeyFingerprint, publicKeyOf, sealPrivateKey, unwrapMarkedWorkspaceKey, wrapWorkspaceKey } from "./e2ee.ts";
import { SecretsSettings } from "./settings.ts";
import { createShareSecret, openShareSecret, parseShareUrl, shareOfUrl, sharePassphraseProof, shareUrl, shareViewProof, type ShareKdf } from "./share-crypto.ts";

const WHERE = {
  workspace: { type: "string", short: "w", description: "The workspace id (ws_...)" },
  env: { type: "string", short: "e", description: "The environment (default: development)" },
} as const;
const PASSPHRASE = { "passphrase-file": { type: "string", description: "Read your end-to-end encryption passphrase from this file (else it is asked for)" } } as const;

interface Where {
  workspace: string;
  env: string;
}

function where(ctx: CommandContext): Where {
  const workspace = ctx.options.workspace;
  if (typeof workspace !== "string" || workspace === "") throw new UsageError("name the workspace: --workspace ws_...");
  return { workspace, env: typeof ctx.options.env === "string" ? ctx.options.env : "development" };
}

const workspacePath = (w: Pick<Where, "workspace">) => `/v1/secrets/workspaces/${encodeURIComponent(w.workspace)}`;
const secretsPath = (w: Where, rest = "") => `${workspacePath(w)}/environments/${encodeURIComponent(w.env)}${rest}`;
const secretPath = (w: Where, name: string, rest = "") => secretsPath(w, `/secrets/${encodeURIComponent(name)}${rest}`);

/**
 * The most any server takes (the largest its configuration allows): a secret's value
 * (secrets.max_value_bytes) and a request's body (http.body_limit_bytes), which carries an
 * import. Input past them is refused before the rest of it is read: it could never be stored.
 */
const MOST_VALUE_BYTES = SecretsSettings.properties.max_value_bytes.maximum!;
const MOST_BODY_BYTES = HttpConfig.properties.body_limit_bytes.maximum!;
const mebibytes = (bytes: number) => `${bytes / (1024 * 1024)} MiB`;

/** A value on standard input: at most the largest a server takes, and the newline after it. */
const VALUE_BOUND = {
  bytes: MOST_VALUE_BYTES + 1,
  tooLarge: `standard input holds more than ${mebibytes(MOST_VALUE_BYTES)}, the largest value a Citadel server takes (secrets.max_value_bytes at its most): nothing was read further or sent`,
};

/** A value as read, and, for an empty one, where it came from: said when it is refused. */
interface ReadValue {
  value: string;
  emptyBecause: string;
}

/**
 * The value to store: all of standard input (one trailing newline dropped), or a silent prompt
 * (one line: a paste of several is refused, not cut). Either way kept as it is, spaces at its
 * ends included: they may be part of the secret.
 */
async function readValue(prompt: string): Promise<ReadValue> {
  if (process.stdin.isTTY) return { value: await readValueAtTerminal(prompt), emptyBecause: "nothing was typed" };
  const text = utf8Text(await boundedStdin(VALUE_BOUND), "standard input");
  // Only the "\n" (echo's, or the one `secrets get` prints): a CR before it may be the value's own.
  const value = text.endsWith("\n") ? text.slice(0, -1) : text;
  // A newline alone is an empty value given on purpose, maybe, not a pipe that brought nothing.
  return { value, emptyBecause: text === "" ? "standard input was empty or closed" : "the value is empty (standard input held a newline alone)" };
}

/**
 * Bytes that must be UTF-8 text, as secrets are stored: anything else (binary data, a Latin-1
 * file) is refused rather than stored with U+FFFD in place of what it held. A usage error (exit 2),
 * as any input the client can tell is not what the command takes (found in review: exit 1).
 * A leading BOM (a Windows editor's) is dropped, as it was before: it is no part of a value typed there.
 */
function utf8Text(bytes: ArrayBuffer | Uint8Array, what: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError(`${what} is not UTF-8 text: a secret is stored as text (encode binary data first, such as with base64; convert a file in another encoding: iconv -f latin1 -t utf-8)`);
  }
}

/**
 * The link `share open` opens: its argument, or — without one, or with "-" — asked for at a
 * terminal (not echoed) or read as the first line of standard input. A link's key is a secret:
 * on a command line it sits in shell history and, while the command runs, in the process list.
 */
async function shareLink(ctx: CommandContext): Promise<string> {
  const given = ctx.args[0];
  if (given !== undefined && given !== "-") return given;
  if (ctx.options["passphrase-file"] === "-" && !process.stdin.isTTY) throw new UsageError("--passphrase-file -: standard input carries the link; give the passphrase in a file");
  const link = (await secretPrompter()("Share link: ")).trim();
  if (link === "") throw new UsageError("give the share link (an argument, or on standard input)");
  return link;
}

/** The link's parts; a link that is not one (not a URL, cut short, damaged) is a usage error, as a missing one is. */
function parsedShareLink(link: string): ReturnType<typeof parseShareUrl> {
  try {
    return parseShareUrl(link);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/**
 * Refuses `--passphrase-file -` when standard input carries `what` (a value, a file to import),
 * before anything is read: read for the passphrase, it was all taken as one, or the value's
 * read failed on a stream already used ("Body object should not be disturbed or locked").
 */
function refuseStdinPassphrase(ctx: CommandContext, what: string): void {
  if (ctx.options["passphrase-file"] === "-") throw new UsageError(`--passphrase-file -: standard input carries ${what}; give the passphrase in a file`);
}

async function passphrase(ctx: CommandContext, prompt = "End-to-end encryption passphrase: "): Promise<string> {
  const file = ctx.options["passphrase-file"];
  if (typeof file === "string") return await readPassphraseFile(file); // refused when others may read it (src/cli/passphrase-file.ts)
  if (!process.stdin.isTTY) throw new UsageError("give the passphrase with --passphrase-file (standard input is not a terminal)");
  return secretPrompter()(prompt); // as typed, as the file's is read: the same passphrase either way
}

/**
 * A passphrase being chosen: from --passphrase-file, or typed twice at a terminal, as a new
 * password is (citadel password). Typed once, a slip of the finger would seal a private key or a
 * link with a passphrase nobody knows. `unchanged` says what was not done when the two differ.
 */
async function newPassphrase(ctx: CommandContext, prompt: string, unchanged: string): Promise<string> {
  const file = ctx.options["passphrase-file"];
  if (typeof file === "string") return await readPassphraseFile(file);
  if (!process.stdin.isTTY) throw new UsageError("give the passphrase with --passphrase-file (standard input is not a terminal)");
  const ask = secretPrompter();
  const phrase = await ask(`${prompt}: `);
  if ((await ask(`${prompt} again: `)) !== phrase) throw new Error(`the two passphrases differ: ${unchanged}`);
  return phrase;
}

/**
 * Refuses, without --yes, to make a key pair for a user who has one: a new one drops every
 * workspace key wrapped to the old, in every organization (the server cannot wrap them again),
 * and running init again on a new laptop did so without a word (found in review).
 */
async function refuseReplacingKeyPair(ctx: CommandContext, api: ApiClient): Promise<void> {
  if (ctx.options.yes === true) return;
  try {
    await api.request("GET", "/v1/secrets/me/keypair");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return; // none yet: nothing to replace
    if (!(error instanceof ApiError && error.code === "insufficient_scope")) throw error;
    throw new UsageError(`this token may not read your key pair (${error.message}), so whether you have one cannot be told: a new one drops your access to every end-to-end-encrypted workspace until a member grants you again; add --yes to make one all the same`);
  }
  throw new UsageError(
    "you have an end-to-end encryption key pair already: on another machine, give its passphrase to the commands that ask for it. " +
      "A new one drops your access to every end-to-end-encrypted workspace, in every organization, until a member grants you again (citadel secrets e2ee grant); add --yes to replace it all the same",
  );
}

const SHARE_PASSPHRASE_PROMPT = "Passphrase for the link: ";
/** How many passphrases a terminal user may type for a link (the server burns it after a few more). */
const SHARE_PASSPHRASE_TRIES = 3;

interface SharePeek {
  passphrase: boolean;
  /** Given for a link whose passphrase the server checks before a view (made since it could). */
  passphrase_kdf?: ShareKdf;
}

interface ViewedShare {
  ciphertext: string;
  passphrase: boolean;
  views_left: number;
}

/**
 * Views a link whose passphrase the server checks before it spends a view, with the proof made
 * from the passphrase and the peek's argon2id parameters (checked against share-crypto's
 * bounds first). A wrong passphrase spends nothing: at a terminal it is asked again (a few
 * times), without one the error says so. Returns the content and the passphrase that opens it.
 */
async function viewWithPassphrase(ctx: CommandContext, api: ApiClient, share: string, proof: string, linkKey: string, kdf: ShareKdf): Promise<{ content: ViewedShare; phrase: string }> {
  let phrase = await passphrase(ctx, SHARE_PASSPHRASE_PROMPT);
  for (let tries = 1; ; tries++) {
    const passphraseProof = await sharePassphraseProof(linkKey, phrase, kdf);
    try {
      return { content: await api.request<ViewedShare>("POST", `${share}/view`, { proof, passphrase_proof: passphraseProof }), phrase };
    } catch (error) {
      if (!(error instanceof ApiError && error.code === "wrong_passphrase")) throw error;
      const left = error.facts.attemptsLeft;
      const counted = left === undefined ? "each wrong passphrase counts: a few burn the link" : `${left} more wrong passphrase(s) burn the link`;
      // One try left: not asked again here; whoever runs the command again chooses to use it.
      if (!process.stdin.isTTY || tries >= SHARE_PASSPHRASE_TRIES || left === 1) {
        throw new Error(`the passphrase is wrong; the view was NOT spent (${counted}${left === 1 ? ": the next wrong one destroys the value" : ""})`);
      }
      ctx.err(`That passphrase is wrong (no view was spent; ${counted}): try again.`);
      phrase = await secretPrompter()(SHARE_PASSPHRASE_PROMPT);
    }
  }
}

/**
 * Decrypts a share link's ciphertext, its view spent: this ciphertext is all that is left of
 * the value. So at a terminal a wrong passphrase is asked again (a few times) rather than end
 * the command; without one, the error says the view is gone. For a link made before the server
 * checked passphrases, a wrong one cannot be told before the view: until then the client has
 * nothing of the ciphertext to try it on.
 */
async function openViewedShare(ctx: CommandContext, content: ViewedShare, linkKey: string, phrase: string | undefined): Promise<string> {
  if (content.passphrase && phrase === undefined) phrase = await passphrase(ctx, SHARE_PASSPHRASE_PROMPT); // the peek said none was needed
  for (let tries = 1; ; tries++) {
    try {
      return await openShareSecret(content.ciphertext, linkKey, phrase);
    } catch (error) {
      // The server took the view with the link's proof, so the link's key is right: the passphrase is what is wrong.
      const wrongPassphrase = content.passphrase && error instanceof DecryptionError && error.message.includes("passphrase is wrong");
      if (!wrongPassphrase) throw error;
      if (!process.stdin.isTTY || tries >= SHARE_PASSPHRASE_TRIES) {
        const left = content.views_left > 0 ? `${content.views_left} view(s) left` : "it has no views left";
        throw new DecryptionError(`the passphrase is wrong; the view this took is spent (${left})`);
      }
      ctx.err("That passphrase does not open it: try again.");
      phrase = await secretPrompter()(SHARE_PASSPHRASE_PROMPT);
    }
  }
}

/** Encrypts and decrypts for one workspace: a no-op unless it is end-to-end encrypted. */
interface Codec {
  e2ee: boolean;
  /** Plain on this machine's word alone: the token may not read the workspace's settings (isEncrypted). */
  settingsUnread?: boolean;
  /** `version`: the version of the secret the value is to be stored as (an encrypted value names it). */
  seal(name: string, value: string, version: number): string;
  /** Opens a value as `served` (an encrypted value must have been written as it). */
  open(name: string, value: string, served: Served): Promise<string>;
  /**
   * Fetches the workspace's current key again, before a write is made again: a rotation may
   * have replaced it, and a value sealed with the key it replaced would open for nobody.
   */
  refresh(): Promise<void>;
  /** Overwrites the keys it holds. */
  dispose(): void;
}

/** How a value was served. */
interface Served {
  /** The version of the secret it was asked for as, or that the server says is current. */
  version: number;
  /** Which workspace key it was encrypted with, as the server says (older values: an older key); else the current one. */
  keyVersion?: number;
  /** Served as the secret's current value (get, run, export, e2ee rotate), not as a version asked for (--version, rollback). */
  current: boolean;
  /**
   * A rollback's source: asked for as a version, but to be stored again as the current value.
   * `acceptUnbound`: the user takes a value of the format before for it (--accept-unbound).
   */
  rollbackSource?: { acceptUnbound: boolean };
}

/** Runs `use` with the workspace's codec, and overwrites its keys after, whatever happens. */
async function withCodec<T>(ctx: CommandContext, api: ApiClient, w: Where, use: (codec: Codec) => Promise<T>): Promise<T> {
  const codec = await codecFor(ctx, api, w);
  try {
    return await use(codec);
  } finally {
    codec.dispose();
  }
}

async function codecFor(ctx: CommandContext, api: ApiClient, w: Where): Promise<Codec> {
  const encryption = await isEncrypted(ctx, api, w);
  if (encryption !== "e2ee") return { e2ee: false, settingsUnread: encryption === "plain, settings unread", seal: (_, v) => v, open: async (_, v) => v, refresh: async () => {}, dispose: () => {} };
  const keys = await workspaceKeys(ctx, api, w.workspace);
  const context = (name: string, version: number, keyVersion: number) => ({ workspace: w.workspace, environment: w.env, name, version, keyVersion });
  let toldUnbound = false;
  return {
    e2ee: true,
    seal: (name, v, version) => encryptValue(keys.current.key, passable(name, v), context(name, version, keys.current.version)),
    open: async (name, v, served) => {
      const keyVersion = served.keyVersion ?? keys.current.version;
      const key = await keys.version(keyVersion);
      if (!isVersionBound(v)) refuseUnbound(keys, `${w.env}/${name}`, keyVersion, served);
      const plaintext = decryptValue(key, v, context(name, served.version, keyVersion));
      if (!toldUnbound && !isVersionBound(v)) {
        toldUnbound = true; // once per command: an export may hold hundreds
        ctx.err(served.rollbackSource ? unboundRollbackNote(`${w.env}/${name}`, served.version) : `note: ${w.env}/${name} (and maybe others) was written before values named their version: the server could pass another older value of it off as this one unnoticed. ${unboundAdvice(keys, w.workspace)}`);
      }
      return plaintext;
    },
    refresh: () => keys.refresh(),
    dispose: () => keys.dispose(),
  };
}

/**
 * Refuses a value of the format before (`c1.v.`, bound to no version) where no genuine one can
 * be (found in review: a server served an old one as current after a rotation, and the rotation
 * itself re-encrypted such values as bound ones): under a key version marked "values bound"
 * (made by a citadel that writes none), or served as current once the current key is so marked
 * (its rotation re-encrypted every live value, its enable began with none). Under an older key,
 * as a version asked for (history), it may be genuine and is read; as a rollback's source too,
 * but only when the user says so once the current key binds values (found in review): rolled
 * back, it becomes the current value, bound, and the server could have served any older value
 * of the secret as that version.
 */
function refuseUnbound(keys: KeyChain, where: string, keyVersion: number, { current, version, rollbackSource }: Served): void {
  const format = "in the format from before values named their version (c1.v.)";
  if (keys.valuesBound(keyVersion)) {
    throw new DecryptionError(`${where} is served ${format} under version ${keyVersion} of the workspace key, which a citadel that binds every value made: no such value is genuine. Refused (an older value served in its place)`);
  }
  if (current && keys.current.valuesBound) {
    const name = where.slice(where.indexOf("/") + 1);
    throw new DecryptionError(
      `${where} is served as its current value ${format}, but the workspace key (version ${keys.current.version}) was made by a citadel that binds every value (e2ee enable or rotate), which left no current value in that format. ` +
        `Refused (an older value passed off as the current one). If ${name} was deleted before that rotation and restored since, its value is genuinely of the format before: check it (citadel secrets get ${name} --version N) and roll back to it (citadel secrets rollback ${name} N --accept-unbound), which stores it bound`,
    );
  }
  if (rollbackSource && !rollbackSource.acceptUnbound && keys.current.valuesBound) {
    const name = where.slice(where.indexOf("/") + 1);
    throw new Error(
      `${where} version ${version} is served ${format}, bound to no version: the server could have served any older value of ${name} as version ${version}, and the rollback would store it as the current value, bound, which the workspace key (version ${keys.current.version}, made by a citadel that binds every value) takes from nobody else. ` +
        `Nothing was changed. Check it (citadel secrets get ${name} --version ${version}); to roll back to it all the same, add --accept-unbound`,
    );
  }
}

/** Said when a rollback's source is of the format before: what the rollback makes of it (found in review: the note said no such value is taken as current). */
function unboundRollbackNote(where: string, version: number): string {
  const name = where.slice(where.indexOf("/") + 1);
  return `note: ${where} version ${version} was written before values named their version: the server could have served any older value of ${name} as version ${version}. Rolled back, it becomes ${name}'s current value, bound to its new version.`;
}

/** What to do about values of the format before: what helps depends on whether the current key binds values already. */
function unboundAdvice(keys: KeyChain, workspace: string): string {
  if (keys.current.valuesBound) return "The current key binds values: none of that format is taken as current.";
  return `citadel secrets e2ee rotate -w ${workspace}, run with this citadel or a later one, re-encrypts the live values bound and marks its new key so: from then on every member's citadel refuses a value of that format served as current.`;
}

/**
 * How often a write whose value names its version is tried when another write took that version
 * first: each round of a race lets one writer through, so this many writers at once all land
 * (found in review: three tries, and concurrent imports could still run out of them).
 */
const VERSION_TRIES = 5;

/** The refusals of a write made for a version, or with a key, that another write or a rotation took meanwhile. */
const RETRIED_CODES = new Set(["version_conflict", KEY_CONFLICT]);

/**
 * Runs `write` — which reads the version it is to make, encrypts for it and sends — again
 * when another write made that version first (409 version_conflict), or a rotation replaced
 * the key it encrypted with (409 key_conflict), a few times at most, with the key fetched
 * again each time (found in review: a retry sealed with the key it held, which the rotation
 * had replaced): without If-Match concurrent writers each get their own version, as in a
 * plain workspace.
 */
async function retryingTakenVersions<T>(codec: Codec, write: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await write();
    } catch (error) {
      if (!(error instanceof ApiError && RETRIED_CODES.has(error.code ?? "")) || tries >= VERSION_TRIES) throw error;
      await codec.refresh();
    }
  }
}

/** The version a write of `name` makes: the one after its current one (1 for a new secret). */
async function nextVersion(api: ApiClient, w: Where, name: string): Promise<number> {
  try {
    return (await api.request<{ version: number }>("GET", secretPath(w, name, "/versions"))).version + 1;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return 1; // none yet (or no such environment: the write says so)
    throw error;
  }
}

/** The version an import writes for each name: the one after its current one (deleted secrets too: the import skips those). */
async function nextVersions(api: ApiClient, w: Where): Promise<(name: string) => number> {
  const list = await api.request<{ items: Metadata[] }>("GET", secretsPath(w, "/secrets?deleted=true"));
  const current = new Map(list.items.map((s) => [s.name, s.version]));
  return (name) => (current.get(name) ?? 0) + 1;
}

/**
 * Whether the workspace is end-to-end encrypted: the server's settings, checked against what
 * this machine saw. A write-only token (secrets:write alone) may not read the settings, though
 * it may store values: then this machine's pins decide. A workspace seen encrypted here is
 * refused (a value sent as it is would be in the clear); one never seen so is sent plain, which
 * the server refuses (422) if the workspace is encrypted after all: it takes ciphertext only there.
 */
async function isEncrypted(ctx: CommandContext, api: ApiClient, w: Where): Promise<"e2ee" | "plain" | "plain, settings unread"> {
  const pins = E2eePins.forCli(ctx.configHome);
  let settings: { e2ee: boolean };
  try {
    settings = await api.request<{ e2ee: boolean }>("GET", `${workspacePath(w)}/settings`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 403 && error.code === "insufficient_scope")) throw error;
    try {
      pins.checkNotEncrypted(api.baseUrl, w.workspace);
    } catch (pinned) {
      if (!(pinned instanceof E2eePinError)) throw pinned;
      throw new E2eePinError(
        `this token may not read workspace ${w.workspace}'s settings (it lacks ${error.facts.scope ?? "secrets:read"}), and this machine has used the workspace end-to-end encrypted (or cannot read what it saw): ` +
          "refusing to send a value that is not encrypted. Use a token that may read secrets too: it can fetch the workspace key.",
        { cause: pinned },
      );
    }
    return "plain, settings unread";
  }
  if (!settings.e2ee) pins.checkNotEncrypted(api.baseUrl, w.workspace); // the server's word against what this machine saw
  return settings.e2ee ? "e2ee" : "plain";
}

/**
 * The value, unless it holds a NUL: an environment variable ends there, so `citadel run` could
 * not pass it. The server refuses it in a plain workspace; an encrypted one is for the client to check.
 */
function passable(name: string, value: string): string {
  if (value.includes("\0")) throw new Error(`${name}: a value may not contain a NUL character (an environment variable cannot hold one)`);
  return value;
}

/** The workspace keys the user holds: the current one, and older ones fetched when a value needs them. */
interface KeyChain {
  /** `valuesBound`: its copy carries the mark of a key made by a citadel that binds values (e2ee.ts, KeyMarks). */
  current: { version: number; key: Uint8Array; valuesBound: boolean };
  myUserId: string;
  /** Your public key, proven by your private key (not merely the server's word). */
  myPublicKey: string;
  /** Overwrites your private key and every workspace key unwrapped. */
  dispose(): void;
  version(n: number): Promise<Uint8Array>;
  /** Whether version `n`, unwrapped already (version(n)), is marked as binding values. */
  valuesBound(n: number): boolean;
  /** Fetches which version is current again, and its key (checked against the pins as the first was). */
  refresh(): Promise<void>;
}

/** The user's key pair, the private key opened here with their passphrase: the server's copy of the public key is believed only if it matches. */
async function myKeyPair(ctx: CommandContext, api: ApiClient): Promise<{ userId: string; publicKey: string; privateKey: Uint8Array }> {
  const me = await api.request<{ id: string }>("GET", "/v1/iam/me");
  const pair = await api.request<{ public_key: string; sealed_private_key: string }>("GET", "/v1/secrets/me/keypair");
  const privateKey = await openPrivateKey(pair.sealed_private_key, await passphrase(ctx));
  if (publicKeyOf(privateKey) !== pair.public_key) {
    privateKey.fill(0);
    throw new E2eePinError("the server's copy of your public key is not the one of your private key: refusing to wrap a workspace key to it (the server could read it). Tell your administrator.");
  }
  return { userId: me.id, publicKey: pair.public_key, privateKey };
}

async function workspaceKeys(ctx: CommandContext, api: ApiClient, workspace: string): Promise<KeyChain> {
  const myKey = `${workspacePath({ workspace })}/e2ee/my-key`;
  const mine = await api.request<{ key_version: number; wrapped: string }>("GET", myKey);
  // The private key stays in memory for this one command, to unwrap older workspace keys.
  const { userId, publicKey, privateKey } = await myKeyPair(ctx, api);
  // Each version's key, and which one is current, are checked against what this machine saw
  // before; the current version is remembered only once its key proved good.
  const pins = E2eePins.forCli(ctx.configHome);
  const unwrap = (wrapped: string, version: number) => {
    const unwrapped = unwrapMarkedWorkspaceKey(wrapped, privateKey, { workspace, user: userId });
    try {
      pins.pinKey(api.baseUrl, workspace, version, unwrapped.key);
    } catch (error) {
      unwrapped.key.fill(0); // refused: not kept a moment longer
      throw error;
    }
    return unwrapped;
  };
  const byVersion = new Map<number, { key: Uint8Array; valuesBound: boolean }>();
  const dispose = () => {
    privateKey.fill(0);
    for (const { key } of byVersion.values()) key.fill(0);
  };
  /** `fetched`, the server's current key, made the chain's current one once its key proved good. */
  const makeCurrent = (fetched: { key_version: number; wrapped: string }) => {
    if (!byVersion.has(fetched.key_version)) byVersion.set(fetched.key_version, unwrap(fetched.wrapped, fetched.key_version));
    pins.checkCurrent(api.baseUrl, workspace, fetched.key_version);
    chain.current = { version: fetched.key_version, ...byVersion.get(fetched.key_version)! };
  };
  const chain: KeyChain = {
    current: { version: 0, key: new Uint8Array(), valuesBound: false }, // set below
    myUserId: userId,
    myPublicKey: publicKey,
    dispose,
    async version(n) {
      let unwrapped = byVersion.get(n);
      if (!unwrapped) {
        unwrapped = unwrap((await api.request<{ wrapped: string }>("GET", `${myKey}?version=${n}`)).wrapped, n);
        byVersion.set(n, unwrapped);
      }
      return unwrapped.key;
    },
    valuesBound: (n) => byVersion.get(n)?.valuesBound === true,
    async refresh() {
      makeCurrent(await api.request<{ key_version: number; wrapped: string }>("GET", myKey));
    },
  };
  try {
    makeCurrent(mine);
  } catch (error) {
    dispose();
    throw error;
  }
  return chain;
}

/** A member's public key, as the server hands it, to wrap a workspace key to. */
interface MemberKey {
  user: string;
  publicKey: string;
}

/**
 * Refuses unless every key in `members` is one this machine sent this workspace's key to before, or one
 * whose fingerprint the caller checked with the member (`checked`: user id → fingerprint).
 * A key never checked is the server's word alone: a server that lies would read the
 * workspace key wrapped to it. `retry` says how to confirm what is still unchecked.
 */
function requireCheckedKeys(pins: E2eePins, server: string, workspace: string, members: MemberKey[], checked: ReadonlyMap<string, string>, retry: (unchecked: MemberKey[]) => string): void {
  const unchecked: MemberKey[] = [];
  for (const member of members) {
    const fingerprint = publicKeyFingerprint(member.publicKey);
    const said = checked.get(member.user);
    if (said !== undefined && normalizeFingerprint(said) !== fingerprint) {
      throw new E2eePinError(`the server hands a public key for ${member.user} whose fingerprint is ${fingerprint}, not ${normalizeFingerprint(said)}: refusing to wrap the workspace key to it. Check the fingerprint with them again (citadel secrets e2ee fingerprint).`);
    }
    if (pins.memberKey(server, workspace, member.user, member.publicKey) === "unchecked" && said === undefined) unchecked.push(member);
  }
  if (unchecked.length === 0) return;
  const list = unchecked.map((m) => `${m.user} (${publicKeyFingerprint(m.publicKey)})`).join(", ");
  throw new E2eePinError(
    `never checked on this machine, the public key the server hands for ${list}: ask them to run "citadel secrets e2ee fingerprint" and compare. If it is the same, run: ${retry(unchecked)}`,
  );
}

/**
 * A holder's public key, for a rotation: null when the server says for certain that no key can be
 * wrapped for them (no longer a member of the organization, or no key pair), and they are left
 * out — the server then drops every version of the key they hold, for good. Any other failure
 * (a rate limit, a server error, the network) stops the rotation before anything is sent:
 * leaving someone out over a passing error would take their access with it. A member named in
 * --trust was meant to stay, so even the definite answer stops it rather than leave them out.
 */
async function holderPublicKey(ctx: CommandContext, api: ApiClient, ws: string, user: string, trusted: ReadonlyMap<string, string>): Promise<string | null> {
  try {
    return (await api.request<{ public_key: string }>("GET", `${ws}/e2ee/public-keys/${encodeURIComponent(user)}`)).public_key;
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    const definite = error instanceof ApiError && error.status === 404 && (error.code === NOT_A_MEMBER || error.code === NO_KEY_PAIR);
    if (!definite) throw new Error(`could not fetch the public key of ${user}, who holds the workspace key (${why}): nothing was sent and nobody lost access; run the rotation again`, { cause: error });
    if (trusted.has(user)) throw new Error(`${user} is named in --trust, but the server says: ${why}; nothing was sent. To rotate without them, leave them out of --trust (they lose every version of the key).`);
    ctx.err(`leaving out ${user}: ${why}`);
    return null;
  }
}

/** A user id as Citadel makes them: what the server names a member is checked before it is printed, pinned or trusted. */
const USER_ID = /^usr_[A-Za-z0-9]{14}$/;

function checkUserId(id: string, where: string): void {
  if (!USER_ID.test(id)) throw new E2eePinError(`${where}: ${JSON.stringify(id)} is not a user id (usr_ and 14 letters or digits)`);
}

/** `--trust usr_a=SHA256:...,usr_b=SHA256:...` as a map; a user named twice is refused, not overridden. */
function trustedFingerprints(option: unknown): Map<string, string> {
  const trusted = new Map<string, string>();
  if (typeof option !== "string") return trusted;
  for (const pair of option.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new UsageError(`--trust takes user=fingerprint pairs separated by commas, not ${JSON.stringify(pair)}`);
    const user = pair.slice(0, at).trim();
    checkUserId(user, "--trust");
    if (trusted.has(user)) throw new UsageError(`--trust names ${user} twice`);
    trusted.set(user, pair.slice(at + 1));
  }
  return trusted;
}

/**
 * Sends wrapped copies of a workspace key naming the public key each is wrapped to
 * (`body(true)`), so that a key pair replaced meanwhile is refused. A server from before f4eae44
 * refuses the field: 422 "public_key: unknown field" (or "wrapped[N].public_key: …"), matched on
 * the message, which names the first unknown field (an ApiError does not carry the problem's
 * errors). The copies are then sent once more without it (`body(false)`), as a client from
 * before sent them, and that server takes them as it did (found in review: grant, rotate and
 * enable failed against it).
 */
async function sendNamingPublicKeys<T>(api: ApiClient, method: string, path: string, body: (named: boolean) => unknown): Promise<T> {
  try {
    return await api.request<T>(method, path, body(true));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 422 && error.code === "validation_failed" && UNKNOWN_PUBLIC_KEY_FIELD.test(error.message))) throw error;
    return api.request<T>(method, path, body(false));
  }
}

const UNKNOWN_PUBLIC_KEY_FIELD = /^(wrapped\[\d+\]\.)?public_key: unknown field\b/;

/**
 * Encryption was turned on, but the first key's copy for its enabler was not stored: nobody
 * holds a key, and enable is refused on the workspace (found in review). Turned off again and
 * forgotten here (its new key was pinned), so that enable can be run again; the error to report.
 */
async function undoEnable(api: ApiClient, pins: E2eePins, workspace: string, failure: unknown): Promise<Error> {
  const why = failure instanceof Error ? failure.message : String(failure);
  const settings = `${workspacePath({ workspace })}/settings`;
  try {
    await api.request("PATCH", settings, { e2ee: false });
  } catch (error) {
    const undone = error instanceof Error ? error.message : String(error);
    return new Error(
      `${workspace}: your copy of its new key was not stored (${why}), and turning end-to-end encryption off again failed (${undone}): it is encrypted and nobody holds its key. ` +
        `Turn it off (PATCH ${settings} {"e2ee": false}), run citadel secrets e2ee forget -w ${workspace}, and enable it again`,
      { cause: failure },
    );
  }
  pins.forget(api.baseUrl, workspace);
  return new Error(`${workspace}: your copy of its new key was not stored (${why}); end-to-end encryption was turned off again, nothing else changed: run the command again`, { cause: failure });
}

/** One page of `GET /orgs/:org/shares` (model.ts ShareList). */
interface SharePage {
  items: Array<{ id: string; state: string; views: number; max_views: number; passphrase: boolean; source: string | null; created_by: string; created_at: string; expires_at: string }>;
  next_cursor: string | null;
}

/** The largest page the server gives (model.ts ShareListQuery). */
const SHARE_PAGE_MAX = 1000;
const SHARE_ID = /^shr_[A-Za-z0-9]{1,40}$/;
const sharesPath = (org: string) => `/v1/secrets/orgs/${encodeURIComponent(org)}/shares`;
const NOT_A_SHARE = "not a share link's id (shr_..., as citadel share and citadel share list show it) nor a share link";

/**
 * The link `share revoke` ends: its id, or the link itself, the id taken from its path (a maker
 * who is an editor may revoke their links but not list them, and `citadel share` gave them the
 * link: found in review). The link's key, after '#', is neither sent nor printed, nor is the
 * argument that may hold it.
 */
function shareIdOf(given: string): string {
  if (SHARE_ID.test(given)) return given;
  if (!given.includes("://")) throw new UsageError(NOT_A_SHARE);
  let id: string;
  try {
    id = shareOfUrl(given).id; // the path alone: a link whose key was cut off is still one to revoke
  } catch (error) {
    throw new UsageError(`${NOT_A_SHARE}: ${(error as Error).message}`);
  }
  if (!SHARE_ID.test(id)) throw new UsageError(`${NOT_A_SHARE}: the link's id is not one`);
  return id;
}

interface Metadata {
  name: string;
  version: number;
  updated_at: string;
  updated_by: string;
  rotation_due: boolean;
  expired: boolean;
  deleted_at: string | null;
  value?: string;
  key_version?: number;
}

/**
 * Rolls `name` back to `version`. In an end-to-end-encrypted workspace the server cannot copy
 * the old value (it names its version): it is read, opened and re-encrypted here as the
 * version the rollback makes, and sent with it.
 */
async function rollBack(api: ApiClient, codec: Codec, w: Where, name: string, version: number, acceptUnbound: boolean): Promise<Metadata> {
  if (!codec.e2ee) return plainRollBack(api, codec, w, name, version);
  const old = await api.request<Metadata & { value: string }>("GET", secretPath(w, name, `?version=${version}`));
  const plaintext = await codec.open(name, old.value, { version, keyVersion: old.key_version, current: false, rollbackSource: { acceptUnbound } });
  return api.request<Metadata>("POST", secretPath(w, name, "/rollback"), { version, value: codec.seal(name, plaintext, old.version + 1) });
}

/**
 * A rollback the server makes by copying the old value. A write-only token cannot read the
 * settings, so an encrypted workspace this machine never used was taken for a plain one: the
 * server's refusal to copy a ciphertext told it to run the very command it ran (found in
 * review). Said instead is what the rollback needs.
 */
async function plainRollBack(api: ApiClient, codec: Codec, w: Where, name: string, version: number): Promise<Metadata> {
  try {
    return await api.request<Metadata>("POST", secretPath(w, name, "/rollback"), { version });
  } catch (error) {
    const refusedAsEncrypted = error instanceof ApiError && error.status === 409 && error.message.startsWith("This workspace is end-to-end encrypted");
    if (!(codec.settingsUnread && refusedAsEncrypted)) throw error;
    throw new Error(
      `workspace ${w.workspace} is end-to-end encrypted, the server says, and this token may not read its settings nor its values (it lacks secrets:read): ` +
        `a rollback there reads version ${version}, decrypts it on this machine and encrypts it again as the new version. Run it with a token that may read secrets too; nothing was changed`,
      { cause: error },
    );
  }
}

async function fetchValues(ctx: CommandContext, api: ApiClient, w: Where): Promise<SecretEntry[]> {
  return withCodec(ctx, api, w, (codec) => listedValues(api, w, codec));
}

/** The environment's values, read as a list (`query` adds to ?values=true) and decrypted by `codec`. */
async function listedValues(api: ApiClient, w: Where, codec: Codec, query = ""): Promise<SecretEntry[]> {
  const list = await api.request<{ items: Metadata[] }>("GET", secretsPath(w, `/secrets?values=true${query}`));
  return Promise.all(list.items.map(async (s) => ({ name: s.name, value: await codec.open(s.name, s.value!, { version: s.version, keyVersion: s.key_version, current: true }) })));
}

/**
 * The values `secrets export` prints, their reads audited as an export (found in review: read
 * as a list, they said `list`, and a search for exports missed every one made with the CLI). A
 * plain workspace's from the export route. An end-to-end-encrypted one's values can be
 * decrypted here only: read as a list declared an export (purpose=export), which the server
 * records as the client's word. A server from before it took the purpose refuses it (422
 * "query.purpose: unknown parameter"): then the list is read as before.
 */
async function exportedEntries(ctx: CommandContext, api: ApiClient, w: Where): Promise<SecretEntry[]> {
  return withCodec(ctx, api, w, async (codec) => {
    if (!codec.e2ee) return exportRouteEntries(api, w);
    try {
      return await listedValues(api, w, codec, "&purpose=export");
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 422 && error.code === "validation_failed" && UNKNOWN_PURPOSE_PARAMETER.test(error.message))) throw error;
      return listedValues(api, w, codec);
    }
  });
}

/**
 * A plain workspace's values from the export route, asked for as JSON whatever the format
 * printed, and checked as an imported file is (valid names, none twice, string values): the
 * file is printed here, never as the server sent it (found in review: an older server's .env,
 * from before the escapes of `` ` `` and line ends, a hostile server's, or a proxy's page, went
 * as it was into a file a shell sources). An answer that is not such an object is refused.
 */
async function exportRouteEntries(api: ApiClient, w: Where): Promise<SecretEntry[]> {
  const path = secretsPath(w, "/export?format=json");
  const text = await api.requestText("GET", path);
  try {
    return parseJsonSecrets(text);
  } catch (error) {
    // The parser names an entry by its place or a checked name, never a value.
    throw new ApiError(`unexpected answer from ${api.baseUrl}${path}: ${(error as Error).message}`);
  }
}

const UNKNOWN_PURPOSE_PARAMETER = /^query\.purpose: unknown parameter\b/;

export const secretsCommands: Command[] = [
  {
    words: ["secrets", "list"],
    summary: "List an environment's secrets (names and metadata, no values)",
    options: { ...WHERE, deleted: { type: "boolean", description: "Include deleted secrets" } },
    async run(ctx) {
      const w = where(ctx);
      const list = await (await ctx.api()).request<{ items: Metadata[] }>("GET", secretsPath(w, `/secrets${ctx.options.deleted ? "?deleted=true" : ""}`));
      const flags = (s: Metadata) => [s.deleted_at ? "deleted" : "", s.expired ? "expired" : "", s.rotation_due ? "rotation due" : ""].filter(Boolean).join(", ");
      print(ctx, list, list.items.length === 0 ? `no secrets in ${w.env}` : table([["NAME", "VERSION", "UPDATED", "BY", "FLAGS"], ...list.items.map((s) => [s.name, String(s.version), s.updated_at, s.updated_by, flags(s)])]));
      return 0;
    },
  },
  {
    words: ["secrets", "get"],
    summary: "Print a secret's value (the read is audited)",
    args: "<name>",
    maxArgs: 1,
    options: { ...WHERE, ...PASSPHRASE, version: { type: "string", description: "An older version" } },
    async run(ctx) {
      const w = where(ctx);
      const name = requireSecretName(ctx);
      const api = await ctx.api();
      const version = integerOption(ctx, "version", 1);
      const query = version === undefined ? "" : `?version=${version}`;
      return withCodec(ctx, api, w, async (codec) => {
        const secret = await api.request<Metadata & { value: string }>("GET", secretPath(w, name, query));
        // The version asked for, or the one the server says is current: an encrypted value must have been written as it.
        const value = await codec.open(name, secret.value, { version: version ?? secret.version, keyVersion: secret.key_version, current: version === undefined });
        print(ctx, { ...secret, value }, value);
        return 0;
      });
    },
  },
  {
    words: ["secrets", "set"],
    summary: "Set a secret; the value is read from standard input (or asked for without echo)",
    args: "<name>",
    maxArgs: 1,
    options: {
      ...WHERE,
      ...PASSPHRASE,
      note: { type: "string", description: "A note (not secret)" },
      "rotation-days": { type: "string", description: "Remind to rotate this often" },
      "allow-empty": { type: "boolean", description: "Store an empty value (else empty or closed standard input, or nothing typed, is refused)" },
    },
    async run(ctx) {
      const w = where(ctx);
      const name = requireSecretName(ctx);
      refuseStdinPassphrase(ctx, "the value"); // at a terminal too: the value is typed there
      const rotationDays = integerOption(ctx, "rotation-days", 1, 3650); // before the value is read or typed
      const api = await ctx.api();
      return withCodec(ctx, api, w, async (codec) => {
        const { value, emptyBecause } = await readValue(`Value of ${name}: `);
        // Nothing to read is more often a mistake upstream (a pipe from a command that failed,
        // a file that was not there) than an empty secret: stored, it would replace the value.
        if (value === "" && ctx.options["allow-empty"] !== true) {
          throw new Error(`no value for ${name}: ${emptyBecause}, so nothing was stored (--allow-empty stores an empty value)`);
        }
        const metadata: Record<string, unknown> = {};
        if (typeof ctx.options.note === "string") metadata.note = ctx.options.note;
        if (rotationDays !== undefined) metadata.rotation_days = rotationDays;
        const secret = await retryingTakenVersions(codec, async () => {
          const sealed = codec.seal(name, value, codec.e2ee ? await nextVersion(api, w, name) : 0);
          return api.request<Metadata>("PUT", secretPath(w, name), { value: sealed, ...metadata });
        });
        print(ctx, secret, `${name}: version ${secret.version}`);
        return 0;
      });
    },
  },
  secretCommand(["secrets", "delete"], "Delete a secret (restorable with secrets restore until purged)", async (ctx, api, w, name) => {
    await api.request("DELETE", secretPath(w, name));
    print(ctx, { ok: true }, `${name} deleted (secrets restore ${name} brings it back)`);
  }),
  {
    words: ["secrets", "purge"],
    summary: "Remove a secret and every version of it for good, deleted or not (cannot be undone: needs --yes)",
    args: "<name>",
    maxArgs: 1,
    options: { ...WHERE, yes: { type: "boolean", description: "Yes, remove the secret and all its versions for good" } },
    async run(ctx) {
      const w = where(ctx);
      const name = requireSecretName(ctx);
      if (ctx.options.yes !== true) throw new UsageError(`this removes ${name} and every version of it for good (secrets restore cannot bring it back): add --yes`);
      const api = await ctx.api();
      // The route asks for confirmation (428); --yes is the operator's, sent with the request.
      await api.request("POST", secretPath(w, name, "/purge"), undefined, { confirmed: true });
      print(ctx, { ok: true }, `${name} purged: every version is gone`);
      return 0;
    },
  },
  secretCommand(["secrets", "restore"], "Restore a deleted secret", async (ctx, api, w, name) => {
    const secret = await api.request<Metadata>("POST", secretPath(w, name, "/restore"));
    print(ctx, secret, `${name} restored at version ${secret.version}`);
  }),
  secretCommand(["secrets", "history"], "A secret's versions: who and when", async (ctx, api, w, name) => {
    const h = await api.request<{ versions: Array<{ version: number; origin: string; created_at: string; created_by: string; current: boolean }> }>("GET", secretPath(w, name, "/versions"));
    print(ctx, h, table([["VERSION", "ORIGIN", "WHEN", "BY", ""], ...h.versions.map((v) => [String(v.version), v.origin, v.created_at, v.created_by, v.current ? "current" : ""])]));
  }),
  {
    words: ["secrets", "rollback"],
    summary: "Make a new version holding an older version's value",
    args: "<name> <version>",
    maxArgs: 2,
    options: {
      ...WHERE,
      ...PASSPHRASE,
      "accept-unbound": { type: "boolean", description: "E2EE: roll back to a value from before values named their version, though the server could have served any older value of the secret as it" },
    },
    async run(ctx) {
      const w = where(ctx);
      const [name, version] = ctx.args;
      if (!name || !version) throw new UsageError("give the secret's name and the version to go back to");
      if (!isSecretName(name)) throw new UsageError(SECRET_NAME_RULE);
      const target = wholeNumber(version, "the version to go back to", 1);
      const acceptUnbound = ctx.options["accept-unbound"] === true;
      const api = await ctx.api();
      const secret = await withCodec(ctx, api, w, (codec) => retryingTakenVersions(codec, () => rollBack(api, codec, w, name, target, acceptUnbound)));
      print(ctx, secret, `${name}: version ${secret.version} (the value of version ${version})`);
      return 0;
    },
  },
  {
    words: ["secrets", "rotate"],
    summary: "Store a new generated value (password, hex, base64 or uuid) as the next version",
    args: "<name>",
    maxArgs: 1,
    options: { ...WHERE, generator: { type: "string", description: "password (default), hex, base64 or uuid" }, length: { type: "string", description: "Characters (password) or bytes (hex, base64)" } },
    async run(ctx) {
      const w = where(ctx);
      const name = requireSecretName(ctx);
      const body: Record<string, unknown> = { generator: choiceOption(ctx, "generator", ["password", "hex", "base64", "uuid"] as const) ?? "password" };
      const length = integerOption(ctx, "length", 1, 512);
      if (length !== undefined) body.length = length;
      const secret = await (await ctx.api()).request<Metadata>("POST", secretPath(w, name, "/rotate"), body);
      print(ctx, secret, `${name}: version ${secret.version} (generated; secrets get ${name} shows it)`);
      return 0;
    },
  },
  {
    words: ["secrets", "import"],
    summary: "Import a .env or JSON file into an environment, all or nothing",
    args: "<file>",
    maxArgs: 1,
    options: {
      ...WHERE,
      ...PASSPHRASE,
      format: { type: "string", description: "dotenv or json (default: from the file name)" },
      "dry-run": { type: "boolean", description: "Show what would change; change nothing" },
      "no-overwrite": { type: "boolean", description: "Leave existing secrets alone" },
    },
    async run(ctx) {
      const w = where(ctx);
      const file = requireArg(ctx, "the file to import (- for standard input)");
      if (file === "-") refuseStdinPassphrase(ctx, "the file to import");
      const format = choiceOption(ctx, "format", ["dotenv", "json"] as const) ?? (file.endsWith(".json") ? "json" : "dotenv");
      const what = file === "-" ? "standard input" : file;
      const bound = { bytes: MOST_BODY_BYTES, tooLarge: `${what} is larger than ${mebibytes(MOST_BODY_BYTES)}, the most a Citadel server takes in one request (http.body_limit_bytes at its most): import it in parts` };
      const text = utf8Text(await boundedInput(file, what, bound), what);
      const entries = importEntries(text, format, what);
      const api = await ctx.api();
      const dryRun = ctx.options["dry-run"] === true;
      const overwrite = ctx.options["no-overwrite"] !== true;
      const result = await withCodec(ctx, api, w, (codec) =>
        retryingTakenVersions(codec, async () => {
          const versionOf = codec.e2ee ? await nextVersions(api, w) : () => 0;
          const sealed = entries.map((e) => ({ name: e.name, value: codec.seal(e.name, e.value, versionOf(e.name)) }));
          const send = (asDryRun: boolean) => api.request<ImportResult>("POST", secretsPath(w, "/import"), { entries: sealed, dry_run: asDryRun, overwrite });
          // Without --no-overwrite every entry is to be written. The server applies an import in one
          // transaction but skips a name it cannot write (a deleted secret): so the plan is asked for
          // first, and such a skip refuses the whole import before anything is written.
          if (overwrite && !dryRun) refuseSkips(await send(true), "nothing was imported");
          return send(dryRun);
        }),
      );
      const lines = result.plan.map((p) => `  ${p.action.padEnd(9)} ${p.name}${p.reason ? ` (${p.reason})` : ""}`);
      const head = `${dryRun ? "would import" : "imported"}: ${result.created} new, ${result.updated} updated, ${result.unchanged} unchanged, ${result.skipped} skipped`;
      print(ctx, result, [head, ...lines].join("\n"));
      // A dry run shows the plan, and fails as the import would; a name deleted since the first plan was skipped by this one.
      if (overwrite) refuseSkips(result, dryRun ? "the import would write nothing" : "the other entries were imported");
      return 0;
    },
  },
  {
    words: ["secrets", "export"],
    summary: "Print an environment's values as a .env file or JSON (every read is audited as an export)",
    options: { ...WHERE, ...PASSPHRASE, format: { type: "string", description: "dotenv (default) or json" } },
    async run(ctx) {
      const w = where(ctx);
      const format = exportFormat(ctx);
      const entries = await exportedEntries(ctx, await ctx.api(), w);
      process.stdout.write(forStdout(format === "json" ? printJsonSecrets(entries) : printDotenv(entries)));
      return 0;
    },
  },
  {
    words: ["run"],
    summary: "Run a command with an environment's secrets as environment variables: citadel run -w WS -e ENV -- command args",
    args: "-- <command> [args...]",
    maxArgs: 10_000,
    options: {
      ...WHERE,
      ...PASSPHRASE,
      "allow-loader-variables": { type: "boolean", description: "Pass secrets that make programs load or run code (LD_*, DYLD_*, BASH_ENV, SHELLOPTS, PS4, PATH, NODE_OPTIONS, PYTHONPATH, GIT_SSH_COMMAND, GIT_CONFIG_*, TAR_OPTIONS, npm_config_*, EDITOR, *_EDITOR, *_PAGER, ...: docs/cli.md lists them); else refused" },
      "allow-variable": { type: "string", description: "Pass these of them only, by name, separated by commas (NODE_PATH,GOFLAGS); the others are still refused" },
    },
    async run(ctx) {
      const w = where(ctx);
      if (ctx.args.length === 0) throw new UsageError("give the command to run after --");
      const allowed = allowedVariables(ctx); // before any request
      const entries = await fetchValues(ctx, await ctx.api(), w);
      if (ctx.options["allow-loader-variables"] !== true) refuseLoaderVariables(w, entries, allowed);
      const [command, ...args] = ctx.args as [string, ...string[]];
      // Found with the caller's PATH: a secret named PATH is the command's, not where to find it.
      // Without one, the default search path execvp(3) uses.
      const program = command.includes("/") ? command : Bun.which(command, { PATH: ctx.env.PATH ?? DEFAULT_SEARCH_PATH });
      const env = commandEnvironment(ctx, entries);
      let child: ReturnType<typeof Bun.spawn>;
      try {
        if (program === null) throw Object.assign(new Error("not found"), { code: "ENOENT" });
        child = Bun.spawn([program, ...args], { argv0: command, env, stdin: "inherit", stdout: "inherit", stderr: "inherit" });
      } catch (error) {
        const failure = spawnFailure(command, error);
        ctx.err(`citadel: ${failure.message}`);
        return failure.code;
      }
      const handlers = signalRelay(child, terminalOf()); // each signal meant for the command reaches it once
      for (const [s, h] of handlers) process.on(s, h);
      const code = await child.exited;
      for (const [s, h] of handlers) process.off(s, h);
      // Killed by a signal: 128 + its number, as a shell reports it.
      const signal = child.signalCode;
      if (signal === null) return code;
      return 128 + (typeof signal === "number" ? signal : osConstants.signals[signal]);
    },
  },
  {
    words: ["share"],
    summary: "Make a one-time link for a value (from standard input) or a secret (--secret); the key stays in the link",
    options: {
      ...WHERE,
      org: { type: "string", description: "The organization (org_...); default: the workspace's, or your only one" },
      secret: { type: "string", description: "Share this secret (with --workspace and --env)" },
      ttl: { type: "string", description: "Hours until the link expires (default: the server's, 24)" },
      views: { type: "string", description: "How many views it allows (default 1)" },
      passphrase: { type: "boolean", description: "Also ask for a passphrase (give it to the recipient another way)" },
      "passphrase-file": { type: "string", description: "Read the link's passphrase from this file (implies --passphrase)" },
    },
    async run(ctx) {
      const secret = secretNameOption(ctx);
      const passphraseFile = ctx.options["passphrase-file"];
      // Asked for at a terminal only: standard input may be carrying the value itself.
      if (ctx.options.passphrase && typeof passphraseFile !== "string" && !process.stdin.isTTY) {
        throw new UsageError("give the link's passphrase with --passphrase-file (standard input is not a terminal)");
      }
      if (secret === undefined) refuseStdinPassphrase(ctx, "the value to share");
      const ttl = integerOption(ctx, "ttl", 1); // before the value and the passphrase are read or typed
      const views = integerOption(ctx, "views", 1);
      let org = typeof ctx.options.org === "string" && ctx.options.org !== "" ? ctx.options.org : undefined;
      // Which organization is the identity service's to say (yours, or a workspace's), and an API key works for secrets alone.
      refuseApiKeyWithoutOrg(ctx); // before the value is read
      const api = await ctx.api();
      let value: string;
      let source: Record<string, string> | undefined;
      if (secret !== undefined) {
        const w = where(ctx);
        const settings = await api.request<{ e2ee: boolean }>("GET", `${workspacePath(w)}/settings`);
        if (settings.e2ee) throw new Error("values of an end-to-end-encrypted workspace are not shared by link: add the person to the workspace");
        E2eePins.forCli(ctx.configHome).checkNotEncrypted(api.baseUrl, w.workspace);
        value = (await api.request<{ value: string }>("GET", secretPath(w, secret))).value;
        source = { workspace: w.workspace, environment: w.env, name: secret };
        org ??= (await api.request<{ organization: string }>("GET", `/v1/iam/workspaces/${encodeURIComponent(w.workspace)}`)).organization;
      } else {
        const read = await readValue("Value to share: ");
        if (read.value === "") throw new Error(`nothing to share: ${read.emptyBecause}`);
        value = read.value;
      }
      org ??= await organizationOf(ctx, api);
      const phrase = typeof passphraseFile === "string" || ctx.options.passphrase ? await newPassphrase(ctx, "Passphrase for the link", "no link was made") : undefined;
      const sealed = await createShareSecret(value, phrase);
      const body: Record<string, unknown> = { ciphertext: sealed.ciphertext, view_proof: shareViewProof(sealed.linkKey), passphrase: sealed.passphraseRequired };
      // So that the server refuses a wrong passphrase before it spends a view.
      if (sealed.passphraseProof) Object.assign(body, { passphrase_proof: sealed.passphraseProof, passphrase_kdf: sealed.passphraseKdf });
      if (ttl !== undefined) body.ttl_hours = ttl;
      if (views !== undefined) body.max_views = views;
      if (source) body.source = source;
      const share = await api.request<{ id: string; expires_at: string; max_views: number }>("POST", sharesPath(org), body);
      const url = shareUrl(api.baseUrl, share.id, sealed.linkKey);
      print(ctx, { ...share, url }, url);
      const howToOpen = sealed.passphraseRequired ? "with citadel share open '<url>' (a browser cannot use the passphrase)" : "in a browser, or with citadel share open '<url>'";
      if (!ctx.json) {
        ctx.err(`${share.max_views} view(s), expires ${share.expires_at}; the recipient opens it ${howToOpen}`);
        // On standard error as the line above: standard output stays the link alone, for a pipe.
        ctx.err(`its id: ${share.id} (citadel share revoke ${share.id} ends it)`);
      }
      return 0;
    },
  },
  {
    words: ["share", "open"],
    summary: "Open a share link (spends one view) and print the value; without <url> (or with -) the link is asked for, or read from standard input, so its key stays out of shell history and the process list",
    args: "[url|-]",
    maxArgs: 1,
    options: { "passphrase-file": { type: "string", description: "The link's passphrase, from this file (else it is asked for when needed)" } },
    async run(ctx) {
      const { baseUrl, id, linkKey } = parsedShareLink(await shareLink(ctx));
      const api = await ctx.api({ server: baseUrl }); // the server the link names, whoever is logged in where
      const share = `/v1/secrets/shares/${encodeURIComponent(id)}`;
      const proof = shareViewProof(linkKey);
      // Asked without spending a view, so that the passphrase is in hand (its file read, or typed)
      // before the view is spent: a missing or unreadable one must not cost the value (found in review).
      const about = await api.request<SharePeek>("POST", `${share}/peek`, { proof });
      let content: ViewedShare;
      let phrase: string | undefined;
      if (about.passphrase && about.passphrase_kdf) {
        ({ content, phrase } = await viewWithPassphrase(ctx, api, share, proof, linkKey, about.passphrase_kdf));
      } else {
        phrase = about.passphrase ? await passphrase(ctx, SHARE_PASSPHRASE_PROMPT) : undefined;
        content = await api.request<ViewedShare>("POST", `${share}/view`, { proof });
      }
      const value = await openViewedShare(ctx, content, linkKey, phrase);
      print(ctx, { value, views_left: content.views_left }, value);
      return 0;
    },
  },
  {
    words: ["share", "list"],
    summary: "List the organization's share links, newest first, one page at a time: state, views, who made them (never their content)",
    options: {
      org: { type: "string", description: "The organization (org_...); default: your only one" },
      limit: { type: "string", description: `How many (default 100, at most ${SHARE_PAGE_MAX})` },
      cursor: { type: "string", description: "Continue after a previous page" },
    },
    async run(ctx) {
      const limit = integerOption(ctx, "limit", 1, SHARE_PAGE_MAX);
      const cursor = typeof ctx.options.cursor === "string" ? ctx.options.cursor : undefined;
      const api = await ctx.api();
      const org = await organizationOf(ctx, api);
      const query = new URLSearchParams({ ...(limit === undefined ? {} : { limit: String(limit) }), ...(cursor === undefined ? {} : { cursor }) });
      const page = await api.request<SharePage>("GET", `${sharesPath(org)}${query.size > 0 ? `?${query}` : ""}`);
      if (ctx.json) {
        print(ctx, page, "");
        return 0;
      }
      const rows = page.items.map((s) => [s.id, s.state, `${s.views}/${s.max_views}`, s.passphrase ? "yes" : "no", s.source ?? "(a one-off value)", s.created_by, s.created_at, s.expires_at]);
      ctx.out(forStdout(rows.length === 0 ? "no share links" : table([["ID", "STATE", "VIEWS", "PASSPHRASE", "CARRIES", "MADE BY", "MADE", "EXPIRES"], ...rows])));
      if (page.next_cursor) ctx.out(`(more: --cursor ${page.next_cursor})`);
      return 0;
    },
  },
  {
    words: ["share", "revoke"],
    summary: "Revoke a share link: it opens no more, and its content is dropped (whoever made it, or an admin of the organization)",
    args: "<id|url>",
    maxArgs: 1,
    options: { org: { type: "string", description: "The organization (org_...); default: your only one" } },
    async run(ctx) {
      const id = shareIdOf(requireArg(ctx, "the share link's id (shr_..., as citadel share and citadel share list show it) or the link"));
      const api = await ctx.api();
      const org = await organizationOf(ctx, api);
      const done = await api.request("DELETE", `${sharesPath(org)}/${encodeURIComponent(id)}`);
      print(ctx, done, `${id} revoked: it opens no more`);
      return 0;
    },
  },
  {
    words: ["secrets", "e2ee", "init"],
    summary: "Make your end-to-end encryption key pair here; the private key goes to the server sealed by your passphrase (replacing one you have needs --yes)",
    options: { ...PASSPHRASE, yes: { type: "boolean", description: "Yes, replace the key pair I have: I lose every workspace key wrapped to it until members grant me again" } },
    async run(ctx) {
      const api = await ctx.api();
      await refuseReplacingKeyPair(ctx, api); // before a passphrase is asked for
      const phrase = await newPassphrase(ctx, "New end-to-end encryption passphrase", "no key pair was made");
      if (phrase.length < 12) throw new Error("a passphrase of at least 12 characters");
      const pair = generateUserKeyPair();
      const sealed = await sealPrivateKey(pair.privateKey, phrase);
      pair.privateKey.fill(0);
      const saved = await api.request("PUT", "/v1/secrets/me/keypair", { public_key: pair.publicKey, sealed_private_key: sealed });
      print(ctx, saved, `key pair registered (public key ${pair.publicKey})`);
      return 0;
    },
  },
  {
    words: ["secrets", "e2ee", "enable"],
    summary: "Make an empty workspace end-to-end encrypted, with a new workspace key wrapped for you",
    options: { workspace: WHERE.workspace, ...PASSPHRASE },
    async run(ctx) {
      const workspace = where(ctx).workspace;
      const ws = workspacePath({ workspace });
      const api = await ctx.api();
      // A workspace encrypted already has a key its members hold: a new one sent over it would
      // leave its values readable by nobody.
      if ((await api.request<{ e2ee: boolean }>("GET", `${ws}/settings`)).e2ee) {
        throw new Error(`${workspace} is end-to-end encrypted already: its key stays as it is (members get it with citadel secrets e2ee grant; citadel secrets e2ee rotate replaces it)`);
      }
      const pins = E2eePins.forCli(ctx.configHome);
      pins.checkNotEncrypted(api.baseUrl, workspace); // seen encrypted here before: its old key pinned here would refuse the new one
      const me = await myKeyPair(ctx, api); // the public key the new key is wrapped to is checked against yours
      me.privateKey.fill(0);
      await api.request("PATCH", `${ws}/settings`, { e2ee: true });
      const key = newWorkspaceKey();
      try {
        // Pinned before it is sent: a key this machine would refuse is never installed.
        pins.pinNewKey(api.baseUrl, workspace, 1, key); // a first key is version 1
        // Marked: a workspace begun by a citadel that binds values holds none of the format before.
        const wrapped = wrapWorkspaceKey(key, me.publicKey, { workspace, user: me.userId }, { valuesBound: true });
        await sendNamingPublicKeys(api, "PUT", `${ws}/e2ee/keys/${encodeURIComponent(me.userId)}`, (named) => ({ wrapped, ...(named ? { public_key: me.publicKey } : {}) }));
      } catch (error) {
        throw await undoEnable(api, pins, workspace, error);
      } finally {
        key.fill(0);
      }
      print(ctx, { workspace, e2ee: true }, `${workspace} is end-to-end encrypted; grant members with: citadel secrets e2ee grant -w ${workspace} <user id>`);
      return 0;
    },
  },
  {
    words: ["secrets", "e2ee", "grant"],
    summary: "Give a member the workspace key, wrapped here to their public key once its fingerprint is checked with them",
    args: "<user id>",
    maxArgs: 1,
    options: {
      workspace: WHERE.workspace,
      ...PASSPHRASE,
      fingerprint: { type: "string", description: "Their public key's fingerprint as they read it to you (citadel secrets e2ee fingerprint): needed the first time, refused unless it matches" },
    },
    async run(ctx) {
      const workspace = where(ctx).workspace;
      const user = requireArg(ctx, "the member's user id");
      checkUserId(user, "the member");
      const checked = new Map(typeof ctx.options.fingerprint === "string" ? [[user, ctx.options.fingerprint]] : []);
      const api = await ctx.api();
      const pins = E2eePins.forCli(ctx.configHome);
      const keys = await workspaceKeys(ctx, api, workspace);
      try {
        const publicKey =
          user === keys.myUserId
            ? keys.myPublicKey // your own, proven by your private key
            : (await api.request<{ public_key: string }>("GET", `${workspacePath({ workspace })}/e2ee/public-keys/${encodeURIComponent(user)}`)).public_key;
        const member = { user, publicKey };
        if (user !== keys.myUserId) {
          requireCheckedKeys(pins, api.baseUrl, workspace, [member], checked, () => `citadel secrets e2ee grant ${user} -w ${workspace} --fingerprint ${publicKeyFingerprint(publicKey)}`);
        }
        const wrapped = wrapWorkspaceKey(keys.current.key, publicKey, { workspace, user }, { valuesBound: keys.current.valuesBound }); // its mark goes with it
        // Named, so that a key pair replaced since it was fetched is refused (409), not given a copy that opens nothing.
        const holders = await sendNamingPublicKeys(api, "PUT", `${workspacePath({ workspace })}/e2ee/keys/${encodeURIComponent(user)}`, (named) => ({ wrapped, ...(named ? { public_key: publicKey } : {}) }));
        if (user !== keys.myUserId) pins.pinMembers(api.baseUrl, workspace, [member]); // sent: remembered
        const fingerprint = publicKeyFingerprint(publicKey);
        print(ctx, { ...(holders as object), fingerprint }, `${user} can now read ${workspace} (their public key: ${fingerprint})`);
      } finally {
        keys.dispose();
      }
      return 0;
    },
  },
  {
    words: ["secrets", "e2ee", "rotate"],
    summary: "Replace the workspace key (after a member leaves): values re-encrypted here, the new key wrapped for those who stay",
    options: {
      workspace: WHERE.workspace,
      ...PASSPHRASE,
      remove: { type: "string", description: "Comma-separated user ids who lose access (they keep no version of the key)" },
      trust: { type: "string", description: "user=fingerprint pairs, comma-separated: members this machine never sent this workspace's key to, their keys checked with them (citadel secrets e2ee fingerprint)" },
    },
    async run(ctx) {
      const workspace = where(ctx).workspace;
      const removed = new Set(typeof ctx.options.remove === "string" ? ctx.options.remove.split(",").map((u) => u.trim()).filter(Boolean) : []);
      for (const user of removed) checkUserId(user, "--remove");
      const trusted = trustedFingerprints(ctx.options.trust);
      const api = await ctx.api();
      const ws = workspacePath({ workspace });
      const pins = E2eePins.forCli(ctx.configHome);
      const keys = await workspaceKeys(ctx, api, workspace);
      const me = keys.myUserId;
      const fresh = newWorkspaceKey();
      try {
        if (removed.has(me)) throw new Error("you cannot remove yourself: ask another member who holds the key");
        // Whom the new key goes to, and to which public keys, is settled before anything is decrypted or sent.
        const listed = (await api.request<{ items: Array<{ user: string }> }>("GET", `${ws}/e2ee/keys`)).items.map((h) => h.user);
        // Names the server gives are checked before they are printed, trusted or pinned.
        for (const user of listed) checkUserId(user, "the server listed a holder");
        if (new Set(listed).size !== listed.length) throw new E2eePinError("the server listed a holder twice: refusing to rotate. Tell your administrator.");
        const holders = listed.filter((u) => !removed.has(u));
        const others: MemberKey[] = [];
        for (const user of holders) {
          if (user === me) continue; // wrapped to your proven key below, not to the server's copy
          const publicKey = await holderPublicKey(ctx, api, ws, user, trusted);
          if (publicKey !== null) others.push({ user, publicKey });
        }
        // A key the server alone vouches for would give it the new workspace key: refused whole, before anything is sent.
        requireCheckedKeys(pins, api.baseUrl, workspace, others, trusted, (unchecked) => {
          const pairs = [...[...trusted].filter(([user]) => others.some((o) => o.user === user)).map(([user, fp]) => `${user}=${normalizeFingerprint(fp)}`), ...unchecked.map((m) => `${m.user}=${publicKeyFingerprint(m.publicKey)}`)];
          return `citadel secrets e2ee rotate -w ${workspace}${removed.size > 0 ? ` --remove ${[...removed].join(",")}` : ""} --trust ${pairs.join(",")}`;
        });
        const settings = await api.request<{ environments: Array<{ name: string }> }>("GET", `${ws}/settings`);
        const values: Array<{ environment: string; name: string; version: number; value: string }> = [];
        let unbound = 0;
        for (const { name: environment } of settings.environments) {
          const list = await api.request<{ items: Metadata[] }>("GET", `${ws}/environments/${encodeURIComponent(environment)}/secrets?values=true`);
          for (const item of list.items) {
            const context = { workspace, environment, name: item.name };
            const keyVersion = item.key_version ?? keys.current.version;
            const key = await keys.version(keyVersion);
            if (!isVersionBound(item.value!)) {
              refuseUnbound(keys, `${environment}/${item.name}`, keyVersion, { version: item.version, current: true }); // never laundered into a bound value
              unbound++;
            }
            const plaintext = decryptValue(key, item.value!, { ...context, version: item.version, keyVersion });
            // Stored as the next version, under the new key: values of the format before come out naming both.
            values.push({ environment, name: item.name, version: item.version, value: encryptValue(fresh, plaintext, { ...context, version: item.version + 1, keyVersion: keys.current.version + 1 }) });
          }
        }
        const recipients = [{ user: me, publicKey: keys.myPublicKey }, ...others];
        // Marked: every value it encrypts names its version, and so will every one written under it.
        const wrapped = recipients.map((r) => ({ user: r.user, wrapped: wrapWorkspaceKey(fresh, r.publicKey, { workspace, user: r.user }, { valuesBound: true }), publicKey: r.publicKey }));
        const copies = (named: boolean) => wrapped.map((w) => ({ user: w.user, wrapped: w.wrapped, ...(named ? { public_key: w.publicKey } : {}) }));
        // From the version re-encrypted from: if another rotation came first, the server refuses (409).
        const result = await sendNamingPublicKeys<{ key_version: number; reencrypted: number; holders: string[] }>(api, "POST", `${ws}/e2ee/rotate`, (named) => ({ from_version: keys.current.version, values, wrapped: copies(named) }));
        pins.pinMembers(api.baseUrl, workspace, others, [...removed]); // sent: remembered; the removed are strangers again
        const expected = keys.current.version + 1;
        if (result.key_version !== expected) throw new E2eePinError(`the server says the new key is version ${result.key_version}, not ${expected}: refusing to trust it. Tell your administrator.`);
        pins.pinNewKey(api.baseUrl, workspace, expected, fresh);
        const sentTo = recipients.map((r) => r.user);
        if (unbound > 0) ctx.err(`note: ${unbound} value(s) were of the format from before values named their version, taken as the server served them as current; they are bound now, and from now on a value of that format served as current is refused.`);
        print(ctx, { ...result, holders: sentTo }, `${workspace}: key version ${result.key_version}, ${result.reencrypted} values re-encrypted, wrapped for ${sentTo.join(", ")}`);
      } finally {
        fresh.fill(0);
        keys.dispose();
      }
      return 0;
    },
  },
  {
    words: ["secrets", "e2ee", "forget"],
    summary: "Forget what this machine saw: a workspace's encryption (turned off on purpose), or with --user a member's public key (they made a new key pair)",
    options: { workspace: WHERE.workspace, user: { type: "string", description: "A member whose new public key you checked with them (its fingerprint)" } },
    async run(ctx) {
      const api = await ctx.api();
      const pins = E2eePins.forCli(ctx.configHome);
      if (typeof ctx.options.user === "string") {
        const user = ctx.options.user;
        const forgotten = pins.forgetMember(api.baseUrl, user);
        print(ctx, { user, forgotten }, forgotten ? `${user}: forgotten; grant them again with the fingerprint of their new key (--fingerprint)` : `no public key of ${user} was known here`);
        return 0;
      }
      const workspace = where(ctx).workspace;
      const forgotten = pins.forget(api.baseUrl, workspace);
      print(ctx, { workspace, forgotten }, forgotten ? `${workspace}: forgotten; its values are sent and read as the server says` : `${workspace} was not known as end-to-end encrypted here`);
      return 0;
    },
  },
  {
    words: ["secrets", "e2ee", "fingerprint"],
    summary: "Your public key's fingerprint, from your private key: read it to whoever grants you a workspace",
    options: PASSPHRASE,
    async run(ctx) {
      const api = await ctx.api();
      const me = await myKeyPair(ctx, api); // checked against your private key: not merely the server's word
      me.privateKey.fill(0);
      const fingerprint = publicKeyFingerprint(me.publicKey);
      print(ctx, { user: me.userId, public_key: me.publicKey, fingerprint }, `${me.userId}: ${fingerprint}`);
      return 0;
    },
  },
  {
    words: ["secrets", "env", "list"],
    summary: "A workspace's environments and who may use them",
    options: { workspace: WHERE.workspace },
    async run(ctx) {
      const ws = workspacePath(where(ctx));
      const list = await (await ctx.api()).request<{ items: Array<{ name: string; protection: string; allowed_users: string[] }> }>("GET", `${ws}/environments`);
      print(ctx, list, table([["ENVIRONMENT", "PROTECTION", "ALLOWED USERS"], ...list.items.map((e) => [e.name, e.protection, e.allowed_users.join(", ")])]));
      return 0;
    },
  },
  {
    words: ["secrets", "env", "create"],
    summary: "Add an environment to a workspace",
    args: "<name>",
    maxArgs: 1,
    options: { workspace: WHERE.workspace },
    async run(ctx) {
      const ws = workspacePath(where(ctx));
      const env = await (await ctx.api()).request<{ name: string }>("POST", `${ws}/environments`, { name: requireArg(ctx, "the environment's name") });
      print(ctx, env, `environment ${env.name} added`);
      return 0;
    },
  },
  {
    words: ["secrets", "env", "protect"],
    summary: "Set who may use an environment: members (the roles), admins, or named users (--users)",
    args: "<name> <members|admins|named>",
    maxArgs: 2,
    options: { workspace: WHERE.workspace, users: { type: "string", description: "With named: comma-separated user ids (include yourself)" } },
    async run(ctx) {
      const ws = workspacePath(where(ctx));
      const [name, protection] = ctx.args;
      if (!name || !protection || !["members", "admins", "named"].includes(protection)) throw new UsageError("give the environment and one of members, admins, named");
      const body: Record<string, unknown> = { protection };
      if (typeof ctx.options.users === "string") body.allowed_users = ctx.options.users.split(",").map((u) => u.trim()).filter(Boolean);
      const env = await (await ctx.api()).request<{ name: string; protection: string }>("PUT", `${ws}/environments/${encodeURIComponent(name)}`, body);
      print(ctx, env, `${env.name}: ${env.protection}`);
      return 0;
    },
  },
  {
    words: ["secrets", "rotate-key"],
    summary: "Give a workspace a new data key and re-encrypt every stored value with it, online",
    options: { workspace: WHERE.workspace },
    async run(ctx) {
      const ws = workspacePath(where(ctx));
      const result = await (await ctx.api()).request<{ data_key_version: number; reencrypted: number }>("POST", `${ws}/rotate-key`, undefined, { worksLong: true });
      print(ctx, result, `data key version ${result.data_key_version}; ${result.reencrypted} stored versions re-encrypted`);
      return 0;
    },
  },
  {
    words: ["secrets", "webhook", "add"],
    summary: "Add a webhook to a workspace (its signing secret is printed once)",
    args: "<url>",
    maxArgs: 1,
    options: { workspace: WHERE.workspace },
    async run(ctx) {
      const ws = workspacePath(where(ctx));
      const hook = await (await ctx.api()).request<{ id: string; url: string; secret: string }>("POST", `${ws}/webhooks`, { url: requireArg(ctx, "the receiver's URL") });
      print(ctx, hook, hook.secret);
      if (!ctx.json) ctx.err(`webhook ${hook.id} → ${hook.url}; the signing secret above is shown only now`);
      return 0;
    },
  },
  {
    words: ["secrets", "webhook", "list"],
    summary: "A workspace's webhooks, or one webhook's recent deliveries (--deliveries ID)",
    options: { workspace: WHERE.workspace, deliveries: { type: "string", description: "Show this webhook's last deliveries" } },
    async run(ctx) {
      const ws = workspacePath(where(ctx));
      const api = await ctx.api();
      if (typeof ctx.options.deliveries === "string") {
        const list = await api.request<{ items: Array<{ id: number; state: string; attempts: number; last_status: number | null; last_error: string | null; created_at: string; event: { type: string; environment: string; name: string; version: number } }> }>(
          "GET",
          `${ws}/webhooks/${encodeURIComponent(ctx.options.deliveries)}/deliveries`,
        );
        const rows = list.items.map((d) => [String(d.id), d.created_at, `${d.event.type} ${d.event.environment}/${d.event.name} v${d.event.version}`, d.state, String(d.attempts), d.last_error ?? String(d.last_status ?? "")]);
        print(ctx, list, table([["ID", "CREATED", "EVENT", "STATE", "ATTEMPTS", "LAST ANSWER"], ...rows]));
        return 0;
      }
      const list = await api.request<{ items: Array<{ id: string; url: string; created_at: string }> }>("GET", `${ws}/webhooks`);
      print(ctx, list, list.items.length === 0 ? "no webhooks" : table([["ID", "URL", "CREATED"], ...list.items.map((h) => [h.id, h.url, h.created_at])]));
      return 0;
    },
  },
  {
    words: ["secrets", "webhook", "remove"],
    summary: "Remove a webhook",
    args: "<id>",
    maxArgs: 1,
    options: { workspace: WHERE.workspace },
    async run(ctx) {
      const ws = workspacePath(where(ctx));
      const id = requireArg(ctx, "the webhook's id");
      await (await ctx.api()).request("DELETE", `${ws}/webhooks/${encodeURIComponent(id)}`);
      print(ctx, { ok: true }, `webhook ${id} removed`);
      return 0;
    },
  },
];

/**
 * What `citadel run`'s command gets: the caller's environment minus Citadel's token (least
 * privilege: it asked for secrets, not for the right to fetch more), and the secrets, which win
 * over the caller's variables of the same name.
 */
function commandEnvironment(ctx: CommandContext, entries: SecretEntry[]): Record<string, string> {
  // No prototype: a secret named __proto__ is a variable like any other.
  const env: Record<string, string> = Object.create(null);
  for (const [name, value] of Object.entries(ctx.env)) if (value !== undefined && name !== "CITADEL_TOKEN") env[name] = value;
  for (const e of entries) {
    // Stored before the client checked for it (an encrypted workspace's server cannot):
    // named, rather than failing the start of the command as if it were missing.
    if (e.value.includes("\0")) throw new Error(`cannot pass ${e.name} to the command: its value holds a NUL character, which an environment variable cannot (set it again without one)`);
    env[e.name] = e.value;
  }
  return env;
}

/**
 * Variables that make the dynamic loader, a shell, an interpreter or a tool load or run code of
 * their own choosing in whatever starts (SHELLOPTS=xtrace with PS4=$(...) runs a command in every
 * bash script; a PATH picks which programs run; TAR_OPTIONS=--checkpoint-action=exec=... runs a
 * command in every tar): from an environment's secrets, anyone who may write one could run code
 * as whoever runs `citadel run`. Any *_EDITOR, *_PAGER and *_RSH names a program that some tool
 * runs (git, psql, sudo, kubectl, systemctl, rsync...). JAVA_OPTS, MAVEN_OPTS, GRADLE_OPTS and
 * ERL_*FLAGS are a JVM's or Erlang VM's flags (-XX:OnError=cmd runs a command); RUSTC and cargo's
 * CARGO_BUILD_RUSTC* name the compiler cargo runs. A best effort — no list of such variables is
 * complete — naming the common ones (docs/cli.md lists them).
 */
const LOADER_VARIABLES =
  /^(LD_.*|DYLD_.*|GCONV_PATH|BASH_ENV|ENV|BASHOPTS|SHELLOPTS|PS4|PROMPT_COMMAND|ZDOTDIR|PATH|NODE_OPTIONS|NODE_PATH|PYTHON(STARTUP|PATH|HOME|WARNINGS)|PERL5(OPT|LIB)|PERLLIB|RUBYOPT|RUBYLIB|LUA_INIT(_.*)?|PHPRC|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS|JAVA_OPTS|MAVEN_OPTS|GRADLE_OPTS|ERL_(A|Z)?FLAGS|GOFLAGS|RUSTC|RUSTC(_WORKSPACE)?_WRAPPER|CARGO_BUILD_RUSTC(_WORKSPACE_WRAPPER|_WRAPPER)?|GIT_(SSH|SSH_COMMAND|ASKPASS|EXEC_PATH|CONFIG.*|EXTERNAL_DIFF|PROXY_COMMAND|TEMPLATE_DIR)|TAR_OPTIONS|OPENSSL_CONF|BROWSER|EDITOR|VISUAL|PAGER|MANPAGER|.+_EDITOR|.+_PAGER|.+_RSH|LESSOPEN|LESSCLOSE|SSH_ASKPASS|SUDO_ASKPASS)$/;

/** npm reads any npm_config_* as a setting (script-shell, node-options, ...), whatever its letters' case. */
const NPM_CONFIG = /^npm_config_/i;

const isLoaderVariable = (name: string) => LOADER_VARIABLES.test(name) || NPM_CONFIG.test(name);

/** Where a command is looked for when the caller has no PATH, as execvp(3) does. */
const DEFAULT_SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin";

/**
 * `--allow-variable NODE_PATH,GOFLAGS`: names the caller lets through, exactly as written. Some
 * of those names are everyday settings (NODE_PATH=src, NPM_CONFIG_PRODUCTION=false,
 * GOFLAGS=-mod=vendor), and --allow-loader-variables let LD_PRELOAD through with them (found in
 * review). Anything but names separated by commas is a usage error: a list that allowed nothing
 * by mistake would only be refused later, less clearly.
 */
function allowedVariables(ctx: CommandContext): Set<string> {
  const option = ctx.options["allow-variable"];
  if (typeof option !== "string") return new Set();
  const names = option.split(",").map((n) => n.trim());
  const wrong = names.find((n) => !isSecretName(n));
  if (wrong !== undefined) throw new UsageError(`--allow-variable takes variable names separated by commas, not ${JSON.stringify(wrong)}`);
  return new Set(names);
}

function refuseLoaderVariables(w: Where, entries: SecretEntry[], allowed: ReadonlySet<string>): void {
  const found = entries.map((e) => e.name).filter((name) => isLoaderVariable(name) && !allowed.has(name));
  if (found.length === 0) return;
  throw new UsageError(
    `the secrets of ${w.workspace}/${w.env} hold ${found.join(", ")}, which make programs load code: refusing to start the command with them (--allow-variable ${found.join(",")} passes these on, --allow-loader-variables any)`,
  );
}

/**
 * How `citadel run` passes signals on, so that each meant for the command reaches it once and
 * none kills citadel, leaving the command running without it. TERM, USR1, USR2 and WINCH are
 * passed on. INT, QUIT and HUP are too, unless citadel is in its terminal's foreground process
 * group when one comes: the terminal (Ctrl-C, Ctrl-\) or the shell (a hang-up) sends them to that
 * whole group, the command included — a copy passed on came twice. Citadel only stays alive to
 * pass the command's exit code on. Sent to citadel alone (a service manager, `timeout -s INT`,
 * a job in the background), they reach the command.
 */
function signalRelay(child: { kill(signal: NodeJS.Signals): void }, startedAt: TerminalFacts | null): Array<[NodeJS.Signals, () => void]> {
  const alwaysPassed: NodeJS.Signals[] = ["SIGTERM", "SIGUSR1", "SIGUSR2"];
  // WINCH too: a resize is sent to the terminal's foreground group, as Ctrl-C is.
  const fromTheTerminal: NodeJS.Signals[] = ["SIGINT", "SIGQUIT", "SIGHUP", "SIGWINCH"];
  const passedOn = (signal: NodeJS.Signals): [NodeJS.Signals, () => void] => [signal, () => child.kill(signal)];
  const unlessTheTerminalSentIt = (signal: NodeJS.Signals): [NodeJS.Signals, () => void] => [signal, () => sentByTheTerminal(startedAt) || child.kill(signal)];
  return [...alwaysPassed.map(passedOn), ...fromTheTerminal.map(unlessTheTerminalSentIt)];
}

/**
 * What /proc/self/stat says of the controlling terminal: its number (0: none), whether this
 * process's group is its foreground one, and whether this process leads its session.
 */
interface TerminalFacts {
  tty: string;
  foreground: boolean;
  sessionLeader: boolean;
}

function terminalOf(): TerminalFacts | null {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    const [, , pgrp, session, tty, foregroundGroup] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { tty: tty!, foreground: tty !== "0" && foregroundGroup === pgrp, sessionLeader: session === String(process.pid) };
  } catch {
    return null;
  }
}

/**
 * Whether a signal that comes now came from the terminal to this process's whole group (the
 * command has it already): this process is in its terminal's foreground group, or it had a
 * terminal when it started and has none now — a hang-up detaches the terminal before the
 * shell leading the session sends its SIGHUP to the group. Not when citadel leads the session
 * itself (`ssh -t host citadel run ...`, `docker exec -it`, tmux): then the kernel's SIGHUP
 * came to citadel alone, and the command has it only if passed on. Where /proc cannot say,
 * whether standard input is a terminal.
 */
function sentByTheTerminal(startedAt: TerminalFacts | null): boolean {
  const now = terminalOf();
  if (now === null || startedAt === null) return process.stdin.isTTY === true;
  const hungUp = startedAt.tty !== "0" && now.tty === "0";
  return now.foreground || (hungUp && !now.sessionLeader);
}

/**
 * The entries of a file to import. One that is not what import takes is a usage error naming
 * the file (exit 2, as any input file a command refuses), with the line or entry and why, never
 * a value: the parsers say no more.
 */
function importEntries(text: string, format: "dotenv" | "json", what: string): SecretEntry[] {
  try {
    return format === "json" ? parseJsonSecrets(text) : parseDotenv(text);
  } catch (error) {
    throw new UsageError(`${what}: ${(error as Error).message}`);
  }
}

interface ImportResult {
  plan: Array<{ name: string; action: string; reason?: string }>;
  created: number;
  updated: number;
  unchanged: number;
  skipped: number;
}

/** Fails, naming them, when the plan skips entries: without --no-overwrite an import is all or nothing. */
function refuseSkips(result: ImportResult, outcome: string): void {
  const skipped = result.plan.filter((p) => p.action === "skip");
  if (skipped.length === 0) return;
  throw new Error(`cannot import ${skipped.map((p) => `${p.name}${p.reason ? ` (${p.reason})` : ""}`).join(", ")}: ${outcome}`);
}

/** --format, else dotenv; --json asks for JSON, and refuses a --format that is not. */
function exportFormat(ctx: CommandContext): "dotenv" | "json" {
  const format = choiceOption(ctx, "format", ["dotenv", "json"] as const);
  if (ctx.json && format === "dotenv") throw new UsageError("--json with --format dotenv: give one");
  return format ?? (ctx.json ? "json" : "dotenv");
}

/** A command about one secret: `citadel <words> <name> -w WS [-e ENV]`. */
function secretCommand(words: string[], summary: string, act: (ctx: CommandContext, api: ApiClient, w: Where, name: string) => Promise<void>): Command {
  return {
    words,
    summary,
    args: "<name>",
    maxArgs: 1,
    options: WHERE,
    async run(ctx) {
      const w = where(ctx);
      const name = requireSecretName(ctx);
      await act(ctx, await ctx.api(), w, name);
      return 0;
    },
  };
}

const SECRET_NAME_RULE = "a secret's name is an environment variable name: letters, digits and _, not starting with a digit";

/**
 * The secret named on the command line, checked as the server would: a name such as `..` would
 * otherwise make another path (`DELETE .../secrets/..` is the environment's DELETE).
 */
function requireSecretName(ctx: CommandContext): string {
  const name = requireArg(ctx, "the secret's name");
  if (!isSecretName(name)) throw new UsageError(SECRET_NAME_RULE);
  return name;
}

/** The secret named by --secret, if any, checked as requireSecretName checks an argument (`--secret .` read the environment's list). */
function secretNameOption(ctx: CommandContext): string | undefined {
  const name = ctx.options.secret;
  if (typeof name !== "string") return undefined;
  if (!isSecretName(name)) throw new UsageError(`--secret: ${SECRET_NAME_RULE}`);
  return name;
}

/**
 * A version given as an argument, checked as integerOption checks a flag (the same range): 0
 * went to the server (422) and a long string of digits was sent rounded (1e20).
 */
function requireArg(ctx: CommandContext, what: string): string {
  const value = ctx.args[0];
  if (!value) throw new UsageError(`give ${what}`);
  return value;
}

/**
 * Why a command did not start, with the exit code a shell gives: 127 not found, 126 found but
 * not executable. Only the error's code is shown: the engine's message may quote the environment.
 */
function spawnFailure(command: string, error: unknown): { code: number; message: string } {
  const errno = (error as { code?: unknown } | null)?.code;
  if (errno === "ENOENT") return { code: 127, message: `cannot run ${command}: not found (ENOENT)` };
  const why = typeof errno === "string" ? (SPAWN_ERRORS[errno] ?? errno) : "it could not be started";
  return { code: 126, message: `cannot run ${command}: ${why}` };
}

const SPAWN_ERRORS: Record<string, string> = {
  EACCES: "not executable, or a directory (EACCES)",
  ENOEXEC: "not a program this system can run (ENOEXEC)",
  ENOTDIR: "a part of its path is not a directory (ENOTDIR)",
  E2BIG: "the secrets are too large for a process environment, with the command's arguments (E2BIG)",
};
