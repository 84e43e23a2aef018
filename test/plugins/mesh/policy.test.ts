import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { InvalidError } from "../../../src/errors.ts";
import { formatCidr } from "../../../src/net/ip.ts";
import { AclMatrix, aclNodeNames, aclPrefixes, isAclLabel, MAX_ENTRIES, MAX_RULES, nodeSetMembers, parseAclPolicy, parsePort } from "../../../plugins/mesh/policy.ts";
import type { AclPolicy, AclRule, MeshNode, PortMatch } from "../../../plugins/mesh/types.ts";

function node(name: string, tags: string[] = []): MeshNode {
  return { id: `id-${name}`, name, tags, publicKey: `${name}-key`, nextPublicKey: null, ipv4: "100.64.0.1", ipv6: "fd00::1", endpoint: null, hub: false };
}

const rule = (src: string[], dst: string[], ports: string[] = ["*"]): AclRule => ({ src, dst, ports });

/** The error message parseAclPolicy throws for `input`, or "ok". */
function policyError(input: unknown): string {
  try {
    parseAclPolicy(input);
    return "ok";
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidError);
    return (error as Error).message;
  }
}

describe("parsePort", () => {
  test.each<[string, PortMatch]>([
    ["*", { protocol: "any", from: null, to: null }],
    ["icmp", { protocol: "icmp", from: null, to: null }],
    ["22", { protocol: "any", from: 22, to: 22 }],
    ["1", { protocol: "any", from: 1, to: 1 }],
    ["65535", { protocol: "any", from: 65535, to: 65535 }],
    ["8000-8100", { protocol: "any", from: 8000, to: 8100 }],
    ["tcp/5432", { protocol: "tcp", from: 5432, to: 5432 }],
    ["udp/53", { protocol: "udp", from: 53, to: 53 }],
    ["tcp/8000-8100", { protocol: "tcp", from: 8000, to: 8100 }],
    ["udp/*", { protocol: "udp", from: null, to: null }],
    ["tcp/*", { protocol: "tcp", from: null, to: null }],
    ["tcp/80-80", { protocol: "tcp", from: 80, to: 80 }],
  ])("%p", (text, expected) => {
    expect(parsePort(text)).toEqual(expected);
  });

  test.each<[string, string]>([
    ["0", `"0" is not a port (1-65535)`],
    ["70000", `"70000" is not a port (1-65535)`],
    ["65536", `"65536" is not a port (1-65535)`],
    ["022", `"022" is not a port (1-65535)`],
    ["tcp/0", `"tcp/0" is not a port (1-65535)`],
    ["1-70000", `"1-70000" is not a port (1-65535)`],
    ["8100-8000", `"8100-8000" is a reversed range (write 8000-8100)`],
    ["", `"" is not a port specification`],
    ["ssh", `"ssh" is not a port specification`],
    ["sctp/22", `"sctp/22" is not a port specification`],
    ["TCP/22", `"TCP/22" is not a port specification`],
    ["icmp/8", `"icmp/8" is not a port specification`],
    ["tcp/", `"tcp/" is not a port specification`],
    [" 22", `" 22" is not a port specification`],
    ["22-", `"22-" is not a port specification`],
    ["1e3", `"1e3" is not a port specification`],
    ["123456", `"123456" is not a port specification`],
  ])("refuses %p", (text, message) => {
    expect(() => parsePort(text)).toThrow(message);
  });

  test("every valid single port parses to itself, with or without a protocol", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 65535 }), fc.constantFrom("", "tcp/", "udp/"), (port, prefix) => {
        const parsed = parsePort(`${prefix}${port}`);
        expect(parsed.from).toBe(port);
        expect(parsed.to).toBe(port);
        expect(parsed.protocol).toBe(prefix === "" ? "any" : (prefix.slice(0, 3) as "tcp" | "udp"));
      }),
    );
  });
});

