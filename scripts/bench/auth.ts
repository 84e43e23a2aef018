/**
 * Authentication benchmark, in one run:
 *
 * 1. A PAT-authenticated read (GET /v1/system/info) on the compiled binary against a bare
 *    Bun.serve answering the same JSON (wrk, loopback, TLS). Target: ≥ 50% of bare.
 * 2. Password logins per second while logins saturate the argon2id pool, with a health
 *    probe running beside them. Target: the probe's p99 stays under 10 ms (hashing runs off
 *    the event loop, through a bounded queue).
 *
 * Usage: bun scripts/bench/auth.ts [--duration 10] [--connections 32] [--rounds 3] [--logins 16]
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { call, ensureTools, freshDataDir, medianSample, ownerWithPat, sampleRow, startBare, startCitadel, stopAll, wrk, type Sample } from "./lib.ts";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    logins: { type: "string", default: "16" },
  },
});
const load = { duration: Number(values.duration), connections: Number(values.connections) };

await ensureTools();
const data = freshDataDir();
try {
  const citadel = await startCitadel(data, true);
  const { pat, session } = await ownerWithPat(citadel, ["read"]);
  // One account per login client: Citadel runs one login per account and address at a time
  // (a second is refused at once), so clients sharing one account would measure refusals.
  const accounts = await Promise.all(
    Array.from({ length: Number(values.logins) }, async (_, i) => {
      const account = { email: `bench-login-${i}@localhost`, password: `bench-login-passphrase-${i}` };
      const made = await call(citadel.url, "POST", "/v1/iam/users", account, session);
      if (made.status !== 200) throw new Error(`user ${account.email}: ${made.status} ${JSON.stringify(made.body)}`);
      return account;
    }),
  );
  const bare = await startBare([join(data, "tls/cert.pem"), join(data, "tls/key.pem")]);
  const info: Sample[] = [];
  const reference: Sample[] = [];
  for (let round = 1; round <= Number(values.rounds); round++) {
    info.push(await wrk(citadel, `${citadel.url}/v1/system/info`, `citadel PAT read #${round}`, { ...load, headers: [`Authorization: Bearer ${pat}`] }));
    reference.push(await wrk(bare, `${bare.url}/`, `bare #${round}`, load));
  }
  await stopAll(bare);

  // Logins flat out, and a probe beside them.
  const deadline = performance.now() + load.duration * 1000;
  let logins = 0;
  const failures = new Map<number, number>();
  const loginLoop = async (account: { email: string; password: string }) => {
    while (performance.now() < deadline) {
      const res = await call(citadel.url, "POST", "/v1/iam/login", account);
      if (res.status === 200) logins++;
      else failures.set(res.status, (failures.get(res.status) ?? 0) + 1);
    }
  };
  const probes: number[] = [];
  const probeLoop = async () => {
    while (performance.now() < deadline) {
      const started = performance.now();
      await fetch(`${citadel.url}/healthz`, { tls: { rejectUnauthorized: false } });
      probes.push(performance.now() - started);
      await Bun.sleep(10);
    }
  };
  const started = performance.now();
  await Promise.all([...accounts.map(loginLoop), probeLoop()]);
  const seconds = (performance.now() - started) / 1000;
  await stopAll(citadel);

  probes.sort((a, b) => a - b);
  const p = (q: number) => probes[Math.min(probes.length - 1, Math.floor(q * probes.length))]!;
  console.log(`\nwrk -t1 -c${load.connections} -d${load.duration}s over TLS, loopback, ${navigator.hardwareConcurrency} cores, Bun ${Bun.version}, median of ${values.rounds} alternating rounds\n`);
  console.log("| server | requests/s | p50 | p99 | server CPU per request |");
  console.log("|---|---:|---:|---:|---:|");
  console.log(sampleRow("citadel GET /v1/system/info with a PAT", info));
  console.log(sampleRow("bare Bun.serve, same JSON", reference));
  console.log(`\nPAT-authenticated read: ${((100 * medianSample(info).rps) / medianSample(reference).rps).toFixed(1)}% of bare Bun (target ≥ 50%)`);
  console.log(`password logins (argon2id m=19 MiB t=2 p=1, ${values.logins} concurrent clients): ${(logins / seconds).toFixed(1)}/s${failures.size > 0 ? `; refused: ${[...failures].map(([status, n]) => `${n} × ${status}`).join(", ")}` : ""}`);
  console.log(`health probe meanwhile (${probes.length} probes): p50 ${p(0.5).toFixed(2)} ms, p99 ${p(0.99).toFixed(2)} ms, max ${p(1).toFixed(2)} ms (target p99 < 10 ms)`);
} finally {
  rmSync(data, { recursive: true, force: true });
}
