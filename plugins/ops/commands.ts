/** CLI: citadel doctor | sovereignty report | sovereignty sbom. They run on this machine's config and data. */
import type { Database } from "bun:sqlite";
import { buildInfo } from "../../src/build-info.ts";
import { credentialsPath, readStoredLogin } from "../../src/cli/credentials.ts";
import { localBaseUrl } from "../../src/cli/api-client.ts";
import { INSTALLED_CONFIG_FILE, locateConfigFile } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { systemClock, type Command, type CommandContext } from "../../src/plugin.ts";
import { readDatabase } from "../../src/store/read-only.ts";
import { commandConfig, instanceInputs, tokenDoubt } from "./config.ts";
import { runDoctor, type Check, type DoctorReport, type RunProgram } from "./doctor.ts";
import { askLocalServer } from "./local-server.ts";
import { humanBytes, octal, pathInfo } from "./on-disk.ts";
import { embeddedSbom, sbomText } from "./sbom.ts";
import { MESH_STATE_DIR, sovereigntyReport, type SovereigntyReport } from "./sovereignty.ts";
import { databasePath, isNotADatabase, type DatabaseProblem } from "./store.ts";

/** The config file this command's configuration came from (or would come from), as main.ts finds it. */
function configFileOf(ctx: CommandContext): string {
  return locateConfigFile({ ...instanceInputs(ctx), installedConfig: INSTALLED_CONFIG_FILE }).path;
}

export const opsCommands: Command[] = [
  {
    words: ["doctor"],
    summary: "Check this machine's Citadel (files and modes, keys, seal, certificate, disk, clock, ports, DNS, audit chain, backups); exit code 1 on a failure",
    async run(ctx) {
      const { config } = commandConfig(ctx);
      const login = operatorToken(ctx, config);
      const server = await askLocalServer(config, login);
      const configPath = configFileOf(ctx);
      const report = await withDatabase(config, (db, databaseProblem) => runDoctor({ config, configPath, server, db, databaseProblem, now: systemClock.now(), run: runProgram }));
      if (login.problem) addCheck(report, { check: "cli_login", status: "fail", message: login.problem, fix: `chmod 600 ${credentialsPath(ctx.configHome)}` });
      if (ctx.json) ctx.out(JSON.stringify(report, null, 2));
      else printDoctor((line) => ctx.out(line), report);
      return report.ok ? 0 : 1;
    },
  },
  {
    words: ["sovereignty", "report"],
    summary: "What this Citadel is made of (dependencies, licences), where it connects, where its data lives, which algorithms and keys protect it",
    options: { "mesh-state": { type: "string", description: `A mesh node's state directory to look in (default ${MESH_STATE_DIR})` } },
    async run(ctx) {
      const { config } = commandConfig(ctx);
      const login = operatorToken(ctx, config);
      const now = systemClock.now();
      const [sbom, server] = await Promise.all([embeddedSbom({ commit: buildInfo.commit, now }), askLocalServer(config, login)]);
      const configPath = configFileOf(ctx);
      const loginFile = pathInfo(credentialsPath(ctx.configHome)).kind === "file" ? credentialsPath(ctx.configHome) : null;
      const meshStateDir = typeof ctx.options["mesh-state"] === "string" ? ctx.options["mesh-state"] : MESH_STATE_DIR;
      const report = await withDatabase(config, async (db, databaseProblem) => sovereigntyReport({ config, configPath, sbom, server, db, databaseProblem, now, meshStateDir, loginFile }));
      if (ctx.json) ctx.out(JSON.stringify({ citadel: { version: buildInfo.version, commit: buildInfo.commit }, data_dir: config.data_dir, ...report }, null, 2));
      else printSovereignty((line) => ctx.out(line), report, config);
      // An auditor's script must not take a partial list of destinations for the whole one.
      return report.outbound.unknown.length > 0 ? 1 : 0;
    },
  },
  {
    words: ["sovereignty", "sbom"],
    summary: "Print the software bill of materials (CycloneDX 1.5 JSON) this binary was built from",
    async run(ctx) {
      ctx.out(sbomText(await embeddedSbom({ commit: buildInfo.commit, now: systemClock.now() })).trimEnd());
      return 0;
    },
  },
];

