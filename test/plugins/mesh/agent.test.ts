/**
 * The agent's key switch, on a state directory alone (no device): the switch to the next key
 * is made on the state file as it is at that moment, not as the round read it. Then whole
 * rounds against a fake device and control plane (fake-node.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "../../../plugins/mesh/agent.ts";
import type { ConfigDocument } from "../../../plugins/mesh/configs.ts";
import type { LookupHost } from "../../../plugins/mesh/endpoints.ts";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import { readState, writeState, type NodeState } from "../../../plugins/mesh/node-state.ts";
import { enrolledStateDir, FakeControlPlane, FakeDevice, nodeConfig, peer } from "./fake-node.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function stateDirWith(state: Partial<NodeState>): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "citadel-agent-"));
  dirs.push(dir);
  const base: NodeState = { server: "https://127.0.0.1:1", certificate: null, node_id: "node_a", network_id: "net_a", network: "office", name: "a", interface: "wgc-test", token: "t", signing_key: "s", private_key: (await generateKeyPair()).privateKey, next_private_key: null, applied_version: 1 };
  writeState(dir, { ...base, ...state });
  return dir;
}

const switching = (nextPublicKey: string) => ({ rotation: { next_public_key: nextPublicKey, switch: true } }) as unknown as ConfigDocument;
const quiet = { dryRun: false, firewall: false, err: () => {} };

test("a next key written by `citadel mesh rotate` during the round is kept, not erased by the switch to the one before (found in review)", async () => {
  const k1 = await generateKeyPair();
  const k2 = await generateKeyPair();
  const dir = await stateDirWith({ next_private_key: k1.privateKey });
  const agent = new Agent({ stateDir: dir, ...quiet }); // the round has read k1 as the next key
  writeState(dir, { ...readState(dir), next_private_key: k2.privateKey }); // rotate, run again meanwhile
  const switchKeyIfDue = (agent as unknown as { switchKeyIfDue(doc: ConfigDocument): Promise<boolean> }).switchKeyIfDue.bind(agent);
  expect(await switchKeyIfDue(switching(k1.publicKey))).toBe(false);
  expect(readState(dir).next_private_key).toBe(k2.privateKey); // the newer rotation goes on
});

test("with nothing written meanwhile, the switch happens: the next key becomes the key", async () => {
  const k1 = await generateKeyPair();
  const dir = await stateDirWith({ next_private_key: k1.privateKey });
  const agent = new Agent({ stateDir: dir, ...quiet });
  const switchKeyIfDue = (agent as unknown as { switchKeyIfDue(doc: ConfigDocument): Promise<boolean> }).switchKeyIfDue.bind(agent);
  expect(await switchKeyIfDue(switching(k1.publicKey))).toBe(true);
  expect(readState(dir)).toMatchObject({ private_key: k1.privateKey, next_private_key: null });
});

test("the agent's change to the state file waits for another process's change under the file's lock, then sees it (found in review)", async () => {
  const k1 = await generateKeyPair();
  const k2 = await generateKeyPair();
  const dir = await stateDirWith({ next_private_key: k1.privateKey });
  const agent = new Agent({ stateDir: dir, ...quiet }); // the round has read k1 as the next key
  // Another process (`citadel mesh rotate` run again) reads the state under the lock, takes a
  // moment, and writes a newer next key.
  const root = join(import.meta.dir, "../../..");
  const rotate = Bun.spawn(
    [process.execPath, "-e", `
      const { withFileLock } = await import(${JSON.stringify(join(root, "src/file-lock.ts"))});
      const { readState, statePath, writeState } = await import(${JSON.stringify(join(root, "plugins/mesh/node-state.ts"))});
      withFileLock(statePath(${JSON.stringify(dir)}), () => {
        const state = readState(${JSON.stringify(dir)});
        console.log("locked");
        Bun.sleepSync(400);
        writeState(${JSON.stringify(dir)}, { ...state, next_private_key: ${JSON.stringify(k2.privateKey)} });
      });`],
    { stdout: "pipe", stderr: "inherit" },
  );
  const reader = rotate.stdout.getReader();
  for (let said = ""; !said.includes("locked"); ) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the other process ended before taking the lock");
    said += new TextDecoder().decode(value);
  }
  const switchKeyIfDue = (agent as unknown as { switchKeyIfDue(doc: ConfigDocument): Promise<boolean> }).switchKeyIfDue.bind(agent);
  const before = readState(dir).private_key;
  expect(await switchKeyIfDue(switching(k1.publicKey))).toBe(false); // it waited, and saw k2
  expect(await rotate.exited).toBe(0);
  expect(readState(dir)).toMatchObject({ private_key: before, next_private_key: k2.privateKey });
});

describe("peers' endpoint names are resolved by the agent, not by wg (found in review: one name that did not resolve failed every peer's syncconf)", () => {
  const plane = new FakeControlPlane();
  const lookupHost: LookupHost = async (host) => {
    if (host === "b.example") return ["198.51.100.2"];
    if (host === "e.example") return ["2001:db8::5"];
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
  };
  let state: { dir: string; remove(): void };
  afterAll(() => {
    plane.stop();
    state?.remove();
  });

  test("the file wg reads has addresses; a peer whose name does not resolve goes without an endpoint, with a warning naming it; the others are applied, removals included", async () => {
    state = await enrolledStateDir(plane);
    const fake = new FakeDevice("wgc-test");
    const said: string[] = [];
    const agent = new Agent({ stateDir: state.dir, dryRun: false, firewall: true, err: (text) => said.push(text), run: fake.run, lookupHost });
    const [b, c, d, e] = [await peer("b", 2, "b.example:51820"), await peer("c", 3, "203.0.113.3:51820"), await peer("d", 4, "gone.example:51820"), await peer("e", 5, "e.example:51821")];
    plane.publish(nodeConfig([b, c]));
    expect((await agent.round()).changed).toBe(true);

    plane.publish(nodeConfig([b, d, e])); // c removed, d's name does not resolve
    expect(await agent.round()).toMatchObject({ changed: true, version: 2 });
    const endpoints = Object.fromEntries(fake.peers.map((p) => [p.publicKey, p.endpoint]));
    expect(endpoints).toEqual({ [b.publicKey]: "198.51.100.2:51820", [d.publicKey]: null, [e.publicKey]: "[2001:db8::5]:51821" });
    expect(fake.synced.at(-1)).not.toContain(".example");
    expect(said).toEqual(["mesh agent: peer d has the endpoint gone.example:51820, which does not resolve (ENOTFOUND): written without an endpoint; WireGuard learns it when that peer connects"]);
    // The signed document is kept as signed: only the file wg reads changed.
    expect(JSON.parse(readFileSync(join(state.dir, "config.json"), "utf8")).body).toBe(plane.body);

    plane.publish(nodeConfig([b, d, e, c])); // applied again: d is no news
    await agent.round();
    expect(said).toHaveLength(1);
  });

  test("--dry-run shows the endpoints that would be applied", async () => {
    const fake = new FakeDevice("wgc-test");
    const agent = new Agent({ stateDir: state.dir, dryRun: true, firewall: true, err: () => {}, run: fake.run, lookupHost });
    const { plan } = await agent.round();
    expect(plan!.wireguard).toContain("+   endpoint 198.51.100.2:51820");
    expect(plan!.wireguard).toContain("+   endpoint [2001:db8::5]:51821");
    expect(plan!.wireguard.join("\n")).not.toContain(".example");
    expect(fake.synced).toEqual([]);
  });
});