describe("labels", () => {
  test.each<[string, boolean]>([
    ["a", true],
    ["db-1", true],
    ["0", true],
    ["a".repeat(63), true],
    ["a".repeat(64), false],
    ["", false],
    ["-a", false],
    ["a-", false],
    ["Web", false],
    ["a_b", false],
    ["a.b", false],
  ])("%p → %p", (label, valid) => {
    expect(isAclLabel(label)).toBe(valid);
  });
});

describe("parseAclPolicy", () => {
  test("a valid policy comes back as a clean copy", () => {
    const input = { rules: [{ src: ["tag:eng", "node:laptop-1"], dst: ["*"], ports: ["tcp/22", "icmp"] }] };
    const policy = parseAclPolicy(input);
    expect(policy).toEqual(input);
    expect(policy.rules[0]!.src).not.toBe(input.rules[0]!.src);
    expect(parseAclPolicy({ rules: [] })).toEqual({ rules: [] });
  });

  const ok = { src: ["*"], dst: ["*"], ports: ["*"] };
  test.each<[string, unknown, string]>([
    ["not an object", "rules", `policy: expected an object with "rules"`],
    ["null", null, `policy: expected an object with "rules"`],
    ["an array", [], `policy: expected an object with "rules"`],
    ["rules missing", {}, `rules: expected an array`],
    ["rules not an array", { rules: {} }, `rules: expected an array`],
    ["an unknown top-level field", { rules: [], default: "allow" }, `default: unknown field (a policy has only "rules")`],
    ["a rule that is not an object", { rules: [ok, "allow"] }, `rules[1]: expected an object with "src", "dst" and "ports"`],
    ["a misspelt field", { rules: [{ ...ok, dest: ["*"] }] }, `rules[0].dest: unknown field (a rule has "src", "dst" and "ports")`],
    ["src missing", { rules: [{ dst: ["*"], ports: ["*"] }] }, `rules[0].src: missing`],
    ["dst not an array", { rules: [{ ...ok, dst: "*" }] }, `rules[0].dst: expected an array of strings`],
    ["empty src", { rules: [ok, { ...ok, src: [] }] }, `rules[1].src: must not be empty`],
    ["empty ports", { rules: [{ ...ok, ports: [] }] }, `rules[0].ports: must not be empty`],
    ["a number as a port", { rules: [{ ...ok, ports: ["22", 22] }] }, `rules[0].ports[1]: expected a string`],
    ["a port out of range", { rules: [ok, ok, { ...ok, ports: ["70000"] }] }, `rules[2].ports[0]: "70000" is not a port (1-65535)`],
    ["a bad port spec", { rules: [{ ...ok, ports: ["22", "http"] }] }, `rules[0].ports[1]: "http" is not a port specification`],
    ["an unknown selector kind", { rules: [{ ...ok, src: ["group:eng"] }] }, `rules[0].src[0]: "group:eng" is not a selector ("*", "tag:<label>" or "node:<label>")`],
    ["an empty tag", { rules: [{ ...ok, dst: ["*", "tag:"] }] }, `rules[0].dst[1]: "tag:" is not a selector`],
    ["an upper-case node name", { rules: [{ ...ok, src: ["node:Laptop"] }] }, `rules[0].src[0]: "node:Laptop" is not a selector`],
    ["a label ending in a hyphen", { rules: [{ ...ok, src: ["tag:eng-"] }] }, `rules[0].src[0]: "tag:eng-" is not a selector`],
    ["a label of 64 characters", { rules: [{ ...ok, src: [`tag:${"a".repeat(64)}`] }] }, `rules[0].src[0]: "tag:${"a".repeat(64)}" is not a selector`],
    ["a bare name", { rules: [{ ...ok, src: ["laptop"] }] }, `rules[0].src[0]: "laptop" is not a selector`],
    ["a prefix in src (a route's addresses only receive)", { rules: [{ ...ok, src: ["10.1.0.0/24"] }] }, `rules[0].src[0]: "10.1.0.0/24": a prefix names addresses behind a subnet router, which only \`dst\` takes`],
    ["a dst prefix with host bits set", { rules: [{ ...ok, dst: ["10.1.0.9/24"] }] }, `rules[0].dst[0]: "10.1.0.9/24" is not a network address (host bits are set): did you mean 10.1.0.0/24?`],
    ["a dst prefix out of range", { rules: [{ ...ok, dst: ["10.1.0.0/40"] }] }, `rules[0].dst[0]: "10.1.0.0/40" is not a selector ("*", "tag:<label>", "node:<label>", a prefix behind a subnet router (10.1.0.0/24) or "autogroup:internet" (through an exit node))`],
    ["the internet in src (it opens nothing into the mesh)", { rules: [{ ...ok, src: ["autogroup:internet"] }] }, `rules[0].src[0]: "autogroup:internet": the internet through an exit node is a destination, which only \`dst\` takes`],
    ["another autogroup", { rules: [{ ...ok, dst: ["autogroup:member"] }] }, `rules[0].dst[0]: "autogroup:member" is not a selector`],
  ])("refuses %s", (_, input, message) => {
    expect(policyError(input)).toStartWith(message);
  });

  test("dst takes prefixes and addresses behind subnet routers; they match no node", () => {
    const policy = { rules: [{ src: ["*"], dst: ["10.1.0.0/24", "192.168.7.5", "fd00:1::/64"], ports: ["*"] }] };
    expect(parseAclPolicy(policy)).toEqual(policy);
    const matrix = AclMatrix.compile(policy, [node("a"), node("b")]);
    expect(matrix.mayReach(0, 1)).toBe(false);
    expect(matrix.rules[0]!.dstPrefixes.map((p) => `${p.family}/${p.prefix}`)).toEqual(["4/24", "4/32", "6/64"]);
  });

  test("an IPv4-mapped dst prefix is the IPv4 prefix it spells (found in review: kept IPv6, it matched no route)", () => {
    const policy = { rules: [{ src: ["*"], dst: ["::ffff:10.1.0.0/120", "::ffff:192.168.7.5"], ports: ["*"] }] };
    expect(parseAclPolicy(policy)).toEqual(policy);
    expect(aclPrefixes(policy).map(formatCidr)).toEqual(["10.1.0.0/24", "192.168.7.5/32"]);
    const matrix = AclMatrix.compile(policy, [node("a")]);
    expect(matrix.rules[0]!.dstPrefixes.map(formatCidr)).toEqual(["10.1.0.0/24", "192.168.7.5/32"]);
  });

  test("the InvalidError's field names the place", () => {
    try {
      parseAclPolicy({ rules: [{ src: ["*"], dst: ["*"], ports: ["*", "0"] }] });
      throw new Error("accepted");
    } catch (error) {
      expect((error as InvalidError).field).toBe("rules[0].ports[1]");
    }
  });

  test("limits: rules and entries per list", () => {
    const ok = { src: ["*"], dst: ["*"], ports: ["*"] };
    expect(policyError({ rules: Array.from({ length: MAX_RULES }, () => ok) })).toBe("ok");
    expect(policyError({ rules: Array.from({ length: MAX_RULES + 1 }, () => ok) })).toBe(`rules: ${MAX_RULES + 1} rules, at most ${MAX_RULES}`);
    const tags = (n: number) => Array.from({ length: n }, (_, i) => `tag:t${i}`);
    expect(policyError({ rules: [{ ...ok, dst: tags(MAX_ENTRIES) }] })).toBe("ok");
    expect(policyError({ rules: [ok, { ...ok, dst: tags(MAX_ENTRIES + 1) }] })).toBe(`rules[1].dst: ${MAX_ENTRIES + 1} entries, at most ${MAX_ENTRIES}`);
  });

  test("any policy built from valid parts is accepted unchanged", () => {
    const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?$/);
    const selector = fc.oneof(fc.constant("*"), label.map((l) => `tag:${l}`), label.map((l) => `node:${l}`));
    const port = fc.oneof(
      fc.constantFrom("*", "icmp", "tcp/*", "udp/*"),
      fc.integer({ min: 1, max: 65535 }).map(String),
      fc.tuple(fc.constantFrom("tcp/", "udp/", ""), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 100 })).map(([p, from, span]) => `${p}${from}-${Math.min(65535, from + span)}`),
    );
    const ruleArb = fc.record({ src: fc.array(selector, { minLength: 1, maxLength: 4 }), dst: fc.array(selector, { minLength: 1, maxLength: 4 }), ports: fc.array(port, { minLength: 1, maxLength: 4 }) });
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 5 }), (rules) => {
        expect(parseAclPolicy({ rules })).toEqual({ rules });
      }),
    );
  });
});

