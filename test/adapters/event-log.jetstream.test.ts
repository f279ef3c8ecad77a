import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventDecodeError } from "../../src/adapters/codec/event-codec.ts";
import { connectNats as connectNatsAdapter } from "../../src/adapters/jetstream/connection.ts";
import { createJetStreamEventLog, TRACEPARENT_HEADER } from "../../src/adapters/jetstream/event-log.ts";
import { ensureEventStream } from "../../src/adapters/jetstream/event-stream.ts";
import { createEventSubjects } from "../../src/adapters/jetstream/subjects.ts";
import { sessionStream, userStream } from "../../src/domain/events.ts";
import {
  metadata,
  newSessionId,
  sessionCreated,
  TRACEPARENT,
  userClaimsChanged,
  waitUntil,
} from "../contract/event-fixtures.ts";
import { describeEventLogContract } from "../contract/event-log-contract.ts";
import { connectNats, NATS_URL, removeNatsPrefix, uniquePrefix } from "../support/services.ts";

const filePrefix = uniquePrefix("evl");
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  nc = await connectNats();
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  await removeNatsPrefix(nc, filePrefix);
  await nc.close();
});

/** A fresh log (and stream) per test, removed afterwards. */
async function freshLog() {
  const prefix = uniquePrefix(filePrefix);
  const log = await createJetStreamEventLog({ nc, prefix });
  return {
    log,
    prefix,
    subjects: createEventSubjects(prefix),
    async cleanup() {
      await log.close();
      await removeNatsPrefix(nc, prefix);
    },
  };
}

describeEventLogContract("JetStream", freshLog);

