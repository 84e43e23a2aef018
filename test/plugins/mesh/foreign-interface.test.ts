/**
 * The agent touches only the links it made (found in review: a network whose interface name was
 * the host's eth0 got the mesh firewall on the uplink at every round, and a foreign wg0 had its
 * key, port and peers replaced). Rounds against the fake device; `join` against the host's own
 * links, read only (`lo` exists everywhere).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, ForeignInterfaceError } from "../../../plugins/mesh/agent.ts";
import { ownLinkAlias } from "../../../plugins/mesh/device.ts";
import { generateKeyPair, publicKeyOf } from "../../../plugins/mesh/keys.ts";
import { nodeCommands } from "../../../plugins/mesh/node-commands.ts";
import { readState, writeState } from "../../../plugins/mesh/node-state.ts";
import { runCommand } from "../../helpers/command.ts";
import { enrolledStateDir, FakeControlPlane, FakeDevice, nodeConfig, peer } from "./fake-node.ts";

describe("the agent and a link of the interface's name it did not make", () => {
  const plane = new FakeControlPlane();
  const states: Array<{ remove(): void }> = [];
  afterAll(() => {
    plane.stop();
    for (const state of states) state.remove();
  });

  async function agentOn(fake: FakeDevice, { dryRun = false } = {}) {
    const state = await enrolledStateDir(plane);
    states.push(state);
    plane.refusal = null;
    plane.publish(nodeConfig([await peer("b", 2, "198.51.100.2:51820")]));
    const said: string[] = [];
    const agent = new Agent({ stateDir: state.dir, dryRun, firewall: true, err: (text) => said.push(text), run: fake.run });
    return { agent, said, dir: state.dir };
  }

  /** A link that exists before the agent runs: not WireGuard, or WireGuard with its own key and a peer. */
  async function existing({ wireguard = true, alias = null as string | null, publicKey = null as string | null } = {}): Promise<FakeDevice> {
    const fake = new FakeDevice("wgc-test");
    Object.assign(fake, { exists: true, wireguard, alias, publicKey, listenPort: 51999 });
    fake.peers = [{ publicKey: (await generateKeyPair()).publicKey, presharedKey: null, endpoint: "192.0.2.9:51820", allowedIps: ["10.9.0.0/16"], latestHandshake: 0, transferRx: 0, transferTx: 0, keepalive: 0 }];
    return fake;
  }

  const cases: Array<[string, () => Promise<FakeDevice>, string]> = [
    ["not WireGuard (the host's uplink)", () => existing({ wireguard: false }), "not a WireGuard interface"],
    ["WireGuard with another key (someone's wg0)", async () => existing({ publicKey: (await generateKeyPair()).publicKey }), "a WireGuard interface with another key"],
    ["marked as another node's", () => existing({ alias: ownLinkAlias("node_other") }), `its alias is "citadel-mesh:node_other"`],
  ];
  for (const [what, make, why] of cases) {
    test(`${what}: refused before any firewall is loaded or the device synced, the round failing with its name`, async () => {
      const fake = await make();
      const before = structuredClone({ peers: fake.peers, publicKey: fake.publicKey, alias: fake.alias });
      const { agent } = await agentOn(fake);
      const error = await agent.round().catch((e: Error) => e);
      expect(error).toBeInstanceOf(ForeignInterfaceError);
      expect((error as Error).message).toContain("wgc-test exists and is not this node's interface");
      expect((error as Error).message).toContain(why);
      expect([fake.firewalls, fake.synced]).toEqual([[], []]);
      expect({ peers: fake.peers, publicKey: fake.publicKey, alias: fake.alias }).toEqual(before);
    });
  }

  test("a cut-off leaves it alone too", async () => {
    const fake = await existing({ wireguard: false });
    const { agent } = await agentOn(fake);
    plane.refusal = { status: 401, body: { detail: "Send this node's token.", code: "unauthorized" } };
    await expect(agent.round()).rejects.toThrow("cutting wgc-test off failed");
    expect([fake.firewalls, fake.synced]).toEqual([[], []]);
  });

  test("--dry-run says so and marks nothing", async () => {
    const foreign = await existing({ wireguard: false });
    await expect((await agentOn(foreign, { dryRun: true })).agent.round()).rejects.toBeInstanceOf(ForeignInterfaceError);
    const fake = await existing();
    const { agent, dir } = await agentOn(fake, { dryRun: true });
    fake.publicKey = await publicKeyOf(readState(dir).private_key); // an earlier agent's: taken over by a real round
    expect((await agent.round()).plan).toBeDefined();
    expect(fake.alias).toBeNull();
  });

  test("a link the agent creates is marked as this node's, and applied to at every round", async () => {
    const fake = new FakeDevice("wgc-test");
    const { agent, said } = await agentOn(fake);
    expect((await agent.round()).changed).toBe(true);
    expect(fake.alias).toBe(ownLinkAlias(plane.nodeId));
    expect(await agent.round()).toMatchObject({ changed: false });
    expect(said.filter((line) => line.includes("took over"))).toEqual([]);
  });

  test("an unmarked WireGuard link with this node's key (made by an agent from before the marks) is taken over, marked and said so", async () => {
    const fake = await existing();
    const { agent, said, dir } = await agentOn(fake);
    fake.publicKey = await publicKeyOf(readState(dir).private_key);
    expect((await agent.round()).changed).toBe(true);
    expect(fake.alias).toBe(ownLinkAlias(plane.nodeId));
    expect(fake.peers.map((p) => p.allowedIps)).toEqual([["100.64.0.2/32"]]);
    expect(said.filter((line) => line.includes("took over wgc-test"))).toHaveLength(1);
  });

  test("the link of the node this one replaced (join --force over the same state) is taken over", async () => {
    const fake = await existing({ alias: ownLinkAlias("node_before") });
    const { agent, dir } = await agentOn(fake);
    writeState(dir, { ...readState(dir), former_node: { id: "node_before", public_key: null } });
    expect((await agent.round()).changed).toBe(true);
    expect(fake.alias).toBe(ownLinkAlias(plane.nodeId));
  });

  test("so is the link of a node replaced before that one, when the joins in between never ran their agent (found in review)", async () => {
    const fake = await existing({ alias: ownLinkAlias("node_first") });
    const { agent, dir } = await agentOn(fake);
    writeState(dir, { ...readState(dir), former_node: { id: "node_second", public_key: null }, earlier_nodes: [{ id: "node_first", public_key: null }] });
    expect((await agent.round()).changed).toBe(true);
    expect(fake.alias).toBe(ownLinkAlias(plane.nodeId));
  });

  test("and an unmarked link an agent from before the marks made with the key of such a node (found in review)", async () => {
    const first = await generateKeyPair();
    const fake = await existing({ publicKey: first.publicKey });
    const { agent, dir } = await agentOn(fake);
    writeState(dir, { ...readState(dir), former_node: { id: "node_second", public_key: (await generateKeyPair()).publicKey }, earlier_nodes: [{ id: "node_first", public_key: first.publicKey }] });
    expect((await agent.round()).changed).toBe(true);
    expect(fake.alias).toBe(ownLinkAlias(plane.nodeId));
  });
});

