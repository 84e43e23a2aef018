/**
 * CLI: citadel dns zone list|create|show|delete|import|export|ds, citadel dns zone dnssec
 * show|enable|disable|set, citadel dns zone dnssec rollover start|finish|cancel|submitted, citadel dns set,
 * citadel dns top,
 * and for operators citadel dns tsig list|create|delete, citadel dns secondary
 * list|add|remove and citadel dns catalog. The organization is --org, else the user's only one (as in citadel share).
 */
import { UsageError } from "../../src/cli/command-line.ts";
import { choiceOption, fileOrStdinText, integerOption, needArgs, organizationOf, print, stringOption, table } from "../../src/cli/output.ts";
import type { Command, CommandContext } from "../../src/plugin.ts";
import type { AnalyticsSnapshot } from "./analytics.ts";
import type { DnssecView } from "./dnssec-service.ts";

const ORG = { org: { type: "string", description: "The organization (org_...); default: your only one" } } as const;

interface ZoneView {
  id: string;
  name: string;
  ttl: number;
  serial: number;
  soa: { mname: string; rname: string; refresh: number; retry: number; expire: number; minimum: number };
  updated_at: string;
  records?: Array<{ name: string; type: string; ttl: number; data: string }>;
  problems?: string[];
}

const zonesPath = (org: string) => `/v1/dns/orgs/${encodeURIComponent(org)}/zones`;
const zonePath = (org: string, zone: string, rest = "") => `${zonesPath(org)}/${encodeURIComponent(zone)}${rest}`;

interface TsigKeyView {
  name: string;
  algorithm: string;
  created_at: string;
  secret?: string;
}

interface SecondaryView {
  name: string;
  address: string;
  port: number;
  tsig_key: string;
  zones: string[] | null;
  created_at: string;
}

interface CatalogView {
  name: string | null;
  served: boolean;
  views: Array<{ address: string; tsig_key: string; secondaries: string[]; serial: number; zones: Array<{ id: string; name: string }> }>;
}

function catalogText(catalog: CatalogView, withZones: boolean): string {
  if (catalog.name === null) return "no catalog zone: set [dns] catalog (such as \"catalog.citadel.invalid.\") to serve one";
  const head = `${catalog.name}, RFC 9432 version 2: each secondary transfers the view of its own zones, signed with its key`;
  if (!catalog.served) return `${head}\nnot served: the authoritative listener is off ([dns] udp and tcp)`;
  if (catalog.views.length === 0) return `${head}\nno secondaries (citadel dns secondary add)`;
  const summary = table([["SECONDARIES", "ADDRESS", "KEY", "SERIAL", "ZONES"], ...catalog.views.map((v) => [v.secondaries.join(" "), v.address, v.tsig_key, String(v.serial), String(v.zones.length)])]);
  if (!withZones) return `${head}\n${summary}`;
  const members = catalog.views.map((v) => `\n${v.secondaries.join(" ")}:\n${v.zones.length === 0 ? "no zones" : table([["ZONE", "MEMBER ID"], ...v.zones.map((z) => [z.name, z.id])])}`);
  return `${head}\n${summary}\n${members.join("\n")}`;
}

/** The key as the two most common secondaries write it in their configuration. */
function secondaryConfigSnippet(key: TsigKeyView & { secret: string }): string {
  const id = key.name.replace(/\.$/, "");
  return [
    "Knot (knot.conf):",
    `  key:`,
    `    - id: ${id}`,
    `      algorithm: ${key.algorithm}`,
    `      secret: ${key.secret}`,
    "NSD (nsd.conf):",
    `  key:`,
    `    name: "${id}"`,
    `    algorithm: ${key.algorithm}`,
    `    secret: "${key.secret}"`,
  ].join("\n");
}

function dnssecText(view: DnssecView): string {
  if (!view.enabled) return `${view.zone} is not signed`;
  // Created only: Citadel publishes a key in the serial that makes it (published_at is the same time).
  const keys = table([["KEY TAG", "STATE", "CREATED"], ...view.keys.map((k) => [String(k.key_tag), k.state, k.created_at])]);
  return [
    `${view.zone} is signed: ${view.algorithm}; signatures expire ${view.signatures_expire_at} (signed again a week before)`,
    `denial of existence: ${denialText(view)}`,
    ...cdsText(view),
    keys,
    ...rolloverText(view),
    ...view.ds,
    ...view.dnskey,
  ].join("\n");
}

/** "NSEC (...)" or "NSEC3, SHA-1, 0 iterations, no salt, no opt-out (its NSEC3PARAM)". */
function denialText(view: DnssecView): string {
  const n = view.nsec3;
  if (view.denial !== "nsec3" || n === null) return "NSEC (anyone can list the zone's names by walking the chain; --denial nsec3 hashes them)";
  return `NSEC3, ${n.hash_algorithm}, ${n.iterations} iterations, ${n.salt === "" ? "no salt" : `salt ${n.salt}`}, no opt-out (${n.nsec3param})`;
}

