/**
 * What a node using an exit node keeps outside its tunnel (throw routes of the exit table, see
 * exit-routing.ts): the control plane's addresses (or those of the proxy the agent reaches it
 * through), and, when that is a name, the resolvers the system asks for it.
 *
 * The control plane must stay reachable whatever the exit node does: a node whose exit node is
 * not usable blocks its internet (fail closed), and only a new config from the control plane
 * lifts the block. Given by name, its address is looked up at every round; a lookup that fails
 * then — the resolver itself beyond the block, or udp/53 not allowed by the ACL's rule for the
 * internet — must not take the control plane's throw route away, or the node could never fetch
 * the config that would lift the block (found in review). So the addresses last resolved are
 * kept, in memory and in the state directory (a restart in the blocked state knows them too),
 * and a failed lookup keeps them; the resolvers of /etc/resolv.conf (and, behind a loopback
 * stub such as systemd-resolved's 127.0.0.53, its upstreams) are kept outside too, so that the
 * lookup can work at all. A loopback stub needs no route; its upstreams are what leave the host.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../../src/files.ts";
import { formatIp, isLoopback, parseIp, type IpAddress } from "../../src/net/ip.ts";
import { LOOKUP_TIMEOUT_MS, type LookupHost } from "./endpoints.ts";

/** The system resolver's configuration, and systemd-resolved's upstreams behind its 127.0.0.53 stub. */
export const RESOLV_CONF_PATHS = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"] as const;

/** The file in the state directory with the addresses the control plane's name last resolved to. */
export const CONTROL_PLANE_ADDRESSES_FILE = "control-plane-addresses.json";

interface StoredAddresses {
  /** The name looked up: a file for another control plane (a join --force) is not used. */
  host: string;
  addresses: string[];
}

export interface OutsideTunnelOptions {
  stateDir: string;
  lookupHost: LookupHost;
  err(text: string): void;
  /** Where the resolvers are read (default RESOLV_CONF_PATHS). */
  resolvConf?: readonly string[];
  timeoutMs?: number;
}

export class OutsideTunnel {
  /** The addresses last resolved, for `host`; null until known (read from the state directory first). */
  private last: StoredAddresses | null;
  /** The name whose lookup failed and was said so (once while it keeps failing). */
  private warned: string | null = null;

  constructor(private readonly options: OutsideTunnelOptions) {
    this.last = readStored(options.stateDir);
  }

  /**
   * The addresses to keep outside the tunnel for reaching `target` (the control plane's URL, or
   * its proxy's; `what` names it in messages): an address as it is; a name's addresses — those
   * last resolved when it does not resolve now — and the system's resolvers.
   */
  async addresses(target: URL, what: string): Promise<IpAddress[]> {
    const host = target.hostname.replace(/^\[(.*)\]$/, "$1");
    const literal = parseIp(host);
    // Nothing to look up: the resolvers stay where the exit node sends them.
    if (literal) return [literal];
    return unique([...(await this.resolve(host, what)), ...systemResolvers(this.options.resolvConf ?? RESOLV_CONF_PATHS)]);
  }

  private async resolve(host: string, what: string): Promise<IpAddress[]> {
    const timeout = this.options.timeoutMs ?? LOOKUP_TIMEOUT_MS;
    const answer = await Promise.race([
      this.options.lookupHost(host).then(
        (found) => ({ found }),
        (error: unknown) => ({ failed: (error as NodeJS.ErrnoException).code ?? (error instanceof Error ? error.message : String(error)) }),
      ),
      Bun.sleep(timeout).then(() => ({ failed: `no answer in ${timeout / 1000} s` })),
    ]);
    const found = "found" in answer ? answer.found.map((text) => parseIp(text)).filter((ip) => ip !== null) : [];
    if (found.length > 0) {
      this.warned = null;
      this.remember(host, found);
      return found;
    }
    const kept = this.last?.host === host ? this.last.addresses.map((text) => parseIp(text)).filter((ip) => ip !== null) : [];
    if (this.warned !== host) {
      const why = "failed" in answer ? answer.failed : "no address";
      this.options.err(
        kept.length > 0
          ? `mesh agent: ${host} (${what}) does not resolve now (${why}): the addresses it last resolved to (${kept.map(formatIp).join(", ")}) stay outside the exit node's tunnel`
          : `mesh agent: ${host} (${what}) does not resolve (${why}) and never did here: it is not kept outside the exit node's tunnel until it does`,
      );
      this.warned = host;
    }
    return kept;
  }

  /** Kept in memory, and in the state directory when it changed (best effort: memory still holds it). */
  private remember(host: string, found: IpAddress[]): void {
    const next: StoredAddresses = { host, addresses: found.map(formatIp) };
    if (this.last !== null && JSON.stringify(this.last) === JSON.stringify(next)) return;
    this.last = next;
    try {
      writeFileAtomic(join(this.options.stateDir, CONTROL_PLANE_ADDRESSES_FILE), `${JSON.stringify(next)}\n`, 0o600);
    } catch (error) {
      this.options.err(`mesh agent: could not keep ${host}'s addresses in ${this.options.stateDir} (${error instanceof Error ? error.message : String(error)}): a restart while it does not resolve would not know them`);
    }
  }
}

function readStored(dir: string): StoredAddresses | null {
  const path = join(dir, CONTROL_PLANE_ADDRESSES_FILE);
  try {
    if (!existsSync(path)) return null;
    const stored = JSON.parse(readFileSync(path, "utf8")) as Partial<StoredAddresses>;
    if (typeof stored.host !== "string" || !Array.isArray(stored.addresses)) return null;
    return { host: stored.host, addresses: stored.addresses.filter((text): text is string => typeof text === "string") };
  } catch {
    return null; // unreadable or damaged: the next lookup that works writes it again
  }
}

/**
 * The nameservers of the resolver configuration files that exist, but loopback stubs (no route
 * needed) and scoped link-local ones (`fe80::1%eth0`: the main table's on-link route has them).
 */
export function systemResolvers(paths: readonly string[]): IpAddress[] {
  const found: IpAddress[] = [];
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const match = /^\s*nameserver\s+(\S+)/.exec(line);
      const address = match ? parseIp(match[1]!) : null;
      if (address !== null && !isLoopback(address)) found.push(address);
    }
  }
  return unique(found);
}

function unique(addresses: IpAddress[]): IpAddress[] {
  const seen = new Set<string>();
  return addresses.filter((ip) => {
    const key = formatIp(ip);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
