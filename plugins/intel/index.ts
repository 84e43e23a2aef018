/**
 * The `intel` plugin: IP intelligence and the shield. It opens the geo databases, loads the
 * reputation lists, policy, manual entries and decisions from the store, and puts the Shield in
 * the kernel's slot, where the HTTP guard and the DNS server ask it for a verdict on every
 * client. It learns failed logins from the audit log, rejected tokens, refusals and rate limits
 * from the HTTP guard (and the edge's per-address limit), and floods from the DNS server (the dns plugin's gate and observer). Operators manage it
 * through /v1/intel and `citadel intel`.
 */
import { Elysia, t } from "elysia";
import type { AuditEventInput } from "../../src/audit/event.ts";
import { dataPath } from "../../src/config/load.ts";
import { UnavailableError } from "../../src/errors.ts";
import { access } from "../../src/http/access.ts";
import { auditRequest } from "../../src/http/audit-request.ts";
import { principalOf } from "../../src/http/request-meta.ts";
import type { Signal } from "../../src/intel/behaviour.ts";
import { GeoIntel } from "../../src/intel/geo.ts";
import type { Shield } from "../../src/intel/shield.ts";
import { definePlugin, type Kernel } from "../../src/plugin.ts";
import { intelCommands } from "./commands.ts";
import { intelMigrations } from "./migrations.ts";
import * as m from "./model.ts";
import { encryptStoredListUrls, IntelService, type Caller } from "./service.ts";
import { IntelSettings } from "./settings.ts";

const ACTIONS = [
  ["intel.decision.start", "The shield decided to throttle, refuse or drop an address (or would have, in shadow mode), with the score's reasons."],
  ["intel.decision.expire", "A decision ran out."],
  ["intel.decision.lift", "An operator ended a decision early."],
  ["intel.manual.add", "An address or CIDR was put on the manual allow or deny list."],
  ["intel.manual.remove", "A manual allow or deny entry was removed."],
  ["intel.manual.expire", "A manual allow or deny entry given for a time ran out and was deleted."],
  ["intel.list.import", "A reputation list was imported or refreshed."],
  ["intel.list.delete", "A reputation list was removed."],
  ["intel.list.encrypt", "List URLs an earlier version stored whole were encrypted, at the first start or unseal that had the keys (how many, and which lists; never a URL)."],
  ["intel.policy.update", "The shield's policy (country, ASN, anonymity, behaviour weights) was changed."],
] as const;

/**
 * Audit actions the shield learns from, and the signal each one is. Rejected tokens, refusals
 * and rate limits are told by the HTTP guard and edge themselves (the audit log samples rate limits).
 */
const FEED: Record<string, Signal> = {
  "iam.login": "failed_login",
};

export function feedShield(shield: Shield, event: AuditEventInput): void {
  const signal = FEED[event.action];
  const client = event.request?.source;
  if (signal && event.outcome === "failure" && client) shield.observe(client, signal);
}

const services = new WeakMap<object, IntelService>();

/** The running service (503 when the shield is off or not started). */
export function intelOf(k: Kernel<IntelSettings>): IntelService {
  const service = services.get(k.store);
  if (!service) throw new UnavailableError("IP intelligence is off ([intel] enabled = false).");
  return service;
}

const caller = (request: Request): Caller => ({ principal: principalOf(request), request: auditRequest(request) });
const tags = ["intel"];
const READ = access({ operator: true, scope: "intel:read" });
const WRITE = access({ operator: true, scope: "intel:write" });

