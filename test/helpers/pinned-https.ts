/**
 * An HTTPS GET that trusts a server by its certificate's SHA-256 fingerprint alone, the
 * way an operator checks the fingerprint Citadel prints. Refuses any other certificate.
 */
import { connect } from "node:tls";

export interface PinnedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function pinnedGet(url: string, fingerprint: string, path: string): Promise<PinnedResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname.replace(/^\[|\]$/g, ""), port: Number(port), rejectUnauthorized: false, servername: "localhost" }, () => {
      const presented = socket.getPeerCertificate().fingerprint256;
      if (presented !== fingerprint) {
        socket.destroy();
        reject(new Error(`certificate fingerprint ${presented} is not the pinned ${fingerprint}`));
        return;
      }
      socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    });
    let raw = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (raw += chunk));
    socket.on("error", reject);
    socket.on("end", () => {
      const [head = "", ...rest] = raw.split("\r\n\r\n");
      const [statusLine = "", ...headerLines] = head.split("\r\n");
      const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
      resolve({ status: Number(statusLine.split(" ")[1]), headers, body: rest.join("\r\n\r\n") });
    });
  });
}
