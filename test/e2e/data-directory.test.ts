/**
 * One data directory, one writer, on the compiled binary: a second `citadel serve` (or `init`)
 * on a directory a Citadel serves is refused while the first serves on; and a start never
 * makes a new, empty database where a restore was interrupted.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ensureBinary, freePort, runCitadel, startCitadel, tempDir, type RunningCitadel } from "../helpers/binary.ts";
import { pinnedGet } from "../helpers/pinned-https.ts";

const running: RunningCitadel[] = [];
const dirs: Array<{ remove(): void }> = [];
beforeAll(ensureBinary, 120_000);
afterAll(() => {
  for (const r of running) r.proc.kill("SIGKILL");
  for (const d of dirs) d.remove();
});

function dir(prefix: string) {
  const d = tempDir(prefix);
  dirs.push(d);
  return d.path;
}

async function start(data: string) {
  const citadel = await startCitadel(["--data", data], { CITADEL_HTTP_PORT: String(await freePort()) });
  running.push(citadel);
  return citadel;
}

describe("the data directory's lock", () => {
  test("a second serve or init on a directory a Citadel serves exits 2 naming it; the first serves on; once it stops, a start works (found in review)", async () => {
    const data = dir("citadel-e2e-lock-");
    const first = await start(data);
    const refusal = `citadel: another Citadel is serving this data directory (pid ${first.proc.pid}) (${data}): stop it first, or give this one another data directory\n`;
    for (const command of ["serve", "init"]) {
      const second = await runCitadel([command, "--data", data], { CITADEL_HTTP_PORT: String(await freePort()) });
      expect([command, second.code, second.stderr]).toEqual([command, 2, refusal]);
    }
    expect((await pinnedGet(first.url, first.fingerprint!, "/readyz")).status).toBe(200);
    expect(first.proc.exitCode).toBeNull();

    expect((await first.stop()).code).toBe(0);
    const again = await start(data);
    expect(readFileSync(join(data, "citadel.lock"), "utf8")).toBe(`${again.proc.pid} serve\n`);
    expect((await pinnedGet(again.url, again.fingerprint!, "/readyz")).status).toBe(200);
    expect((await again.stop()).code).toBe(0);
  });
});