/** The NSEC3 parameters of --salt and --iterations (the server refuses what RFC 9276 advises against, saying why); `nsec3` says they may be given. */
function nsec3Options(ctx: CommandContext, nsec3: boolean): { salt?: string; iterations?: number } | undefined {
  const salt = stringOption(ctx, "salt");
  const iterations = integerOption(ctx, "iterations", 0, 65_535);
  if (!nsec3) {
    if (salt !== undefined || iterations !== undefined) throw new UsageError("--salt and --iterations are NSEC3's parameters: add --nsec3 (enable) or --denial nsec3 (set)");
    return undefined;
  }
  if (salt === undefined && iterations === undefined) return undefined;
  return { ...(salt === undefined ? {} : { salt }), ...(iterations === undefined ? {} : { iterations }) };
}

const POLICY_OPTIONS = {
  cds: { type: "string", description: "CDS/CDNSKEY for the parent to scan: rollover (the default at enable: the new key's while a rollover waits for the parent), always, or none" },
  "csk-lifetime": { type: "string", description: "The key's lifetime in days: a rollover starts by itself once it is this old (0, the default: rolled by hand; else at least 7)" },
} as const;

/** --cds and --csk-lifetime as the API's fields (the server checks the values, saying why). */
function policyOptions(ctx: CommandContext): { cds?: string; csk_lifetime_days?: number } {
  const cds = choiceOption(ctx, "cds", ["none", "rollover", "always"]);
  const lifetime = integerOption(ctx, "csk-lifetime", 0, 36_500);
  return { ...(cds === undefined ? {} : { cds }), ...(lifetime === undefined ? {} : { csk_lifetime_days: lifetime }) };
}

const NSEC3_OPTIONS = {
  salt: { type: "string", description: "NSEC3 salt in hex (default: none, - ; RFC 9276 advises none: it buys nothing)" },
  iterations: { type: "string", description: "NSEC3 additional iterations: 0, the only count accepted (RFC 9276)" },
} as const;

/** What the zone publishes for the parent, and its key's schedule. */
function cdsText(view: DnssecView): string[] {
  const cds = view.cds;
  // Absent from an older server's answer: nothing to say.
  if (cds === null || cds === undefined) return [];
  const modes: Record<string, string> = {
    none: "none published (--cds rollover publishes the new key's while a rollover waits for the parent)",
    rollover: "published while a rollover waits for the parent",
    always: "always published: the key the parent should point at",
    delete: `delete (RFC 8078): the parent is asked to remove the DS${cds.since ? ` since ${cds.since}` : ""}; once it has none (${parentDsCheck(view.zone)}) and the DS TTL has passed, citadel dns zone dnssec disable ${view.zone} --yes`,
  };
  return [`CDS/CDNSKEY: ${modes[cds.mode]}`, ...cds.cds.map((line) => `  ${line}`), ...cds.cdnskey.map((line) => `  ${line}`), scheduleText(view)];
}

/** When the key rolls next: by hand, at next_rollover_at, paused by a delete request, or now (a rollover in progress). */
function scheduleText(view: DnssecView): string {
  if (view.csk_lifetime_days === 0 || view.csk_lifetime_days === null) return "key lifetime: none (rolled by hand; --csk-lifetime DAYS rolls it on a schedule)";
  const lifetime = `key lifetime: ${view.csk_lifetime_days} days`;
  if (view.next_rollover_at) {
    // A lifetime set on a key already older than it: the schedule starts the rollover at its next check.
    if (Date.parse(view.next_rollover_at) <= Date.now()) return `${lifetime}; the key is older than that: the rollover starts at the schedule's next check (within 10 min)`;
    return `${lifetime}; next rollover starts ${view.next_rollover_at}`;
  }
  if (view.rollover !== null) return `${lifetime}; a rollover is in progress`;
  if (view.cds?.mode === "delete") return `${lifetime}; paused while the parent is asked to remove the DS (--cds rollover withdraws the request and resumes it)`;
  return lifetime;
}

/** How to ask the parent itself whether it has the zone's DS (a recursive answer may be cached). */
const parentDsCheck = (zone: string) => `dig +norecurse DS ${zone} @<parent server>`;


