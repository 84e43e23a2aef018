/**
 * Record providers: how a plugin other than dns (the mesh, for its node names) has names served
 * by the authoritative DNS server without importing the dns plugin. The provider owns a domain
 * — every name at or below it — and hands over its records in presentation form; the dns plugin
 * serves them inside the hosted zone that contains the domain (replacing what the zone holds
 * below it), or as a zone of its own when no hosted zone does.
 *
 * A provider may keep its names to some clients (`mayAsk`: split horizon), each client to some
 * of them: the DNS server then answers REFUSED for a name at or below its domain to a client
 * the provider does not tell that name.
 *
 * The registry holds no DNS logic: it is the meeting point on the kernel, like the identity slot.
 */

/** One record in presentation form: `{ name: "db1.mesh.example.org.", type: "AAAA", ttl: 60, data: "fd00::1" }`. */
export interface ProvidedRecord {
  /** Absolute owner name, at or below the provider's domain. */
  name: string;
  type: string;
  ttl: number;
  data: string;
}

export interface RecordProvider {
  /** Who provides (the plugin's name), for logs and status. */
  name: string;
  /** The domain it owns, absolute ("mesh.example.org."). */
  domain: string;
  /** The records now; called again after every `changed()`. Must not throw. */
  records(): ProvidedRecord[];
  /**
   * Whether `client` (an IP address as the listener saw it) may be told `name`, a name at or
   * below the domain in lower-case text form, absolute and escaped as in a zone file
   * ("db1.prod.mesh.example.org."; "a\.b.mesh.example.org." has the one label "a.b" below the
   * domain); absent: every name to everyone. Asked on the DNS server's answer path: it must be
   * cheap and must not throw.
   */
  mayAsk?(client: string, name: string): boolean;
  /**
   * The view `client` has of the domain, for a provider with `mayAsk`: null for a client told
   * every name; else `key`, which clients told the same names share (the mesh: the ids of the
   * networks whose names it is told, "" for none), and `domains`, the names (each one label below
   * the provider's domain, lower-case, absolute: "prod.mesh.internal.") at or below which it is
   * told every name and outside which none. In the provider's own zone (none hosted holds the
   * domain) the DNS server keeps a serial per view (plugins/dns/view-serials.ts), which moves only
   * when what that view is told changes: the zone's one serial, which moves with every change of
   * every name, would tell a client the pace of changes it is not told of. Absent: every client is
   * told the zone's serial. Asked on the answer path (once per client and change): cheap, and must
   * not throw.
   */
  viewOf?(client: string): ProviderView | null;
  /** With `viewOf`: the keys of the views clients may have now ("" included); the serials of the others are dropped. */
  views?(): ReadonlySet<string>;
}

/** A view of a provider's names (RecordProvider.viewOf). */
export interface ProviderView {
  readonly key: string;
  readonly domains: readonly string[];
}

export class RecordProviders {
  private readonly providers = new Map<string, RecordProvider>();
  private readonly listeners = new Set<(provider: string) => void>();

  /** Registers `provider` (replacing one of the same name); returns the function that removes it. */
  register(provider: RecordProvider): () => void {
    this.providers.set(provider.name, provider);
    this.changed(provider.name);
    return () => {
      if (this.providers.get(provider.name) !== provider) return;
      this.providers.delete(provider.name);
      this.changed(provider.name);
    };
  }

  list(): RecordProvider[] {
    return [...this.providers.values()];
  }

  /** A provider's records changed: whoever serves them reloads. */
  changed(provider: string): void {
    for (const listener of this.listeners) listener(provider);
  }

  onChange(listener: (provider: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
