import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  applyAddresses,
  applyFirewall,
  applyRoutes,
  createInterface,
  describeDesired,
  describeDevice,
  diffDescriptions,
  diffLines,
  firewallAvailable,
  firewallTableFilters,
  interfaceExists,
  parseSetconf,
  parseWgDump,
  preferHandshakenKeys,
  readDevice,
  removeInterface,
  renderParsedSetconf,
  runCommand,
  syncConfig,
  type CommandResult,
  type DeviceState,
  type ParsedSetconf,
  type RunCommand,
} from "../../../plugins/mesh/device.ts";
import { generateKeyPair, generatePresharedKey } from "../../../plugins/mesh/keys.ts";
import { requireTool } from "../../helpers/tools.ts";

// Fixed keys for the pure tests (generated once with wg genkey / wg pubkey / wg genpsk).
const PRIVATE = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const OWN_PUBLIC = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
const PEER_A = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const PEER_A_NEXT = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
const PEER_B = "gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=";
const PSK = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=";

const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });

/** A fake runner: records argv, answers from `respond` (default: success, no output). */
function fakeRun(respond: (argv: string[], stdin?: string) => CommandResult | undefined = () => undefined) {
  const calls: Array<{ argv: string[]; stdin?: string }> = [];
  const run: RunCommand = async (argv, stdin) => {
    calls.push(stdin === undefined ? { argv } : { argv, stdin });
    return respond(argv, stdin) ?? ok();
  };
  return { run, calls, commands: () => calls.map((call) => call.argv.join(" ")) };
}

describe("parseWgDump", () => {
  const dump = [
    [PRIVATE, OWN_PUBLIC, "51820", "off"].join("\t"),
    [PEER_A, PSK, "203.0.113.7:51820", "100.64.0.2/32,fd7a:115c:a1e0::2/128", "1700000000", "1234", "5678", "25"].join("\t"),
    [PEER_B, "(none)", "(none)", "(none)", "0", "0", "0", "off"].join("\t"),
    "",
  ].join("\n");

  test("reads the interface and its peers, and drops the private key", () => {
    const state = parseWgDump(dump);
    expect(state).toEqual({
      publicKey: OWN_PUBLIC,
      listenPort: 51820,
      fwmark: 0,
      peers: [
        { publicKey: PEER_A, presharedKey: PSK, endpoint: "203.0.113.7:51820", allowedIps: ["100.64.0.2/32", "fd7a:115c:a1e0::2/128"], latestHandshake: 1700000000, transferRx: 1234, transferTx: 5678, keepalive: 25 },
        { publicKey: PEER_B, presharedKey: null, endpoint: null, allowedIps: [], latestHandshake: 0, transferRx: 0, transferTx: 0, keepalive: 0 },
      ],
    });
    expect(JSON.stringify(state)).not.toContain(PRIVATE);
  });

  test("an interface without a key, with a fwmark", () => {
    expect(parseWgDump("(none)\t(none)\t0\t0x2a\n")).toEqual({ publicKey: null, listenPort: 0, fwmark: 42, peers: [] });
  });

  test("malformed output is refused without quoting it", () => {
    expect(() => parseWgDump("")).toThrow("empty");
    let message = "";
    try {
      parseWgDump(`${PRIVATE}\t${OWN_PUBLIC}\t51820\n`);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("line 1 has 3 fields, expected 4");
    expect(message).not.toContain(PRIVATE);
  });
});

const SETCONF = `# Managed by citadel mesh agent
[Interface]
PrivateKey = ${PRIVATE}
ListenPort = 51820

# laptop
[Peer]
PublicKey = ${PEER_A}
PresharedKey = ${PSK}
AllowedIPs = 100.64.0.2/32, fd7a:115c:a1e0::2/128
Endpoint = 203.0.113.7:51820
PersistentKeepalive = 25

# laptop (next key)
[Peer]
PublicKey = ${PEER_A_NEXT}
Endpoint = 203.0.113.7:51820
PersistentKeepalive = 25

# phone
[Peer]
PublicKey = ${PEER_B}
AllowedIPs = 100.64.0.3/32, fd7a:115c:a1e0::3/128
`;

describe("parseSetconf / renderParsedSetconf", () => {
  test("parses sections, keys, comments", () => {
    const parsed = parseSetconf(SETCONF);
    expect(parsed.privateKey).toBe(PRIVATE);
    expect(parsed.listenPort).toBe(51820);
    expect(parsed.fwmark).toBeNull();
    expect(parsed.comments).toEqual(["# Managed by citadel mesh agent"]);
    expect(parsed.peers).toEqual([
      { publicKey: PEER_A, presharedKey: PSK, allowedIps: ["100.64.0.2/32", "fd7a:115c:a1e0::2/128"], endpoint: "203.0.113.7:51820", keepalive: 25, comments: ["# laptop"] },
      { publicKey: PEER_A_NEXT, presharedKey: null, allowedIps: [], endpoint: "203.0.113.7:51820", keepalive: 25, comments: ["# laptop (next key)"] },
      { publicKey: PEER_B, presharedKey: null, allowedIps: ["100.64.0.3/32", "fd7a:115c:a1e0::3/128"], endpoint: null, keepalive: 0, comments: ["# phone"] },
    ]);
  });

  test("renders text that parses back to the same structure", () => {
    const parsed = parseSetconf(SETCONF);
    expect(parseSetconf(renderParsedSetconf(parsed))).toEqual(parsed);
    expect(renderParsedSetconf(parsed)).toBe(SETCONF);
  });

  test("reads what wg reads: any case, any whitespace, inline comments, bare addresses, host bits, repeated keys", () => {
    const parsed = parseSetconf(
      [
        "  [interface]",
        `privatekey=${PRIVATE}   # inline`,
        "Listen Port = 1234",
        "FwMark = 0x10",
        "[PEER]",
        `PUBLICKEY = ${PEER_A}`,
        "AllowedIPs = 10.1.2.3, 10.9.0.1/16",
        "AllowedIPs = FD00::1/64",
        "Endpoint = [FD00::0:9]:51820",
        "PersistentKeepalive = off",
        "[Peer]",
        `PublicKey = ${PEER_A}`,
        "AllowedIPs = 10.1.2.3/32, 192.168.0.0/24",
        "Endpoint = VPN.Example.COM:443",
      ].join("\n"),
    );
    expect(parsed.listenPort).toBe(1234);
    expect(parsed.fwmark).toBe(16);
    expect(parsed.peers).toEqual([
      { publicKey: PEER_A, presharedKey: null, allowedIps: ["10.1.2.3/32", "10.9.0.0/16", "fd00::/64", "192.168.0.0/24"], endpoint: "vpn.example.com:443", keepalive: 0, comments: [] },
    ]);
    expect(renderParsedSetconf(parsed)).toContain("FwMark = 0x10");
  });

  const refused: Array<[string, string]> = [
    [`PrivateKey = ${PRIVATE}`, "line 1: \"privatekey\" before any [Interface] or [Peer]"],
    [`[Interface]\nPrivateKey = ${PRIVATE}x`, "line 2: PrivateKey is not a WireGuard key"],
    [`[Interface]\n${PRIVATE}`, "line 2: expected a [section], a key = value or a comment"],
    [`[Interface]\nPrivateKey: ${PRIVATE}`, "line 2: expected a [section]"],
    ["[Interface]\nListenPort = 70000", "line 2: ListenPort must be 0–65535"],
    ["[Interface]\nAddress = 10.0.0.1/24", "line 2: unknown [Interface] key \"address\""],
    [`[Peer]\nPublicKey = ${PEER_A}\nAllowedIPs = 10.0.0.1/33`, "line 3: \"10.0.0.1/33\" is not an address or CIDR"],
    [`[Peer]\nPublicKey = ${PEER_A}\nEndpoint = fd00::1:51820`, "line 3: Endpoint"],
    [`[Peer]\nPublicKey = ${PEER_A}\nEndpoint = [10.0.0.1]:51820`, "line 3: Endpoint"],
    [`[Peer]\nPublicKey = ${PEER_A}\nPersistentKeepalive = -1`, "line 3: PersistentKeepalive"],
    ["[Peer]\nAllowedIPs = 10.0.0.1/32", "a [Peer] has no PublicKey"],
  ];
  for (const [text, message] of refused) {
    test(`refuses ${JSON.stringify(text.slice(0, 40))}…`, () => {
      let error: Error | undefined;
      try {
        parseSetconf(text);
      } catch (e) {
        error = e as Error;
      }
      expect(error?.message).toContain(message);
      expect(error?.message).not.toContain(PRIVATE);
    });
  }

  const key = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) => Buffer.from(bytes).toString("base64"));
  const ipv4Host = fc.ipV4().map((ip) => `${ip}/32`);
  const ipv6Host = fc.tuple(fc.integer({ min: 1, max: 0xffff }), fc.integer({ min: 0, max: 0xffff })).map(([a, b]) => `fd00::${a.toString(16)}:${b.toString(16)}/128`);
  const parsedSetconf: fc.Arbitrary<ParsedSetconf> = fc.record({
    privateKey: fc.option(key, { nil: null }),
    listenPort: fc.option(fc.integer({ min: 0, max: 65535 }), { nil: null }),
    fwmark: fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: null }),
    comments: fc.array(fc.string({ unit: fc.constantFrom(..."abc -()"), maxLength: 10 }).map((text) => `# ${text}`.trim()), { maxLength: 2 }),
    peers: fc.uniqueArray(
      fc.record({
        publicKey: key,
        presharedKey: fc.option(key, { nil: null }),
        allowedIps: fc.uniqueArray(fc.oneof(ipv4Host, ipv6Host), { maxLength: 4 }),
        endpoint: fc.option(fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([ip, port]) => `${ip}:${port}`), { nil: null }),
        keepalive: fc.integer({ min: 0, max: 65535 }),
        comments: fc.array(fc.constantFrom("# laptop", "# phone", "# next key"), { maxLength: 2 }),
      }),
      { selector: (peer) => peer.publicKey, maxLength: 5 },
    ),
  });

  test("property: parse ∘ render = id", () => {
    fc.assert(
      fc.property(parsedSetconf, (parsed) => {
        expect(parseSetconf(renderParsedSetconf(parsed))).toEqual(parsed);
        expect(describeDesired(renderParsedSetconf(parsed))).toBe(describeDesired(parsed));
      }),
      { numRuns: 300 },
    );
  });
});

