/**
 * DNS over a TCP stream (RFC 1035 section 4.2.2, RFC 7766), the parts the authoritative
 * listener and the resolver share: cutting the byte stream into length-prefixed messages (a
 * message may arrive in pieces, or several in one chunk), framing replies, and writing with a
 * bounded backlog for a client that reads slowly.
 */
import type { Socket } from "bun";
import { clientKey } from "../../src/net/ip.ts";

const HEADER_LENGTH = 12;

/** What a connection keeps between chunks. */
export interface StreamState {
  /** Received octets not yet making a whole frame (length prefix included). */
  pending: Uint8Array | null;
  pendingLength: number;
  /** Reply octets the kernel did not take yet. */
  backlog: Uint8Array | null;
}

/**
 * Calls `onMessage` with each whole message in what was pending plus `data`, in order, and keeps
 * the rest for the next chunk. `onMessage` returns false to stop reading (the caller drops the
 * connection). Returns false, too, when a frame is shorter than a header: the stream is garbage.
 * A message is a view into a buffer that is reused: read it before the next chunk.
 */
export function readMessages(state: StreamState, data: Uint8Array, onMessage: (message: Uint8Array) => boolean): boolean {
  let buffer = data;
  let end = data.length;
  if (state.pendingLength > 0) {
    // Join with what is left of the previous chunk, growing the kept buffer when needed.
    const need = state.pendingLength + data.length;
    let pending = state.pending!;
    if (pending.length < need) {
      const grown = new Uint8Array(Math.max(need, pending.length * 2));
      grown.set(pending.subarray(0, state.pendingLength));
      pending = grown;
    }
    pending.set(data, state.pendingLength);
    buffer = pending;
    end = need;
    state.pending = null;
    state.pendingLength = 0;
  }
  let at = 0;
  while (end - at >= 2) {
    const length = (buffer[at]! << 8) | buffer[at + 1]!;
    if (length < HEADER_LENGTH) return false;
    if (end - at - 2 < length) break;
    if (!onMessage(buffer.subarray(at + 2, at + 2 + length))) return false;
    at += 2 + length;
  }
  if (at < end) {
    // Keep the partial frame (at most 2 + 65535 octets) for the next chunk.
    const rest = end - at;
    const keep = new Uint8Array(Math.max(rest, 512));
    keep.set(buffer.subarray(at, end));
    state.pending = keep;
    state.pendingLength = rest;
  }
  return true;
}

/** The messages, each with its two-octet length, in one buffer. */
export function framed(messages: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const m of messages) total += 2 + m.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const m of messages) {
    out[at] = m.length >>> 8;
    out[at + 1] = m.length & 0xff;
    out.set(m, at + 2);
    at += 2 + m.length;
  }
  return out;
}

/**
 * Writes `bytes`, keeping what the kernel does not take for the socket's next drain, behind
 * what is already waiting. False when the client is not reading and the backlog would pass
 * `maxBacklog` (the caller drops the connection), or the write failed.
 */
export function writeOrQueue(socket: Socket<unknown>, state: StreamState, bytes: Uint8Array, maxBacklog: number): boolean {
  if (state.backlog !== null) {
    if (state.backlog.length + bytes.length > maxBacklog) return false;
    const joined = new Uint8Array(state.backlog.length + bytes.length);
    joined.set(state.backlog);
    joined.set(bytes, state.backlog.length);
    state.backlog = joined;
    return true;
  }
  const written = socket.write(bytes);
  if (written < 0) return false;
  if (written < bytes.length) {
    if (bytes.length - written > maxBacklog) return false; // the first write is bounded too
    state.backlog = bytes.subarray(written);
  }
  return true;
}

/**
 * A listener's open connections counted by client (an IPv4 address, an IPv6 /64): no one host
 * may hold every slot, which zone transfers and the TCP retries of slipped resolvers need.
 */
export class ClientSlots {
  private readonly held = new Map<string, number>();

  constructor(readonly perClient: number) {}

  /** A client's share: `perClient` when given, else an eighth of the listener's connections, at least 4. */
  static forListener(maxConnections: number, perClient?: number): ClientSlots {
    return new ClientSlots(perClient ?? Math.max(4, Math.floor(maxConnections / 8)));
  }

  /** Takes a slot for `client`; false when it holds its share already. */
  take(client: string): boolean {
    const key = clientKey(client);
    const held = this.held.get(key) ?? 0;
    if (held >= this.perClient) return false;
    this.held.set(key, held + 1);
    return true;
  }

  /** Gives back a slot `take` gave. */
  release(client: string): void {
    const key = clientKey(client);
    const left = (this.held.get(key) ?? 1) - 1;
    if (left > 0) this.held.set(key, left);
    else this.held.delete(key);
  }
}
