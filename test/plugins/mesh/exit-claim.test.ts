/**
 * Two agents of one host (two networks, two interfaces) that both choose an exit node, with the
 * real `ip` and `wg` (the kernel's WireGuard, else wireguard-go) in a network namespace, and
 * fake control planes: one host sends its internet through one exit node. Whoever holds the
 * host's exit claim (a flock that dies with its process) routes; the other applies the rest of
 * its config, reports why it does not, and takes over once the first lets go — or dies.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "../../../plugins/mesh/agent.ts";
import { runCommand, type RunCommand } from "../../../plugins/mesh/device.ts";
import { ExitClaim } from "../../../plugins/mesh/exit-claim.ts";
import { holdFileLock } from "../../../src/file-lock.ts";
import { EXIT_RULE_PRIORITY } from "../../../plugins/mesh/exit-routing.ts";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import { readState, writeState } from "../../../plugins/mesh/node-state.ts";
import type { NodeConfig } from "../../../plugins/mesh/types.ts";
import { requireTool } from "../../helpers/tools.ts";
import { enrolledStateDir, FakeControlPlane, nodeConfig } from "./fake-node.ts";
import { HOST_LAN_COMMANDS } from "./host-lan.ts";

const ip = requireTool("ip", "iproute2");
const wg = requireTool("wg", "wireguard-tools");
const isRoot = process.getuid?.() === 0;
const kernelOrUserspace = (await runCommand(["modprobe", "-n", "wireguard"]).catch(() => null))?.code === 0 || Bun.which("wireguard-go") !== null;

const suffix = String(process.pid % 100000);
const namespace = `citadel-claim-${suffix}`;

describe.skipIf(!ip || !wg || !isRoot || !kernelOrUserspace)("one exit-node user per host: the claim", () => {
  const run: RunCommand = (argv, stdin) => runCommand([ip!, "netns", "exec", namespace, ...argv], stdin);
  const must = async (argv: string[]) => {
    const result = await run(argv);
    if (result.code !== 0) throw new Error(`${argv.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };
  const claimDirectory = mkdtempSync(join(tmpdir(), "citadel-claim-"));
  const cleanups: Array<() => void> = [];
  const children: Array<ReturnType<typeof Bun.spawn>> = [];

  /** The exit rules on the host: their fwmarks, per family. */
  const exitMarks = async (family: "-4" | "-6") =>
    (JSON.parse(await must(["ip", "-j", family, "rule", "show"])) as Array<{ priority: number; protocol?: string; fwmark?: string }>)
      .filter((rule) => rule.protocol === "83" && (Object.values(EXIT_RULE_PRIORITY) as number[]).includes(rule.priority))
      .map((rule) => Number(rule.fwmark));
  const routeTo = async (address: string) => {
    const result = await run(["ip", "route", "get", address]);
    return result.code === 0 ? result.stdout : result.stderr;
  };
  const peersOf = async (name: string) => (await must(["wg", "show", name, "peers"])).trim().split("\n").filter(Boolean);

  /** A node of its own network and control plane: its interface, listen port (its exit table) and prefix. */
  async function node(letter: "a" | "b", port: number, prefix: string) {
    const plane = new FakeControlPlane(`node_${letter}`);
    const state = await enrolledStateDir(plane);
    cleanups.push(() => {
      plane.stop();
      state.remove();
    });
    const iface = `wx${letter}${suffix}`;
    writeState(state.dir, { ...readState(state.dir), interface: iface, network: `net-${letter}`, name: letter });
    const [egress, ...others] = (await Promise.all(Array.from({ length: 3 }, async () => (await generateKeyPair()).publicKey))) as [string, ...string[]];
    const config = (exit: boolean, extraPeers = 0): NodeConfig => ({
      ...nodeConfig([]),
      network: { id: `net_${letter}`, name: `net-${letter}`, interfaceName: iface },
      addresses: [`${prefix}.1/16`],
      listenPort: port,
      peers: [
        { name: "egress", publicKey: egress, nextPublicKey: null, presharedKey: null, allowedIps: [`${prefix}.2/32`, ...(exit ? ["0.0.0.0/0", "::/0"] : [])], endpoint: "192.0.2.50:51820", keepalive: 25 },
        ...others.slice(0, extraPeers).map((publicKey, i) => ({ name: `p${i}`, publicKey, nextPublicKey: null, presharedKey: null, allowedIps: [`${prefix}.${10 + i}/32`], endpoint: null, keepalive: 0 })),
      ],
      ...(exit ? { exit: { via: "egress" } } : {}),
    });
    const said: string[] = [];
    const agent = (exitClaimDirectory = claimDirectory) => new Agent({ stateDir: state.dir, dryRun: false, firewall: false, err: (text) => said.push(text), run, exitClaimDirectory });
    return { plane, dir: state.dir, iface, port, config, said, agent };
  }

  beforeAll(async () => {
    await runCommand([ip!, "netns", "add", namespace]);
    for (const argv of [
      ["ip", "link", "set", "lo", "up"],
      ...HOST_LAN_COMMANDS,
    ]) await must(argv);
  });

  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    await Promise.all(children.map((child) => child.exited));
    // The interfaces first: a wireguard-go serving one exits once it is gone.
    for (const link of ["wxa", "wxb"]) await run(["ip", "link", "del", `${link}${suffix}`]);
    await runCommand([ip!, "netns", "del", namespace]);
    for (const cleanup of cleanups) cleanup();
    rmSync(claimDirectory, { recursive: true, force: true });
  });

  test("started at the same instant, exactly one routes through its exit node; the other applies the rest and reports why not, its peers still changing, and takes over once the first chooses none", async () => {
    const a = await node("a", 51820, "100.64.0");
    const b = await node("b", 51821, "100.65.0");
    a.plane.publish(a.config(true));
    b.plane.publish(b.config(true));
    const [agentA, agentB] = [a.agent(), b.agent()];
    // Both rounds succeed: the refusal is the exit part's alone.
    await Promise.all([agentA.round(), agentB.round()]);
    const reports = [...a.plane.applied, ...b.plane.applied] as Array<{ exit_refused?: string | null }>;
    expect(reports).toHaveLength(2);
    const refused = reports.filter((report) => typeof report.exit_refused === "string");
    expect(refused).toHaveLength(1);
    const [holder, other] = (a.plane.applied[0] as { exit_refused?: string }).exit_refused === undefined ? [a, b] : [b, a];
    const [holderAgent, otherAgent] = holder === a ? [agentA, agentB] : [agentB, agentA];
    expect(refused[0]!.exit_refused).toContain(`the agent of ${holder.iface} (node ${holder === a ? "a" : "b"} of network net-${holder === a ? "a" : "b"}, pid ${process.pid}) routes this host's internet through an exit node`);
    expect(other.said.join("\n")).toContain(`${other.iface} uses none until that agent lets it go`);
    // What it says of the host's internet is what the routing below does (found in review: it said "directly").
    expect(refused[0]!.exit_refused).toContain("until then this host's internet, this node's included, goes through that agent's exit node");
    expect(refused[0]!.exit_refused).not.toContain("directly");
    // One set of exit rules on the host, the holder's, in both families; the internet goes through its tunnel.
    expect(await exitMarks("-4")).toEqual([holder.port, holder.port]);
    expect(await exitMarks("-6")).toEqual([holder.port, holder.port]);
    expect(await routeTo("198.51.100.1")).toContain(`dev ${holder.iface} table ${holder.port}`);
    expect(await must(["wg", "show", other.iface, "fwmark"])).toContain("off");
    // The refused agent's peers are applied, and change with its next config while it is still refused.
    expect(await peersOf(other.iface)).toHaveLength(1);
    other.plane.publish(other.config(true, 2));
    await otherAgent.round();
    expect(await peersOf(other.iface)).toHaveLength(3);
    expect((other.plane.applied.at(-1) as { exit_refused?: string }).exit_refused).toContain("routes this host's internet through an exit node");
    expect(await exitMarks("-4")).toEqual([holder.port, holder.port]);
    // The holder chooses none: its rules go and it lets the claim go.
    holder.plane.publish(holder.config(false));
    await holderAgent.round();
    expect(await exitMarks("-4")).toEqual([]);
    expect(readdirSync(claimDirectory)).toEqual([]);
    // The other's next round (its config unchanged: a 304) takes over, and says so to the control plane.
    const before = other.plane.applied.length;
    await otherAgent.round();
    expect(await exitMarks("-4")).toEqual([other.port, other.port]);
    expect(await routeTo("198.51.100.1")).toContain(`dev ${other.iface} table ${other.port}`);
    expect(other.plane.applied.slice(before)).toEqual([expect.objectContaining({ exit_refused: null })]);
    expect(other.said).toContain(`mesh agent: ${other.iface} now routes this host's internet through its exit node (refused until now)`);
    // The holder now wants it again: refused in its turn, nothing of its own left on the host.
    holder.plane.publish(holder.config(true));
    await holderAgent.round();
    expect(await exitMarks("-4")).toEqual([other.port, other.port]);
    expect((holder.plane.applied.at(-1) as { exit_refused?: string }).exit_refused).toContain(`the agent of ${other.iface}`);
    // Both let go (the next test starts from a host without exit rules).
    other.plane.publish(other.config(false));
    holder.plane.publish(holder.config(false));
    await otherAgent.round();
    await holderAgent.round();
    expect(await exitMarks("-4")).toEqual([]);
    expect(await exitMarks("-6")).toEqual([]);
  });

  test("an agent that cannot take the claim (its directory unfit) fails closed: none of its exit rules on the host, not even alone, so a holder never deletes a running agent's rules; it says why once, reports it, and routes once it can (found in review)", async () => {
    const a = await node("a", 51820, "100.64.0");
    const b = await node("b", 51821, "100.65.0");
    a.plane.publish(a.config(true));
    b.plane.publish(b.config(true));
    // Writable by others: not a directory a claim may be kept in.
    const unfit = mkdtempSync(join(tmpdir(), "citadel-claim-unfit-"));
    cleanups.push(() => rmSync(unfit, { recursive: true, force: true }));
    chmodSync(unfit, 0o777);
    const agentB = b.agent(unfit);
    // Alone on the host, it still routes through nothing of its own: it cannot tell a running
    // holder's rules from none, and a holder would take its rules for a dead agent's.
    await agentB.round();
    expect(await exitMarks("-4")).toEqual([]);
    expect(await exitMarks("-6")).toEqual([]);
    const refusal = (b.plane.applied.at(-1) as { exit_refused?: string }).exit_refused;
    expect(refusal).toContain(`cannot take the host's exit claim: ${unfit} is not a directory of this user's that only it may write to`);
    expect(refusal).toContain("fix: ");
    expect(await peersOf(b.iface)).toHaveLength(1); // the rest of its config applied
    // Both at once: only the agent holding the claim routes.
    const agentA = a.agent();
    await Promise.all([agentA.round(), agentB.round()]);
    expect(await exitMarks("-4")).toEqual([a.port, a.port]);
    expect(await exitMarks("-6")).toEqual([a.port, a.port]);
    expect(await routeTo("198.51.100.1")).toContain(`dev ${a.iface} table ${a.port}`);
    expect((a.plane.applied.at(-1) as { exit_refused?: string | null }).exit_refused).toBeUndefined();
    await agentB.round();
    expect(b.said.filter((line) => line.includes("cannot take the host's exit claim"))).toHaveLength(1); // said once
    // The directory made fit, and the holder gone: b takes the claim at its next round.
    chmodSync(unfit, 0o700);
    a.plane.publish(a.config(false));
    await agentA.round();
    await agentB.round();
    expect(await exitMarks("-4")).toEqual([b.port, b.port]);
    expect((b.plane.applied.at(-1) as { exit_refused?: string | null }).exit_refused).toBeNull();
    expect(b.said).toContain(`mesh agent: ${b.iface} now routes this host's internet through its exit node (refused until now)`);
    b.plane.publish(b.config(false));
    await agentB.round();
    expect(await exitMarks("-4")).toEqual([]);
    expect(await exitMarks("-6")).toEqual([]);
  });

  test("the claim itself: of many takers at once exactly one holds it; released, the next one takes it", async () => {
    const claims = Array.from({ length: 8 }, () => new ExitClaim({ directory: claimDirectory, run }));
    const answers = await Promise.all(claims.map((claim, i) => claim.take({ pid: process.pid, interface: `wg${i}`, network: "n", node: String(i) })));
    expect(answers.filter((answer) => answer.held === true)).toHaveLength(1);
    const winner = answers.findIndex((answer) => answer.held === true);
    expect(answers.filter((answer) => answer.held === false).map((answer) => (answer as { holder: string }).holder)).toEqual(Array(7).fill(`the agent of wg${winner} (node ${winner} of network n, pid ${process.pid})`));
    claims[winner]!.release();
    const next = claims[(winner + 1) % claims.length]!;
    expect(await next.take({ pid: process.pid, interface: "wgx", network: "n", node: "x" })).toEqual({ held: true });
    next.release();
    expect(readdirSync(claimDirectory)).toEqual([]);
  });

  test("the claim's file removed while held (rm -rf /run/citadel-mesh/*): the holder finds out at its next take and takes it again or is refused, and its release never removes another holder's file (found in review)", async () => {
    const said: string[] = [];
    const [a, b, c] = [0, 1, 2].map(() => new ExitClaim({ directory: claimDirectory, run, err: (text) => said.push(text) })) as [ExitClaim, ExitClaim, ExitClaim];
    const holder = (name: string) => ({ pid: process.pid, interface: name, network: "n", node: name });
    expect(await a.take(holder("A"))).toEqual({ held: true });
    for (const file of readdirSync(claimDirectory)) rmSync(join(claimDirectory, file));
    // A new file at the path: free, so b takes it. a no longer holds what the path names.
    expect(await b.take(holder("B"))).toEqual({ held: true });
    expect(await a.take(holder("A"))).toEqual({ held: false, holder: `the agent of B (node B of network n, pid ${process.pid})` });
    expect(a.held).toBe(false);
    expect(said.join("\n")).toContain("was removed or replaced while this agent held it");
    // a's release (again, harmless) leaves b's file; the next taker is refused by b.
    a.release();
    expect(readdirSync(claimDirectory)).toHaveLength(1);
    expect(await c.take(holder("C"))).toEqual({ held: false, holder: `the agent of B (node B of network n, pid ${process.pid})` });
    // Removed again and nobody else took it: the holder takes the new file at its next take.
    for (const file of readdirSync(claimDirectory)) rmSync(join(claimDirectory, file));
    expect(await b.take(holder("B"))).toEqual({ held: true });
    expect(await c.take(holder("C"))).toEqual({ held: false, holder: `the agent of B (node B of network n, pid ${process.pid})` });
    b.release();
    expect(readdirSync(claimDirectory)).toEqual([]);
  });

  test("the claim's whole directory removed while held (rm -rf /run/citadel-mesh): the holder's next take makes it again and holds the claim, not failing every round after (found in review)", async () => {
    const a = new ExitClaim({ directory: claimDirectory, run, err: () => {} });
    const b = new ExitClaim({ directory: claimDirectory, run, err: () => {} });
    const holder = (name: string) => ({ pid: process.pid, interface: name, network: "n", node: name });
    expect(await a.take(holder("A"))).toEqual({ held: true });
    rmSync(claimDirectory, { recursive: true });
    expect(await a.take(holder("A"))).toEqual({ held: true });
    expect(await a.take(holder("A"))).toEqual({ held: true });
    expect(await b.take(holder("B"))).toEqual({ held: false, holder: `the agent of A (node A of network n, pid ${process.pid})` });
    a.release();
    expect(readdirSync(claimDirectory)).toEqual([]);
  });

  test("a holder's line that lacks fields, or is not an agent's, is described without them, never as \"undefined\" (found in review)", async () => {
    const inode = /net:\[(\d+)\]/.exec(await must(["readlink", "/proc/self/ns/net"]))![1];
    const path = join(claimDirectory, `exit-node.net-${inode}.lock`);
    const claim = new ExitClaim({ directory: claimDirectory, run });
    for (const [line, described] of [
      [`${JSON.stringify({ pid: 42 })}\n`, "another mesh agent (pid 42)"],
      [`${JSON.stringify({ pid: 42, interface: "wgc-b", node: null })}\n`, "another mesh agent (pid 42)"],
      [`${JSON.stringify({ interface: "wgc-b", network: "b", node: "web1", pid: "42" })}\n`, "another mesh agent"],
      ["[1]\n", "another mesh agent"],
      ["", "another mesh agent"],
    ] as const) {
      const other = holdFileLock(path, line);
      if (other === null || "heldBy" in other) throw new Error("not held");
      expect(await claim.take({ pid: process.pid, interface: "wgx", network: "n", node: "x" })).toEqual({ held: false, holder: described });
      other.release();
    }
    expect(readdirSync(claimDirectory)).toEqual([]);
  });

  test("a control plane older than exit_refused (422 for the field): the report is made again without it, and the refusal is not taken as heard — it is reported again each round, and heard once that control plane takes it (found in review)", async () => {
    const b = await node("b", 51821, "100.65.0");
    b.plane.publish(b.config(true));
    const holder = new ExitClaim({ directory: claimDirectory, run });
    expect(await holder.take({ pid: process.pid, interface: "wgh", network: "h", node: "h" })).toEqual({ held: true });
    try {
      b.plane.appliedAnswer = (report) => ("exit_refused" in report ? { status: 422, body: { detail: "Unknown field exit_refused.", code: "validation_failed" } } : null);
      const reports = () => b.plane.applied as Array<{ version: number; exit_refused?: string | null }>;
      const agentB = b.agent();
      await agentB.round();
      // Refused with the field, then made again without it: the applied version arrives.
      expect(reports().map((report) => "exit_refused" in report)).toEqual([true, false]);
      await agentB.round(); // unchanged config (304): the refusal is still to be heard
      expect(reports().map((report) => "exit_refused" in report)).toEqual([true, false, true, false]);
      b.plane.appliedAnswer = null; // the control plane upgraded
      await agentB.round();
      expect(reports().at(-1)!.exit_refused).toContain("the agent of wgh (node h of network h");
      const heard = reports().length;
      await agentB.round();
      expect(reports()).toHaveLength(heard); // heard: not sent again
    } finally {
      holder.release();
      b.plane.appliedAnswer = null;
    }
    b.plane.publish(b.config(false));
    await b.agent().round();
    expect(await exitMarks("-4")).toEqual([]);
  });

  test("an agent killed with -9: its rules stay and still route through its tunnel (not through nothing); another agent then takes the claim, removes the dead one's rules and routes through its own", async () => {
    const a = await node("a", 51820, "100.64.0");
    const b = await node("b", 51821, "100.65.0");
    a.plane.publish(a.config(true));
    b.plane.publish(b.config(true));
    const child = Bun.spawn([process.execPath, join(import.meta.dir, "exit-claim-agent.ts"), namespace, a.dir, claimDirectory], { stdout: "pipe", stderr: "pipe" });
    children.push(child);
    const reader = child.stdout.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain("applied");
    expect(await exitMarks("-4")).toEqual([a.port, a.port]);
    // While it runs, b is refused (its holder named by pid).
    const agentB = b.agent();
    await agentB.round();
    expect((b.plane.applied.at(-1) as { exit_refused?: string }).exit_refused).toContain(`pid ${child.pid})`);
    expect(await exitMarks("-4")).toEqual([a.port, a.port]);
    child.kill("SIGKILL");
    await child.exited;
    // Dead: its rules and tunnel stay, and the internet still goes through its exit node.
    expect(await routeTo("198.51.100.1")).toContain(`dev ${a.iface} table ${a.port}`);
    // b's next round takes the claim: the dead agent's rules and table go, b's come.
    await agentB.round();
    expect(await exitMarks("-4")).toEqual([b.port, b.port]);
    expect(await exitMarks("-6")).toEqual([b.port, b.port]);
    expect((await must(["ip", "-4", "route", "show", "table", String(a.port)])).trim()).toBe("");
    expect(await routeTo("198.51.100.1")).toContain(`dev ${b.iface} table ${b.port}`);
    expect((b.plane.applied.at(-1) as { exit_refused?: string | null }).exit_refused).toBeNull();
    // a's agent, started again, is refused now (b holds the claim) and removes nothing of b's.
    const agentA = a.agent();
    await agentA.round();
    expect(await exitMarks("-4")).toEqual([b.port, b.port]);
    expect(a.said.join("\n")).toContain(`the agent of ${b.iface}`);
    // Released by b, a's running agent takes over at its next round.
    b.plane.publish(b.config(false));
    await agentB.round();
    await agentA.round();
    expect(await exitMarks("-4")).toEqual([a.port, a.port]);
    a.plane.publish(a.config(false));
    await agentA.round();
    expect(await exitMarks("-4")).toEqual([]);
  });
});