/** Where a rollover stands and what the operator does next (nothing without one). */
function rolloverText(view: DnssecView): string[] {
  const r = view.rollover;
  if (r === null) return [];
  const incoming = view.keys.find((k) => k.state === "incoming")!;
  const retiring = view.keys.find((k) => k.state === "retiring")!;
  const submitted = r.submitted_at === null || r.submitted_at === undefined ? [] : [`  the parent's new DS confirmed ${r.submitted_at} (by an operator); the schedule finishes from ${r.auto_finish_at}`];
  return [
    `key rollover in progress since ${r.started_at}${r.automatic ? " (started by the schedule)" : ""} (new key published in serial ${r.published_serial}): key tag ${retiring.key_tag} → ${incoming.key_tag}`,
    ...(r.waiting_for === undefined ? [] : [`  waiting for: ${r.waiting_for}: ${r.waiting}`]),
    ...submitted,
    `  1. from ${r.replace_ds_from}: give the registrar the new key's DS (citadel dns zone ds ${view.zone}) in place of the old one, or beside it for a while`,
    `  2. once the parent publishes only the new DS, wait for its DS TTL to pass`,
    `  3. ${r.can_finish ? "now" : `from ${r.finish_possible_at}`}: citadel dns zone dnssec rollover finish ${view.zone} --yes (or, at step 2, citadel dns zone dnssec rollover submitted ${view.zone} --yes: the schedule finishes it)`,
    `  (waits: DNSKEY TTL ${r.dnskey_ttl} s + largest TTL ${r.max_ttl} s + propagation delay ${r.propagation_delay} s)`,
  ];
}

/**
 * The DS lines, then the DNSKEYs. During a rollover the new key's come first — its DS is the one
 * to give the registrar — each line marked with its key's part, the new DS with from when it may
 * replace the old one (before, a resolver may hold a DNSKEY RRset without the new key).
 */
function dsText(view: DnssecView): string {
  const r = view.rollover;
  if (r === null) return [...view.ds, ...view.dnskey].join("\n");
  const keys = newKeyFirst(view.keys);
  const dsMark = (state: string) => (state === "incoming" ? `; new key: the DS the parent keeps, in place of the old one from ${r.replace_ds_from}` : "; old key: retiring, the parent drops it as it takes the new one");
  const keyMark = (state: string) => (state === "incoming" ? "; new key" : "; old key");
  return [...keys.map((k) => `${k.ds} ${dsMark(k.state)}`), ...keys.map((k) => `${k.dnskey} ${keyMark(k.state)}`)].join("\n");
}

/** A rollover's new key before the old one (the API lists the zone's key first). */
const newKeyFirst = <K extends { state: string }>(keys: readonly K[]): K[] => [...keys].sort((a, b) => Number(b.state === "incoming") - Number(a.state === "incoming"));

/** A host name as an absolute name (the final dot added when missing). */
const absolute = (name: string) => (name.endsWith(".") ? name : `${name}.`);

const recordsText = (z: ZoneView) => table([["NAME", "TTL", "TYPE", "DATA"], ...(z.records ?? []).map((r) => [r.name, String(r.ttl), r.type, r.data])]);

