import {
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstreamManager,
  type MsgRequest,
  type PubAck,
  type StoredMsg,
} from "@nats-io/jetstream";
import {
  delay,
  headers,
  type MsgHdrs,
  type NatsConnection,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import type { DomainEvent, EventMetadata, RecordedEvent, StreamName } from "../../domain/events.ts";
import {
  type AppendOptions,
  type AppendResult,
  type EventLog,
  type Follower,
  type FollowOptions,
  type StreamRead,
  VersionConflictError,
} from "../../domain/ports.ts";
import {
  decodeRecordedEvent,
  EventDecodeError,
  encodeEvent,
  type UpcasterRegistry,
} from "../codec/event-codec.ts";
import { assertAppendOptions, assertFollowOptions } from "../codec/event-log-guards.ts";
import { createFollowerSet } from "../codec/followers.ts";
import { createBatchHandover } from "./batch-handover.ts";
import { isNatsConnected, natsDown, whenConnected } from "./connection-state.ts";
import { ensureEventStream } from "./event-stream.ts";
import { headerBlockMentions } from "./header-peek.ts";
import { createRecentDecodes } from "./recent-decodes.ts";
import { createEventSubjects } from "./subjects.ts";
import { natsFailure } from "./unavailable.ts";

/**
 * The event log on JetStream. One subject per session or user stream inside one stream; the stream
 * sequence is the global position and the last sequence of a subject is that stream's version.
 *
 * The append path is one request per event: headers are built directly (no stream info, no lookups),
 * and the JetStream client is created once.
 */

export type JetStreamEventLogOptions = {
  nc: NatsConnection;
  prefix: string;
  /** Create or update the event stream first (default true). */
  ensureStream?: boolean | undefined;
  /** Replicas of the event stream when it is created or updated (default 1). */
  replicas?: number | undefined;
  duplicateWindowMs?: number | undefined;
  /** How long to wait for one publish ack (default 5 s). */
  publishTimeoutMs?: number | undefined;
  /** Attempts of a publish that timed out, all with the same Nats-Msg-Id (default 3). */
  publishAttempts?: number | undefined;
  /** Events of one stream read one by one before switching to an ordered consumer (default 8). */
  readWalkLimit?: number | undefined;
  /** Messages an ordered consumer asks for at once (default 512). */
  pullBatch?: number | undefined;
  upcasters?: UpcasterRegistry | undefined;
  /** Told of every publish attempt that failed and will be retried (for logs and metrics). */
  onPublishRetry?: ((attempt: number, error: unknown) => void) | undefined;
  /**
   * While the connection is down (reconnecting), reads fail at once with DependencyUnavailableError (their
   * callers have memory to fall back on: validation answers from its replica), appends wait for it at most
   * DISCONNECTED_GRACE_MS (a cluster moving the client to another server) and then fail the same way, and
   * no publish is retried — instead of the client buffering them until the publish timeout (5 s per
   * attempt). The service sets it, so a caller gets a prompt 503 and retries (with its Idempotency-Key);
   * default false: an append issued meanwhile rides the restart out.
   */
  failWhileDisconnected?: boolean | undefined;
};

// Header names, computed once.
const MSG_ID = "Nats-Msg-Id";
const EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence";
export const TRACEPARENT_HEADER = "traceparent";
const TRACEPARENT_BYTES = new TextEncoder().encode(TRACEPARENT_HEADER);

/**
 * Decoded events kept for the process's other followers of this log (recent-decodes.ts). Followers at the
 * head receive each message within the same socket read; one far behind misses and decodes itself.
 */
const RECENT_DECODES = 512;

/** Messages decoded in a row while following before I/O callbacks get a turn. */
const YIELD_EVERY = 128;

const WRONG_LAST_SEQUENCE = 10071;
const WRONG_LAST_SEQUENCE_UNKNOWN = 10164;
const WRONG_LAST_SEQUENCE_PATTERN = /wrong last sequence: (\d+)/;

export async function createJetStreamEventLog(options: JetStreamEventLogOptions): Promise<EventLog> {
  const { nc, prefix } = options;
  const subjects = createEventSubjects(prefix);
  const streamName = subjects.streamName;
  const publishTimeoutMs = options.publishTimeoutMs ?? 5_000;
  const publishAttempts = Math.max(1, options.publishAttempts ?? 3);
  const readWalkLimit = Math.max(1, options.readWalkLimit ?? 8);
  const pullBatch = Math.max(1, options.pullBatch ?? 512);
  const upcasters = options.upcasters;
  const onPublishRetry = options.onPublishRetry;

  const jsm: JetStreamManager = await jetstreamManager(nc);
  if (options.ensureStream !== false) {
    await ensureEventStream(jsm, prefix, {
      replicas: options.replicas ?? 1,
      duplicateWindowMs: options.duplicateWindowMs,
    });
  }
  const js: JetStreamClient = jsm.jetstream();
  const followers = createFollowerSet();
  let closed = false;

  const assertOpen = () => {
    if (closed) throw new Error("The event log is closed");
  };
  const disconnected = () => options.failWhileDisconnected === true && !isNatsConnected(nc);
  const assertConnected = () => {
    if (disconnected()) throw natsDown("event log");
  };
  /** Undefined while connected (no promise on the hot path), else when it is back or has failed. */
  const reconnected = () => (disconnected() ? whenConnected(nc, "event log") : undefined);

  const toRecorded = (subject: string, seq: number, data: Uint8Array, traceparent: string | undefined) => {
    const stream = subjects.parse(subject);
    if (stream === undefined) {
      throw new EventDecodeError("invalid_envelope", `Message ${seq} has no event subject (${subject})`);
    }
    return decodeRecordedEvent(data, stream, seq, traceparent || undefined, upcasters);
  };
  const fromStored = (m: StoredMsg) =>
    toRecorded(m.subject, m.seq, m.data, m.header?.get(TRACEPARENT_HEADER));
  const recent = createRecentDecodes(RECENT_DECODES);
  const fromJsMsg = (m: JsMsg) => {
    // Most events have no traceparent: peek before letting the client decode every header of the message.
    const traceparent =
      (headerBlockMentions(m, TRACEPARENT_BYTES) === false
        ? undefined
        : m.headers?.get(TRACEPARENT_HEADER)) || undefined;
    const { subject, seq, data } = m;
    // Another follower in this process has usually just decoded the same message.
    const known = recent.lookup(seq, subject, traceparent, data);
    if (known !== undefined) return known;
    const event = toRecorded(subject, seq, data, traceparent);
    recent.remember(seq, subject, traceparent, data, event);
    return event;
  };

  function publishHeaders(options: AppendOptions): MsgHdrs {
    const h = headers();
    // append, not set: the headers are new, and set() first searches them for the key to replace.
    h.append(MSG_ID, options.messageId);
    h.append(EXPECTED_LAST_SUBJECT_SEQUENCE, String(options.expectedVersion));
    if (options.traceparent) h.append(TRACEPARENT_HEADER, options.traceparent);
    return h;
  }

  /** Attempts after the first failed one, all with the same headers (and so the same Nats-Msg-Id). */
  async function retryPublish(subject: string, payload: Uint8Array, h: MsgHdrs, failed: unknown) {
    let error = failed;
    for (let attempt = 1; ; attempt++) {
      // Same msg id on every attempt: if an earlier one was stored after all, the server answers with
      // its position and duplicate: true, so the caller may see its own write reported as a duplicate.
      if (attempt >= publishAttempts || !isRetryable(error) || disconnected()) throw error;
      onPublishRetry?.(attempt, error);
      await delay(Math.min(100 * 2 ** (attempt - 1), 1_000));
      try {
        return await js.publish(subject, payload, { headers: h, timeout: publishTimeoutMs });
      } catch (next) {
        error = next;
      }
    }
  }

  async function getMessage(query: MsgRequest | { seq: number; next_by_subj: string }) {
    // next_by_subj is part of the server's MSG.GET API (2.9) though the client only types it for direct get.
    assertConnected();
    return jsm.streams.getMessage(streamName, query as MsgRequest).catch((error: unknown) => {
      throw natsFailure("event log", error);
    });
  }

  /** Reads a subject's messages from `fromSeq` up to `lastSeq` with a throwaway ordered consumer. */
  async function readTail(subject: string, fromSeq: number, lastSeq: number, into: RecordedEvent[]) {
    const consumer = await js.consumers.get(streamName, {
      filter_subjects: subject,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: fromSeq,
    });
    let messages: ConsumerMessages | undefined;
    try {
      messages = await consumer.consume({ max_messages: pullBatch });
      for await (const m of messages) {
        if (m.seq > lastSeq) break;
        into.push(fromJsMsg(m));
        if (m.seq === lastSeq) return;
      }
      throw new Error(`Reading ${subject} ended before sequence ${lastSeq}`);
    } finally {
      messages?.stop();
      consumer.delete().catch(() => {});
    }
  }

  const log: EventLog = {
    // Not async: the first attempt is chained directly onto the publish (no extra async frames per
    // append); the retry loop only runs after a failure.
    append(stream: StreamName, event: DomainEvent, metadata: EventMetadata, options: AppendOptions) {
      const waiting = reconnected();
      if (waiting !== undefined) return waiting.then(() => log.append(stream, event, metadata, options));
      let subject: string;
      let payload: Uint8Array;
      let h: MsgHdrs;
      try {
        assertOpen();
        assertAppendOptions(options);
        subject = subjects.subjectFor(stream);
        payload = encodeEvent(event, metadata);
        h = publishHeaders(options);
      } catch (error) {
        return Promise.reject(error);
      }
      return js
        .publish(subject, payload, { headers: h, timeout: publishTimeoutMs })
        .then(appendResult, (error: unknown) =>
          retryPublish(subject, payload, h, error).then(appendResult, (final: unknown) => {
            // Still failing after the retries: NATS is away, and the caller may answer "retry shortly".
            throw toConflict(final, options.expectedVersion) ?? natsFailure("event log", final);
          }),
        );
    },

    async readStream(stream: StreamName): Promise<StreamRead> {
      assertOpen();
      const subject = subjects.subjectFor(stream);
      const last = await getMessage({ last_by_subj: subject });
      if (last === null) return { events: [], version: 0 };
      // Everything up to `last` is the snapshot; events appended meanwhile belong to the next read.
      const events: RecordedEvent[] = [];
      let cursor = 1;
      for (let walked = 0; walked < readWalkLimit; walked++) {
        const next = await getMessage({ seq: cursor, next_by_subj: subject });
        if (next === null || next.seq >= last.seq) {
          events.push(fromStored(last));
          return { events, version: last.seq };
        }
        events.push(fromStored(next));
        cursor = next.seq + 1;
      }
      // A long stream: one consumer beats a request per event.
      await readTail(subject, cursor, last.seq, events);
      return { events, version: last.seq };
    },

    async readAt(position: number) {
      assertOpen();
      if (!Number.isInteger(position) || position < 1) return undefined;
      const message = await getMessage({ seq: position });
      return message === null ? undefined : fromStored(message);
    },

    async lastPosition() {
      assertOpen();
      assertConnected();
      const info = await jsm.streams.info(streamName).catch((error: unknown) => {
        throw natsFailure("event log", error);
      });
      return info.state.last_seq;
    },

    follow(options: FollowOptions, handler: (batch: RecordedEvent[]) => Promise<void>): Follower {
      assertOpen();
      assertFollowOptions(options);
      let stopped = false;
      let messages: ConsumerMessages | undefined;

      const run = async () => {
        const consumer: Consumer = await js.consumers.get(streamName, {
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: options.from,
        });
        let failure: { error: unknown } | undefined;
        const handover = createBatchHandover(options.batchSize, handler, (error) => {
          failure = { error };
          messages?.stop();
        });
        try {
          if (stopped) return;
          messages = await consumer.consume({ max_messages: Math.max(pullBatch, options.batchSize) });
          if (stopped) return;
          for await (const m of messages) {
            if (stopped || failure !== undefined) break;
            const wait = handover.push(fromJsMsg(m));
            if (m.info.pending === 0) handover.flushSoon();
            if (wait !== undefined) await wait;
            else if (handover.buffered % YIELD_EVERY === 0) {
              // Buffered messages arrive as microtasks, so decoding a large backlog would hold off every
              // I/O callback (the handler applying the previous batch waits on Postgres meanwhile).
              await new Promise(setImmediate);
            }
          }
          if (failure !== undefined) throw failure.error;
          if (!stopped) throw new Error("The event log subscription ended (connection closed?)");
        } finally {
          messages?.stop();
          // The batch being applied settles before `done` does: whoever stops a follower and seeks
          // again must not race a transaction of the old one.
          await handover.close();
          consumer.delete().catch(() => {});
        }
      };

      return followers.track(run(), () => {
        stopped = true;
        messages?.stop();
      });
    },

    async close() {
      closed = true;
      await followers.stopAll();
    },
  };
  return log;
}

function appendResult(ack: PubAck): AppendResult {
  return { position: ack.seq, duplicate: ack.duplicate };
}

function isRetryable(error: unknown): boolean {
  if (error instanceof TimeoutError) return true;
  // JetStream briefly has no responders while a server restarts or a stream leader is elected.
  const cause = error instanceof Error ? error.cause : undefined;
  return (
    cause instanceof TimeoutError ||
    (cause instanceof RequestError && cause.isNoResponders()) ||
    (error instanceof RequestError && error.isNoResponders())
  );
}

function toConflict(error: unknown, expected: number): VersionConflictError | undefined {
  if (!(error instanceof JetStreamApiError)) return undefined;
  if (error.code === WRONG_LAST_SEQUENCE) {
    const match = WRONG_LAST_SEQUENCE_PATTERN.exec(error.message);
    return new VersionConflictError(expected, match?.[1] === undefined ? undefined : Number(match[1]));
  }
  if (error.code === WRONG_LAST_SEQUENCE_UNKNOWN) return new VersionConflictError(expected, undefined);
  return undefined;
}
