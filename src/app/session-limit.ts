import { concurrencyConflict, DomainError } from "../domain/errors.ts";
import type { Clock } from "../domain/ports.ts";
import { isRevokedByUser, type ValidationEntry } from "../projections/validation-entry.ts";
import type { ValidationReplica } from "./ports.ts";

/**
 * The concurrent-session limit per user (TESSERA_MAX_SESSIONS_PER_USER), exact across instances.
 *
 * Each user has one slot list in a shared store (a NATS KV key, or its in-memory twin): the ids of the
 * sessions that hold a slot. A create first reserves a slot with a compare-and-set on that list, then
 * appends its SessionCreated. Because every reservation replaces the list at a known revision, two
 * racing logins on two instances cannot both take the last slot: one write wins, the other re-reads,
 * re-decides on the new list and is refused (`reject`) or evicts the oldest (`evict_oldest`). The list
 * is self-cleaning: on every reservation, slots whose session has ended are dropped, and so are
 * reservations whose session never appeared within a grace period (a create that crashed half way).
 * See docs/policies.md.
 */

export type Slot = { sessionId: string; reservedAt: number };
export type SlotList = { slots: Slot[]; revision: number };

/** A user's slot list with compare-and-set writes. Revision 0 means "no list yet". */
export interface SessionSlotStore {
  read(userId: string): Promise<SlotList>;
  /** Replaces the list if it is still at `expectedRevision`; false when someone else wrote first. */
  write(userId: string, slots: Slot[], expectedRevision: number): Promise<boolean>;
}

export type LimitPolicy = "reject" | "evict_oldest";

export type Admission = { evicted: string[] };

/** The session's validation entry, or undefined while it does not exist (yet). */
export type SessionLookup = (sessionId: string) => Promise<ValidationEntry | undefined>;

const MAX_ATTEMPTS = 50;
/** How long a reservation without a session counts as "being created" before it is reclaimed. */
const DEFAULT_GRACE_MS = 60_000;

export const sessionLimitReached = (max: number) =>
  new DomainError("session_limit_reached", `The user already has the maximum of ${max} active sessions`, {
    max,
  });

