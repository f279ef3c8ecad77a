import type { RecordedEvent, SealedCredentials } from "../domain/events.ts";
import { sessionStream } from "../domain/events.ts";
import type { Clock, EventLog } from "../domain/ports.ts";
import {
  CredentialCryptoError,
  masterKeyRing,
  newDataKey,
  openCredentials,
  sealCredentials,
  unwrapDataKey,
  type WrappedKey,
  wrapDataKey,
} from "./credential-crypto.ts";
import { type RewrapReport, rewrapAll, writeBackUnderCurrent } from "./credential-rewrap.ts";

/**
 * Upstream credentials kept only for a session's life (DESIGN §10, seed 000), by crypto-shredding: the
 * ciphertext is in the session's SessionCreated (the log stays complete and append-only), the session's data
 * key — wrapped under the master key — is in a key store, and destroying that key when the session ends
 * makes the ciphertext unreadable for good. See docs/credentials.md.
 */

/** A wrapped key as stored, with the revision a compare-and-set write must name. */
export type StoredKey = { wrapped: WrappedKey; revision: number };

/** Where wrapped data keys live: a NATS KV bucket, or memory in embedded mode. */
export interface CredentialKeyStore {
  put(sessionId: string, wrapped: WrappedKey): Promise<void>;
  get(sessionId: string): Promise<WrappedKey | undefined>;
  read(sessionId: string): Promise<StoredKey | undefined>;
  /**
   * Replaces the key only if it is still at `revision`; false when it changed or was purged since (the
   * shredder may purge it at any moment: a plain put would bring a destroyed key back to life).
   */
  update(sessionId: string, wrapped: WrappedKey, revision: number): Promise<boolean>;
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
  /** Older master keys (TESSERA_CREDENTIALS_PREVIOUS_KEYS): they open what they wrapped, never wrap. */
  previousKeys?: readonly Buffer[];
  log: EventLog;
  clock: Clock;
};

export type CredentialVault = ReturnType<typeof createCredentialVault>;

export function createCredentialVault(deps: CredentialVaultDeps) {
  const { keys, masterKey, log, clock } = deps;
  const ring = masterKeyRing(masterKey, deps.previousKeys);

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
        await keys.put(sessionId, wrapDataKey(ring.current, sessionId, dataKey, clock.now()));
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
      const stored = await keys.read(sessionId);
      if (stored === undefined) throw destroyed();
      const wrappedUnder = ring.find(stored.wrapped.kid);
      let dataKey: Buffer | undefined;
      try {
        if (wrappedUnder === undefined)
          throw new CredentialCryptoError("the data key was wrapped under a master key not configured here");
        dataKey = unwrapDataKey(wrappedUnder, sessionId, stored.wrapped);
        const plaintext = openCredentials(dataKey, sessionId, sealed);
        // Under a previous key: re-wrap it now rather than wait for the sweep. Best effort — the credentials
        // are served either way, and a failed or lost write (purged meanwhile) is the sweep's to retry or skip.
        if (wrappedUnder !== ring.current)
          await writeBackUnderCurrent(keys, ring, sessionId, stored, dataKey).catch(() => false);
        return JSON.parse(plaintext) as Record<string, unknown>;
      } catch (error) {
        if (!(error instanceof CredentialCryptoError)) throw error;
        throw new CredentialsError(
          "credentials_unreadable",
          "The stored credentials cannot be decrypted with this instance's TESSERA_CREDENTIALS_KEY or TESSERA_CREDENTIALS_PREVIOUS_KEYS",
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

    /** Re-wraps every key still under a previous master key (compare-and-set, see credential-rewrap.ts). */
    rewrap(): Promise<RewrapReport> {
      return rewrapAll(keys, ring);
    },

    /** Whether previous master keys are configured, so a rewrap pass has something to do. */
    rotating: ring.rotating,
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
