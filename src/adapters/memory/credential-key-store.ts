import type { WrappedKey } from "../../app/credential-crypto.ts";
import type { CredentialKeyStore } from "../../app/credential-vault.ts";

/** The key store of embedded mode: one process, so a Map is the whole truth (and gone on exit, like the log). */
export function createInMemoryCredentialKeyStore(): CredentialKeyStore {
  const keys = new Map<string, WrappedKey>();
  return {
    async put(sessionId, wrapped) {
      keys.set(sessionId, wrapped);
    },
    async get(sessionId) {
      return keys.get(sessionId);
    },
    async purge(sessionId) {
      return keys.delete(sessionId);
    },
    async sessionIds() {
      return [...keys.keys()];
    },
  };
}
