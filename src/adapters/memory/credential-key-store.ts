import type { CredentialKeyStore, StoredKey } from "../../app/credential-vault.ts";

/** The key store of embedded mode: one process, so a Map is the whole truth (and gone on exit, like the log). */
export function createInMemoryCredentialKeyStore(): CredentialKeyStore {
  const keys = new Map<string, StoredKey>();
  // One counter for the whole store, like a KV bucket's sequence: a purged and re-put key never reuses a
  // revision, so a compare-and-set against the old one fails as it does on NATS.
  let revision = 0;
  return {
    async put(sessionId, wrapped) {
      keys.set(sessionId, { wrapped, revision: ++revision });
    },
    async get(sessionId) {
      return keys.get(sessionId)?.wrapped;
    },
    async read(sessionId) {
      return keys.get(sessionId);
    },
    async update(sessionId, wrapped, expected) {
      if (keys.get(sessionId)?.revision !== expected) return false;
      keys.set(sessionId, { wrapped, revision: ++revision });
      return true;
    },
    async purge(sessionId) {
      return keys.delete(sessionId);
    },
    async sessionIds() {
      return [...keys.keys()];
    },
  };
}