export const intelPlugin = definePlugin<IntelSettings>({
  name: "intel",
  settings: IntelSettings,
  scopes: ["intel:read", "intel:write"],
  actions: ACTIONS.map(([type, description]) => ({ type, description })),
  migrations: intelMigrations,

  async start(k) {
    // The shield on or off: list URLs an earlier version stored whole are encrypted as soon as the
    // keys are there (now, or at the unseal of an instance that starts sealed).
    const encryptUrls = () =>
      encryptStoredListUrls(k)
        .then((encrypted) => {
          if (encrypted > 0) services.get(k.store)?.reloadLists();
        })
        .catch((e: unknown) => k.log.error("intel: list URLs stored whole could not be encrypted", { error: e instanceof Error ? e.message : String(e) }));
    await encryptUrls();
    const stopEncrypting = k.seal.onUnseal(() => void encryptUrls());
    if (!k.settings.enabled) {
      return async () => {
        stopEncrypting();
      };
    }
    const geo = await GeoIntel.open({
      // A relative path is inside the data directory, as every other path in the config.
      city: geoPath(k, k.settings.geo_city),
      asn: geoPath(k, k.settings.geo_asn),
      anonymous: geoPath(k, k.settings.geo_anonymous),
      pollMs: k.settings.geo_poll_seconds * 1000,
      log: k.log,
    });
    const intel = new IntelService(k, geo);
    await intel.endLapsedDecisions();
    services.set(k.store, intel);
    k.shield.current = intel.shield;
    const unsubscribe = k.audit.onRecord((event) => feedShield(intel.shield, event));
    const sweep = setInterval(() => void intel.sweep(), 30_000);
    const refresh = setInterval(() => void intel.refreshDue(), 60_000);
    sweep.unref?.();
    refresh.unref?.();
    k.log.info("intel: the shield is on", { shadow: intel.policyView().shadow, lists: intel.listsView().items.length });
    return async () => {
      stopEncrypting();
      clearInterval(sweep);
      clearInterval(refresh);
      unsubscribe();
      if (k.shield.current === intel.shield) k.shield.current = null;
      services.delete(k.store);
      geo.close();
    };
  },

  routes: (k) =>
    new Elysia({ name: "intel" })
      .get("/status", () => intelOf(k).status(), { response: m.Status, detail: { summary: "The shield's state: geo databases (licence, date), lists, decisions, verdicts given (operators)", tags, ...READ } })
      .get("/ip/:ip", ({ params }) => intelOf(k).ip(params.ip), { response: m.IpReport, detail: { summary: "What is known about an address: country, ASN, lists, score with reasons, and what the shield does with it (operators)", tags, ...READ } })
      .get("/decisions", () => intelOf(k).decisions(), { response: m.DecisionList, detail: { summary: "Decisions in force (operators)", tags, ...READ } })
      .delete(
        "/decisions",
        async ({ request }) => ({ lifted: await intelOf(k).liftAll(caller(request)) }),
        {
          response: t.Object({ lifted: t.Integer({ description: "How many decisions were ended" }) }),
          detail: { summary: "End every decision in force early, after a policy that made them wrongly is fixed (operators; asks for confirmation)", tags, ...access({ operator: true, scope: "intel:write", confirm: true }) },
        },
      )
      .delete(
        "/decisions/:ip",
        async ({ params, request }) => {
          await intelOf(k).lift(caller(request), params.ip);
          return { ok: true as const };
        },
        { response: m.Done, detail: { summary: "End a decision early (operators)", tags, ...WRITE } },
      )
      .get("/manual", () => intelOf(k).manual(), { response: m.ManualList, detail: { summary: "Manual allow and deny entries (operators)", tags, ...READ } })
      .post("/manual", ({ body, request }) => intelOf(k).addManual(caller(request), body), { body: m.NewManualEntry, response: m.ManualEntry, detail: { summary: "Allow or deny an address or CIDR; allow always wins (operators)", tags, ...WRITE } })
      .delete(
        "/manual/:id",
        async ({ params, query, request }) => {
          await intelOf(k).removeManual(caller(request), params.id, query.lock_out === true);
          return { ok: true as const };
        },
        { query: m.RemoveManualQuery, response: m.Done, detail: { summary: "Remove a manual entry (operators)", tags, ...WRITE } },
      )
      .get("/lists", () => intelOf(k).listsView(), { response: m.ListList, detail: { summary: "Reputation lists: name, weight, size (operators)", tags, ...READ } })
      .put("/lists/:name", ({ params, body, request }) => intelOf(k).putList(caller(request), params.name, body), { body: m.PutList, response: m.PutListResult, detail: { summary: "Create or replace a reputation list from its text or an https URL (operators)", tags, ...WRITE } })
      .delete(
        "/lists/:name",
        async ({ params, request }) => {
          await intelOf(k).deleteList(caller(request), params.name);
          return { ok: true as const };
        },
        { response: m.Done, detail: { summary: "Remove a reputation list (operators)", tags, ...WRITE } },
      )
      .get("/policy", () => intelOf(k).policyView(), { response: m.Policy, detail: { summary: "The shield's policy in force: config defaults and what the API set (operators)", tags, ...READ } })
      .put("/policy", ({ body, request }) => intelOf(k).setPolicy(caller(request), body as never), { body: m.SetPolicy, response: m.Policy, detail: { summary: "Set country, ASN, anonymity and behaviour points (operators)", tags, ...WRITE } }),
  commands: intelCommands,
});

/** A geo file's path as configured: none when empty, a relative one inside the data directory. */
function geoPath(k: Kernel<IntelSettings>, path: string): string | undefined {
  return path === "" ? undefined : dataPath(k.config, path);
}
