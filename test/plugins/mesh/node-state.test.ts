/**
 * A node's state as the agent reads it: one enrolled over http:// with another machine, before
 * join refused such a server, polls in the clear; the agent says so once, and keeps running.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "../../../plugins/mesh/agent.ts";
import { generateKeyPair } from "../../../plugins/mesh/keys.ts";
import { plainHttpWarning, readState, writeState, type NodeState } from "../../../plugins/mesh/node-state.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function stateDirWith(server: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "citadel-node-state-"));
  dirs.push(dir);
  const state: NodeState = { server, certificate: null, node_id: "node_a", network_id: "net_a", network: "office", name: "a", interface: "wgc-test", token: "t", signing_key: "s", private_key: (await generateKeyPair()).privateKey, next_private_key: null, applied_version: 1 };
  writeState(dir, state);
  return dir;
}

const warningFor = (dir: string) =>
  `mesh: warning: this node talks to its control plane http://192.0.2.1:8080 over plain HTTP (it enrolled so before join refused it): its node token crosses the network in the clear at every poll, and anyone on the way may use it as this node's (the configs are signed: they cannot be changed on the way, but can be read). Kept running, as stopping would cut the node off the mesh. Enroll it again over HTTPS: citadel mesh join --server https://192.0.2.1:PORT --key KEY --state ${dir} --force, then remove the old node (citadel mesh nodes delete <network> <node>)`;

test("a node enrolled over http:// with another machine is read, with a warning that it polls in the clear (found in review: it went on silently)", async () => {
  const dir = await stateDirWith("http://192.0.2.1:8080");
  const state = readState(dir);
  expect([state.server, plainHttpWarning(dir, state)]).toEqual(["http://192.0.2.1:8080", warningFor(dir)]);
});

test("the agent says so once, when it starts, and starts", async () => {
  const dir = await stateDirWith("http://192.0.2.1:8080");
  const said: string[] = [];
  new Agent({ stateDir: dir, dryRun: true, firewall: false, err: (text) => said.push(text) });
  expect(said).toEqual([warningFor(dir)]);
});

test("a node of an https:// control plane, or of one on this machine over http://, is not warned about", async () => {
  for (const server of ["https://citadel.example:8443", "http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"]) {
    const dir = await stateDirWith(server);
    expect([server, plainHttpWarning(dir, readState(dir))]).toEqual([server, null]);
  }
});
