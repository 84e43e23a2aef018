/**
 * The `ip` commands that give a test's network namespace an uplink the way a host has one: a
 * veth (lan0, its peer lan1) addressed 192.0.2.7/24 and 2001:db8:7::7/64, with default routes
 * through 192.0.2.1 and 2001:db8:7::1 — what an exit node's routing must leave in place.
 */
export const HOST_LAN_COMMANDS: readonly string[][] = [
  ["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"],
  ["ip", "link", "set", "lan1", "up"],
  ["ip", "address", "add", "192.0.2.7/24", "dev", "lan0"],
  ["ip", "address", "add", "2001:db8:7::7/64", "dev", "lan0"],
  ["ip", "link", "set", "lan0", "up"],
  ["ip", "route", "add", "default", "via", "192.0.2.1"],
  ["ip", "-6", "route", "add", "default", "via", "2001:db8:7::1"],
];
