import { expect, test } from "bun:test";
import { startHttpServer } from "../../../src/http/edge.ts";
import { silentLogger } from "../../../src/log.ts";

test("stop lets an in-flight request finish and refuses new connections", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let entered!: () => void;
  const inside = new Promise<void>((resolve) => (entered = resolve));
  const server = startHttpServer({
    fetch: async () => {
      entered();
      await gate;
      return new Response("done");
    },
    address: "127.0.0.1",
    port: 0,
    idleTimeoutSeconds: 10,
    bodyLimit: 1024,
    log: silentLogger,
  });
  const inFlight = fetch(`${server.url}/slow`);
  await inside;
  const stopped = server.stop(2000);
  await Bun.sleep(50);
  await expect(fetch(`${server.url}/new`)).rejects.toThrow();
  release();
  const res = await inFlight;
  expect(res.status).toBe(200);
  expect(await res.text()).toBe("done");
  await stopped;
});

test("stop gives up waiting after the grace period", async () => {
  const server = startHttpServer({
    fetch: () => new Promise<Response>(() => {}), // never answers
    address: "127.0.0.1",
    port: 0,
    idleTimeoutSeconds: 10,
    bodyLimit: 1024,
    log: silentLogger,
  });
  const hung = fetch(`${server.url}/hang`).catch(() => "closed");
  await Bun.sleep(50);
  const started = performance.now();
  await server.stop(200);
  expect(performance.now() - started).toBeLessThan(1500);
  expect(await hung).toBe("closed");
});

test("a body declared far over the limit reaches the edge, which answers it in its envelope (found in review: Bun answered a bare 413 first)", async () => {
  let reached = 0;
  const server = startHttpServer({
    fetch: (request) => {
      reached++;
      return new Response(request.headers.get("content-length"), { status: 413 }); // as the edge does, without reading the body
    },
    address: "127.0.0.1",
    port: 0,
    idleTimeoutSeconds: 10,
    bodyLimit: 1024,
    log: silentLogger,
  });
  try {
    const res = await fetch(`${server.url}/v1/anything`, { method: "POST", headers: { "content-type": "application/json" }, body: "x".repeat(300_000) });
    expect([res.status, await res.text(), reached]).toEqual([413, "300000", 1]);
  } finally {
    await server.stop(500);
  }
});
