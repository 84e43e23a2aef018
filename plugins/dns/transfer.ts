/**
 * Zone transfers out (AXFR, RFC 5936; IXFR, RFC 1995) — how a standard secondary (NSD, Knot,
 * BIND, PowerDNS) gets a copy of a zone — and the messages they are built from.
 *
 * IXFR is answered without a journal: a secondary that is current gets the single SOA that says
 * so; one that is behind gets the whole zone in AXFR form, which RFC 1995 section 4 allows
 * ("If incremental zone transfer is not available, the entire zone is returned"). Over UDP an
 * IXFR gets the SOA only, which tells a secondary that is behind to come back over TCP.
 */
import { decodeMessage, encodeResponse, FormatError, type Query, type ResourceRecord } from "./message.ts";
import { nameFromWire, wireLength, type Name } from "./names.ts";
import { RRType } from "./rdata.ts";
import type { RR, Zone } from "./zone.ts";
import { signaturesOf } from "./dnssec.ts";

/** Records per transfer message are cut at about this many octets (uncompressed), well below 64 KiB. */
const MESSAGE_BUDGET = 16_000;
const CLASS_IN = 1;
export const TYPE_IXFR = 251;
export const TYPE_AXFR = 252;
/** Our EDNS payload size, advertised in the OPT of each message (as in server.ts). */
const EDNS_PAYLOAD_SIZE = 1232;

/** Who may transfer a zone: the listener asks before sending anything. */
export interface TransferPolicy {
  /** True when `client` (an address) signed with `keyName` (null: unsigned) may transfer `zone`. */
  allowed(client: string, zone: Name, keyName: Name | null): boolean;
}

/** Nobody may transfer: the default until secondaries are configured. */
export const noTransfers: TransferPolicy = { allowed: () => false };

const toRecord = (rr: RR): ResourceRecord => ({ name: rr.name, type: rr.type, class: CLASS_IN, ttl: rr.ttl, rdata: rr.rdata });

/** The serial in an SOA's RDATA (uncompressed): after MNAME and RNAME. */
export function soaSerial(rdata: Uint8Array): number {
  const rname = nameFromWire(rdata, nameFromWire(rdata, 0).next);
  return new DataView(rdata.buffer, rdata.byteOffset + rname.next, 4).getUint32(0);
}

/** The serial an IXFR query says the secondary has (its authority-section SOA), or null when it gives none readable. */
export function ixfrClientSerial(packet: Uint8Array): number | null {
  try {
    const soa = decodeMessage(packet).authority.find((r) => r.type === RRType.SOA);
    return soa ? soaSerial(soa.rdata) : null;
  } catch (error) {
    if (error instanceof FormatError) return null; // unreadable records: no SOA to go by
    throw error;
  }
}

/** RFC 1982: a is behind b. */
const serialBehind = (a: number, b: number) => a !== b && ((b - a) >>> 0) < 0x80000000;

/**
 * The unsigned messages answering an AXFR or IXFR for `zone` (already allowed): the SOA, every
 * record, the SOA again — or the SOA alone for an IXFR from a secondary that is not behind, and
 * for any IXFR over UDP. `room` is what each message may use (TSIG space already taken off).
 */
export function transferMessages(query: Query, packet: Uint8Array, zone: Zone, transport: "udp" | "tcp", room: number): Uint8Array[] {
  const soa = zone.soa();
  if (query.question!.type === TYPE_IXFR) {
    const theirs = ixfrClientSerial(packet);
    if (transport === "udp" || theirs === null || !serialBehind(theirs, soaSerial(soa.rdata))) {
      return [message(query, [soa], room)];
    }
  }
  // A signed zone's RRSIGs, and its NSEC3 chain, are kept beside its RRsets (dnssec.ts): a secondary serves them too.
  const all = [...zone.records(), ...(signaturesOf(zone)?.transferRecords() ?? []), soa];
  const messages: Uint8Array[] = [];
  let chunk: RR[] = [];
  let size = 0;
  for (const rr of all) {
    const length = wireLength(rr.name) + 10 + rr.rdata.length;
    if (chunk.length > 0 && size + length > MESSAGE_BUDGET) {
      messages.push(message(query, chunk, room));
      chunk = [];
      size = 0;
    }
    chunk.push(rr);
    size += length;
  }
  messages.push(message(query, chunk, room));
  return messages;
}

function message(query: Query, records: RR[], room: number): Uint8Array {
  const response = {
    id: query.id,
    opcode: query.opcode,
    rcode: 0,
    aa: true,
    tc: false,
    rd: query.rd,
    ra: false as const,
    question: query.question,
    answer: records.map(toRecord),
    authority: [],
    additional: [],
    edns: query.edns ? { udpPayloadSize: EDNS_PAYLOAD_SIZE, dnssecOk: query.edns.dnssecOk } : null,
    ...(query.rawQname ? { qnameWire: query.rawQname } : {}),
  };
  return encodeResponse(response, room);
}