describe("mesh join and an interface name taken on this host", () => {
  const plane = new FakeControlPlane();
  afterAll(() => plane.stop());
  const joinOptions = (state: string, extra: Record<string, string | boolean> = {}) => ({ server: plane.url, key: "citadel_meshkey_test", name: "a", state, ...extra });

  test("--interface naming an existing link is refused before enrolling (exit 2)", async () => {
    plane.publish(nodeConfig([]));
    const dir = mkdtempSync(join(tmpdir(), "citadel-join-"));
    const enrollments = plane.enrollments.length;
    try {
      const run = await runCommand(nodeCommands, "mesh join", { options: joinOptions(dir, { interface: "lo" }) });
      expect(run.code).toBe(2);
      expect(run.error?.message).toContain("an interface named lo already exists on this host");
      expect([plane.enrollments.length, readdirSync(dir)]).toEqual([enrollments, []]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the network's interface name taken: exit 2 once enrolled, with the node's id and removal command, and no wg-quick file", async () => {
    plane.publish({ ...nodeConfig([]), network: { id: "net_a", name: "office", interfaceName: "lo" } });
    const dir = mkdtempSync(join(tmpdir(), "citadel-join-"));
    try {
      const run = await runCommand(nodeCommands, "mesh join", { options: joinOptions(dir) });
      expect(run.code).toBe(2);
      expect(run.stderr).toContain("an interface named lo already exists on this host");
      expect(run.stderr).toContain(`citadel mesh nodes delete office ${plane.nodeId}`);
      expect(existsSync(join(dir, "lo.conf"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
