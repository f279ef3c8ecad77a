import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createJetStreamEventLog } from "../../src/adapters/jetstream/event-log.ts";
import { ensureEventStream } from "../../src/adapters/jetstream/event-stream.ts";
import { createRecentDecodes } from "../../src/adapters/jetstream/recent-decodes.ts";
import { eventStreamName } from "../../src/adapters/jetstream/subjects.ts";
import { type RecordedEvent, sessionStream } from "../../src/domain/events.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import {
  metadata,
  newSessionId,
  sessionCreated,
  TRACEPARENT,
  waitUntil,
} from "../contract/event-fixtures.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";

const filePrefix = uniquePrefix("rdc");
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

const event = { type: "SessionCreated" } as unknown as RecordedEvent;

describe("recent decodes", () => {
  it("hands out a decode only for the same position, subject, traceparent and bytes", () => {
    const recent = createRecentDecodes(4);
    const bytes = Buffer.from('{"a":1}');
    recent.remember(5, "p.evt.session.x", undefined, bytes, event);
    expect(recent.lookup(5, "p.evt.session.x", undefined, Buffer.from('{"a":1}'))).toBe(event);
    expect(recent.lookup(5, "p.evt.session.y", undefined, bytes)).toBeUndefined();
    expect(recent.lookup(5, "p.evt.session.x", TRACEPARENT, bytes)).toBeUndefined();
    expect(recent.lookup(5, "p.evt.session.x", undefined, Buffer.from('{"a":2}'))).toBeUndefined();
    expect(recent.lookup(5, "p.evt.session.x", undefined, Buffer.from('{"a":1} '))).toBeUndefined();
    expect(recent.lookup(9, "p.evt.session.x", undefined, bytes)).toBeUndefined();
    // Position 9 takes 5's slot (ring of 4): 5 is then decoded again.
    recent.remember(9, "p.evt.session.x", undefined, bytes, event);
    expect(recent.lookup(5, "p.evt.session.x", undefined, bytes)).toBeUndefined();
  });
});

async function collect(log: EventLog, count: number): Promise<RecordedEvent[]> {
  const seen: RecordedEvent[] = [];
  const follower = log.follow({ from: 1, batchSize: 100 }, async (batch) => {
    seen.push(...batch);
  });
  await waitUntil(() => seen.length >= count, 10_000, `${count} events`);
  await follower.stop();
  return seen;
}

describe("followers of one JetStream log", () => {
  it("share one decode per message, traceparent included", async () => {
    const prefix = uniquePrefix(filePrefix);
    const log = await createJetStreamEventLog({ nc, prefix });
    try {
      const ids = [newSessionId(), newSessionId()];
      for (const [i, id] of ids.entries()) {
        await log.append(sessionStream(id), sessionCreated(id), metadata(), {
          expectedVersion: 0,
          messageId: `m-${id}`,
          traceparent: i === 0 ? TRACEPARENT : undefined,
        });
      }
      const [first, second] = await Promise.all([collect(log, 2), collect(log, 2)]);
      expect(second).toHaveLength(2);
      for (const [i, e] of (first ?? []).entries()) expect(second?.[i]).toBe(e);
      expect(first?.[0]?.traceparent).toBe(TRACEPARENT);
      expect(first?.[1]?.traceparent).toBeUndefined();
      // What a log of its own decodes (nothing shared) is equal.
      const own = await createJetStreamEventLog({ nc, prefix, ensureStream: false });
      expect(await collect(own, 2)).toEqual(first);
      await own.close();
    } finally {
      await log.close();
      await removeNatsPrefix(nc, prefix);
    }
  });

  it("never hands out an earlier message's event at a reused position (stream deleted and created again)", async () => {
    const prefix = uniquePrefix(filePrefix);
    const log = await createJetStreamEventLog({ nc, prefix });
    try {
      const id = newSessionId();
      const stream = sessionStream(id);
      await log.append(stream, sessionCreated(id, "user-1"), metadata(), {
        expectedVersion: 0,
        messageId: "before",
      });
      const [before] = await collect(log, 1);
      expect(before?.data).toMatchObject({ userId: "user-1" });
      // Same position, same subject, other bytes.
      await jsm.streams.delete(eventStreamName(prefix));
      await ensureEventStream(jsm, prefix, { replicas: 1 });
      await log.append(stream, sessionCreated(id, "user-2"), metadata(), {
        expectedVersion: 0,
        messageId: "after",
      });
      const [after] = await collect(log, 1);
      expect(after?.position).toBe(before?.position);
      expect(after?.data).toMatchObject({ userId: "user-2" });
    } finally {
      await log.close();
      await removeNatsPrefix(nc, prefix);
    }
  });
});
