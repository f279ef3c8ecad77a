import type { NatsConnection } from "@nats-io/transport-node";
import { DependencyUnavailableError } from "../../app/unavailable.ts";

/**
 * Whether a NATS connection is up right now. nats.js has no public flag for it: `isClosed()` stays false
 * while the client reconnects (forever, see connection.ts), and a request made meanwhile is buffered until
 * it times out (5 s). Readiness and the adapters that answer callers ask this instead, to report NATS as
 * down and fail at once rather than after the timeout. Tracked from the connection's status events, so
 * it must start when the connection opens (connectNats does); a connection never tracked counts as up
 * unless it is closed.
 */

type ConnectionState = { connected: boolean; reconnected: Set<() => void> };

const tracked = new WeakMap<NatsConnection, ConnectionState>();

/**
 * How long a write waits for a lost connection to come back before it is told NATS is unavailable. A
 * NATS cluster's rolling restart moves each client to another server within a few hundred milliseconds:
 * appends made meanwhile wait that out instead of failing; a server that is really gone costs them this
 * much, not the 5 s publish timeout. (Reads do not wait: their callers fall back on memory.)
 */
export const DISCONNECTED_GRACE_MS = 500;

export function trackConnection(nc: NatsConnection): void {
  if (tracked.has(nc)) return;
  const state: ConnectionState = { connected: !nc.isClosed(), reconnected: new Set() };
  tracked.set(nc, state);
  const wake = () => {
    for (const waiter of state.reconnected) waiter();
    state.reconnected.clear();
  };
  // The iterator ends when the connection closes.
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === "disconnect") state.connected = false;
      else if (status.type === "reconnect") {
        state.connected = true;
        wake();
      }
    }
  })()
    .catch(() => {})
    .finally(wake);
}

/** What a caller is told while the connection is down: `what` (an adapter) is unavailable. */
export function natsDown(what: string): DependencyUnavailableError {
  return new DependencyUnavailableError(what, new Error("the NATS connection is down"));
}

export function isNatsConnected(nc: NatsConnection): boolean {
  return !nc.isClosed() && (tracked.get(nc)?.connected ?? true);
}

/**
 * Resolves at once while the connection is up; while it is down, once it is back, or with
 * DependencyUnavailableError (naming `what`) if it is not back within `graceMs` or has closed.
 */
export function whenConnected(
  nc: NatsConnection,
  what: string,
  graceMs = DISCONNECTED_GRACE_MS,
): Promise<void> {
  if (isNatsConnected(nc)) return Promise.resolve();
  const state = tracked.get(nc);
  if (state === undefined || nc.isClosed()) return Promise.reject(natsDown(what));
  return new Promise((resolve, reject) => {
    const waiter = () => {
      clearTimeout(timer);
      if (isNatsConnected(nc)) resolve();
      else reject(natsDown(what));
    };
    const timer = setTimeout(() => {
      state.reconnected.delete(waiter);
      reject(natsDown(what));
    }, graceMs);
    state.reconnected.add(waiter);
  });
}
