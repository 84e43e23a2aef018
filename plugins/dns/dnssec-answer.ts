/**
 * The DNSSEC records of an answer from a signed zone (RFC 4035 section 3.1), added to what
 * Zone.lookup found: the RRSIGs of every RRset in the answer and authority sections (and of an
 * authoritative one in additional), the NSEC or NSEC3 records that prove a name or type absent,
 * that no closer name matched a wildcard expansion, and at a referral the DS with its RRSIG, or
 * the NSEC or NSEC3 of the cut proving there is none.
 *
 * With NSEC (RFC 4035 section 3.1.3) — NXDOMAIN: the NSEC covering the name and the one covering
 * the wildcard at its closest encloser; NODATA: the name's own, or the wildcard's and the one
 * covering the name when the answer came from a wildcard; a wildcard expansion: the one
 * covering the name. With NSEC3 (RFC 5155 section 7.2) the closest encloser proof — the NSEC3
 * matching the closest encloser and the one covering the next closer name — stands for "the
 * NSEC covering the name": NXDOMAIN is that proof and the NSEC3 covering the wildcard; NODATA the
 * name's NSEC3 (an empty non-terminal has one, a delegation's DS too); NODATA from a wildcard is
 * that proof and the wildcard's NSEC3; a wildcard expansion carries the NSEC3 covering the next
 * closer name (the RRSIG's labels field says which the closest encloser is). Each NSEC or NSEC3
 * goes once into a reply.
 *
 * Without the DO bit nothing is added, and what the zone holds of them is given only when asked
 * for by type (RFC 4035 section 3.2.1): an ANY answer loses its NSEC.
 */
import { nameEquals, nameFromWire, type Name } from "./names.ts";
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
  // A wildcard expansion proves that no closer name matched (RFC 4035 section 3.1.3.3, RFC 5155 section 7.2.6).
  for (const owner of synthesized) noCloserMatch(owner, signatures, proofs);
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

/**
 * The NSEC or NSEC3 records a negative answer or a referral needs, each once, with their RRSIGs.
 * A chain gives out the one record object it holds for an owner, so sameness is identity (no
 * name rendered to compare).
 */
class Proofs {
  private readonly chosen = new Set<RR>();
  constructor(private readonly signatures: ZoneSignatures) {}

  add(record: RR | null): void {
    if (record !== null) this.chosen.add(record);
  }

  records(): RR[] {
    return [...this.chosen].flatMap((r) => [r, ...this.signatures.rrsigs(r.name, r.type)]);
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

/**
 * A referral: the DS RRset and its RRSIG, or the cut's NSEC or NSEC3 showing it has none (an
 * unsigned delegation; RFC 5155 section 7.2.7: there is no opt-out, so the cut has its NSEC3).
 */
function referralProof(cut: Name, signatures: ZoneSignatures, into: RR[], proofs: Proofs): void {
  const ds = signatures.ds(cut);
  if (ds.length > 0) {
    into.push(...ds, ...signatures.rrsigs(cut, RRType.DS));
    return;
  }
  proofs.add(signatures.chain.matching(cut));
}

/**
 * That `name`, which does not exist, is not in the zone: the NSEC covering it; with NSEC3 the
 * closest encloser proof (RFC 5155 section 7.2.1): the NSEC3 matching `encloser` and the one
 * covering the next closer name, the ancestor of `name` one label below it.
 */
function absent(name: Name, encloser: Name, signatures: ZoneSignatures, proofs: Proofs): void {
  const chain = signatures.chain;
  if (chain.mode === "nsec") {
    proofs.add(chain.covering(name));
    return;
  }
  proofs.add(chain.matching(encloser));
  proofs.add(chain.covering(name.slice(name.length - encloser.length - 1)));
}

/** NXDOMAIN: the name proven absent (`absent`), and the wildcard at its closest encloser too. */
function nxdomainProof(name: Name, signatures: ZoneSignatures, proofs: Proofs): void {
  const encloser = signatures.closestEncloser(name);
  absent(name, encloser, signatures, proofs);
  proofs.add(signatures.chain.covering([WILDCARD, ...encloser]));
}

/**
 * NODATA: the name's NSEC or NSEC3 (an empty non-terminal owns no NSEC: the one covering it);
 * from a wildcard, the name proven absent (`absent`) and the wildcard's NSEC or NSEC3.
 */
function nodataProof(name: Name, signatures: ZoneSignatures, proofs: Proofs): void {
  const chain = signatures.chain;
  if (signatures.exists(name)) {
    proofs.add(chain.matching(name) ?? chain.covering(name));
    return;
  }
  const encloser = signatures.closestEncloser(name);
  const wildcard = [WILDCARD, ...encloser];
  absent(name, encloser, signatures, proofs);
  proofs.add(chain.matching(wildcard) ?? chain.covering(wildcard));
}

/**
 * A wildcard expansion to `name`: no closer name matched. The NSEC covering the name; the
 * NSEC3 covering the next closer name (RFC 5155 section 7.2.6: the closest encloser, the
 * wildcard's parent, is implied by the RRSIG's labels field, so its NSEC3 is not needed).
 */
function noCloserMatch(name: Name, signatures: ZoneSignatures, proofs: Proofs): void {
  const chain = signatures.chain;
  if (chain.mode === "nsec") {
    proofs.add(chain.covering(name));
    return;
  }
  const encloser = signatures.closestEncloser(name);
  proofs.add(chain.covering(name.slice(name.length - encloser.length - 1)));
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