/**
 * The operator token for the local server: CITADEL_TOKEN, else the stored login's when it is
 * a login to this very server. A stored login file others can read is reported, not used.
 * Neither goes to a server the client commands would not send it to (tokenDoubt), nor
 * CITADEL_TOKEN to another than CITADEL_SERVER's (anotherServersToken): `withheld`.
 */
function operatorToken(ctx: CommandContext, config: Config): { token: string | undefined; withheld: string | null; problem: string | null } {
  const { token, problem } = givenToken(ctx, config);
  const doubt = token === undefined ? null : (anotherServersToken(ctx, config) ?? tokenDoubt(instanceInputs(ctx), config));
  return doubt === null ? { token, withheld: null, problem } : { token: undefined, withheld: doubt, problem };
}

/**
 * Why CITADEL_TOKEN is not sent to this instance, or null: with CITADEL_SERVER set and naming
 * another server, it is that server's, which the client commands refuse to send elsewhere
 * (main.ts, refuseTokenForAnotherServer). The doctor sent it to the local instance (found in review).
 */
function anotherServersToken(ctx: CommandContext, config: Config): string | null {
  const server = ctx.env.CITADEL_SERVER;
  const local = localBaseUrl(config);
  // No address (a random port): nothing is asked, so nothing is sent.
  if (!ctx.env.CITADEL_TOKEN || !server || local === null || URL.parse(server)?.origin === new URL(local).origin) return null;
  return `CITADEL_TOKEN is CITADEL_SERVER's (${server}), not this instance's (${local}): for this instance with your login to it, CITADEL_TOKEN= citadel ...; with a token of its own, unset CITADEL_SERVER`;
}

