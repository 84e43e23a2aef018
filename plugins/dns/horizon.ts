/**
 * Split horizon: names the authoritative server tells only some clients — a record provider's
 * that has `mayAsk` (the mesh's node names), asked per client and name (a mesh network's client
 * is told its own network's names, not another's). A client is answered REFUSED for a name at
 * or below the provider's domain that it is not told, as by BIND's allow-query on a zone; the
 * rest of a hosted zone that holds the domain is answered to everyone, without what it would
 * have carried along from below the domain that the client is not told (a CNAME chain past a
 * hidden target, the addresses of an MX's): see `withoutHidden`. For a question at or below the
 * domain the question's name decides, for the whole answer and for the cache (server.ts): a
 * provider's records at one name must not name another name some client is not told (the
 * mesh's are A and AAAA records).
 *
 * A configured secondary is told the names of a zone the transfer policy lets it transfer (it
 * is sent them in the transfer anyway, and asks for the zone's SOA before each one), when it
 * asks as a transfer must: from its address, signed with its TSIG key. Its address alone is
 * not enough: over UDP it can be spoofed, and a secondary of other zones has no claim to them.
 */
import type { RecordProvider } from "../../src/record-providers.ts";
import { isSubdomain, lowerName, nameFromWire, nameToText, parseName, type Name } from "./names.ts";
import { RRType } from "./rdata.ts";
import type { Answer, RR } from "./zone.ts";

/** What the answer path asks (server.ts): is a name one some clients are not told, and is this client one of them? */
export interface Horizon {
  /** `name` lies at or below a domain whose names only some clients are told. */
  restricts(name: Name): boolean;
  /** `client`, asking with the TSIG key `key` (null: unsigned), may not be told `name`. */
  hides(client: string, name: Name, key: Name | null): boolean;
  /**
   * The view `client`, asking with the TSIG key `key`, has of the zone at `origin` (view-serials.ts):
   * undefined when no restricted name lies in it (everyone is told its serial), null when the
   * client is told every name of it (loopback, `[mesh] dns_clients`, a secondary that may transfer
   * it: its serial too), else the key of the names it is told.
   */
  viewOf?(client: string, origin: Name, key: Name | null): string | null | undefined;
  /** Moves whenever what `restricts` answers may have changed (the providers changed). */
  readonly generation: number;
}

interface Restricted {
  name: string;
  domain: Name;
  mayAsk: (client: string, name: string) => boolean;
  viewOf: ((client: string) => string | null) | null;
}

/** The record providers' horizon: `update` after every change of the providers. */
export class ProviderHorizon implements Horizon {
  private restricted: Restricted[] = [];
  generation = 0;

  /** `transfers`: may `client`, signing with `key`, transfer the zone that holds `name`? */
  constructor(private readonly transfers: (client: string, name: Name, key: Name | null) => boolean) {}

  update(providers: readonly RecordProvider[]): void {
    this.generation++;
    this.restricted = providers.flatMap((provider) => {
      const domain = domainOf(provider);
      return provider.mayAsk && domain ? [{ name: provider.name, domain, mayAsk: provider.mayAsk.bind(provider), viewOf: provider.viewOf?.bind(provider) ?? null }] : [];
    });
  }

  restricts(name: Name): boolean {
    for (const r of this.restricted) if (isSubdomain(name, r.domain)) return true;
    return false;
  }

  hides(client: string, name: Name, key: Name | null): boolean {
    for (const r of this.restricted) {
      if (isSubdomain(name, r.domain) && !r.mayAsk(client, nameToText(lowerName(name))) && !this.transfers(client, name, key)) return true;
    }
    return false;
  }

  viewOf(client: string, origin: Name, key: Name | null): string | null | undefined {
    let view: string | undefined;
    let told = true;
    for (const r of this.restricted) {
      if (!isSubdomain(r.domain, origin)) continue;
      if (view === undefined && this.transfers(client, origin, key)) return null;
      // A provider that does not say which clients share a view: the zone's serial to everyone
      // (a view per client would be a stored row per stranger's address).
      if (r.viewOf === null) return null;
      const part = r.viewOf(client);
      if (part !== null) told = false;
      view = `${view ?? ""}${r.name}: ${part ?? "*"}\n`;
    }
    return view === undefined ? undefined : told ? null : view;
  }
}

/** A provider's domain as a name; null when it is none (its names are not served then either). */
function domainOf(provider: RecordProvider): Name | null {
  try {
    return parseName(provider.domain, null);
  } catch {
    return null;
  }
}

/** Does the answer carry a record at or below a restricted name, or a CNAME into one (a question outside them)? */
export function touchesRestricted(answer: Answer, horizon: Horizon): boolean {
  const restricted = (rr: RR) => horizon.restricts(rr.name) || (rr.type === RRType.CNAME && horizon.restricts(cnameTarget(rr)));
  return answer.answer.some(restricted) || answer.authority.some(restricted) || answer.additional.some(restricted);
}

/**
 * `answer` as `client` may be told it: a CNAME chain stops at the first CNAME whose target is
 * hidden from the client, as where it leaves the zone (NOERROR, the chain up to that CNAME, no
 * authority or additional section: the client asks for the target and is refused), and the
 * addresses of hidden names are not added. Cut at the target, not at the target's records: a
 * target that is not there ends the chain in NXDOMAIN and a negative SOA, so a CNAME to a
 * guessed name (any zone editor can add one) would otherwise tell a stranger whether it exists.
 */
export function withoutHidden(answer: Answer, client: string, key: Name | null, horizon: Horizon): Answer {
  const visible = (rr: RR) => !horizon.hides(client, rr.name, key);
  const cut = answer.answer.findIndex((rr) => rr.type === RRType.CNAME && horizon.hides(client, cnameTarget(rr), key));
  if (cut < 0) return { ...answer, authority: answer.authority.filter(visible), additional: answer.additional.filter(visible) };
  // Whatever follows the cut (the target's records or its negative SOA, their additional
  // addresses) is what the target is.
  return { ...answer, rcode: 0, answer: answer.answer.slice(0, cut + 1), authority: [], additional: [] };
}

/** A CNAME's target (record data is one uncompressed name). */
function cnameTarget(rr: RR): Name {
  return nameFromWire(rr.rdata, 0).name;
}
