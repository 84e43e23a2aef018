/**
 * DNS over a TCP stream: framing, and the bound on what a client leaves unread — the first
 * write included, which is where a client pipelining queries and never reading piles up.
 */
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { framed, readMessages, writeOrQueue, type StreamState } from "../../../plugins/dns/tcp-stream.ts";

/** A socket whose kernel takes at most `takes` bytes per write. */
const socketTaking = (takes: number) => ({ write: (bytes: Uint8Array) => Math.min(takes, bytes.length) }) as unknown as Socket<unknown>;
const fresh = (): StreamState => ({ pending: null, pendingLength: 0, backlog: null });

describe("writeOrQueue", () => {
  test("what the kernel does not take waits for the drain, within the bound", () => {
    const state = fresh();
    expect(writeOrQueue(socketTaking(100), state, new Uint8Array(1000), 4096)).toBe(true);
    expect(state.backlog?.length).toBe(900);
    expect(writeOrQueue(socketTaking(100), state, new Uint8Array(3000), 4096)).toBe(true); // queued behind, 3900
    expect(writeOrQueue(socketTaking(100), state, new Uint8Array(500), 4096)).toBe(false); // 4400: the caller drops
  });

  test("the first write is bounded too: a client that takes nothing cannot leave more than the bound behind", () => {
    const state = fresh();
    expect(writeOrQueue(socketTaking(0), state, new Uint8Array(5000), 4096)).toBe(false);
    expect(state.backlog).toBeNull();
    expect(writeOrQueue(socketTaking(0), fresh(), new Uint8Array(4096), 4096)).toBe(true);
  });

  test("a write the kernel takes whole leaves nothing", () => {
    const state = fresh();
    expect(writeOrQueue(socketTaking(1 << 20), state, new Uint8Array(70_000), 4096)).toBe(true);
    expect(state.backlog).toBeNull();
  });
});

describe("readMessages", () => {
  const message = (n: number) => Uint8Array.from({ length: 12 + n }, (_, i) => i & 0xff);

  test("frames split anywhere come out whole and in order", () => {
    const stream = framed([message(0), message(30), message(5)]);
    for (let cut = 1; cut < stream.length; cut++) {
      const state = fresh();
      const seen: number[] = [];
      expect(readMessages(state, stream.subarray(0, cut), (m) => (seen.push(m.length), true))).toBe(true);
      expect(readMessages(state, stream.subarray(cut), (m) => (seen.push(m.length), true))).toBe(true);
      expect(seen).toEqual([12, 42, 17]);
    }
  });

  test("a frame shorter than a header is garbage; the callback can stop the reading", () => {
    expect(readMessages(fresh(), Uint8Array.of(0, 3, 1, 2, 3), () => true)).toBe(false);
    let calls = 0;
    expect(readMessages(fresh(), framed([message(0), message(0)]), () => (calls++, false))).toBe(false);
    expect(calls).toBe(1);
  });
});
