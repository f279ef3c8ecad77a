import type { ValidationReplica, ValidationStore } from "../../app/ports.ts";
import type { UserValidationEntry, ValidationEntry } from "../../projections/validation-entry.ts";
import { compactUserValidationEntry, compactValidationEntry } from "./compact-validation-entry.ts";

/**
 * This instance's copy of the validation view. Lookups are plain Map gets (the validation hot path);
 * offers keep whichever entry has the higher log position, so a late or replayed write never rolls an
 * entry back. Waiters for a position are resolved by the offer that reaches it, never by polling.
 */

type Waiter = { position: number; settle: (reached: boolean) => void };

export function createValidationReplica(): ValidationReplica {
  const sessions = new Map<string, ValidationEntry>();
  const users = new Map<string, UserValidationEntry>();
  const waiters = new Map<string, Set<Waiter>>();

  const wake = (sessionId: string, position: number) => {
    const pending = waiters.get(sessionId);
    if (!pending) return;
    for (const waiter of pending) {
      if (position >= waiter.position) waiter.settle(true);
    }
  };

  return {
    getSession: (sessionId) => sessions.get(sessionId),
    getUser: (userId) => users.get(userId),
    offerSession(entry) {
      const current = sessions.get(entry.sessionId);
      if (current && current.position >= entry.position) return;
      sessions.set(entry.sessionId, compactValidationEntry(entry));
      wake(entry.sessionId, entry.position);
    },
    offerUser(entry) {
      const current = users.get(entry.userId);
      if (current && current.position >= entry.position) return;
      users.set(entry.userId, compactUserValidationEntry(entry));
    },
    waitForSession(sessionId, position, timeoutMs) {
      const current = sessions.get(sessionId);
      if (current && current.position >= position) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        let pending = waiters.get(sessionId);
        if (!pending) {
          pending = new Set();
          waiters.set(sessionId, pending);
        }
        const set = pending;
        const waiter: Waiter = {
          position,
          settle(reached) {
            clearTimeout(timer);
            set.delete(waiter);
            if (set.size === 0 && waiters.get(sessionId) === set) waiters.delete(sessionId);
            resolve(reached);
          },
        };
        const timer = setTimeout(() => waiter.settle(false), Math.max(0, timeoutMs));
        // A waiter must not keep a shutting-down process alive.
        timer.unref?.();
        set.add(waiter);
      });
    },
    evictExpiredBefore(cutoff) {
      let dropped = 0;
      for (const [sessionId, entry] of sessions) {
        if (entry.expiresAt < cutoff) {
          sessions.delete(sessionId);
          dropped++;
        }
      }
      return dropped;
    },
    get size() {
      return sessions.size;
    },
  };
}

/**
 * Pipes the store's entries into the replica. Resolves once every entry the store held at the start is
 * in the replica; afterwards live updates keep flowing until `stop`.
 */
export async function attachReplica(
  store: ValidationStore,
  replica: ValidationReplica,
): Promise<{ stop(): Promise<void> }> {
  const watch = await store.watch({
    onSession: (entry) => replica.offerSession(entry),
    onUser: (entry) => replica.offerUser(entry),
    // An offer at or below the held position is a no-op, so the store need not decode that entry.
    holdsSession: (sessionId, position) => (replica.getSession(sessionId)?.position ?? -1) >= position,
  });
  return { stop: () => watch.stop() };
}