describe("aclNodeNames", () => {
  test("collects node: selectors from both sides, sorted and unique", () => {
    const policy: AclPolicy = {
      rules: [rule(["node:web-2", "tag:eng"], ["node:db"]), rule(["*"], ["node:web-2", "node:api"]), rule(["tag:ops"], ["tag:db"])],
    };
    expect(aclNodeNames(policy)).toEqual(["api", "db", "web-2"]);
    expect(aclNodeNames({ rules: [] })).toEqual([]);
  });
});

describe("AclMatrix", () => {
  const nodes = [node("laptop", ["eng"]), node("db", ["db"]), node("web", ["web", "prod"]), node("ci", ["eng", "ci"]), node("printer")];
  const [laptop, db, web, ci, printer] = [0, 1, 2, 3, 4];

  test("no policy: everyone reaches everyone on every port", () => {
    const acl = AclMatrix.compile(null, nodes);
    expect(acl.allowAll).toBe(true);
    for (let a = 0; a < nodes.length; a++) {
      for (let b = 0; b < nodes.length; b++) {
        expect(acl.mayReach(a, b)).toBe(true);
        expect(acl.ports(a, b)).toEqual([{ protocol: "any", from: null, to: null }]);
      }
    }
  });

  test("a policy without rules: nobody reaches anybody (deny by default; found in review: it allowed all)", () => {
    const acl = AclMatrix.compile({ rules: [] }, nodes);
    expect(acl.allowAll).toBe(false);
    for (let a = 0; a < nodes.length; a++) {
      for (let b = 0; b < nodes.length; b++) {
        expect(acl.mayReach(a, b)).toBe(false);
        expect(acl.ports(a, b)).toEqual([]);
      }
    }
  });

  test("rules: deny by default, directional, ports per matching rule", () => {
    const acl = AclMatrix.compile(
      {
        rules: [
          rule(["tag:eng"], ["tag:db"], ["tcp/5432"]),
          rule(["node:laptop"], ["tag:web", "node:db"], ["22", "icmp"]),
          rule(["tag:nobody"], ["*"]), // a tag no node carries matches nothing
          rule(["node:ghost"], ["*"]), // so does an unknown node name
        ],
      },
      nodes,
    );
    expect(acl.allowAll).toBe(false);
    expect(acl.mayReach(laptop, db)).toBe(true);
    expect(acl.mayReach(db, laptop)).toBe(false);
    expect(acl.mayReach(ci, db)).toBe(true);
    expect(acl.mayReach(ci, web)).toBe(false);
    expect(acl.mayReach(laptop, web)).toBe(true);
    expect(acl.mayReach(printer, db)).toBe(false);
    expect(acl.mayReach(laptop, printer)).toBe(false);
    expect(acl.ports(laptop, db)).toEqual([
      { protocol: "tcp", from: 5432, to: 5432 },
      { protocol: "any", from: 22, to: 22 },
      { protocol: "icmp", from: null, to: null },
    ]);
    expect(acl.ports(ci, db)).toEqual([{ protocol: "tcp", from: 5432, to: 5432 }]);
    expect(acl.ports(db, laptop)).toEqual([]);
    expect(acl.rulesInto(db).map((r) => r.index)).toEqual([0, 1]);
    expect(acl.rulesInto(printer)).toEqual([]);
    expect(nodeSetMembers(acl.reachableFrom(laptop))).toEqual([db, web]);
    expect(nodeSetMembers(acl.reachingTo(db))).toEqual([laptop, ci]);
    expect(acl.mayReachById("id-laptop", "id-web")).toBe(true);
    expect(acl.mayReachById("id-laptop", "id-nope")).toBe(false);
    expect(acl.portsById("id-ci", "id-db")).toEqual([{ protocol: "tcp", from: 5432, to: 5432 }]);
  });

  test("compiled port lists are frozen (plans share them between configs)", () => {
    const acl = AclMatrix.compile({ rules: [rule(["*"], ["*"], ["22"])] }, nodes);
    expect(Object.isFrozen(acl.rules[0]!.ports)).toBe(true);
  });

  test("agrees with a brute-force reading of the rules", () => {
    const tagNames = ["a", "b", "c", "d"];
    const selector = fc.oneof(
      fc.constant("*"),
      fc.constantFrom(...tagNames).map((t) => `tag:${t}`),
      fc.integer({ min: 0, max: 69 }).map((i) => `node:n${i}`),
    );
    const ruleArb = fc.record({
      src: fc.array(selector, { minLength: 1, maxLength: 3 }),
      dst: fc.array(selector, { minLength: 1, maxLength: 3 }),
      ports: fc.array(fc.constantFrom("*", "22", "tcp/80", "icmp"), { minLength: 1, maxLength: 2 }),
    });
    fc.assert(
      fc.property(
        fc.array(fc.subarray(tagNames), { minLength: 1, maxLength: 70 }),
        fc.array(ruleArb, { maxLength: 6 }),
        (tagLists, rules) => {
          const list = tagLists.map((tags, i) => node(`n${i}`, tags));
          const acl = AclMatrix.compile({ rules }, list);
          const matches = (sel: string, n: MeshNode) => sel === "*" || (sel.startsWith("tag:") && n.tags.includes(sel.slice(4))) || sel === `node:${n.name}`;
          for (let a = 0; a < list.length; a++) {
            for (let b = 0; b < list.length; b++) {
              const matching = rules.filter((r) => r.src.some((s) => matches(s, list[a]!)) && r.dst.some((d) => matches(d, list[b]!)));
              // Deny by default, with no rules too.
              expect(acl.mayReach(a, b)).toBe(matching.length > 0);
              expect(acl.ports(a, b)).toEqual(matching.flatMap((r) => r.ports.map(parsePort)));
            }
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  // Its speed (a million pair answers) is measured by scripts/bench/mesh.ts, not asserted here.
  test("1,000 nodes and 50 rules: every pair answered, with its ports", () => {
    const tags = Array.from({ length: 25 }, (_, i) => `t${i}`);
    const many = Array.from({ length: 1000 }, (_, i) => node(`n${i}`, [tags[i % 25]!, tags[(i * 7) % 25]!]));
    const policy: AclPolicy = {
      rules: Array.from({ length: 50 }, (_, r) => rule([`tag:t${r % 25}`, `node:n${r}`], [`tag:t${(r * 3 + 1) % 25}`], ["tcp/443", "icmp"])),
    };
    const acl = AclMatrix.compile(policy, many);
    let allowed = 0;
    let portEntries = 0;
    for (let a = 0; a < 1000; a++) {
      for (let b = 0; b < 1000; b++) {
        if (acl.mayReach(a, b)) {
          allowed++;
          portEntries += acl.ports(a, b).length;
        }
      }
    }
    expect(allowed).toBeGreaterThan(10_000);
    expect(portEntries).toBeGreaterThanOrEqual(2 * allowed);
  }, 30_000);
});
