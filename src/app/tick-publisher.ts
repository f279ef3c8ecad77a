import type { TickLog, TickSource } from "../domain/ports.ts";

export type TickPublisherStats = { published: number; duplicates: number; failed: number };

export type TickPublisher = {
  stop(): Promise<void>;
  /** Resolves once every tick emitted so far has been published (or has failed). */
  flushed(): Promise<void>;
  readonly stats: TickPublisherStats;
};

/**
 * Publishes each second the source emits to the time stream, in order, one at a time. If publishing
 * falls behind (NATS unreachable), only the newest `maxQueued` seconds are kept: older ticks would only
 * be coalesced away by the scheduler anyway.
 */
export function startTickPublisher(deps: {
  source: TickSource;
  ticks: TickLog;
  maxQueued?: number;
  onError?: (error: unknown, second: number) => void;
}): TickPublisher {
  const maxQueued = Math.max(1, deps.maxQueued ?? 30);
  const stats: TickPublisherStats = { published: 0, duplicates: 0, failed: 0 };
  const queue: number[] = [];
  let draining: Promise<void> | undefined;
  let stopped = false;

  const drain = async () => {
    while (queue.length > 0) {
      const second = queue.shift() as number;
      try {
        const { duplicate } = await deps.ticks.publish(second);
        if (duplicate) stats.duplicates++;
        else stats.published++;
      } catch (error) {
        stats.failed++;
        deps.onError?.(error, second);
      }
    }
    draining = undefined;
  };

  const stopSource = deps.source.start((second) => {
    if (stopped) return;
    queue.push(second);
    if (queue.length > maxQueued) queue.splice(0, queue.length - maxQueued);
    draining ??= drain();
  });

  return {
    async stop() {
      stopped = true;
      stopSource();
      queue.length = 0;
      await draining;
    },
    async flushed() {
      while (draining) await draining;
    },
    get stats() {
      return stats;
    },
  };
}