describe("JetStream event log", () => {
  it("creates the stream without deletes or purges, with a duplicate window of at least 2 minutes", async () => {
    const { subjects, cleanup } = await freshLog();
    try {
      const { config } = await jsm.streams.info(subjects.streamName);
      expect(config.name).toBe(`${subjects.prefix.toUpperCase()}_EVENTS`);
      expect(config.subjects).toEqual([`${subjects.prefix}.evt.>`]);
      expect(config.storage).toBe("file");
      expect(config.deny_delete).toBe(true);
      expect(config.deny_purge).toBe(true);
      expect(config.allow_direct).toBe(true);
      expect(config.discard).toBe("old");
      expect(config.duplicate_window).toBeGreaterThanOrEqual(120 * 1e9);
      expect([config.max_msgs, config.max_bytes, config.max_age, config.max_msgs_per_subject]).toEqual([
        -1, -1, 0, -1,
      ]);
      await expect(jsm.streams.purge(subjects.streamName)).rejects.toThrow();
      await expect(jsm.streams.deleteMessage(subjects.streamName, 1)).rejects.toThrow();
    } finally {
      await cleanup();
    }
  });

  it("ensures the stream idempotently and updates a changed duplicate window", async () => {
    const prefix = uniquePrefix(filePrefix);
    try {
      const first = await ensureEventStream(jsm, prefix, { replicas: 1 });
      const again = await ensureEventStream(jsm, prefix, { replicas: 1 });
      expect(again.created).toEqual(first.created);
      const wider = await ensureEventStream(jsm, prefix, { replicas: 1, duplicateWindowMs: 10 * 60_000 });
      expect(wider.config.duplicate_window).toBe(600 * 1e9);
      expect(wider.created).toEqual(first.created);
    } finally {
      await removeNatsPrefix(nc, prefix);
    }
  });

  it("puts traceparent and the msg id in the headers and user ids in base64url subjects", async () => {
    const { log, subjects, cleanup } = await freshLog();
    try {
      const userId = "ops.team@example.com *";
      const { position } = await log.append(userStream(userId), userClaimsChanged(userId), metadata(), {
        expectedVersion: 0,
        messageId: "claims-cmd-1",
        traceparent: TRACEPARENT,
      });
      const stored = await jsm.streams.getMessage(subjects.streamName, { seq: position });
      expect(stored?.subject).toBe(
        `${subjects.prefix}.evt.user.${Buffer.from(userId).toString("base64url")}`,
      );
      expect(stored?.subject.split(".")).toHaveLength(4);
      expect(stored?.header.get(TRACEPARENT_HEADER)).toBe(TRACEPARENT);
      expect(stored?.header.get("Nats-Msg-Id")).toBe("claims-cmd-1");
      // The payload is the codec's JSON and holds no trace context.
      const body = JSON.parse(new TextDecoder().decode(stored?.data));
      expect(Object.keys(body)).toEqual(["type", "version", "data", "metadata"]);

      const sessionId = newSessionId();
      const session = await log.append(sessionStream(sessionId), sessionCreated(sessionId), metadata(), {
        expectedVersion: 0,
        messageId: "create-1",
      });
      const storedSession = await jsm.streams.getMessage(subjects.streamName, { seq: session.position });
      expect(storedSession?.subject).toBe(`${subjects.prefix}.evt.session.${sessionId}`);
      expect(storedSession?.header.get(TRACEPARENT_HEADER)).toBe("");
    } finally {
      await cleanup();
    }
  });

  it("stops followers and refuses reads at a message it cannot decode, instead of skipping it", async () => {
    const { log, subjects, cleanup } = await freshLog();
    try {
      const sessionId = newSessionId();
      const stream = sessionStream(sessionId);
      await log.append(stream, sessionCreated(sessionId), metadata(), {
        expectedVersion: 0,
        messageId: "ok-1",
      });
      const js = jsm.jetstream();
      const h = headers();
      await js.publish(
        subjects.subjectFor(stream),
        JSON.stringify({ type: "SessionTouched", version: 1, data: {} }),
        {
          headers: h,
        },
      );
      await js.publish(`${subjects.prefix}.evt.elsewhere.x`, JSON.stringify({ hello: "world" }));

      const delivered: number[] = [];
      const follower = log.follow({ from: 1, batchSize: 1 }, async (batch) => {
        delivered.push(...batch.map((e) => e.position));
      });
      const error = await follower.done.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EventDecodeError);
      expect(error).toMatchObject({ reason: "invalid_payload", eventType: "SessionTouched" });
      expect(delivered).toEqual([1]);

      await expect(log.readAt(2)).rejects.toBeInstanceOf(EventDecodeError);
      await expect(log.readAt(3)).rejects.toBeInstanceOf(EventDecodeError);
      await expect(log.readStream(stream)).rejects.toBeInstanceOf(EventDecodeError);
    } finally {
      await cleanup();
    }
  });

  it("shares one stream between two log instances on the same prefix", async () => {
    const { log, prefix, cleanup } = await freshLog();
    const second = await createJetStreamEventLog({ nc, prefix });
    try {
      const sessionId = newSessionId();
      const stream = sessionStream(sessionId);
      await log.append(stream, sessionCreated(sessionId), metadata(), {
        expectedVersion: 0,
        messageId: "c1",
      });
      const seen: number[] = [];
      const follower = second.follow({ from: 1, batchSize: 10 }, async (batch) => {
        seen.push(...batch.map((e) => e.position));
      });
      await waitUntil(() => seen.length === 1, 10_000, "the other instance's event");
      expect((await second.readStream(stream)).version).toBe(1);
      await follower.stop();
    } finally {
      await second.close();
      await cleanup();
    }
  });

  it("hands live events that arrive while a batch is applied to the handler together, not one by one", async () => {
    const { log, cleanup } = await freshLog();
    try {
      const batches: number[][] = [];
      // A projection's transaction takes a few ms; meanwhile appends keep coming, each one delivered with
      // "nothing pending on the server".
      const follower = log.follow({ from: 1, batchSize: 500 }, async (batch) => {
        batches.push(batch.map((e) => e.position));
        await new Promise((resolve) => setTimeout(resolve, 15));
      });
      const appended: number[] = [];
      const sessions = Array.from({ length: 300 }, () => newSessionId());
      for (let i = 0; i < sessions.length; i += 20) {
        const results = await Promise.all(
          sessions.slice(i, i + 20).map((id) =>
            log.append(sessionStream(id), sessionCreated(id), metadata(), {
              expectedVersion: 0,
              messageId: `batch-${id}`,
            }),
          ),
        );
        appended.push(...results.map((r) => r.position));
      }
      await waitUntil(() => batches.flat().length === appended.length, 10_000, "every event");
      expect(batches.flat()).toEqual([...appended].sort((a, b) => a - b));
      // One event per batch would be 300 batches of 15 ms (4.5 s behind); grouped, a few dozen at most.
      expect(batches.length).toBeLessThan(60);
      expect(Math.max(...batches.map((b) => b.length))).toBeGreaterThan(5);
      await follower.stop();
    } finally {
      await cleanup();
    }
  });

  it("connects with a comma-separated server list and refuses an empty one", async () => {
    const other = await connectNatsAdapter(` ${NATS_URL}, ${NATS_URL} ,`, "event-log-test");
    try {
      expect(other.info?.jetstream).toBe(true);
      await expect(other.flush()).resolves.toBeUndefined();
    } finally {
      await other.close();
    }
    await expect(connectNatsAdapter(" , ", "event-log-test")).rejects.toThrow(/No NATS server/);
  });
});
