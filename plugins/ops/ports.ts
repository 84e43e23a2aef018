/**
 * Whether an address could be listened on now: bind it for a moment and let go. Used when
 * Citadel is stopped, to find the program that would keep it from starting.
 */
export type PortState = "free" | "in_use" | "denied" | "unavailable";

/** Binds `host:port` for a moment: free, held by another program, or not ours to bind. */
export async function probePort(protocol: "tcp" | "udp", host: string, port: number): Promise<{ state: PortState; detail: string }> {
  try {
    if (protocol === "tcp") {
      const listener = Bun.listen({ hostname: host, port, socket: { data() {} } });
      listener.stop(true);
    } else {
      const socket = await Bun.udpSocket({ hostname: host, port });
      socket.close();
    }
    return { state: "free", detail: "free" };
  } catch (error) {
    const code = String((error as { code?: string }).code ?? "");
    const message = error instanceof Error ? error.message : String(error);
    if (code === "EADDRINUSE" || /in use/i.test(message)) return { state: "in_use", detail: "in use by another program" };
    if (code === "EACCES" || code === "EPERM" || /permission|access/i.test(message)) return { state: "denied", detail: "this user may not bind it (a port below 1024 needs CAP_NET_BIND_SERVICE)" };
    return { state: "unavailable", detail: code || message };
  }
}

/** The command that names the program holding a port. */
export function whoHolds(protocol: "tcp" | "udp", port: number): string {
  return `ss -${protocol === "tcp" ? "t" : "u"}lnp 'sport = :${port}'`;
}
