import { createInMemoryEventLog } from "../../src/adapters/memory/event-log.ts";
import { defaultPolicy, type SessionPolicy } from "../../src/app/policy.ts";
import type { SessionReadModel, ValidationReplica } from "../../src/app/ports.ts";
import type { Clock, EventLog } from "../../src/domain/ports.ts";

/**
 * The in-memory setting of the tests of commands decided on a replica's entry (entry-expiry,
 * invalidate-on-entry): instances sharing one log that counts its stream reads.
 */

/** Short lifetimes, so a test reaches every deadline with a few clock steps. */
export const entryTestPolicy: SessionPolicy = {
  ...defaultPolicy,
  defaultTtlSeconds: 60,
  maxLifetimeSeconds: 86_400,
  retentionSeconds: 86_400,
};

/** Creating, renewing, expiring and invalidating never consult the read model (no session limit). */
export const noReadModel = {} as SessionReadModel;

/** An in-memory log whose `readStream` calls `onRead` first and answers after `onRead`'s promise, if any. */
export function readCountingLog(clock: Clock, onRead: () => Promise<void> | undefined): EventLog {
  const inner = createInMemoryEventLog({ clock });
  return {
    ...inner,
    append: inner.append.bind(inner),
    readAt: inner.readAt.bind(inner),
    lastPosition: inner.lastPosition.bind(inner),
    follow: inner.follow.bind(inner),
    close: inner.close.bind(inner),
    readStream: async (stream) => {
      const gate = onRead();
      const read = await inner.readStream(stream);
      if (gate) await gate;
      return read;
    },
  };
}

/** Another instance (made by `make`) that has seen the session only through the shared view. */
export function observerOf<I extends { replica: ValidationReplica }>(
  of: I,
  sessionId: string,
  make: () => I,
): I {
  const other = make();
  const entry = of.replica.getSession(sessionId);
  if (entry) other.replica.offerSession(entry);
  return other;
}