export function createSessionLimiter(deps: {
  store: SessionSlotStore;
  replica: ValidationReplica;
  clock: Clock;
  max: number;
  policy: LimitPolicy;
  graceMs?: number;
  /**
   * The user's active sessions as some other source knows them (the read model), used when the user has
   * no list yet, so sessions created before the limit was switched on count too.
   */
  seed?: (userId: string) => Promise<string[]>;
}) {
  const { store, clock, max, policy } = deps;
  const graceMs = deps.graceMs ?? DEFAULT_GRACE_MS;

  function live(entry: ValidationEntry, now: number): boolean {
    if (entry.status !== "active" || now >= entry.expiresAt) return false;
    if (entry.idleTimeoutSeconds > 0 && now >= entry.lastActivityAt + entry.idleTimeoutSeconds * 1000) {
      return false;
    }
    return !isRevokedByUser(deps.replica.getUser(entry.userId), entry.sessionId, entry.createdAt);
  }

  /** The slots still held, each marked whether its session exists yet. */
  async function held(slots: Slot[], lookup: SessionLookup, now: number) {
    const checked = await Promise.all(
      slots.map(async (slot) => {
        const entry = await lookup(slot.sessionId);
        if (!entry) return now - slot.reservedAt < graceMs ? { slot, created: false } : undefined;
        return live(entry, now) ? { slot, created: true } : undefined;
      }),
    );
    return checked.filter((item) => item !== undefined);
  }

  async function readOrSeed(userId: string): Promise<SlotList> {
    const list = await store.read(userId);
    if (list.revision !== 0 || !deps.seed) return list;
    // reservedAt 0: a seeded id counts only if its session exists and is live, never as "being created".
    const ids = await deps.seed(userId);
    return { slots: ids.map((sessionId) => ({ sessionId, reservedAt: 0 })), revision: 0 };
  }

  async function backoff(attempt: number) {
    const ms = Math.min(50, 2 ** Math.min(attempt, 6)) * Math.random();
    await new Promise((resolve) => setTimeout(resolve, ms));
  }

  return {
    max,
    policy,

    /**
     * Reserves a slot for `sessionId` (call before appending its SessionCreated). Throws
     * `session_limit_reached` under `reject`; under `evict_oldest` returns the sessions the caller must
     * now end with reason `evicted` (established sessions first, oldest first).
     */
    async admit(userId: string, sessionId: string, lookup: SessionLookup): Promise<Admission> {
      for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        const now = clock.now();
        const { slots, revision } = await readOrSeed(userId);
        const holding = await held(slots, lookup, now);
        if (holding.some((item) => item.slot.sessionId === sessionId)) return { evicted: [] };
        let kept = holding;
        let evicted: Slot[] = [];
        if (holding.length >= max) {
          if (policy === "reject") throw sessionLimitReached(max);
          const order = [...holding].sort(
            (a, b) =>
              Number(a.created === false) - Number(b.created === false) ||
              a.slot.reservedAt - b.slot.reservedAt ||
              a.slot.sessionId.localeCompare(b.slot.sessionId),
          );
          const excess = holding.length - max + 1;
          evicted = order.slice(0, excess).map((item) => item.slot);
          kept = order.slice(excess);
        }
        const next = [...kept.map((item) => item.slot), { sessionId, reservedAt: now }].sort(
          (a, b) => a.reservedAt - b.reservedAt,
        );
        if (await store.write(userId, next, revision)) {
          return { evicted: evicted.map((slot) => slot.sessionId) };
        }
        await backoff(attempt);
      }
      throw concurrencyConflict(`slots:${userId}`, MAX_ATTEMPTS);
    },

    /** Gives a reservation back (its create failed or was a retry of an earlier one). Best effort. */
    async release(userId: string, sessionId: string): Promise<void> {
      for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        const { slots, revision } = await store.read(userId);
        const next = slots.filter((slot) => slot.sessionId !== sessionId);
        if (next.length === slots.length) return;
        if (await store.write(userId, next, revision)) return;
        await backoff(attempt);
      }
    },

    /** Does `sessionId` still hold its slot? False once a racing login evicted it. */
    async holds(userId: string, sessionId: string): Promise<boolean> {
      const { slots } = await store.read(userId);
      return slots.some((slot) => slot.sessionId === sessionId);
    },
  };
}

export type SessionLimiter = ReturnType<typeof createSessionLimiter>;

/**
 * Creates a session under the limit: reserve a slot, end the sessions it displaces (before the new one
 * exists, so the user never has more than `max` live sessions), create, and give the slot back if the
 * create failed or was a retry. Under `evict_oldest` a create can itself be displaced by a racing login
 * while it runs; it then ends its own session (`evicted`) and reports the limit.
 */
export async function createWithinLimit<R>(
  limiter: SessionLimiter | undefined,
  steps: {
    userId: string;
    sessionId: string;
    lookup: SessionLookup;
    evict: (sessionId: string) => Promise<void>;
    create: () => Promise<R>;
    isDuplicate: (result: R) => boolean;
    endOwn: () => Promise<void>;
  },
): Promise<R> {
  if (!limiter) return steps.create();
  const { userId, sessionId } = steps;
  const admission = await limiter.admit(userId, sessionId, steps.lookup);
  let result: R;
  try {
    for (const evicted of admission.evicted) await steps.evict(evicted);
    result = await steps.create();
  } catch (error) {
    await limiter.release(userId, sessionId).catch(() => undefined);
    throw error;
  }
  if (steps.isDuplicate(result)) {
    await limiter.release(userId, sessionId).catch(() => undefined);
    return result;
  }
  if (limiter.policy === "evict_oldest" && !(await limiter.holds(userId, sessionId))) {
    await steps.endOwn();
    throw sessionLimitReached(limiter.max);
  }
  return result;
}
