import { ProtocolHandler, TE } from "@nats-io/nats-core/internal";

/**
 * nats-core 3.4 writes its outbound buffer to the socket from a microtask queued by the first command
 * after a write. Each HTTP request is handled in its own I/O callback, and microtasks run after every
 * callback, so under create load every create's publish (and every other command issued while handling
 * a request) became a write syscall of its own — on loopback the sender also pays the TCP delivery that
 * wakes the NATS server, and the server answers each with a packet of its own: ~1.1 writes per create and,
 * measured, a fifth of the serving instance's CPU.
 *
 * While many requests are already waiting for replies (a busy connection), this flushes from
 * `setImmediate` instead: the commands issued while the event loop handles one turn of I/O (all the
 * requests read in it, the projections' writes) leave in one write at the end of the turn, in the same
 * order. A command on a quiet connection still leaves from a microtask, as before: a lone request (a
 * revocation, a lease renewal) waits for nothing else. Nothing is held past the turn — with immediates
 * pending the loop does not block in poll — and the client's inline flush once the buffer passes its
 * threshold is kept. Acknowledgements are awaited as before, so nothing is answered before the server
 * has it.
 *
 * Like request-one-patch.ts it only replaces the code it was written against (checked by fingerprint):
 * an upgrade that changes `sendCommand` keeps the library's own; `flushPatchApplied` tells which, and a
 * test pins it for the locked version.
 */

/**
 * Requests awaiting a reply from which on a connection counts as busy. A create under load has one
 * publish ack outstanding per request in flight (32 in the benchmark), the projections up to 64 KV
 * writes; a revocation, a lease renewal or a tick has one or two.
 */
export const BUSY_REQUESTS = 8;

type Patched = {
  outbound: { length(): number; size(): number; fill(data: Uint8Array, ...more: Uint8Array[]): void };
  pendingLimit: number;
  muxSubscriptions: { size(): number };
  flushPending(): void;
  /** `flushPending` bound to the instance, for queueMicrotask (which passes no arguments). */
  [FLUSH_NOW]?: () => void;
};

const FLUSH_NOW = Symbol("flushNow");

function flush(protocol: Patched) {
  protocol.flushPending();
}

function applyPatch(): boolean {
  const prototype = ProtocolHandler.prototype as unknown as {
    sendCommand: (this: Patched, cmd: string | Uint8Array, ...payloads: Uint8Array[]) => void;
    flushPending: unknown;
    request: unknown;
  };
  const original = prototype.sendCommand;
  if (typeof original !== "function" || typeof prototype.flushPending !== "function") return false;
  const source = Function.prototype.toString.call(original);
  const requestSource =
    typeof prototype.request === "function" ? Function.prototype.toString.call(prototype.request) : "";
  const expected =
    source.includes("const len = this.outbound.length()") &&
    source.includes("encoders_1.encode)(cmd)") &&
    source.includes("this.outbound.fill(buf, ...payloads)") &&
    source.includes("queueMicrotask") &&
    source.includes("this.outbound.size() >= this.pendingLimit") &&
    source.split("this.flushPending()").length === 3 &&
    requestSource.includes("this.muxSubscriptions.add(r)");
  if (!expected) return false;
  prototype.sendCommand = function sendCommand(this: Patched, cmd, ...payloads) {
    const len = this.outbound.length();
    // The library's encode() of one string is TE.encode of it.
    this.outbound.fill(typeof cmd === "string" ? TE.encode(cmd) : cmd, ...payloads);
    if (len === 0) {
      if (this.muxSubscriptions.size() >= BUSY_REQUESTS) setImmediate(flush, this);
      else {
        this[FLUSH_NOW] ??= () => this.flushPending();
        queueMicrotask(this[FLUSH_NOW]);
      }
    } else if (this.outbound.size() >= this.pendingLimit) this.flushPending();
  };
  return true;
}

export const flushPatchApplied: boolean = applyPatch();
