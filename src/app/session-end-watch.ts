import type { ValidationReplica } from "./ports.ts";

/**
 * Tells long-lived connections (WebSocket) that the session they authenticated with may have changed, on
 * whichever instance the change was made: every change reaches this instance's replica (its own writes at
 * once, others' through the KV watch within milliseconds), so decorating the replica's offers is enough.
 * A notification says "look again", not "it ended": the listener re-judges with the validator, which also
 * sees user-wide revocations and recycles (carried by user entries, not session ones).
 */
export type SessionEndWatch = {
  /** Wraps the replica so that offers for watched sessions (and their users) notify their listeners. */
  decorate(replica: ValidationReplica): ValidationReplica;
  /** Calls `changed` after every offer for this session or its user; returns the unsubscribe. */
  watch(sessionId: string, userId: string, changed: () => void): () => void;
  /** How many listeners are registered (for tests and metrics). */
  readonly size: number;
};

export function createSessionEndWatch(): SessionEndWatch {
  const bySession = new Map<string, Set<() => void>>();
  const byUser = new Map<string, Set<string>>();
  let size = 0;

  const notifySession = (sessionId: string) => {
    const listeners = bySession.get(sessionId);
    if (listeners === undefined) return;
    // A listener may unsubscribe (close) while we iterate: copy first.
    for (const listener of [...listeners]) listener();
  };

  return {
    decorate(replica) {
      return {
        // The replica's own lookups, not wrappers: these run on every validation.
        getSession: replica.getSession.bind(replica),
        getUser: replica.getUser.bind(replica),
        offerSession(entry) {
          replica.offerSession(entry);
          // One map lookup per offer when nobody watches: offers are on the write path, not validation's.
          if (bySession.size > 0) notifySession(entry.sessionId);
        },
        offerUser(entry) {
          replica.offerUser(entry);
          if (byUser.size === 0) return;
          const sessions = byUser.get(entry.userId);
          if (sessions !== undefined) for (const sessionId of [...sessions]) notifySession(sessionId);
        },
        waitForSession: (sessionId, position, timeoutMs) =>
          replica.waitForSession(sessionId, position, timeoutMs),
        evictExpiredBefore: (cutoff) => replica.evictExpiredBefore(cutoff),
        get size() {
          return replica.size;
        },
      };
    },

    watch(sessionId, userId, changed) {
      let listeners = bySession.get(sessionId);
      if (listeners === undefined) {
        listeners = new Set();
        bySession.set(sessionId, listeners);
      }
      listeners.add(changed);
      let sessions = byUser.get(userId);
      if (sessions === undefined) {
        sessions = new Set();
        byUser.set(userId, sessions);
      }
      sessions.add(sessionId);
      size++;
      let active = true;
      return () => {
        if (!active) return;
        active = false;
        size--;
        const own = bySession.get(sessionId);
        own?.delete(changed);
        if (own === undefined || own.size > 0) return;
        bySession.delete(sessionId);
        const userSessions = byUser.get(userId);
        userSessions?.delete(sessionId);
        if (userSessions?.size === 0) byUser.delete(userId);
      };
    },

    get size() {
      return size;
    },
  };
}
