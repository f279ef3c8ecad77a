import type { ValidationEntry } from "../projections/validation-entry.ts";
import type { ValidationReplica } from "./ports.ts";

/**
 * Which sessions fall due when: the expiry scheduler's in-memory index, one per instance, fed by every
 * entry that reaches this instance's validation replica (its own writes at once, everyone else's through
 * the KV watch), so it does not wait for the Postgres read model.
 *
 * Sessions sit in one-second buckets, found through a min-heap of bucket seconds. The index is lazy: a
 * session is filed under a deadline no later than its real one, and is re-checked against the replica
 * when its bucket comes up. Because a session's deadline never moves earlier (renewals extend, activity
 * only moves forward), an update never needs to move the session: it stays in its old bucket and is
 * re-filed if, when that bucket comes up, it turns out not to be due yet. Ended sessions simply fall out.
 * The cost is one array slot per active session, the id string being the replica's own.
 */
export type DeadlineIndex = {
  /** Files `sessionId` under `deadline` (epoch ms). */
  add(sessionId: string, deadline: number): void;
  /** Removes and returns every id filed under a second at or before `now`'s second. */
  takeUntil(now: number): string[];
  /** Ids filed (a session may be filed more than once for a while). */
  readonly size: number;
};

/** When an active session stops being valid: the earlier of its absolute and idle deadlines (epoch ms). */
export function deadlineOf(
  entry: Pick<ValidationEntry, "expiresAt" | "idleTimeoutSeconds" | "lastActivityAt">,
) {
  return entry.idleTimeoutSeconds > 0
    ? Math.min(entry.expiresAt, entry.lastActivityAt + entry.idleTimeoutSeconds * 1000)
    : entry.expiresAt;
}

export function createDeadlineIndex(): DeadlineIndex {
  const buckets = new Map<number, string[]>();
  const heap: number[] = [];
  let size = 0;

  return {
    add(sessionId, deadline) {
      const second = Math.floor(deadline / 1000);
      const bucket = buckets.get(second);
      if (bucket) bucket.push(sessionId);
      else {
        buckets.set(second, [sessionId]);
        heapPush(heap, second);
      }
      size++;
    },
    takeUntil(now) {
      const until = Math.floor(now / 1000);
      const taken: string[] = [];
      while (heap.length > 0 && (heap[0] as number) <= until) {
        const second = heapPop(heap) as number;
        const bucket = buckets.get(second);
        buckets.delete(second);
        if (bucket) for (const id of bucket) taken.push(id);
      }
      size -= taken.length;
      return taken;
    },
    get size() {
      return size;
    },
  };
}

/**
 * The replica, with every session entry it accepts also filed in the index: new active sessions, and
 * sessions whose deadline moved earlier than where they are filed (which the domain never does, but a
 * wrong guess here would mean a missed expiry, so it is handled).
 */
export function indexReplica(replica: ValidationReplica, index: DeadlineIndex): ValidationReplica {
  return {
    // The replica's own lookups, not wrappers: these run on every validation.
    getSession: replica.getSession.bind(replica),
    getUser: replica.getUser.bind(replica),
    offerSession(entry) {
      const before = replica.getSession(entry.sessionId);
      replica.offerSession(entry);
      const after = replica.getSession(entry.sessionId);
      if (after === undefined || after === before || after.status !== "active") return;
      const deadline = deadlineOf(after);
      if (before === undefined || before.status !== "active" || deadline < deadlineOf(before)) {
        index.add(after.sessionId, deadline);
      }
    },
    offerUser: (entry) => replica.offerUser(entry),
    waitForSession: (sessionId, position, timeoutMs) =>
      replica.waitForSession(sessionId, position, timeoutMs),
    evictExpiredBefore: (cutoff) => replica.evictExpiredBefore(cutoff),
    get size() {
      return replica.size;
    },
  };
}

function heapPush(heap: number[], value: number) {
  heap.push(value);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if ((heap[parent] as number) <= value) break;
    heap[i] = heap[parent] as number;
    i = parent;
  }
  heap[i] = value;
}

function heapPop(heap: number[]): number | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length === 0 || last === undefined) return top;
  let i = 0;
  for (;;) {
    const left = 2 * i + 1;
    if (left >= heap.length) break;
    const right = left + 1;
    const child = right < heap.length && (heap[right] as number) < (heap[left] as number) ? right : left;
    if ((heap[child] as number) >= last) break;
    heap[i] = heap[child] as number;
    i = child;
  }
  heap[i] = last;
  return top;
}