describe("describeDevice / describeDesired", () => {
  const matching: DeviceState = {
    publicKey: OWN_PUBLIC,
    listenPort: 51820,
    fwmark: 0,
    peers: [
      // Listed in another order, with the allowed IPs unsorted: the canonical form does not care.
      { publicKey: PEER_B, presharedKey: null, endpoint: null, allowedIps: ["fd7a:115c:a1e0::3/128", "100.64.0.3/32"], latestHandshake: 0, transferRx: 0, transferTx: 0, keepalive: 0 },
      { publicKey: PEER_A_NEXT, presharedKey: null, endpoint: "203.0.113.7:51820", allowedIps: [], latestHandshake: 0, transferRx: 0, transferTx: 0, keepalive: 25 },
      { publicKey: PEER_A, presharedKey: PSK, endpoint: "203.0.113.7:51820", allowedIps: ["100.64.0.2/32", "fd7a:115c:a1e0::2/128"], latestHandshake: 1700000000, transferRx: 9, transferTx: 9, keepalive: 25 },
    ],
  };

  test("a device that matches the config describes the same", () => {
    expect(describeDevice(matching)).toBe(describeDesired(SETCONF));
    expect(diffLines(describeDevice(matching), describeDesired(SETCONF))).toEqual([]);
  });

  test("a device with another private key differs (found in review: both were \"(set)\")", () => {
    expect(diffLines(describeDevice({ ...matching, publicKey: PEER_B }), describeDesired(SETCONF))).toEqual([`-   private-key (set, public ${PEER_B})`, `+   private-key (set, public ${OWN_PUBLIC})`]);
  });

  test("the canonical form: sorted, secrets shown only as (set): the private key by its public key, the preshared key by a fingerprint", () => {
    const text = describeDesired(SETCONF);
    expect(text).not.toContain(PRIVATE);
    expect(text).not.toContain(PSK);
    const fingerprint = new Bun.CryptoHasher("sha256").update(PSK).digest("hex").slice(0, 8);
    const peerA = `peer ${PEER_A}\n  allowed-ips 100.64.0.2/32, fd7a:115c:a1e0::2/128\n  endpoint 203.0.113.7:51820\n  keepalive 25\n  preshared-key (set, ${fingerprint})\n`;
    expect(text).toContain(peerA);
    expect(text.startsWith(`interface\n  private-key (set, public ${OWN_PUBLIC})\n  listen-port 51820\npeer `)).toBe(true);
    const order = [...text.matchAll(/^peer (\S+)$/gm)].map((match) => match[1]);
    expect(order).toEqual([...order].sort());
  });

  test("without endpoints (the agent's drift check): a roamed endpoint is no difference, a removed or changed peer is", () => {
    const roamed: DeviceState = { ...matching, peers: matching.peers.map((p) => ({ ...p, endpoint: "198.51.100.9:40000" })) };
    expect(describeDevice(roamed)).not.toBe(describeDesired(SETCONF));
    expect(describeDevice(roamed, { endpoints: false })).toBe(describeDesired(SETCONF, { endpoints: false }));
    const removed: DeviceState = { ...roamed, peers: roamed.peers.filter((p) => p.publicKey !== PEER_B) };
    expect(describeDevice(removed, { endpoints: false })).not.toBe(describeDesired(SETCONF, { endpoints: false }));
    const widened: DeviceState = { ...roamed, peers: roamed.peers.map((p) => (p.publicKey === PEER_B ? { ...p, allowedIps: [...p.allowedIps, "10.0.0.0/8"] } : p)) };
    expect(describeDevice(widened, { endpoints: false })).not.toBe(describeDesired(SETCONF, { endpoints: false }));
  });

  test("a rotated preshared key is a difference (else the agent would never apply it)", () => {
    const rotated = SETCONF.replace(PSK, `${"B".repeat(42)}A=`);
    expect(rotated).not.toBe(SETCONF);
    const lines = diffLines(describeDesired(SETCONF), describeDesired(rotated));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^- {3}preshared-key \(set, [0-9a-f]{8}\)$/);
    expect(lines[1]).toMatch(/^\+ {3}preshared-key \(set, [0-9a-f]{8}\)$/);
  });

  test("differences show up as + and - lines", () => {
    const drifted: DeviceState = {
      ...matching,
      listenPort: 40000,
      peers: [...matching.peers.filter((peer) => peer.publicKey !== PEER_B), { publicKey: PEER_B, presharedKey: null, endpoint: null, allowedIps: ["100.64.0.3/32"], latestHandshake: 0, transferRx: 0, transferTx: 0, keepalive: 0 }],
    };
    expect(diffLines(describeDevice(drifted), describeDesired(SETCONF))).toEqual([
      "-   listen-port 40000",
      "+   listen-port 51820",
      "-   allowed-ips 100.64.0.3/32",
      "+   allowed-ips 100.64.0.3/32, fd7a:115c:a1e0::3/128",
    ]);
  });

  describe("diffDescriptions (found in review: a changed attribute did not say whose it was)", () => {
    const names = (key: string) => (key === PEER_B ? "b" : null);
    const describePeers = (peers: DeviceState["peers"]) => describeDevice({ ...matching, peers });
    const peerB = (allowedIps: string[]) => ({ publicKey: PEER_B, presharedKey: null, endpoint: null, allowedIps, latestHandshake: 0, transferRx: 0, transferTx: 0, keepalive: 0 });
    const others = matching.peers.filter((peer) => peer.publicKey !== PEER_B);

    test("a changed peer's lines come under its header, with its name when known", () => {
      const before = describePeers([...others, peerB(["100.64.0.3/32"])]);
      const after = describePeers([...others, peerB(["100.64.0.3/32", "10.0.0.0/8"])]);
      expect(diffDescriptions(before, after, names)).toEqual([`  peer ${PEER_B} (b)`, "-   allowed-ips 100.64.0.3/32", "+   allowed-ips 10.0.0.0/8, 100.64.0.3/32"]);
    });

    test("the interface's lines need no header; a peer added or removed shows whole, its name when known", () => {
      const before = describeDevice({ ...matching, listenPort: 40000, peers: others });
      expect(diffDescriptions(before, describeDesired(SETCONF), names)).toEqual([
        "-   listen-port 40000",
        "+   listen-port 51820",
        `+ peer ${PEER_B} (b)`,
        "+   allowed-ips 100.64.0.3/32, fd7a:115c:a1e0::3/128",
        "+   endpoint (none)",
        "+   keepalive off",
        "+   preshared-key (none)",
      ]);
      expect(diffDescriptions(describeDesired(SETCONF), describePeers(others))[0]).toBe(`- peer ${PEER_B}`);
      expect(diffDescriptions(describeDesired(SETCONF), describeDesired(SETCONF))).toEqual([]);
      expect(diffDescriptions("", "interface\n  listen-port 1\n")).toEqual(["+ interface", "+   listen-port 1"]);
    });
  });
});

