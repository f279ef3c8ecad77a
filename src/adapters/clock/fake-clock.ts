import type { Clock } from "../../domain/ports.ts";

/** A clock tests move by hand, so time-dependent behaviour is deterministic and needs no sleeps. */
export type FakeClock = Clock & {
  set(epochMs: number): void;
  advance(ms: number): number;
  onChange(listener: (now: number) => void): () => void;
};

export function createFakeClock(start = Date.parse("2026-01-01T00:00:00.000Z")): FakeClock {
  let current = start;
  const listeners = new Set<(now: number) => void>();
  const notify = () => {
    for (const listener of listeners) listener(current);
  };
  return {
    now: () => current,
    set(epochMs) {
      current = epochMs;
      notify();
    },
    advance(ms) {
      current += ms;
      notify();
      return current;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
