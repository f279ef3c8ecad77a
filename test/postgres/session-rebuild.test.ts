import { type Kysely, sql } from "kysely";
import { beforeEach, describe, expect, it } from "vitest";
import { createInMemoryEventLog } from "../../src/adapters/memory/event-log.ts";
import { catchUpInto } from "../../src/adapters/postgres/rebuild.ts";
import type { Database } from "../../src/adapters/postgres/schema.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import {
  createSessionRebuildTarget,
  type RebuildTarget,
} from "../../src/adapters/postgres/session-rebuild.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import { catchUp } from "../../src/projections/runner.ts";
import { backends, useBackend } from "./backends.ts";
import { type EventFactory, eventLog } from "./fixtures.ts";

/**
 * The rebuild's sessions target folds batches in memory and reads back only what memory cannot know. Its
 * tables must come out exactly as the live projection's, however the events of a session fall across
 * batches: sessions spanning many batches, touched again long after they were forgotten, created twice
 * (once within memory, once long after), events of sessions that never existed, ended sessions with
 * later events, user events in between, and a rebuild that resumes on rows another writer made.
 */

/** A small deterministic PRNG, so a failing history can be replayed from its seed. */
function random(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function history(seed: number, steps: number): RecordedEvent[] {
  const next = random(seed);
  const f: EventFactory = eventLog();
  const created: { id: string; userId: string }[] = [];
  const events: RecordedEvent[] = [];
  const pick = () => created[Math.floor(next() * created.length)] as { id: string; userId: string };
  for (let step = 1; step <= steps; step++) {
    const r = next();
    if (created.length === 0 || r < 0.25) {
      const userId = `user-${Math.floor(next() * 5)}`;
      const event = f.created({ userId, atS: step, idleS: next() < 0.3 ? 600 : 0 });
      created.push({ id: event.data.sessionId, userId });
      events.push(event);
    } else if (r < 0.5) events.push(f.touched(pick().id, step));
    else if (r < 0.58) events.push(f.renewed(pick().id, step, step + 7_200));
    else if (r < 0.63) events.push(f.rotated(pick().id, step));
    else if (r < 0.68) {
      const s = pick();
      events.push(f.invalidated(s.id, s.userId, step));
    } else if (r < 0.71) {
      const s = pick();
      events.push(f.expired(s.id, s.userId, step, next() < 0.5 ? "idle" : "absolute"));
    } else if (r < 0.73) {
      const s = pick();
      events.push(f.recycled(s.id, s.userId, step));
    } else if (r < 0.77) {
      // A second SessionCreated of an existing session: the projection ignores all but its position.
      events.push(f.created({ sessionId: pick().id, userId: "impostor", atS: step }));
    } else if (r < 0.8) {
      events.push(f.touched(crypto.randomUUID(), step));
    } else if (r < 0.84) events.push(f.claimsChanged(`user-${Math.floor(next() * 5)}`, step));
    else {
      // The newest sessions get most of the traffic, the rest now and then (long after they were written).
      const recent = created.slice(-8);
      const s = recent[Math.floor(next() * recent.length)] as { id: string };
      events.push(f.touched(s.id, step));
    }
  }
  return events;
}

async function logOf(events: RecordedEvent[]): Promise<EventLog> {
  const log = createInMemoryEventLog();
  const versions = new Map<string, number>();
  for (const { metadata, stream, position, traceparent: _traceparent, ...event } of events) {
    const key = `${stream.category}:${stream.id}`;
    const result = await log.append(stream, event as RecordedEvent, metadata, {
      expectedVersion: versions.get(key) ?? 0,
      messageId: metadata.eventId,
    });
    if (result.position !== position)
      throw new Error(`expected position ${position}, got ${result.position}`);
    versions.set(key, result.position);
  }
  return log;
}

describe.each(backends)("the sessions rebuild target on $name", (backend) => {
  let db: Kysely<Database>;

  useBackend(backend, (handle) => {
    db = handle.db;
  });

  beforeEach(async () => {
    await sql`truncate sessions, projection_checkpoints`.execute(db);
  });

  const tables = async () => ({
    sessions: await db.selectFrom("sessions").selectAll().orderBy("id").execute(),
    checkpoints: await db.selectFrom("projection_checkpoints").select(["name", "position"]).execute(),
  });

  /** What the live projection makes of the log, from empty tables. */
  const liveModel = async (log: EventLog) => {
    await catchUp(log, createSessionProjection(db), 500);
    const model = await tables();
    await sql`truncate sessions, projection_checkpoints`.execute(db);
    return model;
  };

  it.each([2, 5, 17, 1_000])("equals the live model with batches of %i events", async (batchSize) => {
    for (const seed of [1, 2, 3]) {
      const events = history(seed * 7_919 + batchSize, 400);
      const log = await logOf(events);
      const expected = await liveModel(log);
      expect(expected.sessions.length).toBeGreaterThan(40);

      expect(await catchUpInto(log, createSessionRebuildTarget(db), batchSize)).toBe(events.length);
      expect(await tables()).toEqual(expected);
      // Nothing left to do: a second rebuild target on the same tables finds them complete.
      expect(await catchUpInto(log, createSessionRebuildTarget(db), batchSize)).toBe(events.length);
      expect(await tables()).toEqual(expected);
      await sql`truncate sessions, projection_checkpoints`.execute(db);
      await log.close();
    }
  });

  it("resumes on rows another writer made, and when called without prepare", async () => {
    const events = history(42, 300);
    const log = await logOf(events);
    const expected = await liveModel(log);

    // The live projection writes the first half; the rebuild target takes over from its checkpoint.
    const live = createSessionProjection(db);
    await live.checkpoint();
    await live.applyBatch(events.slice(0, 150));
    await catchUpInto(log, createSessionRebuildTarget(db), 7);
    expect(await tables()).toEqual(expected);

    // A plain catchUp never calls prepare: applyBatch folds each batch itself.
    await sql`truncate sessions, projection_checkpoints`.execute(db);
    await catchUp(log, createSessionRebuildTarget(db), 9);
    expect(await tables()).toEqual(expected);
    await log.close();
  });

  it("re-seeks when the checkpoint moves behind its back, and rows written ahead of it do no harm", async () => {
    const events = history(7, 200);
    const log = await logOf(events);
    const expected = await liveModel(log);
    const target = createSessionRebuildTarget(db);
    let applies = 0;
    const meddling: RebuildTarget = {
      ...target,
      checkpoint: () => target.checkpoint(),
      prepare: (batch) => target.prepare(batch),
      async applyBatch(batch) {
        // Someone (a reset) moves the checkpoint back: the next write must not go on from where it was.
        if (++applies === 4) {
          await db
            .updateTable("projection_checkpoints")
            .set({ position: 5 })
            .where("name", "=", "sessions")
            .execute();
        }
        await target.applyBatch(batch);
      },
    };
    expect(await catchUpInto(log, meddling, 13)).toBe(events.length);
    expect(applies).toBeGreaterThan(events.length / 13 + 1);
    expect(await tables()).toEqual(expected);
    await log.close();
  });

  it("folds a second SessionCreated onto the stored row when the first was forgotten, also in the batch after", async () => {
    const f = eventLog();
    const first = f.created({ userId: "u1", atS: 0 });
    const id = first.data.sessionId;
    const filler = Array.from({ length: 9 }, (_, i) => f.created({ userId: `filler-${i}`, atS: i + 1 }));
    // Batches of 3: the original is two batches back, the impostor's row is "new" and its insert
    // finds the stored row; the touch in the next batch was prepared on the impostor's row meanwhile.
    const impostor = f.created({ sessionId: id, userId: "impostor", atS: 20, ttlS: 10 });
    const afterImpostor = [f.claimsChanged("u1", 21), f.claimsChanged("u2", 22)];
    const touched = f.touched(id, 30);
    const ended = f.invalidated(id, "u1", 31);
    const events = [first, ...filler, impostor, ...afterImpostor, touched, ended];
    const log = await logOf(events);
    const expected = await liveModel(log);
    expect(expected.sessions.find((row) => row.id === id)).toMatchObject({
      user_id: "u1",
      status: "invalidated",
      last_position: ended.position,
    });

    await catchUpInto(log, createSessionRebuildTarget(db), 3);
    expect(await tables()).toEqual(expected);
    await log.close();
  });
});
