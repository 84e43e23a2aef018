/**
 * NOTIFY (RFC 1996): after a zone changes, each of its secondaries is told over UDP, signed with
 * its TSIG key, so it asks for the new serial at once instead of at its next refresh. A NOTIFY
 * is sent again, at growing intervals, until the secondary answers it (section 3.6) or the
 * attempts run out; a newer change of the same zone to the same secondary replaces a pending one.
 */
import type { Logger } from "../../src/log.ts";
import { formatIp, isLoopback, parseIp, unmapIpv4 } from "../../src/net/ip.ts";
import { decodeMessage, decodeQuery, encodeResponse, Opcode, Rcode } from "./message.ts";
import { nameEquals, nameToText, type Name } from "./names.ts";
import { RRType } from "./rdata.ts";
import { RCODE_NOTAUTH, readTsig, sign, TsigError, verify, type TsigKey, type TsigRecord } from "./tsig.ts";
import type { Zone } from "./zone.ts";

const CLASS_IN = 1;
/** Delays before each retry: 2, 4, 8, 16 s — five sends in about half a minute. */
const RETRY_DELAYS_MS = [2_000, 4_000, 8_000, 16_000];

export interface NotifyTarget {
  secondary: string;
  address: string;
  port: number;
  keyName: Name;
}

/** How a NOTIFY is sent. */
export interface NotifyOptions {
  /**
   * The secondaries may not serve the zone yet: it is new to them, and they learn of it from the
   * catalog zone (catalog.ts), whose NOTIFY races this one. Their refusal (NOTAUTH, REFUSED,
   * signed or not) is expected then, and said at debug level; the retries go on. Refused to the
   * last, it is warned of with its likely cause: the secondary has not taken the zone from the
   * catalog (a secondary that does not consume the catalog refuses every zone new to it).
   */
  viaCatalog?: boolean;
}

interface Pending {
  target: NotifyTarget;
  zone: string;
  viaCatalog: boolean;
  id: number;
  /** The request's MAC, to check the signed answer. */
  mac: Uint8Array;
  timer: ReturnType<typeof setTimeout> | null;
  attempt: number;
  packet: Uint8Array;
  /** Error answers that did not end the retries (said once per NOTIFY: anyone can send one unsigned). */
  refusals: number;
  /** The last one's rcode. */
  refusedWith: number;
  /** One carried a TSIG error: the secondary does not take our key (warned of apart from the zone's being new). */
  keyRefused: boolean;
}

export interface NotifierOptions {
  log: Logger;
  tsigKey: (name: Name) => TsigKey | null;
  now: () => number;
  /** Retry delays (tests shorten them). */
  retryDelaysMs?: number[];
  /** The address NOTIFY leaves from, per family (see notifySources); absent: the system picks one. */
  sources?: NotifySources;
}

/**
 * The local address NOTIFY is sent from, per family: `local` to a loopback secondary, `routable`
 * to any other (a socket on a loopback or link-local address cannot reach it).
 */
export type NotifySources = { 4?: { local?: string; routable?: string }; 6?: { local?: string; routable?: string } };

/**
 * NOTIFY leaves from the address of the first UDP listener of the target's family when that
 * listener is on one address: a secondary takes NOTIFY only from the primary it transfers from
 * (Knot's remote and ACL, BIND's masters and allow-notify), and the address the system would
 * pick (127.0.0.1 for a listener on 127.0.0.2, the interface's first address on a host with
 * several) is not it. A listener on every address (0.0.0.0, ::) or on a host name says nothing:
 * the system picks, as before. A secondary off this host is sent NOTIFY from the first listener
 * that can reach it — not on loopback or link-local (found in review: with udp = ["127.0.0.1:53",
 * "192.0.2.2:53"], every NOTIFY to a remote secondary failed, EINVAL) — or, with none, from
 * what the system picks.
 */
export function notifySources(listeners: ReadonlyArray<{ address: string }>): NotifySources {
  const sources: NotifySources = {};
  for (const { address } of listeners) {
    const parsed = parseIp(address);
    if (parsed === null) continue;
    const ip = unmapIpv4(parsed);
    if (ip.bytes.every((octet) => octet === 0)) continue;
    const family = (sources[ip.family] ??= {});
    family.local ??= formatIp(ip);
    if (!isLoopback(ip) && !isLinkLocal(ip)) family.routable ??= formatIp(ip);
  }
  return sources;
}

