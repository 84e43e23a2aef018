/**
 * An agent in a process of its own, for exit-claim.test.ts: it applies its node's config once
 * (its commands run in the namespace named by argv[2]), says "applied", and then stays, holding
 * what it holds, until it is killed (the test kills it with SIGKILL).
 */
import { Agent } from "../../../plugins/mesh/agent.ts";
import { runCommand, type RunCommand } from "../../../plugins/mesh/device.ts";

const [namespace, stateDir, claimDirectory] = process.argv.slice(2) as [string, string, string];
const run: RunCommand = (argv, stdin) => runCommand(["ip", "netns", "exec", namespace, ...argv], stdin);
const agent = new Agent({ stateDir, dryRun: false, firewall: false, err: (text) => console.error(text), run, exitClaimDirectory: claimDirectory });
await agent.round();
console.log("applied");
setInterval(() => {}, 60_000);
