import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EventEncodeError } from "../../src/adapters/codec/event-codec.ts";
import {
  type DomainEvent,
  type RecordedEvent,
  type StreamName,
  sessionStream,
  userStream,
} from "../../src/domain/events.ts";
import {
  type EventLog,
  type Follower,
  type FollowOptions,
  VersionConflictError,
} from "../../src/domain/ports.ts";
import {
  metadata,
  newSessionId,
  sessionCreated,
  sessionTouched,
  TRACEPARENT,
  userClaimsChanged,
  waitUntil,
} from "./event-fixtures.ts";

/**
 * The behaviour every EventLog adapter must show. Each test gets a fresh, empty log from the factory.
 */

export type EventLogFactory = () => Promise<{ log: EventLog; cleanup(): Promise<void> }>;

type Collector = { batches: RecordedEvent[][]; events(): RecordedEvent[]; follower: Follower };

export function describeEventLogContract(name: string, factory: EventLogFactory): void {
  describe(`EventLog contract: ${name}`, () => {
    let log: EventLog;
    let cleanup: () => Promise<void>;
    const followers: Follower[] = [];

    beforeEach(async () => {
      ({ log, cleanup } = await factory());
    });

    afterEach(async () => {
      await Promise.all(followers.splice(0).map((follower) => follower.stop()));
      await cleanup();
    });

    const collect = (options: FollowOptions): Collector => {
      const batches: RecordedEvent[][] = [];
      const follower = log.follow(options, async (batch) => {
        batches.push(batch);
      });
      followers.push(follower);
      return { batches, events: () => batches.flat(), follower };
    };

    /** Appends `count` touches to a new session stream (after its SessionCreated); returns the stream. */
    const appendSession = async (count: number): Promise<{ stream: StreamName; positions: number[] }> => {
      const sessionId = newSessionId();
      const stream = sessionStream(sessionId);
      const positions: number[] = [];
      let version = 0;
      for (let i = 0; i < count; i++) {
        const event: DomainEvent = i === 0 ? sessionCreated(sessionId) : sessionTouched(sessionId, i);
        const { position } = await log.append(stream, event, metadata(), {
          expectedVersion: version,
          messageId: `m-${sessionId}-${i}`,
        });
        positions.push(position);
        version = position;
      }
      return { stream, positions };
    };

    it("numbers events from 1 and keeps a version per stream", async () => {
      expect(await log.lastPosition()).toBe(0);
      const a = sessionStream(newSessionId());
      const b = sessionStream(newSessionId());
      const createdA = sessionCreated(a.id);
      const metaA = metadata({ ip: "198.51.100.1", userAgent: "test-agent" });

      expect(await log.append(a, createdA, metaA, { expectedVersion: 0, messageId: "a1" })).toEqual({
        position: 1,
        duplicate: false,
      });
      expect(
        await log.append(b, sessionCreated(b.id), metadata(), { expectedVersion: 0, messageId: "b1" }),
      ).toEqual({ position: 2, duplicate: false });
      expect(
        await log.append(a, sessionTouched(a.id, 60), metadata(), { expectedVersion: 1, messageId: "a2" }),
      ).toEqual({ position: 3, duplicate: false });

      const readA = await log.readStream(a);
      expect(readA.version).toBe(3);
      expect(readA.events.map((e) => [e.position, e.type])).toEqual([
        [1, "SessionCreated"],
        [3, "SessionTouched"],
      ]);
      const first = readA.events[0]!;
      expect(first.data).toEqual(createdA.data);
      expect(first.metadata).toEqual(metaA);
      expect(first.stream).toEqual(a);
      expect(first.version).toBe(1);

      const readB = await log.readStream(b);
      expect(readB.version).toBe(2);
      expect(readB.events.map((e) => e.position)).toEqual([2]);
      expect(await log.readStream(sessionStream(newSessionId()))).toEqual({ events: [], version: 0 });
      expect(await log.lastPosition()).toBe(3);
    });

    it("reads a long stream completely and in order", async () => {
      const other = await appendSession(3);
      const { stream, positions } = await appendSession(40);
      await appendSession(2);
      const read = await log.readStream(stream);
      expect(read.events.map((e) => e.position)).toEqual(positions);
      expect(read.version).toBe(positions[positions.length - 1]);
      expect(read.events.every((e) => e.stream.id === stream.id)).toBe(true);
      expect((await log.readStream(other.stream)).events.map((e) => e.position)).toEqual(other.positions);
    });

    it("accepts expectedVersion 0 only while the stream is empty", async () => {
      const stream = sessionStream(newSessionId());
      await log.append(stream, sessionCreated(stream.id), metadata(), {
        expectedVersion: 0,
        messageId: "x1",
      });
      const error = await log
        .append(stream, sessionCreated(stream.id), metadata(), { expectedVersion: 0, messageId: "x2" })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(VersionConflictError);
      expect(error).toMatchObject({ expected: 0, actual: 1 });
    });

    it("refuses a stale or future expected version and reports the actual one", async () => {
      const { stream, positions } = await appendSession(3);
      const last = positions[2]!;
      for (const expectedVersion of [positions[1]!, last + 5]) {
        const error = await log
          .append(stream, sessionTouched(stream.id, 99), metadata(), {
            expectedVersion,
            messageId: `stale-${expectedVersion}`,
          })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(VersionConflictError);
        expect(error).toMatchObject({ expected: expectedVersion, actual: last });
      }
      expect(await log.lastPosition()).toBe(last);
      expect((await log.readStream(stream)).version).toBe(last);
    });

    it("answers a repeated msg id with the original position, even when its expectation is stale", async () => {
      const stream = sessionStream(newSessionId());
      const created = sessionCreated(stream.id);
      const first = await log.append(stream, created, metadata(), { expectedVersion: 0, messageId: "cmd-1" });
      expect(first).toEqual({ position: 1, duplicate: false });

      expect(
        await log.append(stream, created, metadata(), { expectedVersion: 0, messageId: "cmd-1" }),
      ).toEqual({
        position: 1,
        duplicate: true,
      });
      const second = await log.append(stream, sessionTouched(stream.id, 1), metadata(), {
        expectedVersion: 1,
        messageId: "cmd-2",
      });
      expect(second).toEqual({ position: 2, duplicate: false });

      // The retry of cmd-1 expects version 0, which is long gone: de-duplication wins over the check.
      expect(
        await log.append(stream, created, metadata(), { expectedVersion: 0, messageId: "cmd-1" }),
      ).toEqual({
        position: 1,
        duplicate: true,
      });
      // Msg ids are log-wide, not per stream.
      const elsewhere = sessionStream(newSessionId());
      expect(
        await log.append(elsewhere, sessionCreated(elsewhere.id), metadata(), {
          expectedVersion: 0,
          messageId: "cmd-2",
        }),
      ).toEqual({ position: 2, duplicate: true });

      expect(await log.lastPosition()).toBe(2);
      expect((await log.readStream(stream)).events.map((e) => e.position)).toEqual([1, 2]);
      expect(await log.readStream(elsewhere)).toEqual({ events: [], version: 0 });
    });

    it("reads one event by position", async () => {
      const user = userStream("user-42");
      const event = userClaimsChanged("user-42");
      const meta = metadata({ actor: { kind: "admin", id: "root" }, source: "cli" });
      await appendSession(2);
      const { position } = await log.append(user, event, meta, {
        expectedVersion: 0,
        messageId: "claims-1",
        traceparent: TRACEPARENT,
      });
      expect(position).toBe(3);

      const read = await log.readAt(position);
      expect(read).toEqual({ ...event, metadata: meta, stream: user, position, traceparent: TRACEPARENT });
      expect((await log.readAt(1))?.type).toBe("SessionCreated");
      expect(await log.readAt(4)).toBeUndefined();
      expect(await log.readAt(0)).toBeUndefined();
    });

    it("tracks the last position of the whole log", async () => {
      expect(await log.lastPosition()).toBe(0);
      await appendSession(2);
      expect(await log.lastPosition()).toBe(2);
      await appendSession(3);
      expect(await log.lastPosition()).toBe(5);
    });

    it("carries the traceparent to every read", async () => {
      const stream = sessionStream(newSessionId());
      await log.append(stream, sessionCreated(stream.id), metadata(), {
        expectedVersion: 0,
        messageId: "t1",
        traceparent: TRACEPARENT,
      });
      await log.append(stream, sessionTouched(stream.id, 5), metadata(), {
        expectedVersion: 1,
        messageId: "t2",
      });
      const read = await log.readStream(stream);
      expect(read.events.map((e) => e.traceparent)).toEqual([TRACEPARENT, undefined]);
      const { events } = collect({ from: 1, batchSize: 10 });
      await waitUntil(() => events().length === 2, 10_000, "two events");
      expect(events().map((e) => e.traceparent)).toEqual([TRACEPARENT, undefined]);
    });

    it("follows from 1: the backlog in full batches, then new events as they come", async () => {
      const backlog = await appendSession(10);
      const { batches, events } = collect({ from: 1, batchSize: 3 });
      await waitUntil(() => events().length === 10, 10_000, "the backlog");
      expect(batches.map((b) => b.length)).toEqual([3, 3, 3, 1]);
      expect(events().map((e) => e.position)).toEqual(backlog.positions);
      expect(events()[0]).toMatchObject({ type: "SessionCreated", stream: backlog.stream });

      const live = await appendSession(2);
      await waitUntil(() => events().length === 12, 10_000, "live events");
      expect(events().map((e) => e.position)).toEqual([...backlog.positions, ...live.positions]);
      expect(batches.every((b) => b.length >= 1 && b.length <= 3)).toBe(true);
    });

    it("follows from the middle of the log", async () => {
      await appendSession(10);
      const { events } = collect({ from: 6, batchSize: 4 });
      await waitUntil(() => events().length === 5, 10_000, "positions 6..10");
      expect(events().map((e) => e.position)).toEqual([6, 7, 8, 9, 10]);
      const more = await appendSession(1);
      await waitUntil(() => events().length === 6, 10_000, "a live event");
      expect(events()[5]?.position).toBe(more.positions[0]);
    });

    it("follows a log that is still empty", async () => {
      const { events } = collect({ from: 1, batchSize: 5 });
      const { positions } = await appendSession(3);
      await waitUntil(() => events().length === 3, 10_000, "three events");
      expect(events().map((e) => e.position)).toEqual(positions);
    });

    it("stops a follower: done resolves and the handler is not called again", async () => {
      await appendSession(2);
      const stopped = collect({ from: 1, batchSize: 10 });
      await waitUntil(() => stopped.events().length === 2, 10_000, "the backlog");
      await stopped.follower.stop();
      await expect(stopped.follower.done).resolves.toBeUndefined();

      await appendSession(2);
      // A second follower seeing the new events proves they were delivered to whoever still listens.
      const witness = collect({ from: 1, batchSize: 10 });
      await waitUntil(() => witness.events().length === 4, 10_000, "the witness");
      expect(stopped.events().length).toBe(2);
    });

    it("closing the log stops every follower, after the batch being applied has settled", async () => {
      await appendSession(2);
      const idle = collect({ from: 1, batchSize: 10 });
      await waitUntil(() => idle.events().length === 2, 10_000, "the idle follower's backlog");
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      let applying = false;
      let settled = false;
      const busy = log.follow({ from: 1, batchSize: 10 }, async () => {
        applying = true;
        await gate;
        settled = true;
      });
      followers.push(busy);
      await waitUntil(() => applying, 10_000, "a batch being applied");

      let closed = false;
      const closing = log.close().then(() => {
        closed = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(closed).toBe(false);
      release();
      await closing;
      expect(settled).toBe(true);
      await expect(idle.follower.done).resolves.toBeUndefined();
      await expect(busy.done).resolves.toBeUndefined();
      await log.close();
    });

    it("stops a follower whose handler throws, and rejects done with the error", async () => {
      await appendSession(3);
      const failure = new Error("projection failed");
      let calls = 0;
      const follower = log.follow({ from: 1, batchSize: 2 }, async () => {
        calls++;
        throw failure;
      });
      followers.push(follower);
      await expect(follower.done).rejects.toBe(failure);

      await appendSession(1);
      const witness = collect({ from: 1, batchSize: 10 });
      await waitUntil(() => witness.events().length === 4, 10_000, "the witness");
      expect(calls).toBe(1);
      await follower.stop();
    });

    it("maps user ids with dots, @, wildcards and spaces to their own streams and back", async () => {
      const ids = [
        "alice@example.com",
        "a.b",
        "a",
        "b",
        "*",
        "x > y",
        "with space",
        "dots.and.*.>",
        "ünïcødé/用户",
      ];
      const positions = new Map<string, number>();
      for (const id of ids) {
        const result = await log.append(userStream(id), userClaimsChanged(id), metadata(), {
          expectedVersion: 0,
          messageId: `u-${id}`,
        });
        positions.set(id, result.position);
      }
      for (const id of ids) {
        const read = await log.readStream(userStream(id));
        expect(read.version).toBe(positions.get(id));
        expect(read.events).toHaveLength(1);
        expect(read.events[0]?.stream).toEqual({ category: "user", id });
        expect(read.events[0]?.data).toMatchObject({ userId: id });
        expect((await log.readAt(positions.get(id)!))?.stream).toEqual({ category: "user", id });
      }
      const { events } = collect({ from: 1, batchSize: 100 });
      await waitUntil(() => events().length === ids.length, 10_000, "every user event");
      expect(events().map((e) => e.stream)).toEqual(ids.map((id) => ({ category: "user", id })));
    });

    it("lets exactly one of 50 concurrent appends with the same expected version win", async () => {
      const { stream, positions } = await appendSession(1);
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) =>
          log.append(stream, sessionTouched(stream.id, i + 1), metadata(), {
            expectedVersion: positions[0]!,
            messageId: `race-${i}`,
          }),
        ),
      );
      const winners = results.filter((r) => r.status === "fulfilled");
      const losers = results.filter((r) => r.status === "rejected");
      expect(winners).toHaveLength(1);
      const winner = (winners[0] as PromiseFulfilledResult<{ position: number }>).value.position;
      expect(losers).toHaveLength(49);
      for (const loser of losers) {
        expect(loser.reason).toBeInstanceOf(VersionConflictError);
        expect(loser.reason).toMatchObject({ expected: positions[0], actual: winner });
      }
      const read = await log.readStream(stream);
      expect(read.events.map((e) => e.position)).toEqual([positions[0], winner]);
      expect(await log.lastPosition()).toBe(winner);
    });

    it("refuses an invalid event without writing anything", async () => {
      const stream = sessionStream(newSessionId());
      const invalid = {
        ...sessionCreated(stream.id),
        data: { sessionId: stream.id },
      } as unknown as DomainEvent;
      await expect(
        log.append(stream, invalid, metadata(), { expectedVersion: 0, messageId: "bad" }),
      ).rejects.toBeInstanceOf(EventEncodeError);
      await expect(
        log.append(
          stream,
          sessionCreated(stream.id),
          { ...metadata(), occurredAt: "yesterday" },
          {
            expectedVersion: 0,
            messageId: "bad-meta",
          },
        ),
      ).rejects.toBeInstanceOf(EventEncodeError);
      expect(await log.lastPosition()).toBe(0);
    });

    it("refuses stream ids that cannot be a subject token and bad arguments", async () => {
      const bad = sessionStream("not.a.uuid");
      await expect(
        log.append(bad, sessionCreated(bad.id), metadata(), { expectedVersion: 0, messageId: "b1" }),
      ).rejects.toThrow(/subject token/);
      const ok = sessionStream(newSessionId());
      await expect(
        log.append(ok, sessionCreated(ok.id), metadata(), { expectedVersion: -1, messageId: "b2" }),
      ).rejects.toBeInstanceOf(RangeError);
      await expect(
        log.append(ok, sessionCreated(ok.id), metadata(), { expectedVersion: 0, messageId: "" }),
      ).rejects.toBeInstanceOf(RangeError);
      expect(() => log.follow({ from: 0, batchSize: 1 }, async () => {})).toThrow(RangeError);
      expect(() => log.follow({ from: 1, batchSize: 0 }, async () => {})).toThrow(RangeError);
      expect(await log.lastPosition()).toBe(0);
    });
  });
}
