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
import type { ProviderView, RecordProvider } from "../../src/record-providers.ts";
import { isSubdomain, lowerName, nameEquals, nameFromWire, nameToText, parseName, type Name } from "./names.ts";
import { RRType } from "./rdata.ts";
import type { Answer, RR } from "./zone.ts";

/** What the answer path asks (server.ts): is a name one some clients are not told, and is this client one of them? */
export interface Horizon {
  /** `name` lies at or below a domain whose names only some clients are told. */
  restricts(name: Name): boolean;
  /** `client`, asking with the TSIG key `key` (null: unsigned), may not be told `name`. */
  hides(client: string, name: Name, key: Name | null): boolean;
  /**
   * The views of the zone at `origin` when it is a provider's own zone (none hosted holds the
   * provider's domain) and the provider tells them (view-serials.ts); undefined otherwise: every
   * client is told the zone's serial. A hosted zone that holds a provider's domain has none: its
   * secondaries serve every name and its real serial to anyone.
   */
  views?(origin: Name): ZoneViews | undefined;
  /** Moves whenever what `restricts` answers may have changed (the providers changed). */
  readonly generation: number;
}

/** A provider's own zone's views, as the horizon finds them. */
export interface ZoneViews {
  /** The view of `client` asking with the TSIG key `key` (null: unsigned); null when it is told every name (loopback, `[mesh] dns_clients`, a secondary that may transfer the zone). */
  of(client: string, key: Name | null): ProviderView | null;
  /** The keys of the views clients may have now; null: the provider does not say (none is dropped). */
  live(): ReadonlySet<string> | null;
}

interface Restricted {
  domain: Name;
  mayAsk: (client: string, name: string) => boolean;
  views: ZoneViews | null;
}

/** The record providers' horizon: `update` after every change of the providers. */
export class ProviderHorizon implements Horizon {
  private restricted: Restricted[] = [];
  generation = 0;

  /**
   * `transfers`: may `client`, signing with `key`, transfer the zone that holds `name`?
   * `ownZone`: is the zone at `origin` a provider's own, not a hosted zone (ServedZones.isProviderOwned)?
   */
  constructor(
    private readonly transfers: (client: string, name: Name, key: Name | null) => boolean,
    private readonly ownZone: (origin: Name) => boolean = () => true,
  ) {}

  update(providers: readonly RecordProvider[]): void {
    this.generation++;
    this.restricted = providers.flatMap((provider) => {
      const domain = domainOf(provider);
      return provider.mayAsk && domain ? [{ domain, mayAsk: provider.mayAsk.bind(provider), views: this.viewsOf(provider, domain) }] : [];
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

  views(origin: Name): ZoneViews | undefined {
    if (!this.ownZone(origin)) return undefined;
    for (const r of this.restricted) if (nameEquals(r.domain, origin)) return r.views ?? undefined;
    return undefined;
  }

  /** A provider's views; null when it does not tell them (a view per client would be a stored serial per stranger's address). */
  private viewsOf(provider: RecordProvider, domain: Name): ZoneViews | null {
    const viewOf = provider.viewOf?.bind(provider);
    if (viewOf === undefined) return null;
    const live = provider.views?.bind(provider) ?? (() => null);
    return {
      of: (client, key) => (this.transfers(client, domain, key) ? null : viewOf(client)),
      live,
    };
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
