/**
 * Split horizon: names the authoritative server tells only some clients — a record provider's
 * that has `mayAsk` (the mesh's node names). Anyone else is answered REFUSED for every name at
 * or below the provider's domain, as by BIND's allow-query on a zone; the rest of a hosted
 * zone that holds the domain is answered to everyone, without what it would have carried along
 * from below the domain (a CNAME's target, the addresses of an MX's): see `withoutHidden`.
 *
 * The configured secondaries are told too: they are sent every name in zone transfers anyway,
 * and ask for the zone's SOA before each one.
 */
import type { RecordProvider } from "../../src/record-providers.ts";
import { isSubdomain, parseName, type Name } from "./names.ts";
import type { Answer, RR } from "./zone.ts";

/** What the answer path asks (server.ts): is a name one some clients are not told, and is this client one of them? */
export interface Horizon {
  /** `name` lies at or below a domain whose names only some clients are told. */
  restricts(name: Name): boolean;
  /** `client` may not be told `name`. */
  hides(client: string, name: Name): boolean;
}

interface Restricted {
  domain: Name;
  mayAsk: (client: string) => boolean;
}

/** The record providers' horizon: `update` after every change of the providers. */
export class ProviderHorizon implements Horizon {
  private restricted: Restricted[] = [];

  /** `secondary`: is the client a configured secondary's address? */
  constructor(private readonly secondary: (client: string) => boolean) {}

  update(providers: readonly RecordProvider[]): void {
    this.restricted = providers.flatMap((provider) => {
      const domain = domainOf(provider);
      return provider.mayAsk && domain ? [{ domain, mayAsk: provider.mayAsk.bind(provider) }] : [];
    });
  }

  restricts(name: Name): boolean {
    for (const r of this.restricted) if (isSubdomain(name, r.domain)) return true;
    return false;
  }

  hides(client: string, name: Name): boolean {
    for (const r of this.restricted) {
      if (isSubdomain(name, r.domain) && !r.mayAsk(client) && !this.secondary(client)) return true;
    }
    return false;
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

/** Does the answer carry a record at or below a restricted name (a question outside one)? */
export function touchesRestricted(answer: Answer, horizon: Horizon): boolean {
  const restricted = (rr: RR) => horizon.restricts(rr.name);
  return answer.answer.some(restricted) || answer.authority.some(restricted) || answer.additional.some(restricted);
}

/**
 * `answer` as `client` may be told it: a CNAME chain stops where it enters a name hidden from
 * the client, as where it leaves the zone (NOERROR, the CNAME alone: the client asks for the
 * target and is refused), and the addresses of hidden names are not added.
 */
export function withoutHidden(answer: Answer, client: string, horizon: Horizon): Answer {
  const hidden = (rr: RR) => horizon.hides(client, rr.name);
  const visible = (rr: RR) => !hidden(rr);
  const cut = answer.answer.findIndex(hidden);
  if (cut < 0) return { ...answer, authority: answer.authority.filter(visible), additional: answer.additional.filter(visible) };
  // The negative SOA of an NXDOMAIN or NODATA at the end of the chain would say what is not there.
  return { ...answer, rcode: 0, answer: answer.answer.slice(0, cut), authority: [], additional: answer.additional.filter(visible) };
}
