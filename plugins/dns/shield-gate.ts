/**
 * The DNS server's gate with the shield in it: every query with a question passes here before
 * its answer is built. The shield's verdict on the client (src/intel/shield.ts) comes first —
 * refused: REFUSED; dropped: no reply. Then, over UDP, response rate limiting per client prefix
 * (rrl.ts), stricter for a throttled client; each limited query tells the shield, so a flooder
 * soon has a decision of its own (for DNS over UDP only, and a throttle at most: UDP sources are
 * not verified, and a throttled client still gets TC now and then, so a real resolver whose
 * address was spoofed retries over TCP and is answered). REFUSED and drops over UDP come only
 * from evidence every channel acts on. REFUSED is rate limited like answers (else it reflects
 * for free). Allowlisted clients, and loopback
 * when trusted, are exempt from the limit; configured secondaries from the shield, and from the
 * limit only for queries whose TSIG verifies (the server checks it: admitsSigned).
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
  /**
   * Clients the shield's decisions leave alone (the configured secondaries: a spoofer must not
   * get them refused). They are still rate limited over UDP, with slip: their addresses are
   * public (the zone's NS), so an exemption from the limit would make them a free reflection
   * target. Their signed queries are answered past the limit once the TSIG verifies
   * (admitsSigned): a secondary that checks TSIG throws away an unsigned TC and never retries
   * over TCP, so a spoofed flood from its prefix would otherwise stop its refreshes.
   */
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

  decide(client: string, _qname: Name, _qtype: number, transport: "udp" | "tcp", signed = false): Decision {
    const current = this.options.shield.current;
    const shield = current !== null && this.options.exempt?.(client) !== true ? current : null;
    // Over TCP the source is verified by the handshake: only evidence every channel may act on
    // counts (the shield's "http" channel: lists, policy, HTTP behaviour, manual entries), never
    // decisions made from DNS signals, which come over UDP from addresses anyone can forge — or
    // a spoofed flood "from" a real resolver would cut it off over TCP too, its way out of slip.
    const verdict = shield ? shield.verdict(client, transport === "tcp" ? "http" : "dns") : null;
    const action = verdict ? verdict.action : "allow";
    if (verdict) this.options.onVerdict?.(action);
    if (action === "drop") {
      this.options.count?.("dropped");
      return "drop";
    }
    const rate = action === "throttle" || action === "refuse" ? this.options.throttledRate : this.options.rate;
    // Allowlisted and trusted loopback clients are not rate limited; TCP never is; nobody when
    // there is no limit (asked first: it spares the trust lookup on every query).
    if (transport === "tcp" || rate <= 0 || (verdict ? verdict.trusted : this.trusted(client))) {
      if (action !== "refuse") return "answer";
      this.options.count?.("refused");
      return "refuse";
    }
    const limited = this.rrl.take(client, rate);
    if (action === "refuse") {
      // REFUSED to a spoofable source is rate limited too, or it would be a free reflector.
      if (limited !== "answer") {
        this.options.count?.("dropped");
        return "drop";
      }
      this.options.count?.("refused");
      return "refuse";
    }
    if (limited === "answer") return "answer";
    shield?.observe(client, "dns_rate_limited"); // (not for an exempt secondary: no decision may come of it)
    // A secondary's signed query is answered past the limit once its TSIG verifies (the server
    // checks it after this): counted only when the server says it was not (notVouched).
    if (!(signed && this.admitsSigned(client))) this.countLimited(limited);
    return limited;
  }

  admitsSigned(client: string): boolean {
    return this.options.exempt?.(client) === true;
  }

  notVouched(decision: Decision): void {
    if (decision === "truncate" || decision === "drop") this.countLimited(decision);
  }

  private countLimited(limited: "truncate" | "drop"): void {
    this.options.count?.(limited === "truncate" ? "slipped" : "rate_limited");
  }

  /** For a client the shield gave no verdict on (exempt, or no shield): trusted all the same? */
  private trusted(client: string): boolean {
    const shield = this.options.shield.current;
    return shield ? shield.isTrusted(client) : this.options.trustLoopback && this.isLoopback(client);
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
