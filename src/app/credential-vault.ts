import type { RecordedEvent, SealedCredentials } from "../domain/events.ts";
import { sessionStream } from "../domain/events.ts";
import type { Clock, EventLog } from "../domain/ports.ts";
import {
  CredentialCryptoError,
  newDataKey,
  openCredentials,
  sealCredentials,
  unwrapDataKey,
  type WrappedKey,
  wrapDataKey,
} from "./credential-crypto.ts";

/**
 * Upstream credentials kept only for a session's life (DESIGN §10, seed 000), by crypto-shredding: the
 * ciphertext is in the session's SessionCreated (the log stays complete and append-only), the session's data
 * key — wrapped under the master key — is in a key store, and destroying that key when the session ends
 * makes the ciphertext unreadable for good. See docs/credentials.md.
 */

/** Where wrapped data keys live: a NATS KV bucket, or memory in embedded mode. */
export interface CredentialKeyStore {
  put(sessionId: string, wrapped: WrappedKey): Promise<void>;
  get(sessionId: string): Promise<WrappedKey | undefined>;
  /** Removes the key and every earlier revision of it. Idempotent; false when there was none. */
  purge(sessionId: string): Promise<boolean>;
  /** The sessions that have a key (the orphan sweep). */
  sessionIds(): Promise<string[]>;
  /** Forgets the markers purges leave behind once they are older than `olderThanMs` (KV), if any. */
  compact?(olderThanMs: number): Promise<void>;
}

export type CredentialsErrorCode =
  | "credentials_invalid"
  | "credentials_unsupported"
  | "credentials_not_found"
  | "credentials_destroyed"
  | "credentials_unreadable";

/** A refusal about credentials; the HTTP edge maps the code to a status (routes/credentials.ts). */
export class CredentialsError extends Error {
  readonly code: CredentialsErrorCode;

  constructor(code: CredentialsErrorCode, message: string) {
    super(message);
    this.name = "CredentialsError";
    this.code = code;
  }
}

/** Event types after which a session's credentials must be unreadable. */
export const SESSION_ENDINGS: ReadonlySet<string> = new Set([
  "SessionInvalidated",
  "SessionExpired",
  "SessionRecycled",
]);

export type CredentialVaultDeps = {
  keys: CredentialKeyStore;
  /** 32 bytes (TESSERA_CREDENTIALS_KEY, or generated per process in embedded mode). */
  masterKey: Buffer;
  log: EventLog;
  clock: Clock;
};

export type CredentialVault = ReturnType<typeof createCredentialVault>;

export function createCredentialVault(deps: CredentialVaultDeps) {
  const { keys, masterKey, log, clock } = deps;

  return {
    /**
     * Encrypts a new session's credentials under a fresh data key and stores that key (wrapped) BEFORE the
     * caller appends the event: a key without an event is garbage the sweep removes, an event without a key
     * could never be read. The returned ciphertext goes into SessionCreated.
     */
    async seal(sessionId: string, credentials: Record<string, unknown>): Promise<SealedCredentials> {
      const dataKey = newDataKey();
      try {
        const sealed = sealCredentials(dataKey, sessionId, JSON.stringify(credentials));
        await keys.put(sessionId, wrapDataKey(masterKey, sessionId, dataKey, clock.now()));
        return sealed;
      } finally {
        dataKey.fill(0);
      }
    },

    /**
     * The session's credentials, read from its SessionCreated and opened with its data key. The caller has
     * established that it may read them (the session's own token, checked before).
     */
    async open(sessionId: string): Promise<Record<string, unknown>> {
      const { events } = await log.readStream(sessionStream(sessionId));
      const sealed = sealedIn(events);
      if (sealed === undefined)
        throw new CredentialsError("credentials_not_found", "This session holds no credentials");
      if (events.some((event) => SESSION_ENDINGS.has(event.type))) throw destroyed();
      const wrapped = await keys.get(sessionId);
      if (wrapped === undefined) throw destroyed();
      let dataKey: Buffer | undefined;
      try {
        dataKey = unwrapDataKey(masterKey, sessionId, wrapped);
        return JSON.parse(openCredentials(dataKey, sessionId, sealed)) as Record<string, unknown>;
      } catch (error) {
        if (!(error instanceof CredentialCryptoError)) throw error;
        throw new CredentialsError(
          "credentials_unreadable",
          "The stored credentials cannot be decrypted with this instance's TESSERA_CREDENTIALS_KEY",
        );
      } finally {
        dataKey?.fill(0);
      }
    },

    /** Whether the session was created with credentials (whatever has become of them since). */
    async holdsCredentials(sessionId: string): Promise<boolean> {
      const { events } = await log.readStream(sessionStream(sessionId));
      return sealedIn(events) !== undefined;
    },

    /** Destroys the session's data key (crypto-shredding). Idempotent. */
    destroy(sessionId: string): Promise<boolean> {
      return keys.purge(sessionId);
    },

    /**
     * Removes keys whose session never got its event (a create that failed after the key was written, an
     * idempotent retry that returned the original session) or has ended without its key being purged.
     * Keys younger than `graceMs` are left alone: their create may still be appending. Returns how many it
     * removed.
     */
    async sweep(graceMs: number): Promise<number> {
      const cutoff = clock.now() - graceMs;
      let removed = 0;
      for (const sessionId of await keys.sessionIds()) {
        const wrapped = await keys.get(sessionId);
        if (wrapped === undefined || wrapped.at > cutoff) continue;
        const { events } = await log.readStream(sessionStream(sessionId));
        const orphan = sealedIn(events) === undefined;
        if (orphan || events.some((event) => SESSION_ENDINGS.has(event.type))) {
          if (await keys.purge(sessionId)) removed++;
        }
      }
      await keys.compact?.(graceMs);
      return removed;
    },
  };
}

function sealedIn(events: RecordedEvent[]): SealedCredentials | undefined {
  const created = events[0];
  return created?.type === "SessionCreated" ? created.data.credentials : undefined;
}

const destroyed = () =>
  new CredentialsError(
    "credentials_destroyed",
    "This session has ended: its credentials were destroyed with it",
  );
