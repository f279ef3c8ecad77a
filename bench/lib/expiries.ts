import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { decodeRecordedEvent } from "../../src/adapters/codec/event-codec.ts";
import { createEventSubjects } from "../../src/adapters/jetstream/subjects.ts";

/**
 * Every `SessionExpired` in a prefix's event log, with the time JetStream stored it. That server
 * timestamp is when the event became part of the log; the event's own `expiredAt` is the clock reading
 * the decider used, taken before the append was sent, so it leaves out the append itself (and a retry
 * after a version conflict).
 */

export type RecordedExpiry = {
  sessionId: string;
  /** JetStream's timestamp of the message (epoch ms, sub-millisecond). */
  storedAt: number;
  /** `data.expiredAt` (epoch ms). */
  expiredAt: number;
  /** `data.deadline` (epoch ms). */
  deadline: number;
  /** The tick whose pass appended it. */
  tick: number | undefined;
};

/** Reads the session subjects from the first message to the last with one ordered consumer. */
export async function readExpiries(nc: NatsConnection, prefix: string): Promise<RecordedExpiry[]> {
  const subjects = createEventSubjects(prefix);
  const js = jetstream(nc);
  const consumer = await js.consumers.get(subjects.streamName, {
    filter_subjects: `${prefix}.evt.session.>`,
    deliver_policy: DeliverPolicy.All,
  });
  const expiries: RecordedExpiry[] = [];
  const messages = await consumer.consume({ max_messages: 2_048 });
  try {
    for await (const m of messages) {
      const stream = subjects.parse(m.subject);
      // Only SessionExpired is decoded: everything else is most of the log and of no interest here.
      if (stream !== undefined && mentionsExpired(m.data)) {
        const event = decodeRecordedEvent(m.data, stream, m.seq, undefined);
        if (event.type === "SessionExpired") {
          expiries.push({
            sessionId: event.data.sessionId,
            storedAt: Number(m.timestampNanos / 1_000n) / 1_000,
            expiredAt: Date.parse(event.data.expiredAt),
            deadline: Date.parse(event.data.deadline),
            tick: event.data.tick,
          });
        }
      }
      if (m.info.pending === 0) break;
    }
  } finally {
    messages.stop();
  }
  return expiries;
}

const EXPIRED = '"SessionExpired"';

function mentionsExpired(data: Uint8Array): boolean {
  return Buffer.from(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength).includes(EXPIRED);
}

/**
 * Waits until the event log reaches `position` (or `until`, epoch ms): a cheap stream-info request, so
 * watching does not load the instances (their /metrics runs a read-model query on every scrape).
 */
export async function untilLogPosition(nc: NatsConnection, prefix: string, position: number, until: number) {
  const jsm = await jetstreamManager(nc);
  const name = createEventSubjects(prefix).streamName;
  for (;;) {
    const { state } = await jsm.streams.info(name);
    if (state.last_seq >= position || Date.now() > until) return state.last_seq;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
