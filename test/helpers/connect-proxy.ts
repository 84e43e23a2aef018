/**
 * An HTTP CONNECT proxy on 127.0.0.1 for tests, as a client reachable only through a proxy
 * meets one: it resolves the names it is given (`citadel.test` to 127.0.0.1), which the client
 * cannot, and records each tunnel asked for (`citadel.test:8443`).
 */
import { connect, createServer, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";

export interface ConnectProxy {
  /** http://127.0.0.1:port (https: with `tls`), for HTTPS_PROXY. */
  url: string;
  /** The target of each CONNECT, in order. */
  tunnels: string[];
  stop(): Promise<void>;
}

/**
 * `established`: the proxy's answer to a CONNECT it opens, head and empty line. `tls`: an
 * https:// proxy, presenting that certificate (for 127.0.0.1).
 */
export async function connectProxy(names: Record<string, string>, { established = "HTTP/1.1 200 Connection Established\r\n\r\n", tls }: { established?: string; tls?: { cert: string; key: string } } = {}): Promise<ConnectProxy> {
  const tunnels: string[] = [];
  const sockets = new Set<Socket>();
  const serve = (client: Socket) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => client.destroy());
    client.once("data", (head) => {
      const target = /^CONNECT (\S+):(\d+) HTTP\/1\.1\r\n/.exec(head.toString("latin1"));
      if (!target) return void client.end("HTTP/1.1 405 Method Not Allowed\r\n\r\n");
      tunnels.push(`${target[1]}:${target[2]}`);
      const address = names[target[1]!];
      if (!address) return void client.end("HTTP/1.1 502 Bad Gateway\r\n\r\n");
      const upstream = connect({ host: address, port: Number(target[2]) }, () => {
        client.write(established);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      sockets.add(upstream);
      upstream.on("close", () => sockets.delete(upstream));
      upstream.on("error", () => client.destroy());
    });
  };
  const server = tls ? createTlsServer(tls, serve) : createServer(serve);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    tunnels,
    stop: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