export const dnsCommands: Command[] = [
  {
    words: ["dns", "zone", "list"],
    summary: "List the organization's DNS zones",
    options: ORG,
    async run(ctx) {
      const api = await ctx.api();
      const list = await api.request<{ items: ZoneView[] }>("GET", zonesPath(await organizationOf(ctx, api)));
      print(ctx, list, list.items.length === 0 ? "no zones" : table([["NAME", "SERIAL", "TTL", "UPDATED", "ID"], ...list.items.map((z) => [z.name, String(z.serial), String(z.ttl), z.updated_at, z.id])]));
      return 0;
    },
  },
  {
    words: ["dns", "zone", "create"],
    summary: "Create a zone (an SOA and apex NS records; --ns for the name servers)",
    args: "<zone>",
    maxArgs: 1,
    options: {
      ...ORG,
      ttl: { type: "string", description: "The zone's TTL (default: dns.default_ttl)" },
      ns: { type: "string", description: "Apex name servers: host names such as ns1.example.net, comma-separated (default: dns.default_nameservers, else ns1.<zone>)" },
      mname: { type: "string", description: "The SOA's primary name server, a host name (default: the first name server)" },
      rname: { type: "string", description: "The SOA's mailbox as a name, such as hostmaster.example.net (default: hostmaster.<zone>)" },
    },
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone create <zone>");
      const api = await ctx.api();
      const body: Record<string, unknown> = { name: ctx.args[0] };
      const ttl = integerOption(ctx, "ttl", 0);
      if (ttl !== undefined) body.ttl = ttl;
      // On the command line these are host names, as everywhere but a zone file: absolute,
      // whether or not they end in a dot (the API, like a zone file, reads a name without the
      // final dot as relative to the zone, which made ns1.example.net.<zone>).
      const ns = typeof ctx.options.ns === "string" ? ctx.options.ns.split(",").map((s) => s.trim()).filter(Boolean).map(absolute) : undefined;
      if (ns) body.ns = ns;
      if (typeof ctx.options.mname === "string" || typeof ctx.options.rname === "string") {
        const zone = absolute(ctx.args[0]!);
        const rname = typeof ctx.options.rname === "string" ? absolute(ctx.options.rname) : `hostmaster.${zone}`;
        // Without --mname the server picks the primary: the first name server, given or configured.
        const mname = typeof ctx.options.mname === "string" ? { mname: absolute(ctx.options.mname) } : {};
        body.soa = { ...mname, rname, refresh: 3600, retry: 900, expire: 1_209_600, minimum: 300 };
      }
      const zone = await api.request<ZoneView>("POST", zonesPath(await organizationOf(ctx, api)), body);
      print(ctx, zone, `${zone.name} created (serial ${zone.serial})`);
      warnProblems(ctx, zone);
      return 0;
    },
  },
  {
    words: ["dns", "zone", "show"],
    summary: "Show a zone and its records",
    args: "<zone>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone show <zone>");
      const api = await ctx.api();
      const zone = await api.request<ZoneView>("GET", zonePath(await organizationOf(ctx, api), ctx.args[0]!));
      print(ctx, zone, `${zone.name} serial ${zone.serial} (${zone.id})\n${recordsText(zone)}`);
      warnProblems(ctx, zone);
      return 0;
    },
  },
  {
    words: ["dns", "zone", "delete"],
    summary: "Remove a zone and its records (cannot be undone: needs --yes)",
    args: "<zone>",
    maxArgs: 1,
    options: { ...ORG, yes: { type: "boolean", description: "Yes, delete the zone and every record in it" } },
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone delete <zone>");
      if (ctx.options.yes !== true) throw new UsageError(`this deletes ${ctx.args[0]} and every record in it, for good: add --yes`);
      const api = await ctx.api();
      await api.request("DELETE", zonePath(await organizationOf(ctx, api), ctx.args[0]!), undefined, { confirmed: true });
      print(ctx, { ok: true }, `${ctx.args[0]} deleted`);
      return 0;
    },
  },
  {
    words: ["dns", "zone", "dnssec", "show"],
    summary: "Show whether a zone is signed (DNSSEC), its keys (two during a rollover, with its steps and times), their DNSKEY and DS",
    args: "<zone>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone dnssec show <zone>");
      const api = await ctx.api();
      const view = await api.request<DnssecView>("GET", zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/dnssec"));
      print(ctx, view, dnssecText(view));
      return 0;
    },
  },
  {
    words: ["dns", "zone", "dnssec", "enable"],
    summary: "Sign a zone (DNSSEC, ECDSAP256SHA256; NSEC, or NSEC3 with --nsec3); then give the DS it prints to the registrar",
    args: "<zone>",
    maxArgs: 1,
    options: { ...ORG, nsec3: { type: "boolean", description: "Prove absence with NSEC3 (hashed names, RFC 5155) rather than NSEC, which lets anyone list the names" }, ...NSEC3_OPTIONS, ...POLICY_OPTIONS },
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone dnssec enable <zone>");
      const nsec3 = ctx.options.nsec3 === true;
      const parameters = nsec3Options(ctx, nsec3);
      const policy = policyOptions(ctx);
      const body = nsec3 || Object.keys(policy).length > 0 ? { ...(nsec3 ? { denial: "nsec3", ...(parameters ? { nsec3: parameters } : {}) } : {}), ...policy } : undefined;
      const api = await ctx.api();
      const view = await api.request<DnssecView>("POST", zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/dnssec"), body);
      const denial = view.denial === "nsec3" ? `, ${denialText(view)}` : "";
      print(ctx, view, `${view.zone} is signed (key tag ${view.key_tag}${denial}). Give the parent zone (your registrar) this DS record:\n${view.ds.join("\n")}`);
      return 0;
    },
  },
  {
    words: ["dns", "zone", "dnssec", "set"],
    summary: "Change a signed zone's DNSSEC: --denial nsec3 (hashed names) or nsec (one new serial signed with the whole new chain); --cds none|rollover|always; --csk-lifetime DAYS (0: by hand)",
    args: "<zone>",
    maxArgs: 1,
    options: { ...ORG, denial: { type: "string", description: "nsec or nsec3" }, ...NSEC3_OPTIONS, ...POLICY_OPTIONS },
    async run(ctx) {
      const usage = "usage: citadel dns zone dnssec set <zone> [--denial nsec|nsec3 [--salt HEX]] [--cds none|rollover|always] [--csk-lifetime DAYS]";
      needArgs(ctx, 1, usage);
      const denial = choiceOption(ctx, "denial", ["nsec", "nsec3"]);
      const policy = policyOptions(ctx);
      if (denial === undefined && Object.keys(policy).length === 0) throw new UsageError(usage);
      const parameters = nsec3Options(ctx, denial === "nsec3");
      const api = await ctx.api();
      const body = { ...(denial === undefined ? {} : { denial, ...(parameters ? { nsec3: parameters } : {}) }), ...policy };
      const view = await api.request<DnssecView>("PATCH", zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/dnssec"), body);
      const said = denial === undefined ? [] : [`${view.zone} proves absence with ${denialText(view)}: signed again with the new chain in one new serial; the DS stays as it is`];
      print(ctx, view, [...said, ...(Object.keys(policy).length > 0 ? [`${view.zone}:`, ...cdsText(view)] : [])].join("\n"));
      return 0;
    },
  },
  {
    words: ["dns", "zone", "dnssec", "disable"],
    summary: "Stop signing a zone (remove its DS at the registrar first: needs --yes); --via-cds first asks the parent to remove it (RFC 8078 delete CDS/CDNSKEY)",
    args: "<zone>",
    maxArgs: 1,
    options: {
      ...ORG,
      yes: { type: "boolean", description: "Yes, the parent zone no longer has its DS (and its TTL has passed); with --via-cds: yes, ask the parent to remove it" },
      "via-cds": { type: "boolean", description: "Step 1 of 2: keep signing and publish the delete CDS/CDNSKEY, so that a parent that scans for them removes the DS; disable (--yes) once it has" },
    },
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone dnssec disable <zone>");
      if (ctx.options["via-cds"] === true) {
        if (ctx.options.yes !== true) {
          throw new UsageError(`the parent removing ${ctx.args[0]}'s DS makes the zone insecure: validators no longer check its answers. Add --yes to ask it to (the zone stays signed until you disable it)`);
        }
        const api = await ctx.api();
        const view = await api.request<DnssecView>("POST", zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/dnssec/ds-removal"), undefined, { confirmed: true });
        print(
          ctx,
          view,
          `${view.zone} asks its parent to remove the DS (CDS 0 0 0 00, CDNSKEY 0 3 0 AA==) and stays signed. Once the parent has no DS for it (${parentDsCheck(view.zone)}) and the DS TTL has passed: citadel dns zone dnssec disable ${view.zone} --yes. A parent that does not scan for CDS needs the DS removed at the registrar.`,
        );
        return 0;
      }
      if (ctx.options.yes !== true) {
        throw new UsageError(`while the parent zone still has ${ctx.args[0]}'s DS record, validating resolvers fail every name of it once it is served unsigned: remove the DS at the registrar, wait for its TTL to pass, then add --yes`);
      }
      const api = await ctx.api();
      const view = await api.request<DnssecView>("DELETE", zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/dnssec"), undefined, { confirmed: true });
      print(ctx, view, `${view.zone} is no longer signed`);
      return 0;
    },
  },
  {
    words: ["dns", "zone", "dnssec", "rollover", "start"],
    summary: "Start a key rollover: a new key published beside the zone's, the zone signed by both; then replace the DS at the registrar",
    args: "<zone>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone dnssec rollover start <zone>");
      const api = await ctx.api();
      const view = await api.request<DnssecView>("POST", zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/dnssec/rollover"));
      const incoming = view.keys.find((k) => k.state === "incoming")!;
      print(ctx, view, [`${view.zone}: key rollover started: key tag ${incoming.key_tag} signs beside key tag ${view.key_tag}; validators holding either DS validate`, ...rolloverText(view).slice(1), `The new key's DS:`, incoming.ds].join("\n"));
      return 0;
    },
  },
  {
    words: ["dns", "zone", "dnssec", "rollover", "finish"],
    summary: "Finish a key rollover: the old key and its signatures go (once the parent publishes only the new DS: needs --yes)",
    args: "<zone>",
    maxArgs: 1,
    options: { ...ORG, yes: { type: "boolean", description: "Yes, the parent zone publishes only the new key's DS (and the old DS's TTL has passed)" } },
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone dnssec rollover finish <zone>");
      if (ctx.options.yes !== true) {
        throw new UsageError(
          `finishing removes ${ctx.args[0]}'s old key: validators still holding its DS fail every name of the zone. Citadel cannot see the parent zone: replace the DS at the registrar with the new key's (citadel dns zone ds ${ctx.args[0]}), wait for the old DS's TTL to pass, then add --yes`,
        );
      }
      const api = await ctx.api();
      const view = await api.request<DnssecView>("POST", zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/dnssec/rollover/finish"), undefined, { confirmed: true });
      print(ctx, view, `${view.zone}: key rollover finished: key tag ${view.key_tag} signs alone`);
      return 0;
    },
  },
  {
    words: ["dns", "zone", "dnssec", "rollover", "submitted"],
    summary: "Confirm that the parent publishes the new key's DS alone (needs --yes): the schedule finishes the rollover after [dns] dnssec_parent_delay",
    args: "<zone>",
    maxArgs: 1,
    options: { ...ORG, yes: { type: "boolean", description: "Yes, the parent zone publishes only the new key's DS" } },
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone dnssec rollover submitted <zone>");
      if (ctx.options.yes !== true) {
        throw new UsageError(
          `on this word the schedule removes ${ctx.args[0]}'s old key once the parent delay has passed: validators holding its DS would fail every name. Check that the parent publishes only the new DS (${parentDsCheck(ctx.args[0]!)}), then add --yes`,
        );
      }
      const api = await ctx.api();
      const view = await api.request<DnssecView>("POST", zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/dnssec/rollover/submitted"), undefined, { confirmed: true });
      print(
        ctx,
        view,
        `${view.zone}: the parent's new DS confirmed; the schedule finishes the rollover from ${view.rollover?.auto_finish_at}, once resolvers can no longer hold the old DS ([dns] dnssec_parent_delay covers the parent's DS TTL: keep it at least that TTL)`,
      );
      return 0;
    },
  },
  {
    words: ["dns", "zone", "dnssec", "rollover", "cancel"],
    summary: "Cancel a key rollover: the new key and its signatures go (needs --yes; refused once the parent's new DS is confirmed, and without --force once its CDS is published)",
    args: "<zone>",
    maxArgs: 1,
    options: {
      ...ORG,
      yes: { type: "boolean", description: "Yes, the parent zone publishes no DS of the new key, and if it did, the parent's DS TTL has passed since it went" },
      force: { type: "boolean", description: "Cancel although the new key's CDS/CDNSKEY were published: the parent was checked to hold the old DS alone (dig +norecurse DS <zone> @<parent server>)" },
    },
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone dnssec rollover cancel <zone>");
      if (ctx.options.yes !== true) {
        // Resolvers may hold the new DS for the parent's DS TTL after it goes: a cancel before then fails them.
        throw new UsageError(
          `cancelling removes ${ctx.args[0]}'s new key: validators holding its DS fail every name of the zone, and resolvers may hold it for the parent's DS TTL after the registrar drops it. Once the new key's CDS/CDNSKEY are published, a parent that scans for them may already hold its DS: check (${parentDsCheck(ctx.args[0]!)}). If the parent has the new DS: put the old DS back, wait for the parent's DS TTL, then cancel; leaving the rollover running is always safe (both keys sign). Then add --yes (and --force once the CDS is published)`,
        );
      }
      const api = await ctx.api();
      const path = zonePath(await organizationOf(ctx, api), ctx.args[0]!, `/dnssec/rollover${ctx.options.force === true ? "?force=true" : ""}`);
      const view = await api.request<DnssecView>("DELETE", path, undefined, { confirmed: true });
      print(ctx, view, `${view.zone}: key rollover cancelled: key tag ${view.key_tag} signs alone`);
      return 0;
    },
  },
  {
    words: ["dns", "zone", "ds"],
    summary: "The DS record (SHA-256) to give the parent zone for a signed zone, and its DNSKEY (both keys' during a rollover: the new one first, with from when it may replace the old)",
    args: "<zone>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone ds <zone>");
      const api = await ctx.api();
      const view = await api.request<DnssecView>("GET", zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/dnssec"));
      if (!view.enabled) throw new UsageError(`${view.zone} is not signed: citadel dns zone dnssec enable ${ctx.args[0]} first`);
      const keys = newKeyFirst(view.keys).map((k) => ({ key_tag: k.key_tag, state: k.state, ds: k.ds, dnskey: k.dnskey }));
      const json = { zone: view.zone, ds: keys.map((k) => k.ds), dnskey: keys.map((k) => k.dnskey), keys, ...(view.rollover ? { replace_ds_from: view.rollover.replace_ds_from } : {}) };
      print(ctx, json, dsText(view));
      return 0;
    },
  },
  {
    words: ["dns", "zone", "import"],
    summary: "Replace a zone's records from a zone file, all or nothing",
    args: "<zone> <file>",
    maxArgs: 2,
    options: { ...ORG, "dry-run": { type: "boolean", description: "Check and count only: change nothing" } },
    async run(ctx) {
      needArgs(ctx, 2, "citadel dns zone import <zone> <file>");
      const content = await fileOrStdinText(ctx.args[1]!);
      const api = await ctx.api();
      const result = await api.request<{ dry_run: boolean; serial: number; records: number; added: number; removed: number; changed: number; warnings: string[] }>(
        "POST",
        zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/import"),
        { content, dry_run: ctx.options["dry-run"] === true },
      );
      const summary = `${result.records} record(s): ${result.added} added, ${result.removed} removed, ${result.changed} TTL(s) changed`;
      print(ctx, result, result.dry_run ? `dry run, nothing changed: ${summary}` : `${summary}; serial ${result.serial}`);
      if (!ctx.json) for (const w of result.warnings) ctx.err(`warning: ${w}`);
      return 0;
    },
  },
  {
    words: ["dns", "zone", "export"],
    summary: "Print a zone as a zone file",
    args: "<zone>",
    maxArgs: 1,
    options: ORG,
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns zone export <zone>");
      const api = await ctx.api();
      const text = await api.requestText("GET", zonePath(await organizationOf(ctx, api), ctx.args[0]!, "/export"));
      // With --json the zone file is one string value: a zone file is not JSON.
      print(ctx, { zone: ctx.args[0], zone_file: text }, text.endsWith("\n") ? text.slice(0, -1) : text);
      return 0;
    },
  },
  {
    words: ["dns", "set"],
    summary: "Replace one RRset: each <rdata> argument is one record (quote it); none removes the RRset",
    args: "<zone> <name> <type> [rdata...]",
    maxArgs: 1000,
    options: { ...ORG, ttl: { type: "string", description: "The RRset's TTL (default: the zone's)" } },
    async run(ctx) {
      needArgs(ctx, 3, "citadel dns set <zone> <name> <type> [rdata...]");
      const [zone, name, type, ...records] = ctx.args as [string, string, string, ...string[]];
      const api = await ctx.api();
      const body: Record<string, unknown> = { records };
      const ttl = integerOption(ctx, "ttl", 0);
      if (ttl !== undefined) body.ttl = ttl;
      const set = await api.request<{ name: string; type: string; ttl: number; serial: number; records: string[] }>(
        "PUT",
        zonePath(await organizationOf(ctx, api), zone, `/rrsets/${encodeURIComponent(name)}/${encodeURIComponent(type)}`),
        body,
      );
      print(ctx, set, set.records.length === 0 ? `${set.name} ${set.type} removed (serial ${set.serial})` : `${set.name} ${set.ttl} ${set.type}: ${set.records.join(" | ")} (serial ${set.serial})`);
      return 0;
    },
  },
  {
    words: ["dns", "top"],
    summary: "Show DNS query totals, the most queried names and the busiest client prefixes (operators)",
    options: { minutes: { type: "string", description: "Minutes of per-minute series to fetch (default 60; shown with --json)" } },
    async run(ctx) {
      const minutes = integerOption(ctx, "minutes", 1, 10_080);
      const api = await ctx.api();
      const s = await api.request<AnalyticsSnapshot>("GET", `/v1/dns/analytics${minutes === undefined ? "" : `?minutes=${minutes}`}`);
      const counts = (title: string, c: Record<string, number>) => Object.entries(c).map(([k, n]) => [title, k, String(n)]);
      const totals = table([["BY", "VALUE", "QUERIES"], ["total", "", String(s.queries)], ...counts("zone", s.by_zone), ...counts("type", s.by_qtype), ...counts("rcode", s.by_rcode), ...counts("transport", s.by_transport), ...counts("shield", s.by_shield)]);
      const names = s.top_names.length === 0 ? "no queries" : table([["NAME", "QUERIES"], ...s.top_names.map((n) => [n.name, String(n.count)])]);
      const clients = s.top_clients.length === 0 ? "no queries" : table([["CLIENT PREFIX", "QUERIES"], ...s.top_clients.map((c) => [c.prefix, String(c.count)])]);
      const estimated = s.top_sampled ? " (estimated: sampled since more than 1,000 queries came in a second)" : "";
      print(ctx, s, `since ${s.since}\n${totals}\n\ntop names${estimated}\n${names}\n\ntop clients${estimated}\n${clients}`);
      return 0;
    },
  },
  {
    words: ["dns", "tsig", "list"],
    summary: "List the TSIG keys of zone transfers (operators; secrets are never shown again)",
    async run(ctx) {
      const api = await ctx.api();
      const list = await api.request<{ items: TsigKeyView[] }>("GET", "/v1/dns/tsig-keys");
      print(ctx, list, list.items.length === 0 ? "no TSIG keys" : table([["NAME", "ALGORITHM", "CREATED"], ...list.items.map((k) => [k.name, k.algorithm, k.created_at])]));
      return 0;
    },
  },
  {
    words: ["dns", "tsig", "create"],
    summary: "Create a TSIG key for a secondary and print its secret once (or import one with --secret-file)",
    args: "<name>",
    maxArgs: 1,
    options: {
      algorithm: { type: "string", description: "hmac-sha256 (default), hmac-sha384 or hmac-sha512" },
      "secret-file": { type: "string", description: "Import this base64 secret instead of making one (- reads standard input)" },
    },
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns tsig create <name>");
      const body: Record<string, unknown> = { name: ctx.args[0] };
      const algorithm = choiceOption(ctx, "algorithm", ["hmac-sha256", "hmac-sha384", "hmac-sha512"]);
      if (algorithm !== undefined) body.algorithm = algorithm;
      const file = ctx.options["secret-file"];
      if (typeof file === "string") body.secret = (await fileOrStdinText(file, `--secret-file ${file}`)).trim();
      const api = await ctx.api();
      const key = await api.request<TsigKeyView & { secret: string }>("POST", "/v1/dns/tsig-keys", body);
      print(ctx, key, `${key.name} (${key.algorithm}) created; its secret is shown this once:\n${key.secret}\n\n${secondaryConfigSnippet(key)}`);
      return 0;
    },
  },
  {
    words: ["dns", "tsig", "delete"],
    summary: "Remove a TSIG key that no secondary uses",
    args: "<name>",
    maxArgs: 1,
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns tsig delete <name>");
      const api = await ctx.api();
      await api.request("DELETE", `/v1/dns/tsig-keys/${encodeURIComponent(ctx.args[0]!)}`);
      print(ctx, { ok: true }, `${ctx.args[0]} deleted`);
      return 0;
    },
  },
  {
    words: ["dns", "secondary", "list"],
    summary: "List the secondaries that may transfer zones and are sent NOTIFY (operators)",
    async run(ctx) {
      const api = await ctx.api();
      const list = await api.request<{ items: SecondaryView[]; catalog: string | null }>("GET", "/v1/dns/secondaries");
      const rows = list.items.map((s) => [s.name, s.address, String(s.port), s.tsig_key, s.zones === null ? "every zone" : s.zones.join(" ")]);
      const secondaries = list.items.length === 0 ? "no secondaries" : table([["NAME", "ADDRESS", "NOTIFY PORT", "KEY", "ZONES"], ...rows]);
      const catalog = list.catalog === null ? "no catalog zone ([dns] catalog)" : `catalog zone: ${list.catalog} (each secondary's view of its zones: citadel dns catalog)`;
      print(ctx, list, `${secondaries}\n${catalog}`);
      return 0;
    },
  },
  {
    words: ["dns", "catalog"],
    summary: "Show the catalog zone (RFC 9432) and each secondary's view of it: its serial and the zones it lists (operators)",
    options: { zones: { type: "boolean", description: "List each view's zones with their member ids" } },
    async run(ctx) {
      const api = await ctx.api();
      const catalog = await api.request<CatalogView>("GET", "/v1/dns/catalog");
      print(ctx, catalog, catalogText(catalog, ctx.options.zones === true));
      return 0;
    },
  },
  {
    words: ["dns", "secondary", "add"],
    summary: "Add a secondary: transfers from --address signed with --key are allowed, NOTIFY goes to it",
    args: "<name>",
    maxArgs: 1,
    options: {
      address: { type: "string", description: "Its IP address (required)" },
      key: { type: "string", description: "The TSIG key it signs with (required; citadel dns tsig create)" },
      port: { type: "string", description: "Where it listens for NOTIFY (default 53)" },
      zones: { type: "string", description: "Only these zones, comma-separated (default: every zone; * is every hosted zone, to name the mesh's zone beside: *,mesh.internal)" },
    },
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns secondary add <name> --address IP --key KEY");
      if (typeof ctx.options.address !== "string" || typeof ctx.options.key !== "string") throw new UsageError("usage: citadel dns secondary add <name> --address IP --key KEY [--port N] [--zones a,b]");
      const body: Record<string, unknown> = { name: ctx.args[0], address: ctx.options.address, tsig_key: ctx.options.key };
      const port = integerOption(ctx, "port", 1, 65_535);
      if (port !== undefined) body.port = port;
      if (typeof ctx.options.zones === "string") body.zones = ctx.options.zones.split(",").map((z) => z.trim()).filter(Boolean);
      const api = await ctx.api();
      const s = await api.request<SecondaryView>("POST", "/v1/dns/secondaries", body);
      print(ctx, s, `${s.name} added: ${s.address} may transfer ${s.zones === null ? "every zone" : s.zones.join(" ")} with key ${s.tsig_key}; NOTIFY goes to port ${s.port}`);
      return 0;
    },
  },
  {
    words: ["dns", "secondary", "remove"],
    summary: "Remove a secondary: no more transfers or NOTIFY for it",
    args: "<name>",
    maxArgs: 1,
    async run(ctx) {
      needArgs(ctx, 1, "citadel dns secondary remove <name>");
      const api = await ctx.api();
      await api.request("DELETE", `/v1/dns/secondaries/${encodeURIComponent(ctx.args[0]!)}`);
      print(ctx, { ok: true }, `${ctx.args[0]} removed`);
      return 0;
    },
  },
];

/** What would leave a served zone unreachable (an in-zone name server without an address), on standard error. */
function warnProblems(ctx: CommandContext, zone: ZoneView): void {
  for (const problem of zone.problems ?? []) ctx.err(`warning: ${problem}`);
}
