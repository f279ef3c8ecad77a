import { type Kysely, sql } from "kysely";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createInMemoryEventLog } from "../../src/adapters/memory/event-log.ts";
import type { Database } from "../../src/adapters/postgres/schema.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import { createSessionReadModel } from "../../src/adapters/postgres/session-read-model.ts";
import type { SessionReadModel } from "../../src/app/ports.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import {
  CheckpointConflictError,
  catchUp,
  type ProjectionTarget,
  runProjection,
  waitForCheckpoint,
} from "../../src/projections/runner.ts";
import { backends, useBackend } from "./backends.ts";
import { type EventFactory, eventLog } from "./fixtures.ts";

/** Appends hand-built events to a real (in-memory) event log, each at its stream's current version. */
async function appendAll(log: EventLog, events: RecordedEvent[]): Promise<number> {
  let last = 0;
  for (const recorded of events) {
    const { metadata, stream, position: _ignored, ...event } = recorded;
    const { version } = await log.readStream(stream);
    const result = await log.append(stream, event, metadata, {
      expectedVersion: version,
      messageId: metadata.commandId,
    });
    last = result.position;
  }
  return last;
}

describe.each(backends)("projection runner on $name with the in-memory event log", (backend) => {
  let db: Kysely<Database>;
  let readModel: SessionReadModel;
  let log: EventLog;
  let events: EventFactory;
  const runners: { controller: AbortController; running: Promise<void> }[] = [];

  useBackend(backend, (handle) => {
    db = handle.db;
    readModel = createSessionReadModel(db);
  });

  beforeEach(async () => {
    await sql`truncate sessions, projection_checkpoints`.execute(db);
    log = createInMemoryEventLog();
    events = eventLog();
  });

  afterEach(async () => {
    for (const { controller, running } of runners.splice(0)) {
      controller.abort();
      await running;
    }
    await log.close();
  });

  function start(target: ProjectionTarget, onError?: (error: unknown) => void) {
    const controller = new AbortController();
    const running = runProjection({
      log,
      target,
      batchSize: 50,
      signal: controller.signal,
      onError,
      backoff: { min: 5, max: 50 },
    });
    runners.push({ controller, running });
    return { controller, running };
  }

  it("catchUp applies everything the log holds, in batches, and is a no-op the second time", async () => {
    const batch: RecordedEvent[] = [];
    for (let i = 0; i < 120; i++) batch.push(events.created({ userId: `u${i % 3}`, atS: i }));
    const firstId = batch[0]!.stream.id;
    batch.push(events.invalidated(firstId, "u0", 500), events.claimsChanged("u0", 600));
    const last = await appendAll(log, batch);
    expect(last).toBe(122);

    const target = createSessionProjection(db);
    expect(await catchUp(log, target, 25)).toBe(122);
    expect(await readModel.checkpoint()).toBe(122);
    expect((await readModel.stats(undefined, 0)).total).toBe(120);
    expect((await readModel.getSession(firstId))?.status).toBe("invalidated");

    const before = await db.selectFrom("sessions").selectAll().orderBy("id").execute();
    expect(await catchUp(log, createSessionProjection(db), 25)).toBe(122);
    expect(await db.selectFrom("sessions").selectAll().orderBy("id").execute()).toEqual(before);
  });

  it("catchUp on an empty log returns at once", async () => {
    expect(await catchUp(log, createSessionProjection(db))).toBe(0);
  });

  it("follows the log as it grows and stops when aborted", async () => {
    const created = events.created({ userId: "u1" });
    await appendAll(log, [created]);
    const { controller, running } = start(createSessionProjection(db));
    expect(await waitForCheckpoint(readModel, 1, 5_000)).toBe(true);
    expect((await readModel.getSession(created.stream.id))?.status).toBe("active");

    const more = [events.touched(created.stream.id, 30), events.created({ userId: "u2" })];
    const last = await appendAll(log, more);
    expect(await waitForCheckpoint(readModel, last, 5_000)).toBe(true);
    expect((await readModel.stats(undefined, 0)).total).toBe(2);

    controller.abort();
    await running;
    // Stopped: new events are no longer applied.
    const after = await appendAll(log, [events.created({ userId: "u3" })]);
    expect(await waitForCheckpoint(readModel, after, 200)).toBe(false);
    expect(await readModel.checkpoint()).toBe(last);
  });

  it("re-seeks after a checkpoint conflict (a rebuild reset the read model) and rebuilds from the start", async () => {
    const first = events.created({ userId: "u1" });
    const firstPosition = await appendAll(log, [first, events.created({ userId: "u1" })]);
    const errors: unknown[] = [];
    start(createSessionProjection(db), (error) => errors.push(error));
    expect(await waitForCheckpoint(readModel, firstPosition, 5_000)).toBe(true);

    // What a rebuild does behind a running runner's back: empty the table and reset the checkpoint.
    await sql`truncate sessions`.execute(db);
    await db.updateTable("projection_checkpoints").set({ position: 0 }).execute();
    const last = await appendAll(log, [events.created({ userId: "u1" })]);

    expect(await waitForCheckpoint(readModel, last, 5_000)).toBe(true);
    expect(errors.some((e) => e instanceof CheckpointConflictError)).toBe(true);
    expect((await readModel.listSessions({ userId: "u1", status: "all", limit: 10, now: 0 })).total).toBe(3);
    expect((await readModel.getSession(first.stream.id))?.lastPosition).toBe(1);
  });

  it("retries a failing batch with backoff until it goes through, without losing or doubling events", async () => {
    const real = createSessionProjection(db);
    let failures = 2;
    const flaky: ProjectionTarget = {
      name: real.name,
      checkpoint: () => real.checkpoint(),
      async applyBatch(batch) {
        if (failures > 0) {
          failures -= 1;
          throw new Error("connection reset");
        }
        await real.applyBatch(batch);
      },
    };
    const session = events.created({ userId: "u1", idleS: 60 });
    const last = await appendAll(log, [session, events.touched(session.stream.id, 10)]);
    const errors: unknown[] = [];
    start(flaky, (error) => errors.push(error));

    expect(await waitForCheckpoint(readModel, last, 5_000)).toBe(true);
    expect(errors.map((e) => (e as Error).message)).toEqual(["connection reset", "connection reset"]);
    expect((await readModel.getSession(session.stream.id))?.lastPosition).toBe(2);
  });

  it("two runners of one projection leave one consistent result", async () => {
    const batch: RecordedEvent[] = [];
    for (let i = 0; i < 200; i++) batch.push(events.created({ userId: "u1", atS: i }));
    const last = await appendAll(log, batch);
    start(createSessionProjection(db));
    start(createSessionProjection(db));
    expect(await waitForCheckpoint(readModel, last, 10_000)).toBe(true);
    const rows = await db.selectFrom("sessions").select(["id", "last_position"]).execute();
    expect(rows).toHaveLength(200);
    expect(new Set(rows.map((r) => r.last_position)).size).toBe(200);
  });
});
