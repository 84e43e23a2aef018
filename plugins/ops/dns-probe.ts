/**
 * One real DNS question over UDP, and the header of its answer: enough to tell whether the
 * DNS listener answers and how (NOERROR with AA for a hosted zone's SOA; REFUSED for a name it
 * does not serve). A few lines of wire format rather than the dns plugin's codec, which
 * plugins may not import from each other.
 */
import { isIP } from "node:net";

export const RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"] as const;
const TYPE_SOA = 6;
const CLASS_IN = 1;

export interface DnsAnswer {
  rcode: string;
  authoritative: boolean;
  answers: number;
  ms: number;
}

/** "127.0.0.1:5353" or "[::1]:53" → host and port; null when it is neither. */
export function parseHostPort(text: string): { host: string; port: number } | null {
  const m = text.match(/^\[([^\]]+)\]:(\d+)$/) ?? text.match(/^([^:]+):(\d+)$/);
  if (!m || isIP(m[1]!) === 0) return null;
  const port = Number(m[2]);
  return port >= 0 && port <= 65535 ? { host: m[1]!, port } : null;
}

/** The query's wire bytes: one question, no recursion wanted. */
export function encodeQuery(id: number, name: string, type = TYPE_SOA): Uint8Array {
  const labels = name.replace(/\.$/, "").split(".").filter(Boolean);
  const bytes: number[] = [id >> 8, id & 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
  for (const label of labels) {
    const encoded = new TextEncoder().encode(label);
    if (encoded.length > 63) throw new Error(`a DNS label is at most 63 bytes: ${label}`);
    bytes.push(encoded.length, ...encoded);
  }
  bytes.push(0, type >> 8, type & 0xff, CLASS_IN >> 8, CLASS_IN & 0xff);
  return Uint8Array.from(bytes);
}

/**
 * Sends `name SOA` to host:port over UDP and resolves with the answer's header, or null when
 * nothing came back in time. A wildcard listen address is asked over loopback.
 */
export async function queryUdp(target: { host: string; port: number }, name: string, timeoutMs = 2000): Promise<DnsAnswer | null> {
  const host = target.host === "0.0.0.0" ? "127.0.0.1" : target.host === "::" ? "::1" : target.host;
  const v6 = isIP(host) === 6;
  const id = Math.floor(Math.random() * 0x10000);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let settled = false;
    let socket: import("bun").udp.Socket<"uint8array"> | undefined;
    const finish = (answer: DnsAnswer | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.close();
      resolve(answer);
    };
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.close();
      reject(error);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    Bun.udpSocket({
      // Bound where the answer comes from: loopback for a loopback listener.
      hostname: v6 ? (host === "::1" ? "::1" : "::") : host.startsWith("127.") ? "127.0.0.1" : "0.0.0.0",
      binaryType: "uint8array",
      socket: {
        data(_socket, data) {
          if (data.length < 12 || ((data[0]! << 8) | data[1]!) !== id || (data[2]! & 0x80) === 0) return; // not our answer
          finish({ rcode: RCODES[data[3]! & 0x0f] ?? `RCODE${data[3]! & 0x0f}`, authoritative: (data[2]! & 0x04) !== 0, answers: (data[6]! << 8) | data[7]!, ms: Math.round(performance.now() - started) });
        },
        // Nothing listening there comes back as ECONNREFUSED (ICMP port unreachable): without
        // this handler it was thrown outside the promise and ended the doctor.
        error(_socket, error) {
          fail(error);
        },
      },
    }).then(
      (s) => {
        socket = s;
        if (settled) return s.close();
        s.send(encodeQuery(id, name), target.port, host);
      },
      (error) => fail(error),
    );
  });
}