/** fe80::/10 and 169.254.0.0/16: an address that needs its interface named to be used. */
function isLinkLocal(ip: ReturnType<typeof parseIp> & {}): boolean {
  return ip.family === 4 ? ip.bytes[0] === 169 && ip.bytes[1] === 254 : ip.bytes[0] === 0xfe && (ip.bytes[1]! & 0xc0) === 0x80;
}

export class Notifier {
  /** By the source address they are bound to. */
  private sockets = new Map<string, Promise<import("bun").udp.Socket<"uint8array">>>();
  /** By `zone target`: at most one NOTIFY in flight per zone and secondary. */
  private readonly pending = new Map<string, Pending>();
  private stopped = false;

  constructor(private readonly options: NotifierOptions) {}

  /** Tells every target that `zone` changed (its current SOA goes in the answer section, as section 3.7 allows). */
  notify(zone: Zone, targets: NotifyTarget[], options: NotifyOptions = {}): void {
    if (this.stopped) return;
    const soa = zone.soa();
    for (const target of targets) {
      const slot = `${zoneText(zone.origin)} ${target.address} ${target.port}`;
      // A change right after the zone came (a record set once it is made) replaces a NOTIFY the
      // secondary has not taken yet: it may still not know the zone.
      const viaCatalog = options.viaCatalog === true || this.pending.get(slot)?.viaCatalog === true;
      this.cancel(slot);
      const key = this.options.tsigKey(target.keyName);
      if (key === null) {
        // Sealed, or the key went away: a secondary would refuse an unsigned NOTIFY anyway.
        this.options.log.warn("dns notify not sent: its TSIG key is not available (sealed?)", { zone: zoneText(zone.origin), secondary: target.secondary });
        continue;
      }
      const id = crypto.getRandomValues(new Uint16Array(1))[0]!;
      const unsigned = encodeResponse(
        {
          id,
          opcode: Opcode.NOTIFY,
          rcode: 0,
          aa: true,
          tc: false,
          rd: false,
          ra: false,
          question: { name: zone.origin, type: RRType.SOA, class: CLASS_IN },
          answer: [{ name: soa.name, type: RRType.SOA, class: CLASS_IN, ttl: soa.ttl, rdata: soa.rdata }],
          authority: [],
          additional: [],
          edns: null,
        },
        512,
      );
      // encodeResponse writes a response; a NOTIFY is a request: clear QR.
      unsigned[2]! &= 0x7f;
      const signed = sign(unsigned, key, { kind: "request" }, this.options.now());
      const entry: Pending = { target, zone: zoneText(zone.origin), viaCatalog, id, mac: signed.mac, timer: null, attempt: 0, packet: signed.message, refusals: 0, refusedWith: 0, keyRefused: false };
      this.pending.set(slot, entry);
      void this.send(slot, entry);
    }
  }

  private async send(slot: string, entry: Pending): Promise<void> {
    if (this.stopped || this.pending.get(slot) !== entry) return;
    try {
      const socket = await this.socket(this.source(entry.target.address));
      socket.send(entry.packet, entry.target.port, entry.target.address);
    } catch (e) {
      this.options.log.warn("dns notify could not be sent", { zone: entry.zone, secondary: entry.target.secondary, error: e instanceof Error ? e.message : String(e) });
    }
    const delays = this.options.retryDelaysMs ?? RETRY_DELAYS_MS;
    const delay = delays[entry.attempt];
    entry.attempt++;
    if (delay === undefined) {
      entry.timer = setTimeout(() => {
        if (this.pending.get(slot) !== entry) return;
        this.pending.delete(slot);
        this.gaveUp(entry);
      }, delays.at(-1) ?? 1000);
      return;
    }
    entry.timer = setTimeout(() => void this.send(slot, entry), delay);
  }

  private socket(source: string) {
    let socket = this.sockets.get(source);
    if (!socket) {
      socket = this.bind(source);
      this.sockets.set(source, socket);
    }
    return socket;
  }

