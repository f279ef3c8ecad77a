import type { RateLimitCounter } from "../../app/rate-limit-counter.ts";
import type { Clock } from "../../domain/ports.ts";

/** Keys (client addresses, usernames) a window is kept for per limit, as @fastify/rate-limit's local store. */
const MAX_TRACKED_KEYS = 5_000;

type Window = { startedAt: number; count: number };

/**
 * Fixed windows per key in this process's memory: a key's window starts with its first request; past
 * `max` requests in it, refuse until it ends. Synchronous, because the validation limit runs on every
 * validation. When more than 5,000 keys are tracked, the key whose window started longest ago is
 * forgotten (its count starts again).
 *
 * Returns a check: undefined when the request is allowed, else the seconds until the window ends.
 */
export function localFixedWindows(
  windowMs: number,
  now: () => number = Date.now,
): (key: string, max: number) => number | undefined {
  const windows = new Map<string, Window>();
  return (key, max) => {
    const at = now();
    let window = windows.get(key);
    if (window === undefined || window.startedAt + windowMs <= at) {
      if (window !== undefined) windows.delete(key);
      else if (windows.size >= MAX_TRACKED_KEYS) {
        const oldest = windows.keys().next().value;
        if (oldest !== undefined) windows.delete(oldest);
      }
      window = { startedAt: at, count: 0 };
      windows.set(key, window);
    }
    window.count++;
    if (window.count <= max) return undefined;
    return Math.ceil((window.startedAt + windowMs - at) / 1000);
  };
}

/**
 * Embedded mode's counter: one process, so its memory is the whole deployment. Each limit keeps its own
 * windows, so many subjects under one limit never push another limit's counts out.
 */
export function createInMemoryRateLimitCounter(options: {
  windowSeconds: number;
  clock: Clock;
}): RateLimitCounter {
  const limits = new Map<string, ReturnType<typeof localFixedWindows>>();
  const now = () => options.clock.now();
  return {
    async hit(limit, subject, max) {
      let check = limits.get(limit);
      if (check === undefined) {
        check = localFixedWindows(options.windowSeconds * 1000, now);
        limits.set(limit, check);
      }
      const retryAfter = check(subject, max);
      return retryAfter === undefined
        ? { allowed: true }
        : { allowed: false, retryAfterSeconds: Math.max(1, retryAfter) };
    },
  };
}
