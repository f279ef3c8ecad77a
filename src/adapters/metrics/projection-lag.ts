import type { Clock, EventLog } from "../../domain/ports.ts";

/** A projection's stored checkpoint, read without touching the runner's own bookkeeping. */
export type ProjectionCheckpoint = { name: string; checkpoint(): Promise<number> };

export type ProjectionLag =
  | { name: string; ok: true; events: number; seconds: number }
  | { name: string; ok: false; error: unknown };

/**
 * How far each projection is behind the log, in events and in seconds. The seconds are the age of the
 * oldest event the projection has not applied yet (0 when it has applied everything): it grows steadily
 * while a projection is stalled, even when nothing new is written, and stays near 0 for a projection that
 * keeps up under sustained load — "time since the checkpoint last equalled the head" would climb forever
 * there, since the head keeps moving. Checkpoints are shared (Postgres, KV), so every instance reports
 * the same figures whichever instance holds a projection's lease.
 *
 * Cost per call: one read of the log's head, one read per checkpoint, and one event read per projection
 * that is behind.
 */
export async function measureProjectionLag(deps: {
  log: Pick<EventLog, "lastPosition" | "readAt">;
  clock: Clock;
  projections: readonly ProjectionCheckpoint[];
}): Promise<ProjectionLag[]> {
  const head = await deps.log.lastPosition();
  return Promise.all(
    deps.projections.map(async ({ name, checkpoint }): Promise<ProjectionLag> => {
      try {
        const applied = await checkpoint();
        if (applied >= head) return { name, ok: true, events: 0, seconds: 0 };
        // The oldest unapplied event; if it cannot be read, the newest one's age is still a lower bound.
        const oldest = (await deps.log.readAt(applied + 1)) ?? (await deps.log.readAt(head));
        const occurredAt = oldest === undefined ? Number.NaN : Date.parse(oldest.metadata.occurredAt);
        const seconds = Number.isFinite(occurredAt) ? (deps.clock.now() - occurredAt) / 1000 : 0;
        // Another instance's clock may run ahead of ours: never report a negative age.
        return { name, ok: true, events: head - applied, seconds: Math.max(0, seconds) };
      } catch (error) {
        return { name, ok: false, error };
      }
    }),
  );
}

/**
 * Calls `measure` at most once at a time: callers arriving while it runs share its result. Both lag
 * gauges are collected in the same scrape, so they share one measurement (and agree with each other).
 */
export function shareInFlight<T>(measure: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  return () => {
    running ??= measure().finally(() => {
      running = undefined;
    });
    return running;
  };
}