  /** Where NOTIFY to `target` leaves from (see notifySources), as said in warnings too. */
  private source(target: string): string {
    const family = familyOf(target);
    const ip = parseIp(target);
    const sources = this.options.sources?.[family];
    const chosen = ip !== null && isLoopback(ip) ? sources?.local : sources?.routable;
    return chosen ?? (family === 4 ? "0.0.0.0" : "::");
  }

  /**
   * A socket of `family`, bound to its source address (any port). One that cannot bind (no IPv6 on this host) is
   * forgotten, not kept: the next send tries again, and stop has nothing to close.
   */
  private bind(source: string) {
    const socket = Bun.udpSocket({
      hostname: source,
      binaryType: "uint8array",
      socket: {
        data: (_s, data, port, address) => this.answered(data, port, address),
        // Bun hands ICMP errors (a secondary not listening: ECONNREFUSED) to this handler; without
        // it they were thrown and ended the whole process. The retries already cover a lost NOTIFY.
        error: (_s, error: Error | undefined) => this.options.log.debug("dns notify socket error", { error: String(error?.message ?? error) }),
      },
    });
    socket.catch(() => {
      if (this.sockets.get(source) === socket) this.sockets.delete(source);
    });
    return socket;
  }

  /**
   * An answer to one of our NOTIFYs: it ends the retries when it matches and its TSIG verifies,
   * with a warning when it is an error. An error answer without a valid TSIG is how a secondary
   * that does not take our key answers (RFC 8945 section 5.3.2): it is said, but the retries go
   * on, since anyone could have sent it.
   */
  private answered(data: Uint8Array, port: number, address: string): void {
    try {
      const message = decodeMessage(data);
      if (!message.qr || message.opcode !== Opcode.NOTIFY) return;
      for (const [slot, entry] of this.pending) {
        if (entry.id !== message.id || entry.target.port !== port || !sameAddress(entry.target.address, address)) continue;
        // The key is asked for again rather than kept: a newer view of the keys, or sealing,
        // overwrites what was decrypted (an answer that cannot be checked now is ignored).
        const key = this.options.tsigKey(entry.target.keyName);
        if (key === null) return;
        const tsigStart = decodeQuery(data).tsigStart;
        const tsig = tsigStart < 0 ? null : readTsig(data, tsigStart);
        const byName = (n: Name) => (nameEquals(n, key.name) ? key : null);
        if (tsig === null || verify(data, tsig, byName, { kind: "response", requestMac: entry.mac }, this.options.now()).error !== 0) {
          if (message.rcode !== Rcode.NOERROR) this.rejected(entry, message.rcode, tsig);
          return;
        }
        // A consumer of the catalog that does not serve the zone yet, saying so signed (BIND
        // signs its refusals): it will once it has taken the zone from the catalog. Sent again.
        if (entry.viaCatalog && (message.rcode === RCODE_NOTAUTH || message.rcode === Rcode.REFUSED)) {
          if (entry.refusals === 0) this.options.log.debug("dns notify refused: the secondary does not serve the zone yet (it learns of it from the catalog zone); sent again", { zone: entry.zone, secondary: entry.target.secondary, rcode: rcodeName(message.rcode) });
          entry.refusals++;
          entry.refusedWith = message.rcode;
          return;
        }
        if (entry.timer) clearTimeout(entry.timer);
        this.pending.delete(slot);
        const fields = { zone: entry.zone, secondary: entry.target.secondary, rcode: rcodeName(message.rcode) };
        if (message.rcode === Rcode.NOERROR) this.options.log.info("dns notify answered", fields);
        else this.options.log.warn("dns notify answered with an error; the secondary will see the change at its next SOA refresh (does it serve the zone, and take NOTIFY from us?)", fields);
        return;
      }
    } catch {
      // Not a message we sent anything for: ignore it.
    }
  }

