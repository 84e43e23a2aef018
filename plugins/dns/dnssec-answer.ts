/**
 * The DNSSEC records of an answer from a signed zone (RFC 4035 section 3.1), added to what
 * Zone.lookup found: the RRSIGs of every RRset in the answer and authority sections (and of an
 * authoritative one in additional), the NSEC records that prove a name or type absent
 * (NXDOMAIN: the one covering the name and the one covering the wildcard at its closest
 * encloser; NODATA: the name's own, or the wildcard's and the one covering the name when the
 * answer came from a wildcard), the NSEC proving no closer match for a wildcard expansion, and
 * at a referral the DS with its RRSIG, or the NSEC proving there is none.
 *
 * Without the DO bit nothing is added, and what the zone holds of them is given only when asked
 * for by type (RFC 4035 section 3.2.1): an ANY answer loses its NSEC.
 */
import { lowerName, nameEquals, nameFromWire, nameToText, type Name } from "./names.ts";
import { RRType } from "./rdata.ts";
import { TYPE_NSEC, TYPE_RRSIG, type ZoneSignatures } from "./dnssec.ts";
import type { Answer, RR } from "./zone.ts";

const ANY = 255;
const WILDCARD = Uint8Array.of(0x2a);
/**
 * A signed zone whose signatures cannot be served (sealed, none stored for its serial). A zone's
 * own lookup never fails, hence the cast: the listener sends the rcode as it is.
 */
const SERVFAIL: Answer = { rcode: 2 as Answer["rcode"], aa: false, answer: [], authority: [], additional: [] };

/** `answer` as a signed zone gives it: with its DNSSEC records for a DO query, without the ones not asked for otherwise. */
export function dnssecAnswer(answer: Answer, qname: Name, qtype: number, signatures: ZoneSignatures, dnssecOk: boolean): Answer {
  if (signatures.unavailable) return SERVFAIL;
  if (qtype === TYPE_RRSIG && (!dnssecOk || hasOwnRrsigs(answer, qname, signatures))) return rrsigAnswer(answer, qname, signatures);
  if (!dnssecOk) return qtype === ANY ? { ...answer, answer: answer.answer.filter((r) => r.type !== TYPE_NSEC) } : answer;
  const out: Answer = { rcode: answer.rcode, aa: answer.aa, answer: [], authority: [], additional: [] };
  const proofs = new Proofs(signatures);
  const synthesized = withSignatures(answer.answer, signatures, out.answer, proofs);
  const negative = answer.authority.some((r) => r.type === RRType.SOA);
  withSignatures(answer.authority, signatures, out.authority, proofs);
  for (const rrset of rrsetsIn(answer.authority)) {
    const first = rrset[0]!;
    if (first.type === RRType.NS && !nameEquals(first.name, signatures.origin)) referralProof(first.name, signatures, out.authority, proofs);
  }
  if (negative) {
    const name = lastName(qname, answer.answer);
    if (answer.rcode === 3) nxdomainProof(name, signatures, proofs);
    else nodataProof(name, signatures, proofs);
  }
  // A wildcard expansion proves that no closer name matched (RFC 4035 section 3.1.3.3).
  for (const owner of synthesized) proofs.add(signatures.covering(owner));
  out.authority.push(...proofs.records());
  withSignatures(answer.additional, signatures, out.additional, null);
  return out;
}

/**
 * A query for RRSIG with DO is answered with the name's signatures only where the zone holds
 * some and answers for the name itself; otherwise — no such name, an empty non-terminal, a
 * delegation point or below — it takes the ordinary path: NXDOMAIN or NODATA with their NSEC
 * proofs, a referral with its DS or NSEC, which a validator can check.
 */
function hasOwnRrsigs(answer: Answer, qname: Name, signatures: ZoneSignatures): boolean {
  const referral = answer.authority.some((r) => r.type === RRType.NS && !nameEquals(r.name, signatures.origin));
  return !referral && signatures.rrsigsAt(qname).length > 0;
}

