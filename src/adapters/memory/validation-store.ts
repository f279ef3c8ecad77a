import type { ValidationStore, ValidationStoreListener } from "../../app/ports.ts";
import type { UserValidationEntry, ValidationEntry } from "../../projections/validation-entry.ts";
import { compactUserValidationEntry, compactValidationEntry } from "./compact-validation-entry.ts";

/**
 * The embedded-mode twin of the NATS KV validation bucket: same rules (an entry with a lower or equal
 * position never replaces a stored one; watchers get every current entry, then live ones). Entries are
 * stored in compact form and handed to watchers as the same objects, so an attached replica shares them
 * instead of holding a second copy.
 */
export function createInMemoryValidationStore(): ValidationStore {
  const sessions = new Map<string, ValidationEntry>();
  const users = new Map<string, UserValidationEntry>();
  const checkpoints = new Map<string, number>();
  const listeners = new Set<ValidationStoreListener>();

  const notify = (deliver: (listener: ValidationStoreListener) => void) => {
    for (const listener of listeners) {
      // One faulty listener must not stop the others or fail the writer.
      try {
        deliver(listener);
      } catch {}
    }
  };

  return {
    async getSession(sessionId) {
      return sessions.get(sessionId);
    },
    async getUser(userId) {
      return users.get(userId);
    },
    async putSession(entry) {
      const current = sessions.get(entry.sessionId);
      if (current && current.position >= entry.position) return;
      const stored = compactValidationEntry(entry);
      sessions.set(stored.sessionId, stored);
      notify((listener) => listener.onSession(stored));
    },
    async putUser(entry) {
      const current = users.get(entry.userId);
      if (current && current.position >= entry.position) return;
      const stored = compactUserValidationEntry(entry);
      users.set(stored.userId, stored);
      notify((listener) => listener.onUser(stored));
    },
    async forgetSessions(sessionIds) {
      for (const id of sessionIds) sessions.delete(id);
    },
    async watch(listener) {
      // Synchronous snapshot then registration: nothing can be written in between, so nothing is missed.
      for (const entry of sessions.values()) listener.onSession(entry);
      for (const entry of users.values()) listener.onUser(entry);
      listeners.add(listener);
      return {
        async stop() {
          listeners.delete(listener);
        },
      };
    },
    async getCheckpoint(name) {
      return checkpoints.get(name) ?? 0;
    },
    async setCheckpoint(name, position) {
      checkpoints.set(name, position);
    },
  };
}
