/**
 * A node's routing through an exit node, with the real `ip` and `wg` in a network namespace: a
 * WireGuard device (the kernel's, else wireguard-go), a LAN on a veth link with a default route
 * of its own; the kernel is asked where packets go (`ip route get`), as wg-quick's
 * `Table = auto` would send them (the control plane a throw route of the exit table).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { EXIT_RULE_PRIORITY, ExitRoutingConflictError, applyExitRouting } from "../../../plugins/mesh/exit-routing.ts";
import { runCommand, type RunCommand } from "../../../plugins/mesh/device.ts";
import { OutsideTunnel } from "../../../plugins/mesh/outside-tunnel.ts";
import type { LookupHost } from "../../../plugins/mesh/endpoints.ts";
import { formatIp, parseIp } from "../../../src/net/ip.ts";
import { requireTool } from "../../helpers/tools.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HOST_LAN_COMMANDS } from "./host-lan.ts";

const ip = requireTool("ip", "iproute2");
const wg = requireTool("wg", "wireguard-tools");
const isRoot = process.getuid?.() === 0;

const suffix = String(process.pid % 100000);
const namespace = `citadel-exit-${suffix}`;
const device = `wge${suffix}`;
const CONTROL_PLANE = "203.0.113.100";

describe.skipIf(!ip || !wg || !isRoot)("routing through an exit node (wg-quick's way)", () => {
  const run: RunCommand = (argv, stdin) => runCommand([ip!, "netns", "exec", namespace, ...argv], stdin);
  const must = async (argv: string[]) => {
    const result = await run(argv);
    if (result.code !== 0) throw new Error(`${argv.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };
  let userspace: ReturnType<typeof Bun.spawn> | null = null;
  /** Where the kernel sends a packet to `address` (with `mark`): its route, as `ip route get` prints it. */
  const routeTo = async (address: string, mark?: number) => {
    const result = await run(["ip", "route", "get", address, ...(mark === undefined ? [] : ["mark", String(mark)])]);
    return result.code === 0 ? result.stdout : result.stderr;
  };
  const ownRules = async (family: "-4" | "-6") => (JSON.parse(await must(["ip", "-j", family, "rule", "show"])) as Array<{ priority: number; protocol?: string }>).filter((rule) => rule.protocol === "83").map((rule) => rule.priority);
  const fwmark = async () => (await must(["wg", "show", device, "fwmark"])).trim();
  const want = (table = 51820, through = true) => ({ table, through, keptOff: [parseIp(CONTROL_PLANE)!] });

  beforeAll(async () => {
    await runCommand([ip!, "netns", "add", namespace]);
    if ((await runCommand([ip!, "-n", namespace, "link", "add", device, "type", "wireguard"])).code !== 0) {
      const wireguardGo = requireTool("wireguard-go", "wireguard-go");
      if (!wireguardGo) throw new Error("neither the wireguard kernel module nor wireguard-go is available");
      userspace = Bun.spawn([ip!, "netns", "exec", namespace, wireguardGo, device], { env: { ...process.env, WG_PROCESS_FOREGROUND: "1" }, stdout: "ignore", stderr: "ignore" });
      for (const deadline = Date.now() + 20_000; (await run(["wg", "show", device])).code !== 0; await Bun.sleep(50)) {
        if (Date.now() > deadline) throw new Error(`wireguard-go did not create ${device}`);
      }
    }
    for (const argv of [
      ["ip", "address", "add", "100.64.0.2/16", "dev", device],
      ["ip", "address", "add", "fd7a:115c:a1e0::2/48", "dev", device],
      ["ip", "link", "set", device, "up"],
      ...HOST_LAN_COMMANDS,
      // Someone else's rule at the agent's priority: never the agent's to remove.
      ["ip", "rule", "add", "to", "198.51.100.77", "lookup", "main", "priority", String(EXIT_RULE_PRIORITY.main)],
    ]) await must(argv);
  });

  afterAll(async () => {
    userspace?.kill("SIGTERM");
    await userspace?.exited;
    await runCommand([ip!, "netns", "del", namespace]);
  });

  test("through: what is not marked and has no route more specific than a default goes into the tunnel; the tunnel's own packets, the LAN and the control plane do not", async () => {
    expect(await applyExitRouting(device, want(), run)).toBe(true);
    expect(await fwmark()).toBe("0xca6c");
    expect(await routeTo("198.51.100.1")).toContain(`dev ${device} table 51820`);
    expect(await routeTo("2001:db8:99::1")).toContain(`dev ${device} table 51820`);
    // Marked (WireGuard's own UDP): the main table's default route.
    expect(await routeTo("198.51.100.1", 51820)).toContain("via 192.0.2.1 dev lan0");
    // The LAN (more specific than a default route) and the control plane stay outside.
    expect(await routeTo("192.0.2.50")).toContain("dev lan0");
    expect(await routeTo(CONTROL_PLANE)).toContain("via 192.0.2.1 dev lan0");
    expect(await ownRules("-4")).toEqual([EXIT_RULE_PRIORITY.main, EXIT_RULE_PRIORITY.exit]);
    expect(await ownRules("-6")).toEqual([EXIT_RULE_PRIORITY.main, EXIT_RULE_PRIORITY.exit]);
    expect(await must(["ip", "-4", "route", "show", "table", "51820"])).toContain(`throw ${CONTROL_PLANE}`);
    // Applied again: nothing to change.
    expect(await applyExitRouting(device, want(), run)).toBe(false);
  });

  test("not usable: the internet is unreachable (fail closed), the LAN and the control plane are not", async () => {
    expect(await applyExitRouting(device, want(51820, false), run)).toBe(true);
    expect(await routeTo("198.51.100.1")).toMatch(/No route to host|unreachable/);
    expect(await routeTo("192.0.2.50")).toContain("dev lan0");
    expect(await routeTo(CONTROL_PLANE)).toContain("via 192.0.2.1 dev lan0");
  });

  test("another table (a new listen port): the former one's routes and rules go", async () => {
    await applyExitRouting(device, want(51821), run, [51821]);
    expect(await fwmark()).toBe("0xca6d");
    expect(await routeTo("198.51.100.1")).toContain(`dev ${device} table 51821`);
    expect((await must(["ip", "-4", "route", "show", "table", "51820"])).trim()).toBe("");
    expect(await must(["ip", "rule", "show"])).not.toContain("51820");
  });

  test("none: the agent's rules, routes and fwmark go, and the machine's default route is its way out again; another's rules stay", async () => {
    expect(await applyExitRouting(device, null, run)).toBe(true);
    expect(await ownRules("-4")).toEqual([]);
    expect(await ownRules("-6")).toEqual([]);
    expect(await fwmark()).toBe("off");
    expect(await routeTo("198.51.100.1")).toContain("via 192.0.2.1 dev lan0");
    expect((await must(["ip", "-4", "route", "show", "table", "51821"])).trim()).toBe("");
    expect(await must(["ip", "rule", "show"])).toContain("to 198.51.100.77 lookup main");
    expect(await applyExitRouting(device, null, run)).toBe(false);
  });

  test("the control plane's name not resolving after it did: its throw route stays, from the addresses kept (in the state directory too, for a restart)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-outside-"));
    try {
      let answer: string[] | Error = [CONTROL_PLANE];
      const lookupHost: LookupHost = async () => {
        if (answer instanceof Error) throw answer;
        return answer;
      };
      const said: string[] = [];
      const options = { stateDir: dir, lookupHost, err: (text: string) => said.push(text), resolvConf: [] };
      const server = new URL("https://citadel.example:8443");
      const outside = new OutsideTunnel(options);
      await applyExitRouting(device, { table: 51820, through: false, keptOff: await outside.addresses(server, "the control plane") }, run);
      expect(await routeTo(CONTROL_PLANE)).toContain("via 192.0.2.1 dev lan0");
      // Blocked, and the resolver beyond the block: the lookup fails.
      answer = Object.assign(new Error("getaddrinfo EAI_AGAIN citadel.example"), { code: "EAI_AGAIN" });
      await applyExitRouting(device, { table: 51820, through: false, keptOff: await outside.addresses(server, "the control plane") }, run);
      expect(await routeTo(CONTROL_PLANE)).toContain("via 192.0.2.1 dev lan0");
      expect(await routeTo("198.51.100.1")).toMatch(/No route to host|unreachable/);
      expect(said).toEqual([`mesh agent: citadel.example (the control plane) does not resolve now (EAI_AGAIN): the addresses it last resolved to (${CONTROL_PLANE}) stay outside the exit node's tunnel`]);
      // A restart while it still does not resolve: the state directory knows them.
      const restarted = new OutsideTunnel(options);
      expect((await restarted.addresses(server, "the control plane")).map(formatIp)).toEqual([CONTROL_PLANE]);
      // Another control plane's name (join --force elsewhere) is not given this one's addresses.
      expect(await restarted.addresses(new URL("https://other.example"), "the control plane")).toEqual([]);
    } finally {
      await applyExitRouting(device, null, run, [51820]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the resolvers of resolv.conf stay outside the tunnel for a control plane given by name, but a loopback stub; not for one given by address", async () => {
    const dir = mkdtempSync(join(tmpdir(), "citadel-outside-"));
    try {
      const resolvConf = join(dir, "resolv.conf");
      writeFileSync(resolvConf, "# generated\nnameserver 127.0.0.53\nnameserver 198.51.100.53\nnameserver 2001:db8:53::1\nnameserver fe80::1%lan0\noptions edns0\n");
      const outside = new OutsideTunnel({ stateDir: dir, lookupHost: async () => [CONTROL_PLANE], err: () => {}, resolvConf: [resolvConf, join(dir, "absent")] });
      const keptOff = await outside.addresses(new URL("https://citadel.example"), "the control plane");
      expect(keptOff.map(formatIp)).toEqual([CONTROL_PLANE, "198.51.100.53", "2001:db8:53::1"]);
      await applyExitRouting(device, { table: 51820, through: true, keptOff }, run);
      expect(await routeTo("198.51.100.53")).toContain("via 192.0.2.1 dev lan0");
      expect(await routeTo("2001:db8:53::1")).toContain("via 2001:db8:7::1 dev lan0");
      expect(await routeTo("198.51.100.54")).toContain(`dev ${device} table 51820`);
      expect((await outside.addresses(new URL(`https://${CONTROL_PLANE}:8443`), "the control plane")).map(formatIp)).toEqual([CONTROL_PLANE]);
    } finally {
      await applyExitRouting(device, null, run, [51820]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a failure part-way (ip -6 failing): the fwmark was set first, so the tunnel's own packets still go out the machine's route; undone whole", async () => {
    const failing6: RunCommand = (argv, stdin) =>
      argv[1] === "-6" && argv[2] === "route" ? Promise.resolve({ code: 2, stdout: "", stderr: "RTNETLINK answers: No buffer space available" }) : run(argv, stdin);
    await expect(applyExitRouting(device, want(), failing6)).rejects.toThrow("No buffer space available");
    expect(await fwmark()).toBe("0xca6c");
    // WireGuard's own UDP to a peer's endpoint, marked: the LAN's default route, not the tunnel.
    expect(await routeTo("198.51.100.9", 51820)).toContain("via 192.0.2.1 dev lan0");
    await applyExitRouting(device, null, run, [51820]);
    expect(await fwmark()).toBe("off");
    expect(await ownRules("-4")).toEqual([]);
  });

  test("a host without IPv6 (ip -6: address family not supported): IPv4 alone is routed, nothing fails", async () => {
    const no6: RunCommand = (argv, stdin) =>
      argv.includes("-6") ? Promise.resolve({ code: 2, stdout: "", stderr: "RTNETLINK answers: Address family not supported by protocol" }) : run(argv, stdin);
    expect(await applyExitRouting(device, want(), no6)).toBe(true);
    expect(await fwmark()).toBe("0xca6c");
    expect(await routeTo("198.51.100.1")).toContain(`dev ${device} table 51820`);
    expect(await applyExitRouting(device, want(), no6)).toBe(false);
    expect(await applyExitRouting(device, null, no6, [51820])).toBe(true);
    expect(await fwmark()).toBe("off");
    expect(await ownRules("-4")).toEqual([]);
  });

  test("another interface's agent routing through an exit node (its rules: protocol 83, another fwmark): refused with nothing changed; its rules never removed", async () => {
    const theirs = ["not", "fwmark", "4242", "lookup", "4242", "priority", String(EXIT_RULE_PRIORITY.exit), "protocol", "83"];
    await must(["ip", "rule", "add", ...theirs]);
    try {
      await expect(applyExitRouting(device, want(), run)).rejects.toBeInstanceOf(ExitRoutingConflictError);
      await expect(applyExitRouting(device, want(), run)).rejects.toThrow("another mesh interface of this host routes through an exit node (its policy rules, fwmark 4242");
      expect(await fwmark()).toBe("off");
      expect(await ownRules("-4")).toEqual([EXIT_RULE_PRIORITY.exit]); // theirs alone
      expect(await ownRules("-6")).toEqual([]);
      expect(await routeTo("198.51.100.1")).not.toContain(`dev ${device}`);
      // Using none is no conflict, and removes nothing of theirs.
      expect(await applyExitRouting(device, null, run, [51820])).toBe(false);
      expect(await must(["ip", "rule", "show"])).toContain("fwmark 0x1092 lookup 4242");
    } finally {
      await must(["ip", "rule", "del", ...theirs]);
    }
  });
});
