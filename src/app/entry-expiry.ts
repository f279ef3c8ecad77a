import { type RecordedEvent, type SessionExpired, sessionStream } from "../domain/events.ts";
import { type Clock, type EventLog, type IdGenerator, VersionConflictError } from "../domain/ports.ts";
import { expiryOf } from "../domain/session-decider.ts";
import { evolveValidationEntry } from "../projections/validation-entry.ts";
import { type CommandObserver, eventMetadata } from "./command-handler.ts";
import type { ExpireFn, ExpireResult } from "./expiry-scheduler.ts";
import type { ValidationReplica, ValidationStore } from "./ports.ts";
import { inSpan } from "./tracing.ts";

export type EntryExpiryDeps = {
  log: EventLog;
  clock: Clock;
  ids: IdGenerator;
  replica: ValidationReplica;
  /** The shared validation view: the ending is written through to it, as every command's ending is. */
  store?: ValidationStore | undefined;
  observer?: CommandObserver | undefined;
  /** Told of every position appended here (the session service's read-your-writes position). */
  appendedAt?: ((position: number) => void) | undefined;
  /** The ExpireSession command proper: reads the session's stream and decides on it. */
  command: ExpireFn;
};

/**
 * ExpireSession for the expiry scheduler, without reading the session's stream first. This instance's
 * replica holds each session as of a log position — the stream's version then — with every fact expiry
 * depends on (status, both deadlines, last activity). So the expiry is decided on that entry, by the
 * decider's own `expiryOf`, and appended with the entry's position as the expected version: the log takes
 * it only if nothing was appended to the session since, i.e. only if it was decided on the current state.
 * Otherwise the command proper runs, which reads the stream and decides again:
 *
 * - a version conflict: renewed, touched or ended since the entry (or the replica is behind);
 * - a duplicate: another instance appended `expire:<id>` first (the command reports what the log holds);
 * - a session the replica does not hold, or holds as ended.
 *
 * One append instead of two reads and an append: the log round trips per expiry are what bound how many
 * sessions a pass ends per second. The write-through to the shared view is handed back as `following`,
 * so the scheduler can start the next append meanwhile. This instance's cached state of the stream, if
 * any, is now behind; the next command on it meets a version conflict and re-reads, as with any write
 * from another instance.
 */
export function createEntryExpirer(deps: EntryExpiryDeps): ExpireFn {
  const { log, clock, ids, replica } = deps;
  return async (sessionId, tick, context): Promise<ExpireResult> => {
    const entry = replica.getSession(sessionId);
    if (entry === undefined || entry.status !== "active") return deps.command(sessionId, tick, context);
    const now = clock.now();
    const event = expiryOf(entry, now, tick);
    // Deadlines only move later, so an entry that is not due yet is not due on the stream either.
    if (event === undefined) return { state: entry, appended: [] };
    const stream = sessionStream(sessionId);
    const metadata = eventMetadata(context, now, 0, ids.uuidv7());
    const appended = await inSpan(
      "command session",
      context.traceparent,
      { "tessera.stream.category": "session", "tessera.source": context.source },
      (traceparent) =>
        log
          .append(stream, event, metadata, {
            expectedVersion: entry.position,
            messageId: context.commandId,
            traceparent,
          })
          .catch((error: unknown) => {
            if (!(error instanceof VersionConflictError)) throw error;
            deps.observer?.conflict("session");
            return undefined;
          }),
    );
    if (appended === undefined || appended.duplicate) return deps.command(sessionId, tick, context);
    const recorded: RecordedEvent<SessionExpired> = {
      ...event,
      metadata,
      stream,
      position: appended.position,
    };
    deps.observer?.appended(event.type);
    deps.appendedAt?.(appended.position);
    const expired = evolveValidationEntry(entry, recorded) ?? entry;
    replica.offerSession(expired);
    // Best effort, as for every ending: the validation projection writes the same entry moments later.
    const following = deps.store?.putSession(expired).catch(() => {});
    return { state: { status: "expired" }, appended: [recorded], following };
  };
}
