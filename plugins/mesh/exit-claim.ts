/**
 * Which agent of this host routes its internet through an exit node: at most one (a host sends
 * its internet through one exit node; exit-routing.ts says why two cannot share it).
 *
 * The claim is a flock(2) on a file of a root-owned runtime directory, held by the agent for as
 * long as its exit routing is on the host. The kernel decides who holds it, atomically — two
 * agents starting at the same instant cannot both pass (a look at the host's rules and then a
 * write could) — and lets it go when the holder's process ends, however it ends (`kill -9`
 * included): exit rules on the host whose agent holds no claim are a dead agent's, which the
 * next agent to take the claim removes (it holds the claim, so no running agent of this version
 * can own them) before it puts its own in. A dead agent's rules stay in the meantime, routing as
 * they did (through its tunnel, which outlives the agent): nothing is torn down before another
 * agent takes its place.
 *
 * Routing rules are per network namespace, so the claim is too: its file is named after the
 * namespace the agent's commands run in (`/proc/self/ns/net` of a command it runs), so agents
 * in two namespaces of one machine (containers, tests) never refuse each other.
 */
import { lstatSync, mkdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { holdFileLock, type HeldFileLock } from "../../src/file-lock.ts";
import type { RunCommand } from "./device.ts";

/** Where the claims live: a runtime directory (gone at reboot, as the rules are). */
export const EXIT_CLAIM_DIRECTORY = "/run/citadel-mesh";

/** Who holds a claim, written into its file for the agent refused. */
export interface ExitHolder {
  pid: number;
  interface: string;
  network: string;
  node: string;
}

export type ClaimAnswer =
  /** This agent holds the claim: the host's exit routing is its alone. */
  | { held: true }
  /** Another running agent holds it; `holder` describes it for the refusal. */
  | { held: false; holder: string }
  /** No C library to ask for flock: no claim can be made (the caller falls back to a look at the rules). */
  | { held: null };

export class ExitClaim {
  private lock: HeldFileLock | null = null;
  /** The lock file's name in the directory, by the network namespace (asked once: it does not change under a running agent). */
  private fileName: string | null = null;
  private path: string | null = null;

  constructor(private readonly options: { directory?: string; run: RunCommand; err?: (text: string) => void }) {}

  /** Where the claim is kept (for a message naming it). */
  get directory(): string {
    return this.options.directory ?? EXIT_CLAIM_DIRECTORY;
  }

  /** Whether this agent holds the claim now. */
  get held(): boolean {
    return this.lock !== null;
  }

  /**
   * Takes the claim (kept when held already). Throws when the directory cannot hold one safely.
   * Held, the claim is kept only while its path still names the file locked: removed or
   * replaced, a new file there could be locked by another agent (found in review: both then
   * said held), so it is let go and taken again — or refused, when another took the new file.
   */
  async take(holder: ExitHolder): Promise<ClaimAnswer> {
    if (this.lock !== null) {
      if (this.lock.intact()) return { held: true };
      this.options.err?.(`mesh agent: the exit claim's file ${this.path} was removed or replaced while this agent held it (something cleaned ${this.directory}): let go, and taken again unless another agent took the new file`);
      this.release();
    }
    // The directory is checked (and made again) at every take, not once: a cleanup that removed
    // it would otherwise fail every later take with ENOENT, and each agent, failing closed, would
    // route through no exit node until restarted (found in review).
    this.fileName ??= `exit-node.net-${await namespaceOf(this.options.run)}.lock`;
    const path = (this.path = join(claimDirectory(this.directory), this.fileName));
    const taken = holdFileLock(path, `${JSON.stringify(holder)}\n`);
    if (taken === null) return { held: null };
    if ("heldBy" in taken) return { held: false, holder: describeHolder(taken.heldBy) };
    this.lock = taken;
    return { held: true };
  }

  /** Lets the claim go (once this agent's exit rules are off the host). */
  release(): void {
    this.lock?.release();
    this.lock = null;
  }
}

/**
 * The directory, made (0700) when missing, and refused unless it is a directory of this user's
 * that no one else may write to: another user able to put a file there could hold the claim and
 * keep this host's agents from their exit node.
 */
function claimDirectory(directory: string): string {
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const stat = lstatSync(directory);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o022) !== 0) {
    throw new Error(`${directory} is not a directory of this user's that only it may write to: it cannot hold the claim on this host's exit routing (remove it, or chown it and chmod go-w)`);
  }
  return directory;
}

/**
 * The network namespace the agent's commands run in, by its inode (`net:[4026531840]`): asked of
 * a command run as the others are (readlink in a test's namespace), else this process's own.
 */
async function namespaceOf(run: RunCommand): Promise<string> {
  const asked = await run(["readlink", "/proc/self/ns/net"]).catch(() => null);
  const text = asked?.code === 0 ? asked.stdout : readlinkSync("/proc/self/ns/net");
  const inode = /^net:\[(\d+)\]/.exec(text.trim())?.[1];
  if (inode === undefined) throw new Error(`cannot tell this host's network namespace (${JSON.stringify(text.trim())}): the exit node's claim is not taken`);
  return inode;
}

/**
 * "the agent of wgc-b (node web1 of network b, pid 123)", from what the holder wrote; "another
 * mesh agent", with its pid when that much is there, from a line without every field (empty
 * while the holder has locked and not yet written it; from another version; written by hand).
 */
function describeHolder(line: string): string {
  let holder: Partial<Record<keyof ExitHolder, unknown>> = {};
  try {
    const parsed: unknown = JSON.parse(line);
    if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) holder = parsed as typeof holder;
  } catch {
    // not written yet, or not an agent's line: described as any agent
  }
  const { pid, interface: iface, network, node } = holder;
  const pidOk = Number.isSafeInteger(pid);
  if (pidOk && typeof iface === "string" && typeof network === "string" && typeof node === "string") {
    return `the agent of ${iface} (node ${node} of network ${network}, pid ${pid})`;
  }
  return pidOk ? `another mesh agent (pid ${pid})` : "another mesh agent";
}
