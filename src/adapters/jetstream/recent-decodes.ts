import type { RecordedEvent } from "../../domain/events.ts";

/**
 * The last events one log decoded, by position, so that followers of the same log in one process share
 * a decode. Every projection an instance runs follows the whole log with its own consumer (validation,
 * sessions, audit, recycle), so each event arrives several times within microseconds — the server
 * sends the deliveries back to back — and was parsed and checked once per follower.
 *
 * A hit needs the same position, subject, traceparent and payload bytes: a stream deleted and created
 * again (positions reused) can never hand out another message's event. Decoding is a pure function of
 * those, so the shared event is the one the follower would have decoded itself. Followers never modify
 * events (projections fold them into new rows and entries). A follower far behind the others just misses
 * and decodes itself; memory is bounded by the ring.
 */

type Slot = {
  position: number;
  subject: string;
  traceparent: string | undefined;
  data: Uint8Array;
  event: RecordedEvent;
};

export type RecentDecodes = {
  lookup(
    position: number,
    subject: string,
    traceparent: string | undefined,
    data: Uint8Array,
  ): RecordedEvent | undefined;
  remember(
    position: number,
    subject: string,
    traceparent: string | undefined,
    data: Uint8Array,
    event: RecordedEvent,
  ): void;
};

export function createRecentDecodes(size: number): RecentDecodes {
  const slots: Array<Slot | undefined> = new Array(size).fill(undefined);
  return {
    lookup(position, subject, traceparent, data) {
      const slot = slots[position % size];
      if (
        slot === undefined ||
        slot.position !== position ||
        slot.subject !== subject ||
        slot.traceparent !== traceparent ||
        slot.data.length !== data.length ||
        Buffer.compare(slot.data, data) !== 0
      ) {
        return undefined;
      }
      return slot.event;
    },
    remember(position, subject, traceparent, data, event) {
      slots[position % size] = { position, subject, traceparent, data, event };
    },
  };
}
