/**
 * The DNS server's gate with the shield in it: every query with a question passes here before
 * its answer is built. The shield's verdict on the client (src/intel/shield.ts) comes first —
 * refused: REFUSED; dropped: no reply. Then, over UDP, response rate limiting per client prefix
 * (rrl.ts), stricter for a throttled client; each limited query tells the shield, so a flooder
 * soon has a decision of its own (for DNS only: UDP sources are not verified). REFUSED is rate
 * limited like answers (else it reflects for free). Allowlisted clients, and loopback when
 * trusted, are exempt.
 */
import { isLoopback, parseIp } from "../../src/net/ip.ts";
import type { ShieldSlot } from "../../src/intel/shield.ts";
import type { Name } from "./names.ts";
import { ResponseRateLimiter } from "./rrl.ts";
import type { Decision, QueryGate } from "./server.ts";

export interface ShieldGateOptions {
  shield: ShieldSlot;
  /** Told each verdict the shield gives (the metrics count them). */
  onVerdict?(action: "allow" | "throttle" | "refuse" | "drop"): void;
  /** Responses per second per client prefix over UDP (0: no rate limiting). */
  rate: number;
  /** The rate for a throttled client. */
  throttledRate: number;
  /** Every slip-th limited response is sent truncated (0: none). */
  slip: number;
  trustLoopback: boolean;
  now: () => number;
  /** Clients the shield leaves alone (the configured secondaries: a spoofer must not cut them off). */
  exempt?: (client: string) => boolean;
  /** Counts what the gate did (for the DNS analytics). */
  count?: (what: "refused" | "dropped" | "slipped" | "rate_limited") => void;
}

export class ShieldGate implements QueryGate {
  private readonly rrl: ResponseRateLimiter;
  private readonly loopback = new Map<string, boolean>();

  constructor(private readonly options: ShieldGateOptions) {
    this.rrl = new ResponseRateLimiter({ slip: options.slip, now: options.now });
  }

  decide(client: string, _qname: Name, _qtype: number, transport: "udp" | "tcp"): Decision {
    if (this.options.exempt?.(client)) return "answer";
    const shield = this.options.shield.current;
    const action = shield ? shield.decide(client, "dns") : "allow";
    if (shield) this.options.onVerdict?.(action);
    if (action === "drop") {
      this.options.count?.("dropped");
      return "drop";
    }
    // Allowlisted and trusted loopback clients are not rate limited; TCP never is.
    if (transport === "tcp" || (shield ? shield.isTrusted(client, "dns") : this.options.trustLoopback && this.isLoopback(client))) {
      if (action !== "refuse") return "answer";
      this.options.count?.("refused");
      return "refuse";
    }
    const rate = action === "throttle" || action === "refuse" ? this.options.throttledRate : this.options.rate;
    const verdict = this.rrl.take(client, rate);
    if (action === "refuse") {
      // REFUSED to a spoofable source is rate limited too, or it would be a free reflector.
      if (verdict !== "answer") {
        this.options.count?.("dropped");
        return "drop";
      }
      this.options.count?.("refused");
      return "refuse";
    }
    if (verdict === "answer") return "answer";
    shield?.observe(client, "dns_rate_limited");
    this.options.count?.(verdict === "truncate" ? "slipped" : "rate_limited");
    return verdict;
  }

  private isLoopback(client: string): boolean {
    let known = this.loopback.get(client);
    if (known === undefined) {
      const ip = parseIp(client);
      known = ip !== null && isLoopback(ip);
      if (this.loopback.size > 4096) this.loopback.clear();
      this.loopback.set(client, known);
    }
    return known;
  }
}