describe("diffLines", () => {
  const cases: Array<[string, string, string[]]> = [
    ["", "", []],
    ["a\nb\n", "a\nb\n", []],
    ["", "a\nb", ["+ a", "+ b"]],
    ["a\nb\n", "", ["- a", "- b"]],
    ["a\nb\nc", "a\nc", ["- b"]],
    ["a\nc", "a\nb\nc", ["+ b"]],
    ["a\nb\nc", "a\nx\nc", ["- b", "+ x"]],
    ["a\nb\nc\nd", "b\nc\nd\ne", ["- a", "+ e"]],
    ["x\ny", "y\nx", ["- x", "+ x"]],
  ];
  for (const [before, after, expected] of cases) test(`${JSON.stringify(before)} → ${JSON.stringify(after)}`, () => expect(diffLines(before, after)).toEqual(expected));

  function lcsLength(a: string[], b: string[]): number {
    const table = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
    for (let i = a.length - 1; i >= 0; i--) for (let j = b.length - 1; j >= 0; j--) table[i]![j] = a[i] === b[j] ? table[i + 1]![j + 1]! + 1 : Math.max(table[i + 1]![j]!, table[i]![j + 1]!);
    return table[0]![0]!;
  }

  function isSubsequence(small: string[], big: string[]): boolean {
    let i = 0;
    for (const line of big) if (i < small.length && small[i] === line) i++;
    return i === small.length;
  }

  test("property: minimal (the unchanged lines are a longest common subsequence)", () => {
    const lines = fc.array(fc.constantFrom("a", "b", "c", "d"), { maxLength: 12 });
    fc.assert(
      fc.property(lines, lines, (a, b) => {
        const diff = diffLines(a.join("\n"), b.join("\n"));
        const removed = diff.filter((line) => line.startsWith("- ")).length;
        const added = diff.filter((line) => line.startsWith("+ ")).length;
        const common = lcsLength(a, b);
        expect(a.length - removed).toBe(common);
        expect(b.length - added).toBe(common);
      }),
      { numRuns: 1000 },
    );
  });

  test("property: the removed lines come from before and the added from after, in order", () => {
    const lines = fc.array(fc.constantFrom("a", "b", "c", "d", "e"), { maxLength: 12 });
    fc.assert(
      fc.property(lines, lines, (a, b) => {
        const diff = diffLines(a.join("\n"), b.join("\n"));
        expect(isSubsequence(diff.filter((line) => line.startsWith("- ")).map((line) => line.slice(2)), a)).toBe(true);
        expect(isSubsequence(diff.filter((line) => line.startsWith("+ ")).map((line) => line.slice(2)), b)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  // A diff that went exponential would hit the test's timeout; its speed is not asserted here.
  test("a few thousand lines: only the changed lines are marked", () => {
    const before = Array.from({ length: 3000 }, (_, i) => `line ${i}`);
    const after = before.filter((_, i) => i % 7 !== 0).map((line, i) => (i % 11 === 0 ? `${line} changed` : line));
    const diff = diffLines(before.join("\n"), after.join("\n"));
    expect(diff.filter((line) => line.startsWith("+ ")).every((line) => line.endsWith(" changed"))).toBe(true);
  }, 30_000);
});

describe("preferHandshakenKeys", () => {
  const desired = parseSetconf(SETCONF);
  const pairs = [{ current: PEER_A, next: PEER_A_NEXT }];
  const device = (current: number, next: number): DeviceState => ({
    publicKey: OWN_PUBLIC,
    listenPort: 51820,
    fwmark: 0,
    peers: [
      { publicKey: PEER_A, presharedKey: null, endpoint: null, allowedIps: [], latestHandshake: current, transferRx: 0, transferTx: 0, keepalive: 0 },
      { publicKey: PEER_A_NEXT, presharedKey: null, endpoint: null, allowedIps: [], latestHandshake: next, transferRx: 0, transferTx: 0, keepalive: 0 },
    ],
  });
  const allowedOf = (parsed: ParsedSetconf, key: string) => parsed.peers.find((peer) => peer.publicKey === key)!.allowedIps;
  const peerAIps = ["100.64.0.2/32", "fd7a:115c:a1e0::2/128"];

  const cases: Array<[string, DeviceState | null, "current" | "next"]> = [
    ["no device yet", null, "current"],
    ["next key never handshaken", device(1700000000, 0), "current"],
    ["neither handshaken", device(0, 0), "current"],
    ["current more recent", device(1700000100, 1700000000), "current"],
    ["same second", device(1700000000, 1700000000), "current"],
    ["next more recent", device(1700000000, 1700000100), "next"],
    ["only next handshaken", device(0, 1700000000), "next"],
  ];
  for (const [name, state, winner] of cases) {
    test(name, () => {
      const result = preferHandshakenKeys(desired, state, pairs);
      expect(allowedOf(result, PEER_A)).toEqual(winner === "current" ? peerAIps : []);
      expect(allowedOf(result, PEER_A_NEXT)).toEqual(winner === "next" ? peerAIps : []);
      expect(allowedOf(result, PEER_B)).toEqual(["100.64.0.3/32", "fd7a:115c:a1e0::3/128"]);
    });
  }

  test("does not change its input, and renders to a config wg accepts the same way", () => {
    const before = structuredClone(desired);
    const result = preferHandshakenKeys(desired, device(1, 2), pairs);
    expect(desired).toEqual(before);
    expect(parseSetconf(renderParsedSetconf(result))).toEqual(result);
  });

  test("pairs whose keys are not both in the config are ignored", () => {
    expect(preferHandshakenKeys(desired, device(1, 2), [{ current: OWN_PUBLIC, next: PEER_A_NEXT }, { current: PEER_A, next: OWN_PUBLIC }])).toEqual(desired);
  });
});

describe("device operations with a fake runner", () => {
  test("createInterface uses the kernel when it can", async () => {
    const fake = fakeRun((argv) => (argv.join(" ") === "ip link show dev wg0" ? { code: 1, stdout: "", stderr: "does not exist" } : undefined));
    expect(await createInterface("wg0", "wireguard-go", fake.run)).toBe("kernel");
    expect(fake.commands()).toEqual(["ip link show dev wg0", "ip link add dev wg0 type wireguard"]);
  });

  test("createInterface with an alias marks the link at once; a link it cannot mark is deleted again", async () => {
    const missing = (argv: string[]) => (argv.join(" ") === "ip link show dev wg0" ? { code: 1, stdout: "", stderr: "does not exist" } : undefined);
    const fake = fakeRun(missing);
    expect(await createInterface("wg0", "wireguard-go", fake.run, "citadel-mesh:node_a")).toBe("kernel");
    expect(fake.commands()).toEqual(["ip link show dev wg0", "ip link add dev wg0 type wireguard", "ip link set dev wg0 alias citadel-mesh:node_a"]);
    const refusing = fakeRun((argv) => missing(argv) ?? (argv.includes("alias") ? { code: 2, stdout: "", stderr: "RTNETLINK answers: Operation not permitted" } : undefined));
    await expect(createInterface("wg0", "wireguard-go", refusing.run, "citadel-mesh:node_a")).rejects.toThrow("Operation not permitted");
    expect(refusing.commands().at(-1)).toBe("ip link del dev wg0");
  });

  test("createInterface falls back to userspace and waits for the interface", async () => {
    let shows = 0;
    const fake = fakeRun((argv) => {
      const command = argv.join(" ");
      if (command === "ip link add dev wg0 type wireguard") return { code: 2, stdout: "", stderr: "Error: Unknown device type." };
      if (command === "ip link show dev wg0") return ++shows < 4 ? { code: 1, stdout: "", stderr: "" } : ok();
      return undefined;
    });
    expect(await createInterface("wg0", "/opt/boringtun", fake.run)).toBe("userspace");
    expect(fake.commands()).toEqual([
      "ip link show dev wg0",
      "ip link add dev wg0 type wireguard",
      "env -u LOG_LEVEL /opt/boringtun wg0",
      "ip link show dev wg0",
      "ip link show dev wg0",
      "ip link show dev wg0",
    ]);
  });

  test("createInterface reports both failures, and refuses a taken or bad name", async () => {
    const failing = fakeRun((argv) => {
      if (argv[0] === "ip" && argv[2] === "show") return { code: 1, stdout: "", stderr: "" };
      if (argv[0] === "ip") return { code: 2, stdout: "", stderr: "Error: Unknown device type." };
      return { code: 1, stdout: "", stderr: "ERROR: (wg0) Failed to create TUN device: no such file" };
    });
    const error = await createInterface("wg0", "wireguard-go", failing.run).catch((e: Error) => e);
    expect((error as Error).message).toContain("Failed to create TUN device");
    expect((error as Error).message).toContain("Unknown device type");
    await expect(createInterface("wg0", "wireguard-go", fakeRun().run)).rejects.toThrow("already exists");
    for (const bad of ["", "-h", "a-very-long-interface-name", "wg 0", "wg/0"]) await expect(createInterface(bad, "wireguard-go", fakeRun().run)).rejects.toThrow("not an interface name");
  });

  test("syncConfig writes an owner-only file, removes it, and keeps the key out of errors", async () => {
    const directory = mkdtempSync(join(tmpdir(), "citadel-device-test-"));
    try {
      let mode = 0;
      let content = "";
      const fake = fakeRun((argv) => {
        mode = statSync(argv[3]!).mode & 0o777;
        content = readFileSync(argv[3]!, "utf8");
        return { code: 1, stdout: "", stderr: `Key is not the correct length or format: \`${PRIVATE}'\nConfiguration parsing error\n${PRIVATE}` };
      });
      const error = await syncConfig("wg0", SETCONF, directory, fake.run).catch((e: Error) => e);
      expect(fake.commands()[0]).toStartWith(`wg syncconf wg0 ${directory}/citadel-wg-`);
      expect(mode).toBe(0o600);
      expect(content).toBe(SETCONF);
      expect((error as Error).message).toContain("wg syncconf wg0 failed (exit 1)");
      expect((error as Error).message).toContain("Configuration parsing error");
      expect((error as Error).message).not.toContain(PRIVATE);
      expect(readdirSync(directory)).toEqual([]);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  test("applyRoutes routes the subnet routes into the interface, and removes only its own (its protocol) that are no longer wanted", async () => {
    const table: Record<string, unknown[]> = {
      "-4": [
        { dst: "default", gateway: "192.168.1.1", dev: "eth0", protocol: "dhcp" },
        { dst: "10.9.0.0/16", dev: "wg0", protocol: "83", scope: "link" },
        { dst: "10.1.0.0/24", dev: "wg0", protocol: "83", scope: "link" },
        // Its protocol on another interface is not its own.
        { dst: "10.5.0.0/16", dev: "wg1", protocol: "83", scope: "link" },
      ],
      "-6": [{ dst: "fd00:9::/64", dev: "wg0", protocol: "83", metric: 1024 }, { dst: "default", gateway: "fe80::1", dev: "eth0", protocol: "ra" }],
    };
    const fake = fakeRun((argv) => {
      if (argv.join(" ") === "wg show wg0 dump") return ok(`${PRIVATE}\t${OWN_PUBLIC}\t51820\toff\n`);
      return argv[1] === "-j" ? ok(JSON.stringify(table[argv[2]!] ?? [])) : undefined;
    });
    expect(await applyRoutes("wg0", ["10.1.0.0/24", "fd00:0001::/64"], fake.run)).toEqual([]);
    expect(fake.commands()).toEqual([
      "ip -j address show",
      "wg show wg0 dump",
      // The main table once per family, whatever the number of routes.
      "ip -j -4 route show table main",
      "ip -j -6 route show table main",
      "ip -4 route del 10.9.0.0/16 dev wg0 proto 83",
      "ip -6 route del fd00:9::/64 dev wg0 proto 83",
      // Its own route is there already: nothing to add. The other is added, never replaced.
      "ip -6 route add fd00:1::/64 dev wg0 proto 83",
    ]);
    await expect(applyRoutes("wg0", ["10.1.0.1/24"], fakeRun().run)).rejects.toThrow("is not a prefix");
  });

  test("applyRoutes takes over no route it did not add: a connected LAN, a static route, a blackhole, one covering an address of the machine or a peer's endpoint (found in review: `ip route replace` took them all)", async () => {
    const addresses = [{ ifname: "lo", addr_info: [{ local: "127.0.0.1" }] }, { ifname: "docker0", addr_info: [{ local: "172.17.0.1" }] }];
    const table: Record<string, unknown[]> = {
      "-4": [
        { dst: "192.168.1.0/24", dev: "eth0", protocol: "kernel", scope: "link", prefsrc: "192.168.1.10" },
        { dst: "10.8.0.0/16", dev: "eth0", protocol: "static", metric: 50 },
        { type: "blackhole", dst: "10.6.0.0/16" },
        // Its own beside someone else's (added later, another metric): it yields.
        { dst: "10.7.0.0/24", dev: "wg0", protocol: "83" },
        { dst: "10.7.0.0/24", dev: "wg0", protocol: "static", metric: 10 },
        { dst: "203.0.113.0/24", dev: "wg0", protocol: "83" },
      ],
      "-6": [{ dst: "fd00:2::/64", dev: "wg0", protocol: "boot", metric: 1024 }],
    };
    const fake = fakeRun((argv) => {
      const line = argv.join(" ");
      if (line === "ip -j address show") return ok(JSON.stringify(addresses));
      if (line === "wg show wg0 dump") return ok([`${PRIVATE}\t${OWN_PUBLIC}\t51820\toff`, `${PEER_A}\t(none)\t203.0.113.7:51820\t100.64.0.2/32\t0\t0\t0\toff`, `${PEER_B}\t(none)\t[2001:db8::7]:51820\t(none)\t0\t0\t0\toff`, ""].join("\n"));
      if (argv[1] === "-j") return ok(JSON.stringify(table[argv[2]!]));
      return undefined;
    });
    const routes = ["192.168.1.0/24", "10.8.0.0/16", "10.6.0.0/16", "10.7.0.0/24", "fd00:2::/64", "172.17.0.0/16", "203.0.113.0/24", "2001:db8::/32", "10.1.0.0/24"];
    expect(await applyRoutes("wg0", routes, fake.run)).toEqual([
      { route: "192.168.1.0/24", reason: "the main table routes it already (on eth0 (proto kernel))" },
      { route: "10.8.0.0/16", reason: "the main table routes it already (on eth0 (proto static))" },
      { route: "10.6.0.0/16", reason: "the main table routes it already (a blackhole route)" },
      { route: "10.7.0.0/24", reason: "the main table routes it already (on wg0 (proto static))" },
      { route: "fd00:2::/64", reason: "the main table routes it already (on wg0 (proto boot))" },
      { route: "172.17.0.0/16", reason: "it covers 172.17.0.1, an address of this machine (docker0)" },
      { route: "203.0.113.0/24", reason: "it covers 203.0.113.7:51820, a peer's endpoint" },
      { route: "2001:db8::/32", reason: "it covers [2001:db8::7]:51820, a peer's endpoint" },
    ]);
    const changes = fake.commands().filter((line) => !line.startsWith("ip -j") && !line.startsWith("wg show"));
    // Only its own routes go (10.7.0.0/24 yields; 203.0.113.0/24 would loop the tunnel); only the free prefix is added.
    expect(changes).toEqual(["ip -4 route del 10.7.0.0/24 dev wg0 proto 83", "ip -4 route del 203.0.113.0/24 dev wg0 proto 83", "ip -4 route add 10.1.0.0/24 dev wg0 proto 83"]);
    expect(changes.join("\n")).not.toContain("replace");
  });

  test("applyRoutes takes no part of a network the main table routes, nor a network around one (found in review: only the exact prefix was checked, so 10.77.0.0/25 pulled half a laptop's LAN into the tunnel)", async () => {
    // A laptop on 10.77.0.0/24 beside a Docker host's bridge; the default route and its own routes do not count.
    const addresses = [{ ifname: "eth0", addr_info: [{ local: "10.77.0.200" }] }, { ifname: "docker0", addr_info: [{ local: "172.17.0.1" }] }];
    const table: Record<string, unknown[]> = {
      "-4": [
        { dst: "default", gateway: "10.77.0.1", dev: "eth0", protocol: "dhcp" },
        { dst: "10.77.0.0/24", dev: "eth0", protocol: "kernel", scope: "link", prefsrc: "10.77.0.200" },
        { dst: "172.17.0.0/16", dev: "docker0", protocol: "kernel", scope: "link", prefsrc: "172.17.0.1" },
        { dst: "192.0.2.9", gateway: "10.77.0.1", dev: "eth0", protocol: "static" },
        { dst: "10.20.0.0/16", dev: "wg0", protocol: "83" },
        { dst: "10.20.5.0/24", dev: "wg0", protocol: "83" },
      ],
      "-6": [{ dst: "fd00:77::/64", dev: "eth0", protocol: "kernel" }, { dst: "default", gateway: "fe80::1", dev: "eth0", protocol: "ra" }],
    };
    const fake = fakeRun((argv) => {
      const line = argv.join(" ");
      if (line === "ip -j address show") return ok(JSON.stringify(addresses));
      if (line === "wg show wg0 dump") return ok(`${PRIVATE}\t${OWN_PUBLIC}\t51820\toff\n`);
      if (argv[1] === "-j") return ok(JSON.stringify(table[argv[2]!]));
      return undefined;
    });
    const routes = ["10.77.0.0/25", "172.17.1.0/24", "192.0.2.0/24", "fd00:77::/96", "fd00::/16", "10.20.0.0/16", "10.20.5.0/24", "10.30.0.0/16"];
    expect(await applyRoutes("wg0", routes, fake.run)).toEqual([
      { route: "10.77.0.0/25", reason: "it lies inside 10.77.0.0/24, which the main table routes otherwise (on eth0 (proto kernel))" },
      { route: "172.17.1.0/24", reason: "it lies inside 172.17.0.0/16, which the main table routes otherwise (on docker0 (proto kernel))" },
      { route: "192.0.2.0/24", reason: "the main table routes 192.0.2.9/32, a part of it, otherwise (on eth0 (proto static))" },
      { route: "fd00:77::/96", reason: "it lies inside fd00:77::/64, which the main table routes otherwise (on eth0 (proto kernel))" },
      { route: "fd00::/16", reason: "the main table routes fd00:77::/64, a part of it, otherwise (on eth0 (proto kernel))" },
    ]);
    // Its own routes, nested or not, stay; the free prefix is added.
    expect(fake.commands().filter((line) => !line.startsWith("ip -j") && !line.startsWith("wg show"))).toEqual(["ip -4 route add 10.30.0.0/16 dev wg0 proto 83"]);
  });

  test("applyRoutes routes beside a VPN's default route in pieces, as beside the default (found in review: OpenVPN's redirect-gateway def1 made every subnet route lie inside 0.0.0.0/1 or 128.0.0.0/1, and none was routed)", async () => {
    // OpenVPN with redirect-gateway def1 (and its IPv6 redirect): the default in halves (and parts) through tun0.
    const table: Record<string, unknown[]> = {
      "-4": [
        { dst: "0.0.0.0/1", gateway: "10.8.0.1", dev: "tun0", protocol: "static" },
        { dst: "default", gateway: "192.168.1.1", dev: "eth0", protocol: "dhcp" },
        { dst: "10.8.0.0/24", dev: "tun0", protocol: "kernel", scope: "link", prefsrc: "10.8.0.6" },
        { dst: "128.0.0.0/1", gateway: "10.8.0.1", dev: "tun0", protocol: "static" },
        { dst: "198.51.100.4", gateway: "192.168.1.1", dev: "eth0", protocol: "static" },
      ],
      "-6": [
        { dst: "::/3", dev: "tun0", protocol: "static", metric: 1024 },
        { dst: "2000::/4", dev: "tun0", protocol: "static", metric: 1024 },
        { dst: "3000::/4", dev: "tun0", protocol: "static", metric: 1024 },
        { dst: "fc00::/7", dev: "tun0", protocol: "static", metric: 1024 },
      ],
    };
    const fake = fakeRun((argv) => {
      if (argv.join(" ") === "wg show wg0 dump") return ok(`${PRIVATE}\t${OWN_PUBLIC}\t51820\toff\n`);
      return argv[1] === "-j" ? ok(JSON.stringify(table[argv[2]!] ?? [])) : undefined;
    });
    // The VPN's own networks still count: its subnet, the host route to its server.
    expect(await applyRoutes("wg0", ["10.1.0.0/24", "172.20.0.0/16", "10.8.0.0/16", "198.51.100.0/24", "fd00:1::/64", "2001:db8::/32"], fake.run)).toEqual([
      { route: "10.8.0.0/16", reason: "the main table routes 10.8.0.0/24, a part of it, otherwise (on tun0 (proto kernel))" },
      { route: "198.51.100.0/24", reason: "the main table routes 198.51.100.4/32, a part of it, otherwise (on eth0 (proto static))" },
    ]);
    expect(fake.commands().filter((line) => !line.startsWith("ip -j") && !line.startsWith("wg show"))).toEqual([
      "ip -4 route add 10.1.0.0/24 dev wg0 proto 83",
      "ip -4 route add 172.20.0.0/16 dev wg0 proto 83",
      "ip -6 route add fd00:1::/64 dev wg0 proto 83",
      "ip -6 route add 2001:db8::/32 dev wg0 proto 83",
    ]);
  });

  test("applyAddresses removes stale addresses first, keeps link-local ones, then sets the wanted and the MTU", async () => {
    const shown = [
      {
        ifname: "wg0",
        addr_info: [
          { family: "inet", local: "100.64.0.9", prefixlen: 16, scope: "global" },
          { family: "inet", local: "100.64.0.5", prefixlen: 16, scope: "global" },
          { family: "inet6", local: "FD00::5", prefixlen: 48, scope: "global" },
          { family: "inet6", local: "fe80::1", prefixlen: 64, scope: "link" },
        ],
      },
    ];
    const fake = fakeRun((argv) => (argv[1] === "-j" ? ok(JSON.stringify(shown)) : undefined));
    await applyAddresses("wg0", ["100.64.0.5/16", "fd00:0::5/48"], 1380, fake.run);
    expect(fake.commands()).toEqual([
      "ip -j address show dev wg0",
      "ip address del 100.64.0.9/16 dev wg0",
      "ip address replace 100.64.0.5/16 dev wg0",
      "ip address replace fd00::5/48 dev wg0",
      "ip link set dev wg0 mtu 1380 up",
    ]);
    await expect(applyAddresses("wg0", ["100.64.0.5"], 1380, fakeRun().run)).rejects.toThrow("not an address with a prefix length");
    await expect(applyAddresses("wg0", [], 1000, fakeRun().run)).rejects.toThrow("mtu 1000");
  });

  test("applyFirewall feeds the script on stdin; firewallAvailable asks nft", async () => {
    const fake = fakeRun((argv) => (argv[1] === "list" ? { code: 127, stdout: "", stderr: "not found" } : undefined));
    await applyFirewall("flush ruleset\n", fake.run);
    expect(fake.calls[0]).toEqual({ argv: ["nft", "-f", "-"], stdin: "flush ruleset\n" });
    expect(await firewallAvailable(fake.run)).toBe(false);
    const failing = fakeRun(() => ({ code: 1, stdout: "", stderr: "Error: syntax error" }));
    await expect(applyFirewall("nonsense", failing.run)).rejects.toThrow("nft -f - failed (exit 1): Error: syntax error");
  });

  test("the real runner reports a missing program as exit 127", async () => {
    const result = await runCommand(["citadel-no-such-program-xyz"]);
    expect(result.code).toBe(127);
    expect(await runCommand(["cat"], "through stdin")).toEqual({ code: 0, stdout: "through stdin", stderr: "" });
  });
});

// ---------------------------------------------------------------------------------------------
// The real thing, in a network namespace: wireguard-go (or the kernel), wg, ip, nft.

function namespaceToolsPresent(): boolean {
  const tools = [requireTool("ip", "iproute2"), requireTool("wg", "wireguard-tools"), requireTool("wireguard-go", "wireguard-go"), requireTool("nft", "nftables")];
  if (tools.includes(null)) return false;
  if (process.getuid?.() === 0) return true;
  if (process.env.CI === "true") throw new Error("the mesh device test needs root (network namespaces)");
  console.warn("not root: the mesh device test in a network namespace is skipped");
  return false;
}

describe.skipIf(!namespaceToolsPresent())("in a network namespace", () => {
  const namespace = `citadel-test-${process.pid}`;
  // wireguard-go's control socket is /var/run/wireguard/NAME.sock, outside the namespace: the
  // name must be unique on the host, not just in the namespace.
  const name = `wgct${process.pid % 100000}`;
  const children: Bun.Subprocess[] = [];
  let directory = "";

  const inNamespace: RunCommand = async (argv, stdin) => {
    if (argv[0] === "env" && argv.includes("wireguard-go")) {
      // Foreground, so the test owns the process and can be sure it is gone afterwards.
      children.push(Bun.spawn(["ip", "netns", "exec", namespace, "env", "WG_PROCESS_FOREGROUND=1", ...argv], { stdout: "ignore", stderr: "ignore" }));
      return ok();
    }
    return runCommand(["ip", "netns", "exec", namespace, ...argv], stdin);
  };

  const addressesShown = async () => {
    const { stdout } = await inNamespace(["ip", "-j", "address", "show", "dev", name]);
    const [link] = JSON.parse(stdout) as Array<{ mtu: number; flags: string[]; addr_info: Array<{ local: string; prefixlen: number; scope: string }> }>;
    return { link: link!, addresses: link!.addr_info.filter((info) => info.scope !== "link").map((info) => `${info.local}/${info.prefixlen}`).sort() };
  };

  let own: { privateKey: string; publicKey: string };
  let peers: Array<{ privateKey: string; publicKey: string }>;
  let psk: string;
  const config = (withSecond: boolean) =>
    [
      "[Interface]",
      `PrivateKey = ${own.privateKey}`,
      "ListenPort = 51999",
      "",
      "# first",
      "[Peer]",
      `PublicKey = ${peers[0]!.publicKey}`,
      `PresharedKey = ${psk}`,
      "AllowedIPs = 100.64.0.2/32, fd00:c17a::2/128",
      "Endpoint = 192.0.2.2:51820",
      "PersistentKeepalive = 25",
      ...(withSecond ? ["", "# second", "[Peer]", `PublicKey = ${peers[1]!.publicKey}`, "AllowedIPs = 100.64.0.3/32, fd00:c17a::3/128"] : []),
      "",
    ].join("\n");

  beforeAll(async () => {
    own = await generateKeyPair();
    peers = [await generateKeyPair(), await generateKeyPair()];
    psk = generatePresharedKey();
    directory = mkdtempSync(join(tmpdir(), "citadel-device-netns-"));
    for (const argv of [["ip", "netns", "add", namespace], ["ip", "-n", namespace, "link", "set", "lo", "up"]]) {
      const result = await runCommand(argv);
      if (result.code !== 0) throw new Error(`${argv.join(" ")}: ${result.stderr}`);
    }
  });

  afterAll(async () => {
    for (const child of children) child.kill();
    await Promise.all(children.map((child) => child.exited));
    await runCommand(["ip", "netns", "del", namespace]);
    rmSync(directory, { recursive: true, force: true });
  });

  test("creates the interface", async () => {
    expect(await interfaceExists(name, inNamespace)).toBe(false);
    const how = await createInterface(name, "wireguard-go", inNamespace);
    // This kernel has no WireGuard module; with one, the kernel path is taken and is fine too.
    expect(["kernel", "userspace"]).toContain(how);
    expect(await interfaceExists(name, inNamespace)).toBe(true);
    expect(await interfaceExists(name)).toBe(false); // only inside the namespace
  });

  test("syncConfig applies two peers and readDevice shows them, matching the config's description", async () => {
    await syncConfig(name, config(true), directory, inNamespace);
    const state = await readDevice(name, inNamespace);
    expect(state.publicKey).toBe(own.publicKey);
    expect(state.listenPort).toBe(51999);
    const byKey = new Map(state.peers.map((peer) => [peer.publicKey, peer]));
    expect(byKey.size).toBe(2);
    expect(byKey.get(peers[0]!.publicKey)).toMatchObject({ presharedKey: psk, endpoint: "192.0.2.2:51820", keepalive: 25, latestHandshake: 0 });
    expect(byKey.get(peers[0]!.publicKey)!.allowedIps.sort()).toEqual(["100.64.0.2/32", "fd00:c17a::2/128"]);
    expect(byKey.get(peers[1]!.publicKey)).toMatchObject({ presharedKey: null, endpoint: null, keepalive: 0 });
    expect(diffLines(describeDevice(state), describeDesired(config(true)))).toEqual([]);
    expect(readdirSync(directory)).toEqual([]);
  });

  test("applyAddresses sets the wanted addresses and MTU and removes stale ones", async () => {
    await applyAddresses(name, ["100.64.0.99/16", "100.64.0.1/16", "fd00:c17a::1/48", "fd00:c17a::99/48"], 1420, inNamespace);
    expect((await addressesShown()).addresses).toEqual(["100.64.0.1/16", "100.64.0.99/16", "fd00:c17a::1/48", "fd00:c17a::99/48"]);
    // 100.64.0.99 went on first, so it is the primary and 100.64.0.1 its secondary: deleting
    // the primary takes the secondary with it unless the wanted ones are set afterwards.
    await applyAddresses(name, ["100.64.0.1/16", "fd00:c17a::1/48"], 1380, inNamespace);
    const { link, addresses } = await addressesShown();
    expect(addresses).toEqual(["100.64.0.1/16", "fd00:c17a::1/48"]);
    expect(link.mtu).toBe(1380);
    expect(link.flags).toContain("UP");
  });

  test("applyFirewall loads an nftables table in the namespace", async () => {
    expect(await firewallAvailable(inNamespace)).toBe(true);
    // nft 1.0.6 (Debian 12) wants the ";" after the inner block on a one-line script; newer ones do not.
    await applyFirewall("table inet citadel_test { chain c { type filter hook input priority 0; policy accept; }; }\n", inNamespace);
    const { stdout } = await inNamespace(["nft", "list", "tables"]);
    expect(stdout).toContain("table inet citadel_test");
    expect((await runCommand(["nft", "list", "tables"])).stdout).not.toContain("citadel_test"); // not on the host
  });

  test("firewallTableFilters tells which interface a table filters (the former table of wgc-a may be wgc_a's own)", async () => {
    const script = (table: string, iface: string) => `table inet ${table} { chain input { type filter hook input priority 0; policy accept; iifname "${iface}" accept; }; }\n`;
    await applyFirewall(script("citadel_wgc_a", "wgc_a"), inNamespace);
    expect(await firewallTableFilters("citadel_wgc_a", "wgc_a", inNamespace)).toBe(true);
    expect(await firewallTableFilters("citadel_wgc_a", "wgc-a", inNamespace)).toBe(false); // today's table of wgc_a: not wgc-a's to retire
    expect(await firewallTableFilters("citadel_nothing", "wgc-a", inNamespace)).toBe(false);
    await applyFirewall("delete table inet citadel_wgc_a\n", inNamespace);
  });

  test("syncConfig removes a peer the config no longer has", async () => {
    await syncConfig(name, config(false), directory, inNamespace);
    const state = await readDevice(name, inNamespace);
    expect(state.peers.map((peer) => peer.publicKey)).toEqual([peers[0]!.publicKey]);
    expect(diffLines(describeDevice(state), describeDesired(config(false)))).toEqual([]);
    expect(readdirSync(directory)).toEqual([]);
  });

  test("a preshared key turned off and a keepalive set to 0 leave the running device too (wg syncconf keeps what a file leaves out; found in review)", async () => {
    await syncConfig(name, config(false), directory, inNamespace);
    expect((await readDevice(name, inNamespace)).peers[0]).toMatchObject({ keepalive: 25 });
    const without = parseSetconf(config(false).replace(`PresharedKey = ${psk}\n`, "").replace("PersistentKeepalive = 25\n", ""));
    await syncConfig(name, renderParsedSetconf(without, { explicit: true }), directory, inNamespace);
    const device = await readDevice(name, inNamespace);
    expect(device.peers[0]).toMatchObject({ presharedKey: null, keepalive: 0 });
    expect(diffLines(describeDevice(device), describeDesired(renderParsedSetconf(without, { explicit: true })))).toEqual([]);
  });

  test("a config wg refuses fails without leaving the file or showing the key", async () => {
    const broken = config(false).replace(`PrivateKey = ${own.privateKey}`, `PrivateKey = ${own.privateKey.slice(0, 40)}`);
    const error = await syncConfig(name, broken, directory, inNamespace).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(`wg syncconf ${name} failed`);
    expect((error as Error).message).not.toContain(own.privateKey.slice(0, 40));
    expect(readdirSync(directory)).toEqual([]);
    expect((await readDevice(name, inNamespace)).publicKey).toBe(own.publicKey); // unchanged
  });

  test("removeInterface deletes it, and wireguard-go exits", async () => {
    await removeInterface(name, inNamespace);
    expect(await interfaceExists(name, inNamespace)).toBe(false);
    const exited = await Promise.race([Promise.all(children.map((child) => child.exited)).then(() => true), Bun.sleep(20_000).then(() => false)]);
    expect(exited).toBe(true);
  });
});
