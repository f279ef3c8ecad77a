import { forEachBounded } from "../app/for-each-bounded.ts";
import type { ValidationReplica, ValidationStore } from "../app/ports.ts";
import { isSessionEvent, type RecordedEvent } from "../domain/events.ts";
import { CheckpointConflictError, type ProjectionTarget } from "./runner.ts";
import {
  evolveUserValidationEntry,
  evolveValidationEntry,
  type UserValidationEntry,
  type ValidationEntry,
} from "./validation-entry.ts";

/**
 * Projects the log into the validation view. Each batch folds every event into its session or user entry,
 * writes each changed key once (in parallel, bounded), then records the checkpoint. Replaying events
 * changes nothing: an event at or below an entry's position leaves it as is, and the store refuses
 * older positions anyway.
 *
 * Entries this runner read or wrote are cached so a busy session is not re-read per batch. The cache is
 * only trusted while the stored checkpoint is the one this runner last saw: after a restart, a lost
 * lease, a failed batch or a checkpoint moved by someone else it is dropped, because another runner may
 * have folded events this cache never saw.
 */

export const VALIDATION_PROJECTION = "validation";

export type ValidationProjectionOptions = {
  store: ValidationStore;
  /** This instance's replica: fed each written entry at once, before the KV watch brings it round. */
  replica?: ValidationReplica | undefined;
  /** Most entries (sessions and users each) kept in the write-through cache. */
  cacheSize?: number;
  /** Most store reads or writes in flight at once. */
  concurrency?: number;
};

export function createValidationProjection(options: ValidationProjectionOptions): ProjectionTarget {
  const { store, replica } = options;
  const concurrency = options.concurrency ?? 64;
  const sessions = createBoundedCache<ValidationEntry>(options.cacheSize ?? 20_000);
  const users = createBoundedCache<UserValidationEntry>(options.cacheSize ?? 20_000);
  /** The checkpoint as this runner last saw or wrote it; undefined until read. */
  let seen: number | undefined;

  const forget = () => {
    sessions.clear();
    users.clear();
  };

  /** The current entry of every key the batch touches: from the cache, else from the store. */
  const load = async (batch: RecordedEvent[]) => {
    const batchSessions = new Map<string, ValidationEntry | undefined>();
    const batchUsers = new Map<string, UserValidationEntry | undefined>();
    const missingSessions: string[] = [];
    const missingUsers: string[] = [];
    for (const event of batch) {
      if (isSessionEvent(event)) {
        const id = event.data.sessionId;
        if (batchSessions.has(id)) continue;
        batchSessions.set(id, sessions.get(id));
        // A session's first event builds its entry from nothing, so there is nothing to read: under load
        // most events are creations, and a read of a key that does not exist yet is a round trip (and
        // an error object) per new session. Replayed, the entry comes out the same (the fold is
        // deterministic) and the store keeps the newer one (writes are position-guarded).
        if (!sessions.has(id) && event.type !== "SessionCreated") missingSessions.push(id);
      } else {
        const id = event.data.userId;
        if (batchUsers.has(id)) continue;
        batchUsers.set(id, users.get(id));
        if (!users.has(id)) missingUsers.push(id);
      }
    }
    await Promise.all([
      forEachBounded(missingSessions, concurrency, async (id) => {
        batchSessions.set(id, await store.getSession(id));
      }),
      forEachBounded(missingUsers, concurrency, async (id) => {
        batchUsers.set(id, await store.getUser(id));
      }),
    ]);
    return { batchSessions, batchUsers };
  };

  const fold = (
    batch: RecordedEvent[],
    batchSessions: Map<string, ValidationEntry | undefined>,
    batchUsers: Map<string, UserValidationEntry | undefined>,
  ) => {
    const changedSessions = new Map<string, ValidationEntry>();
    const changedUsers = new Map<string, UserValidationEntry>();
    for (const event of batch) {
      if (isSessionEvent(event)) {
        const id = event.data.sessionId;
        const current = batchSessions.get(id);
        const next = evolveValidationEntry(current, event);
        if (next && next !== current) {
          batchSessions.set(id, next);
          changedSessions.set(id, next);
        }
      } else {
        const id = event.data.userId;
        const current = batchUsers.get(id);
        const next = evolveUserValidationEntry(current, event);
        if (next !== current) {
          batchUsers.set(id, next);
          changedUsers.set(id, next);
        }
      }
    }
    return { changedSessions, changedUsers };
  };

  return {
    name: VALIDATION_PROJECTION,
    async checkpoint() {
      forget();
      seen = await store.getCheckpoint(VALIDATION_PROJECTION);
      return seen;
    },
    async applyBatch(batch) {
      const last = batch.at(-1);
      if (last === undefined) return;
      try {
        const stored = await store.getCheckpoint(VALIDATION_PROJECTION);
        if (seen !== undefined && stored !== seen) {
          throw new CheckpointConflictError(VALIDATION_PROJECTION, seen, stored);
        }
        const { batchSessions, batchUsers } = await load(batch);
        const { changedSessions, changedUsers } = fold(batch, batchSessions, batchUsers);
        await Promise.all([
          forEachBounded([...changedSessions.values()], concurrency, async (entry) => {
            await store.putSession(entry);
            replica?.offerSession(entry);
          }),
          forEachBounded([...changedUsers.values()], concurrency, async (entry) => {
            await store.putUser(entry);
            replica?.offerUser(entry);
          }),
        ]);
        // Never move the checkpoint back: a replayed older batch is applied (as a no-op) but not recorded.
        const position = Math.max(stored, last.position);
        if (position !== stored) await store.setCheckpoint(VALIDATION_PROJECTION, position);
        seen = position;
        for (const [id, entry] of batchSessions) sessions.set(id, entry);
        for (const [id, entry] of batchUsers) users.set(id, entry);
      } catch (error) {
        // The cache may now hold entries that were never written; the next attempt must read the store.
        forget();
        seen = undefined;
        throw error;
      }
    },
  };
}

/**
 * Most-recently-used entries, `undefined` cached too (the store has no entry). Evicts the least recently
 * set key when full.
 */
function createBoundedCache<T>(capacity: number) {
  const map = new Map<string, T | undefined>();
  return {
    has: (key: string) => map.has(key),
    get: (key: string) => map.get(key),
    set(key: string, value: T | undefined) {
      map.delete(key);
      if (map.size >= capacity) {
        const oldest = map.keys().next();
        if (!oldest.done) map.delete(oldest.value);
      }
      map.set(key, value);
    },
    clear: () => map.clear(),
  };
}
