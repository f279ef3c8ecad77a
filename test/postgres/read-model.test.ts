import { type Kysely, sql } from "kysely";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { DatabaseHandle } from "../../src/adapters/postgres/database.ts";
import type { Database } from "../../src/adapters/postgres/schema.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import { createSessionReadModel } from "../../src/adapters/postgres/session-read-model.ts";
import type { SessionReadModel, SessionRow, StatusFilter } from "../../src/app/ports.ts";
import { DomainError } from "../../src/domain/errors.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import { CheckpointConflictError } from "../../src/projections/runner.ts";
import { backends } from "./backends.ts";
import { at, type EventFactory, eventLog } from "./fixtures.ts";

describe.each(backends)("session projection and read model on $name", (backend) => {
  let handle: DatabaseHandle;
  let dispose: () => Promise<void>;
  let db: Kysely<Database>;
  let readModel: SessionReadModel;

  beforeAll(async () => {
    ({ handle, dispose } = await backend.open());
    db = handle.db;
    readModel = createSessionReadModel(db);
  });

  afterAll(async () => {
    await dispose?.();
  });

  beforeEach(async () => {
    await sql`truncate sessions, projection_checkpoints`.execute(db);
  });

  const allRows = async () => {
    const rows = await db.selectFrom("sessions").selectAll().orderBy("id").execute();
    const checkpoints = await db.selectFrom("projection_checkpoints").select(["name", "position"]).execute();
    return { rows, checkpoints };
  };

  it("reports the database kind", () => {
    expect(handle.kind).toBe(backend.name);
  });

  it("applies a batch in one go and moves the checkpoint to its last position", async () => {
    const log = eventLog();
    const a = log.created({ userId: "u1", atS: 0, idleS: 600 });
    const b = log.created({ userId: "u2", atS: 5 });
    const batch = [a, b, log.touched(a.data.sessionId, 100), log.invalidated(b.data.sessionId, "u2", 200)];
    const projection = createSessionProjection(db);
    expect(await projection.checkpoint()).toBe(0);
    await projection.applyBatch(batch);

    expect(await readModel.checkpoint()).toBe(4);
    expect(await projection.checkpoint()).toBe(4);
    const rowA = await readModel.getSession(a.data.sessionId);
    expect(rowA).toEqual({
      id: a.data.sessionId,
      userId: "u1",
      username: "u1-name",
      kind: "web",
      status: "active",
      roles: ["user"],
      groups: ["staff"],
      client: "test-client",
      ipAddress: "192.0.2.1",
      userAgent: "vitest",
      createdAt: new Date(at(0)),
      lastActivityAt: new Date(at(100)),
      expiresAt: new Date(at(3600)),
      idleExpiresAt: new Date(at(700)),
      endedAt: null,
      endReason: null,
      metadata: { purpose: "test", nested: { n: 1 } },
      lastPosition: 3,
    } satisfies SessionRow);
    const rowB = await readModel.getSession(b.data.sessionId);
    expect(rowB).toMatchObject({ status: "invalidated", endReason: "logout", endedAt: new Date(at(200)) });
    expect(rowB?.lastPosition).toBe(4);
    const stored = await db
      .selectFrom("sessions")
      .select("idle_timeout_seconds")
      .where("id", "=", a.data.sessionId)
      .executeTakeFirstOrThrow();
    expect(stored.idle_timeout_seconds).toBe(600);
    expect(await readModel.getSession("not-a-uuid")).toBeUndefined();
    expect(await readModel.getSession("01943a5e-7c00-7a3b-8c1d-2e3f4a5b6c7d")).toBeUndefined();
  });

  it("re-applying a batch, by the same or a fresh projection, changes nothing", async () => {
    const log = eventLog();
    const a = log.created({ userId: "u1", idleS: 600 });
    const batch = [a, log.touched(a.data.sessionId, 100), log.renewed(a.data.sessionId, 150, 5000)];
    const projection = createSessionProjection(db);
    await projection.applyBatch(batch);
    const before = await allRows();

    await projection.applyBatch(batch);
    const fresh = createSessionProjection(db);
    await fresh.checkpoint();
    await fresh.applyBatch(batch);
    await fresh.applyBatch(batch.slice(1));
    expect(await allRows()).toEqual(before);
  });

  it("an overlapping batch applies only the events past the checkpoint", async () => {
    const log = eventLog();
    const a = log.created({ userId: "u1", idleS: 600 });
    const id = a.data.sessionId;
    const first = [a, log.touched(id, 100)];
    const second = [log.touched(id, 200), log.invalidated(id, "u1", 300)];
    const projection = createSessionProjection(db);
    await projection.applyBatch(first);
    await projection.applyBatch([...first, ...second]);
    const row = await readModel.getSession(id);
    expect(row).toMatchObject({ status: "invalidated", lastActivityAt: new Date(at(200)), lastPosition: 4 });
    expect(await readModel.checkpoint()).toBe(4);
  });

  it("replaying from position 1 over existing rows (checkpoint reset, rows kept) leaves the rows as they were", async () => {
    const log = eventLog();
    const a = log.created({ userId: "u1", idleS: 600 });
    const id = a.data.sessionId;
    const batch = [a, log.touched(id, 100), log.expired(id, "u1", 800, "idle")];
    await createSessionProjection(db).applyBatch(batch);
    const { rows } = await allRows();

    await db.updateTable("projection_checkpoints").set({ position: 0 }).execute();
    const replayer = createSessionProjection(db);
    expect(await replayer.checkpoint()).toBe(0);
    // Replayed one event at a time: the touch alone would make the row active again if it were applied.
    for (const event of batch) await replayer.applyBatch([event]);
    expect((await allRows()).rows).toEqual(rows);
    expect(await readModel.checkpoint()).toBe(3);
  });

  it("skips user events but still advances the checkpoint past them", async () => {
    const log = eventLog();
    const a = log.created({ userId: "u1" });
    const projection = createSessionProjection(db);
    await projection.applyBatch([a, log.claimsChanged("u1", 10), log.claimsChanged("u1", 20)]);
    expect(await readModel.checkpoint()).toBe(3);
    const { rows } = await allRows();
    expect(rows.map((r) => [r.id, r.last_position])).toEqual([[a.data.sessionId, 1]]);
  });

  it("rejects a batch with CheckpointConflictError when another runner moved the checkpoint, writing nothing", async () => {
    const log = eventLog();
    const a = log.created({ userId: "u1" });
    const b = log.created({ userId: "u1" });
    const c = log.created({ userId: "u1" });
    const slow = createSessionProjection(db);
    expect(await slow.checkpoint()).toBe(0);
    const fast = createSessionProjection(db);
    await fast.checkpoint();
    await fast.applyBatch([a, b]);

    const error = await slow.applyBatch([a, b, c]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointConflictError);
    expect(error).toMatchObject({ expected: 0, actual: 2, projection: "sessions" });
    expect(await readModel.getSession(c.data.sessionId)).toBeUndefined();
    expect(await readModel.checkpoint()).toBe(2);

    // Re-seeking makes it consistent again; it only adds what is new.
    expect(await slow.checkpoint()).toBe(2);
    await slow.applyBatch([c]);
    expect(await readModel.checkpoint()).toBe(3);
    expect((await readModel.getSession(c.data.sessionId))?.status).toBe("active");

    // And the other runner, which saw 2 last, is now the one out of date.
    await expect(fast.applyBatch([log.touched(a.data.sessionId, 5)])).rejects.toBeInstanceOf(
      CheckpointConflictError,
    );
  });

  it("a checkpoint moved backwards (a rebuild reset) is a conflict too", async () => {
    const log = eventLog();
    const projection = createSessionProjection(db);
    await projection.checkpoint();
    await projection.applyBatch([log.created(), log.created()]);
    await db.updateTable("projection_checkpoints").set({ position: 0 }).execute();
    await expect(projection.applyBatch([log.created()])).rejects.toMatchObject({ expected: 2, actual: 0 });
  });

  it("writes a batch larger than one upsert statement", async () => {
    const log = eventLog();
    const events: RecordedEvent[] = [];
    for (let i = 0; i < 2_300; i++) events.push(log.created({ userId: `bulk-${i % 7}`, atS: i }));
    const projection = createSessionProjection(db);
    await projection.applyBatch(events);
    expect(await readModel.checkpoint()).toBe(2_300);
    const stats = await readModel.stats(undefined, at(0));
    expect(stats.total).toBe(2_300);
  });

  describe("queries", () => {
    let log: EventFactory;
    const ids: Record<string, string> = {};

    /**
     * user u1: live (created 0, touched 1000), live2 (created 10), idleOverdue (idle 300, created 20),
     *   absOverdue (ttl 100, created 30), invalidated (created 40, ended 50), expired (created 60, ended 3700),
     *   recycled (created 70, ended 80); user u2: other (created 90), yesterday (created a day earlier).
     * Queried at 2000 s.
     */
    beforeEach(async () => {
      log = eventLog();
      const make = (key: string, options: Parameters<EventFactory["created"]>[0]) => {
        const event = log.created(options);
        ids[key] = event.data.sessionId;
        return event;
      };
      const events: RecordedEvent[] = [
        make("live", { userId: "u1", atS: 0, ttlS: 7200 }),
        make("live2", { userId: "u1", atS: 10, ttlS: 7200 }),
        make("idleOverdue", { userId: "u1", atS: 20, ttlS: 7200, idleS: 300 }),
        make("absOverdue", { userId: "u1", atS: 30, ttlS: 100 }),
        make("invalidated", { userId: "u1", atS: 40 }),
        make("expired", { userId: "u1", atS: 60 }),
        make("recycled", { userId: "u1", atS: 70 }),
        make("other", { userId: "u2", atS: 90 }),
        make("yesterday", { userId: "u2", atS: -86_400, ttlS: 200_000 }),
      ];
      events.push(
        log.touched(ids.live!, 1000),
        log.invalidated(ids.invalidated!, "u1", 50),
        log.expired(ids.expired!, "u1", 3700),
        log.recycled(ids.recycled!, "u1", 80),
      );
      await createSessionProjection(db).applyBatch(events);
    });

    const NOW = at(2000);
    const list = (status: StatusFilter, userId?: string, limit = 50, cursor?: string) =>
      readModel.listSessions({ userId, status, limit, cursor, now: NOW });
    const idsOf = (rows: SessionRow[]) => rows.map((r) => r.id);

    it("lists active sessions newest first; overdue-but-not-expired rows are not active", async () => {
      const page = await list("active", "u1");
      expect(idsOf(page.sessions)).toEqual([ids.live2, ids.live]);
      expect(page.total).toBe(2);
      expect(page.nextCursor).toBeNull();
    });

    it("lists ended sessions, counting overdue active rows among them", async () => {
      const page = await list("ended", "u1");
      expect(idsOf(page.sessions)).toEqual([
        ids.recycled,
        ids.expired,
        ids.invalidated,
        ids.absOverdue,
        ids.idleOverdue,
      ]);
      expect(page.total).toBe(5);
    });

    it("lists all of a user's sessions, and everyone's without a user", async () => {
      expect((await list("all", "u1")).total).toBe(7);
      expect(idsOf((await list("all", "u2")).sessions)).toEqual([ids.other, ids.yesterday]);
      const everyone = await list("all");
      expect(everyone.total).toBe(9);
      expect(everyone.sessions).toHaveLength(9);
      expect((await list("active", "nobody")).total).toBe(0);
    });

    it("pages with an opaque cursor: every row once, in order, with a stable total", async () => {
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await list("all", "u1", 3, cursor);
        expect(page.total).toBe(7);
        expect(page.sessions.length).toBeLessThanOrEqual(3);
        seen.push(...idsOf(page.sessions));
        cursor = page.nextCursor ?? undefined;
        if (cursor) expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
        pages += 1;
      } while (cursor && pages < 10);
      expect(pages).toBe(3);
      expect(seen).toEqual(idsOf((await list("all", "u1", 50)).sessions));
      expect(new Set(seen).size).toBe(7);
    });

    it("an exact last page has no next cursor", async () => {
      const first = await list("active", "u1", 1);
      expect(first.nextCursor).not.toBeNull();
      const second = await list("active", "u1", 1, first.nextCursor!);
      expect(idsOf(second.sessions)).toEqual([ids.live]);
      expect(second.nextCursor).toBeNull();
    });

    it("rejects a malformed cursor as invalid_request", async () => {
      for (const cursor of ["%%%", Buffer.from("[1,2]").toString("base64url"), "eyJ4IjoxfQ"]) {
        const error = await list("all", "u1", 5, cursor).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(DomainError);
        expect((error as DomainError).code).toBe("invalid_request");
      }
    });

    it("computes stats for one user: overdue active rows count as expired", async () => {
      const stats = await readModel.stats("u1", NOW);
      expect(stats).toEqual({
        active: 2,
        expired: 3,
        invalidated: 1,
        recycled: 1,
        total: 7,
        createdToday: 7,
        lastActivityAt: new Date(at(1000)),
      });
    });

    it("computes global stats; createdToday is the UTC day of now", async () => {
      const stats = await readModel.stats(undefined, NOW);
      expect(stats).toMatchObject({ active: 4, expired: 3, invalidated: 1, recycled: 1, total: 9 });
      expect(stats.createdToday).toBe(8);
      // The next UTC day nothing was created yet.
      expect((await readModel.stats(undefined, at(86_400))).createdToday).toBe(0);
      const empty = await readModel.stats("nobody", NOW);
      expect(empty).toEqual({
        active: 0,
        expired: 0,
        invalidated: 0,
        recycled: 0,
        total: 0,
        createdToday: 0,
        lastActivityAt: null,
      });
    });

    it("finds overdue sessions, longest overdue first, within the limit", async () => {
      // absOverdue's deadline is 130 s, idleOverdue's 320 s.
      expect(await readModel.overdueSessionIds(NOW, 10)).toEqual([ids.absOverdue, ids.idleOverdue]);
      expect(await readModel.overdueSessionIds(NOW, 1)).toEqual([ids.absOverdue]);
      expect(await readModel.overdueSessionIds(at(130) - 1, 10)).toEqual([]);
      // A deadline is over at the instant itself, as the decider sees it.
      expect(await readModel.overdueSessionIds(at(130), 10)).toEqual([ids.absOverdue]);
    });

    it("once expired by an event, an overdue row leaves the sweep", async () => {
      await createSessionProjection(db).applyBatch([log.expired(ids.absOverdue!, "u1", 2001)]);
      expect(await readModel.overdueSessionIds(NOW, 10)).toEqual([ids.idleOverdue]);
      expect((await readModel.getSession(ids.absOverdue!))?.endReason).toBe("expired_absolute");
    });

    it("lists a user's active-status ids", async () => {
      expect(new Set(await readModel.activeSessionIds("u1"))).toEqual(
        new Set([ids.live, ids.live2, ids.idleOverdue, ids.absOverdue]),
      );
      expect(await readModel.activeSessionIds("u2")).toHaveLength(2);
    });

    it("prunes ended rows older than the cut-off, and only those", async () => {
      // Ended at 50 (invalidated), 80 (recycled), 3700 (expired).
      expect(await readModel.pruneEnded(at(50))).toBe(0);
      expect(await readModel.pruneEnded(at(81))).toBe(2);
      expect(await readModel.getSession(ids.invalidated!)).toBeUndefined();
      expect(await readModel.getSession(ids.recycled!)).toBeUndefined();
      expect(await readModel.getSession(ids.expired!)).toBeDefined();
      expect(await readModel.pruneEnded(at(100_000))).toBe(1);
      expect((await list("all")).total).toBe(6);
    });
  });
});