/** A query for RRSIG: every signature at the name (the zone holds them apart from its RRsets). */
function rrsigAnswer(answer: Answer, qname: Name, signatures: ZoneSignatures): Answer {
  const sigs = signatures.rrsigsAt(qname);
  if (sigs.length === 0) return answer;
  return { rcode: 0, aa: true, answer: sigs.map((r) => ({ ...r, name: qname })), authority: [], additional: [] };
}

/** The NSEC records a negative answer or a referral needs, each once, with their RRSIGs. */
class Proofs {
  private readonly nsecs = new Map<string, RR>();
  constructor(private readonly signatures: ZoneSignatures) {}

  add(nsec: RR): void {
    this.nsecs.set(nameToText(lowerName(nsec.name)), nsec);
  }

  records(): RR[] {
    return [...this.nsecs.values()].flatMap((nsec) => [nsec, ...this.signatures.rrsigs(nsec.name, TYPE_NSEC)]);
  }
}

/**
 * Copies `records` to `into`, each RRset followed by its RRSIGs. An RRset whose owner is not in
 * the zone was made from a wildcard: its RRSIG is the wildcard's, with the name asked for as its
 * owner (the labels field tells a validator so); those owners are returned.
 */
function withSignatures(records: RR[], signatures: ZoneSignatures, into: RR[], proofs: Proofs | null): Name[] {
  const synthesized: Name[] = [];
  for (const rrset of rrsetsIn(records)) {
    const first = rrset[0]!;
    into.push(...rrset);
    if (first.type === TYPE_RRSIG) continue;
    // The RRSIG's TTL is the RRset's as served (a negative answer's SOA has the lesser one).
    const served = (r: RR): RR => (r.ttl === first.ttl ? r : { ...r, ttl: first.ttl });
    if (signatures.exists(first.name) || proofs === null) {
      into.push(...signatures.rrsigs(first.name, first.type).map(served));
      continue;
    }
    const wildcard = [WILDCARD, ...signatures.closestEncloser(first.name)];
    into.push(...signatures.rrsigs(wildcard, first.type).map((r) => ({ ...served(r), name: first.name })));
    synthesized.push(first.name);
  }
  return synthesized;
}

/** A referral: the DS RRset and its RRSIG, or the cut's NSEC showing it has none (an unsigned delegation). */
function referralProof(cut: Name, signatures: ZoneSignatures, into: RR[], proofs: Proofs): void {
  const ds = signatures.ds(cut);
  if (ds.length > 0) {
    into.push(...ds, ...signatures.rrsigs(cut, RRType.DS));
    return;
  }
  const nsec = signatures.nsec(cut);
  if (nsec !== null) proofs.add(nsec);
}

/** NXDOMAIN: the NSEC covering the name, and the one covering the wildcard of its closest encloser. */
function nxdomainProof(name: Name, signatures: ZoneSignatures, proofs: Proofs): void {
  proofs.add(signatures.covering(name));
  const encloser = signatures.closestEncloser(name);
  proofs.add(signatures.covering([WILDCARD, ...encloser]));
}

/**
 * NODATA: the name's NSEC (or, for an empty non-terminal, which owns none, the one covering it);
 * from a wildcard, the wildcard's NSEC and the one proving the name itself absent.
 */
function nodataProof(name: Name, signatures: ZoneSignatures, proofs: Proofs): void {
  if (signatures.exists(name)) {
    proofs.add(signatures.nsec(name) ?? signatures.covering(name));
    return;
  }
  const wildcard = [WILDCARD, ...signatures.closestEncloser(name)];
  proofs.add(signatures.covering(name));
  proofs.add(signatures.nsec(wildcard) ?? signatures.covering(wildcard));
}

/** The name the answer ends at: the question's, or the last CNAME target in the answer. */
function lastName(qname: Name, answer: RR[]): Name {
  let name = qname;
  for (const r of answer) if (r.type === RRType.CNAME && nameEquals(r.name, name)) name = nameFromWire(r.rdata, 0).name;
  return name;
}

/** Consecutive records of one owner and type. */
function rrsetsIn(records: RR[]): RR[][] {
  const sets: RR[][] = [];
  for (const r of records) {
    const last = sets[sets.length - 1];
    if (last && last[0]!.type === r.type && nameEquals(last[0]!.name, r.name)) last.push(r);
    else sets.push([r]);
  }
  return sets;
}
