import type { ReplayStore } from "../../app/idp-ports.ts";
import type { Clock } from "../../domain/ports.ts";

/** The replay store of embedded mode: one process, so a Map is the whole truth. Expired keys are swept lazily. */
export function createInMemoryReplayStore(clock: Clock, options: { sweepEvery?: number } = {}): ReplayStore {
  const entries = new Map<string, { value: string; expiresAt: number }>();
  const sweepEvery = options.sweepEvery ?? 1_000;
  let writes = 0;

  const live = (key: string) => {
    const entry = entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= clock.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  };
  const write = (key: string, value: string, expiresAt: number) => {
    entries.set(key, { value, expiresAt });
    if (++writes % sweepEvery === 0) {
      const now = clock.now();
      for (const [k, e] of entries) if (e.expiresAt <= now) entries.delete(k);
    }
  };

  return {
    async claim(key, value, expiresAt) {
      const current = live(key);
      if (current !== undefined) return { won: false, value: current.value };
      write(key, value, expiresAt);
      return { won: true, value };
    },
    async get(key) {
      return live(key)?.value;
    },
    async replace(key, expected, next, expiresAt) {
      if (live(key)?.value !== expected) return false;
      write(key, next, expiresAt);
      return true;
    },
    async release(key) {
      entries.delete(key);
    },
  };
}
