import type { DomainEvent, EventMetadata, RecordedEvent, StreamName } from "../../domain/events.ts";
import {
  type AppendOptions,
  type AppendResult,
  type Clock,
  type EventLog,
  type Follower,
  type FollowOptions,
  type StreamRead,
  VersionConflictError,
} from "../../domain/ports.ts";
import { decodeRecordedEvent, encodeEvent, type UpcasterRegistry } from "../codec/event-codec.ts";
import { assertAppendOptions, assertFollowOptions } from "../codec/event-log-guards.ts";
import { createFollowerSet } from "../codec/followers.ts";
import { DEFAULT_DUPLICATE_WINDOW_MS } from "../jetstream/event-stream.ts";
import { createEventSubjects } from "../jetstream/subjects.ts";

/**
 * The embedded event log: the JetStream adapter's semantics in one process, state lost on exit. Events
 * are stored encoded and decoded on every read, and stream names go through the same subject mapping,
 * so both adapters accept, refuse and return exactly the same things. Like NATS, a known msg id is
 * answered from the de-duplication window before the version expectation is checked.
 */

export type InMemoryEventLogOptions = {
  duplicateWindowMs?: number | undefined;
  clock?: Clock | undefined;
  upcasters?: UpcasterRegistry | undefined;
};

type Entry = { stream: StreamName; payload: Uint8Array; traceparent: string | undefined };
type SeenMessage = { position: number; at: number };

const systemClock: Clock = { now: () => Date.now() };

export function createInMemoryEventLog(options: InMemoryEventLogOptions = {}): EventLog {
  const duplicateWindowMs = options.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS;
  const clock = options.clock ?? systemClock;
  const upcasters = options.upcasters;
  // Any valid prefix works: only the id rules and the user-id encoding matter here.
  const subjects = createEventSubjects("mem");

  const entries: Entry[] = [];
  const positionsBySubject = new Map<string, number[]>();
  // Insertion order is arrival order, so expired ids are pruned from the front.
  const seen = new Map<string, SeenMessage>();
  const followers = createFollowerSet();
  // Followers parked until the next append.
  const waiting = new Set<() => void>();
  let closed = false;

  const assertOpen = () => {
    if (closed) throw new Error("The event log is closed");
  };

  const recordedAt = (position: number): RecordedEvent => {
    const entry = entries[position - 1];
    if (entry === undefined) throw new RangeError(`No event at position ${position}`);
    return decodeRecordedEvent(entry.payload, entry.stream, position, entry.traceparent, upcasters);
  };

  const pruneSeen = (now: number) => {
    for (const [messageId, message] of seen) {
      if (now - message.at < duplicateWindowMs) break;
      seen.delete(messageId);
    }
  };

  const log: EventLog = {
    async append(stream: StreamName, event: DomainEvent, metadata: EventMetadata, options: AppendOptions) {
      assertOpen();
      assertAppendOptions(options);
      const subject = subjects.subjectFor(stream);
      const payload = encodeEvent(event, metadata);
      // From here to the end nothing awaits, so concurrent appends are serialized as on the server.
      const now = clock.now();
      pruneSeen(now);
      const duplicate = seen.get(options.messageId);
      if (duplicate !== undefined && now - duplicate.at < duplicateWindowMs) {
        return { position: duplicate.position, duplicate: true } satisfies AppendResult;
      }
      const positions = positionsBySubject.get(subject);
      const actual = positions?.[positions.length - 1] ?? 0;
      if (actual !== options.expectedVersion) throw new VersionConflictError(options.expectedVersion, actual);

      // Stored as JetStream hands it back: the stream name after a round trip through its subject.
      const storedStream = subjects.parse(subject) ?? stream;
      entries.push({ stream: storedStream, payload, traceparent: options.traceparent || undefined });
      const position = entries.length;
      if (positions === undefined) positionsBySubject.set(subject, [position]);
      else positions.push(position);
      seen.delete(options.messageId);
      seen.set(options.messageId, { position, at: now });
      for (const wake of waiting) wake();
      waiting.clear();
      return { position, duplicate: false } satisfies AppendResult;
    },

    async readStream(stream: StreamName): Promise<StreamRead> {
      assertOpen();
      const positions = positionsBySubject.get(subjects.subjectFor(stream)) ?? [];
      return { events: positions.map(recordedAt), version: positions[positions.length - 1] ?? 0 };
    },

    async readAt(position: number) {
      assertOpen();
      if (!Number.isInteger(position) || position < 1 || position > entries.length) return undefined;
      return recordedAt(position);
    },

    async lastPosition() {
      assertOpen();
      return entries.length;
    },

    follow(options: FollowOptions, handler: (batch: RecordedEvent[]) => Promise<void>): Follower {
      assertOpen();
      assertFollowOptions(options);
      let stopped = false;
      let parked: (() => void) | undefined;

      const run = async () => {
        let next = options.from;
        while (!stopped) {
          if (next > entries.length) {
            await new Promise<void>((resolve) => {
              parked = resolve;
              waiting.add(resolve);
            });
            parked = undefined;
            continue;
          }
          // Yield to I/O between batches so a long replay does not starve the process.
          await new Promise<void>((resolve) => setImmediate(resolve));
          if (stopped) return;
          const last = Math.min(entries.length, next + options.batchSize - 1);
          const batch: RecordedEvent[] = [];
          for (let position = next; position <= last; position++) batch.push(recordedAt(position));
          next = last + 1;
          await handler(batch);
        }
      };

      return followers.track(run(), () => {
        stopped = true;
        if (parked !== undefined) {
          waiting.delete(parked);
          parked();
        }
      });
    },

    async close() {
      closed = true;
      await followers.stopAll();
    },
  };
  return log;
}