  /**
   * An error answer without a valid signature. With a TSIG error (BADKEY, BADSIG) the secondary
   * did not take our key — or, as Knot answers a NOTIFY from an address its ACL does not name,
   * our source address. Without one (NOTAUTH, REFUSED), it does not serve the zone or refused us.
   */
  private rejected(entry: Pending, rcode: number, tsig: TsigRecord | null): void {
    // Said once per NOTIFY, and once more should a refusal of our key follow one of the zone.
    const keyError = tsig !== null && tsig.error !== 0;
    const first = entry.refusals === 0 || (keyError && !entry.keyRefused);
    entry.refusals++;
    entry.refusedWith = rcode;
    entry.keyRefused ||= keyError;
    if (!first) return;
    const fields = {
      zone: entry.zone,
      secondary: entry.target.secondary,
      rcode: rcodeName(rcode),
      tsig_error: tsig === null ? null : tsigErrorName(tsig.error),
      source: this.source(entry.target.address),
    };
    if (entry.viaCatalog && !keyError) {
      // Knot answers NOTAUTH for a zone it has not taken from the catalog yet.
      this.options.log.debug("dns notify rejected: the secondary does not serve the zone yet (it learns of it from the catalog zone); sent again", fields);
    } else if (keyError) {
      this.options.log.warn(
        "dns notify rejected without a valid signature: the secondary does not take our TSIG, or NOTIFY from our source address (check the key's name, algorithm and secret on both sides, and that the secondary allows the source)",
        fields,
      );
    } else {
      this.options.log.warn("dns notify rejected without a valid signature: the secondary does not serve this zone or refused us (is the zone configured there, and does it allow NOTIFY from our source address?)", fields);
    }
  }

  /**
   * The retries ran out. Not answered at all: lost, or nothing listens. Refused (the secondary
   * did answer, so never "not answered"): a zone new to a catalog consumer that is still refused
   * means it has not taken the zone from the catalog — a secondary that does not consume the
   * catalog at all refuses every new zone so (found in review: said at debug level only, then
   * "not answered"); any other refusal was warned of when it came.
   */
  private gaveUp(entry: Pending): void {
    const fields = { zone: entry.zone, secondary: entry.target.secondary, attempts: entry.attempt };
    if (entry.refusals === 0) {
      this.options.log.warn("dns notify not answered; the secondary will see the change at its next SOA refresh", fields);
      return;
    }
    const refused = { ...fields, refusals: entry.refusals, rcode: rcodeName(entry.refusedWith), source: this.source(entry.target.address) };
    if (entry.viaCatalog && !entry.keyRefused) {
      this.options.log.warn(
        "dns notify refused until the retries ran out: the secondary does not serve this zone, new to it; has it taken the zone from the catalog zone? (is it configured as a consumer of the catalog, and do the member template's primary and ACL name us?)",
        refused,
      );
    } else {
      this.options.log.warn("dns notify given up: the secondary refused it (warned of above); it will see the change at its next SOA refresh, if it serves the zone", refused);
    }
  }

  private cancel(slot: string): void {
    const entry = this.pending.get(slot);
    if (entry?.timer) clearTimeout(entry.timer);
    this.pending.delete(slot);
  }

  /** Pending NOTIFYs (for tests and status). */
  get inFlight(): number {
    return this.pending.size;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const slot of [...this.pending.keys()]) this.cancel(slot);
    const sockets = [...this.sockets.values()];
    this.sockets.clear();
    // Each is closed whatever became of the others (a failed bind was logged by the send that needed it).
    await Promise.allSettled(sockets.map(async (socket) => (await socket).close()));
  }
}

const RCODE_NAMES = new Map<number, string>([...Object.entries(Rcode).map(([name, code]) => [code, name] as const), [RCODE_NOTAUTH, "NOTAUTH"]]);
const rcodeName = (rcode: number) => RCODE_NAMES.get(rcode) ?? String(rcode);
const TSIG_ERROR_NAMES = new Map<number, string>(Object.entries(TsigError).map(([name, code]) => [code, name]));
const tsigErrorName = (error: number) => TSIG_ERROR_NAMES.get(error) ?? String(error);
const zoneText = (origin: Name) => nameToText(origin).toLowerCase();
const familyOf = (address: string): 4 | 6 => (address.includes(":") ? 6 : 4);
const sameAddress = (a: string, b: string) => a.toLowerCase() === b.toLowerCase().replace(/^::ffff:/, "");