function givenToken(ctx: CommandContext, config: Config): { token: string | undefined; problem: string | null } {
  if (ctx.env.CITADEL_TOKEN) return { token: ctx.env.CITADEL_TOKEN, problem: null };
  try {
    const stored = readStoredLogin(ctx.configHome);
    const local = localBaseUrl(config);
    return { token: stored && local && new URL(stored.server).origin === new URL(local).origin ? stored.token : undefined, problem: null };
  } catch (error) {
    return { token: undefined, problem: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * Runs `fn` with the database read-only; or with null and no problem when there is none (never
 * initialized), or null and why it could not be read: the checks that need it say so.
 */
async function withDatabase<T>(config: Config, fn: (db: Database | null, problem: DatabaseProblem | null) => Promise<T>): Promise<T> {
  const path = databasePath(config);
  const where = pathInfo(path).kind;
  if (where === "missing") return fn(null, null);
  if (where === "unreadable") return fn(null, "unreadable");
  let opened = false;
  try {
    // Run again the usual way if a Citadel started meanwhile (readDatabase): a report from stale reads would mislead.
    return await readDatabase(path, (db) => {
      opened = true;
      return fn(db, null);
    });
  } catch (error) {
    // SQLite opens any file and finds out at the first read that it is not a database.
    if (opened && isNotADatabase(error)) return fn(null, "not_a_database");
    if (opened) throw error;
    return fn(null, "unreadable");
  }
}

const runProgram: RunProgram = (argv) => {
  if (!Bun.which(argv[0]!)) return null;
  const result = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", timeout: 5000 });
  return { code: result.exitCode ?? 1, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
};

function addCheck(report: DoctorReport, check: Check): void {
  report.checks.push(check);
  report.counts[check.status]++;
  if (check.status === "fail") report.ok = false;
}

const LABEL = { ok: "ok  ", warn: "WARN", fail: "FAIL", skip: "skip" } as const;

/** The doctor's report as aligned lines: status, check, message, and the fix under a problem. */
export function printDoctor(out: (line: string) => void, report: DoctorReport): void {
  const width = Math.max(...report.checks.map((c) => c.check.length));
  for (const c of report.checks) {
    out(`${LABEL[c.status]}  ${c.check.padEnd(width)}  ${c.message}`);
    if (c.fix && c.status !== "ok") out(`${" ".repeat(width + 8)}fix: ${c.fix}`);
  }
  const { ok, warn, fail, skip } = report.counts;
  out(`\n${ok} ok, ${warn} ${warn === 1 ? "warning" : "warnings"}, ${fail} ${fail === 1 ? "failure" : "failures"}${skip ? `, ${skip} skipped` : ""}`);
}

/** The sovereignty report as text, one section per part. */
export function printSovereignty(out: (line: string) => void, r: SovereigntyReport, config: Config): void {
  out(`Sovereignty report: citadel ${buildInfo.version} (commit ${buildInfo.commit}), data in ${config.data_dir}`);

  out(`\nSoftware — ${r.dependencies.sbom}`);
  const licences = Object.entries(r.dependencies.licences).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  out(`  in the binary: ${r.dependencies.in_binary.length} components; licences: ${licences.map(([l, n]) => `${l} ${n}`).join(", ")}`);
  const nameWidth = Math.max(...r.dependencies.in_binary.map((d) => d.name.length));
  for (const d of r.dependencies.in_binary) out(`  ${d.name.padEnd(nameWidth)}  ${d.version.padEnd(16)}  ${d.licence}`);
  if (r.dependencies.build_only.length > 0) out(`  build and test only, not in the binary: ${r.dependencies.build_only.map((d) => `${d.name} ${d.version} (${d.licence})`).join(", ")}`);

  out("\nOutbound connections");
  if (r.outbound.none) out("  none: nothing leaves this host");
  for (const why of r.outbound.unknown) out(`  unknown: ${why}`);
  for (const d of r.outbound.destinations) out(`  ${d.active ? "" : "(unused) "}${d.kind.replace(/_/g, " ")}: ${d.destination}\n      ${d.detail}`);
  if (r.outbound.webhook_allowed_prefixes?.length) out(`  webhooks may point under: ${r.outbound.webhook_allowed_prefixes.join(", ")} (secrets.webhook_allowed_urls)`);

  out("\nData on this host");
  const whatWidth = Math.max(...r.data.map((d) => d.what.length));
  for (const d of r.data) {
    const where = d.path === null ? "" : d.kind === "missing" ? `${d.path} (absent)` : d.kind === "unreadable" ? `${d.path} (cannot look: not readable by this user)` : `${d.path}  ${octal(d.mode)}  ${humanBytes(d.bytes)}`;
    out(`  ${d.what.padEnd(whatWidth)}  ${[where, d.note].filter(Boolean).join(" — ")}`);
  }

  out("\nCryptography");
  const useWidth = Math.max(...r.algorithms.map((a) => a.use.length));
  for (const a of r.algorithms) out(`  ${a.use.padEnd(useWidth)}  ${a.algorithm}`);

  out("\nKeys");
  const { ages, note, signing_keys, tls_certificate } = r.keys;
  if (ages?.root) {
    out(`  root key ${ages.root.id} (${ages.root.method}${ages.root.threshold ? `, ${ages.root.threshold} of ${ages.root.shares} shares` : ""}): ${ages.root.age_days} days old${ages.pending_root ? `; ${ages.pending_root} pending` : ""}`);
    if (ages.active_kek) out(`  key-encryption key v${ages.active_kek.version}: ${ages.active_kek.age_days} days old; rotation every ${ages.rotation_days || "— (manual only)"} days${ages.rotation_due ? " — due" : ""}`);
    if (ages.source === "database") out(`  (read from the database file${note ? `; ${note}` : ""})`);
  } else out(`  key ages unknown: ${note ?? "not initialized"}`);
  for (const k of signing_keys) out(`  ${k.purpose} signing key (Ed25519) ${k.id}: ${k.age_days} days old`);
  if (tls_certificate) out(`  TLS certificate: ${tls_certificate.key}, valid ${tls_certificate.not_before.slice(0, 10)} to ${tls_certificate.not_after.slice(0, 10)}, public key pin ${tls_certificate.public_key_pin} (certificate SHA-256 ${tls_certificate.fingerprint_sha256})`);
}
