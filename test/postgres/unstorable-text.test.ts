import { type Kysely, sql } from "kysely";
import { beforeEach, describe, expect, it } from "vitest";
import { createAuditProjection } from "../../src/adapters/postgres/audit-projection.ts";
import { createAuditReadModel } from "../../src/adapters/postgres/audit-read-model.ts";
import {
  createIdpSessionIndex,
  createIdpSessionProjection,
} from "../../src/adapters/postgres/idp-session-index.ts";
import { catchUpInto, type LogSource } from "../../src/adapters/postgres/rebuild.ts";
import type { Database } from "../../src/adapters/postgres/schema.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import { createSessionReadModel } from "../../src/adapters/postgres/session-read-model.ts";
import { createSessionRebuildTarget } from "../../src/adapters/postgres/session-rebuild.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import { catchUp } from "../../src/projections/runner.ts";
import { backends, useBackend } from "./backends.ts";
import { at, eventLog } from "./fixtures.ts";

/**
 * Events already in the log may hold text Postgres cannot store (NUL, unpaired surrogates) in any
 * string: written before the edge refused it, or by another writer. Every Postgres projection must store
 * them with U+FFFD in place and move on (before, each one retried that batch forever), a rebuild must
 * store exactly what the live projection stored, and a lookup by such a value finds nothing.
 */

const NUL = "\u0000";
const HIGH = "\ud83d";
const LOW = "\ude00";
const R = "\ufffd";

/** The events, handed over as a log would: decoding is not what is tested here (nor can it refuse them). */
function logOf(events: RecordedEvent[]): LogSource {
  return {
    lastPosition: async () => events.length,
    follow(options, handler) {
      let stop!: () => void;
      const stopped = new Promise<void>((resolve) => {
        stop = resolve;
      });
      let running = true;
      const done = (async () => {
        for (let i = options.from - 1; running && i < events.length; i += options.batchSize) {
          await handler(events.slice(i, i + options.batchSize));
        }
        // A log has no end: the follower waits for more until it is stopped.
        await stopped;
      })();
      return {
        done,
        async stop() {
          running = false;
          stop();
        },
      };
    },
  };
}

function history() {
  const f = eventLog();
  const userId = `u${NUL}1`;
  const bad = f.created({
    userId,
    username: `name${HIGH}`,
    roles: [`role${NUL}`, "user"],
    groups: [LOW],
    metadata: { [`key${NUL}`]: `value${HIGH}`, nested: { [HIGH]: [NUL, "😀"] }, plain: "\\u0000" },
    client: `client${NUL}`,
    ipAddress: `192.0.2.1${NUL}`,
    userAgent: `agent${LOW}`,
    idpSessionId: `sid${NUL}`,
  });
  bad.metadata.actor = { kind: "user", id: `actor${NUL}` };
  bad.metadata.userAgent = `meta-agent${HIGH}`;
  bad.metadata.ip = `ip${NUL}`;
  const good = f.created({ userId: "u2", atS: 1, idpSessionId: "sid-2" });
  const touched = f.touched(bad.data.sessionId, 5, { userAgent: `touch${NUL}`, ipAddress: `${LOW}` });
  const claims = f.claimsChanged(userId, 6);
  const renewed = f.renewed(good.data.sessionId, 7, 7_200);
  const ended = f.invalidated(bad.data.sessionId, userId, 8);
  return { events: [bad, good, touched, claims, renewed, ended] as RecordedEvent[], bad, good, userId };
}

describe.each(backends)("text Postgres cannot store, on $name", (backend) => {
  let db: Kysely<Database>;

  useBackend(backend, (handle) => {
    db = handle.db;
  });

  beforeEach(async () => {
    await sql`truncate sessions, audit_events, idp_sessions, projection_checkpoints`.execute(db);
  });

  const tables = async () => ({
    sessions: await db.selectFrom("sessions").selectAll().orderBy("id").execute(),
    audit: await db.selectFrom("audit_events").selectAll().orderBy("position").execute(),
    checkpoints: await db
      .selectFrom("projection_checkpoints")
      .select(["name", "position"])
      .orderBy("name")
      .execute(),
  });

  it("the live projections store it with U+FFFD and move past it", async () => {
    const { events, bad, good, userId } = history();
    const log = logOf(events);
    for (const target of [
      createSessionProjection(db),
      createAuditProjection(db),
      createIdpSessionProjection(db),
    ]) {
      expect(await catchUp(log, target, 2)).toBe(events.length);
    }

    const rows = await db.selectFrom("sessions").selectAll().orderBy("created_at").execute();
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({
      id: bad.data.sessionId,
      user_id: `u${R}1`,
      username: `name${R}`,
      roles: [`role${R}`, "user"],
      groups: [R],
      metadata: { [`key${R}`]: `value${R}`, nested: { [R]: [R, "😀"] }, plain: "\\u0000" },
      client: `client${R}`,
      ip_address: `192.0.2.1${R}`,
      user_agent: `agent${R}`,
      status: "invalidated",
    });
    expect(Number(rows[0]?.last_position)).toBe(events.length);
    expect(rows[1]).toMatchObject({ id: good.data.sessionId, user_id: "u2", roles: ["user"] });

    const audit = await db.selectFrom("audit_events").selectAll().orderBy("position").execute();
    expect(audit.map((row) => row.type)).toEqual(events.map((event) => event.type));
    expect(audit[0]).toMatchObject({
      user_id: `u${R}1`,
      actor_id: `actor${R}`,
      data: { userId: `u${R}1`, username: `name${R}`, roles: [`role${R}`, "user"], idpSessionId: `sid${R}` },
      metadata: { userAgent: `meta-agent${R}`, ip: `ip${R}` },
    });
    // The owner of a touch comes from the stored SessionCreated: the stored form of the user id.
    expect(audit[2]).toMatchObject({ user_id: `u${R}1`, data: { userAgent: `touch${R}`, ipAddress: R } });
    expect(audit[3]).toMatchObject({ type: "UserClaimsChanged", user_id: `u${R}1` });

    const idp = createIdpSessionIndex(db);
    expect(await idp.sessionIdsForIdpSession(`sid${R}`)).toEqual([
      { sessionId: bad.data.sessionId, userId: `u${R}1` },
    ]);
    // A lookup by a value no row can hold finds nothing (Postgres would refuse the query itself).
    expect(await idp.sessionIdsForIdpSession(`sid${NUL}`)).toEqual([]);

    const sessions = createSessionReadModel(db);
    const now = at(10);
    expect(await sessions.listSessions({ userId, status: "all", limit: 10, now })).toEqual({
      sessions: [],
      total: 0,
      nextCursor: null,
    });
    expect((await sessions.listSessions({ userId: `u${R}1`, status: "all", limit: 10, now })).total).toBe(1);
    expect(await sessions.activeSessionIds(`u2${HIGH}`)).toEqual([]);
    expect((await sessions.stats(userId, now)).total).toBe(0);
    expect((await sessions.stats(`u${R}1`, now)).total).toBe(1);

    const auditModel = createAuditReadModel(db);
    expect(await auditModel.list({ userId, order: "asc", limit: 10 })).toEqual({ rows: [], nextAfter: null });
    expect(await auditModel.list({ sessionId: `x${NUL}`, order: "asc", limit: 10 })).toEqual({
      rows: [],
      nextAfter: null,
    });
    expect((await auditModel.list({ userId: `u${R}1`, order: "asc", limit: 10 })).rows).toHaveLength(4);
    expect(await auditModel.historyAsOf(userId, new Date(now))).toEqual([]);
  });

  it("a rebuild stores exactly what the live projection stored, and replaying changes nothing", async () => {
    const { events } = history();
    const log = logOf(events);
    await catchUp(log, createSessionProjection(db), 1);
    await catchUp(log, createAuditProjection(db), 1);
    const live = await tables();
    expect(live.sessions).toHaveLength(2);

    // Every event applied a second time (the checkpoints moved back to the start): nothing changes.
    await db.updateTable("projection_checkpoints").set({ position: 0 }).execute();
    await catchUp(log, createSessionProjection(db), 3);
    await catchUp(log, createAuditProjection(db), 3);
    expect(await tables()).toEqual(live);

    for (const batchSize of [1, 2, 4, 1_000]) {
      await sql`truncate sessions, projection_checkpoints`.execute(db);
      expect(await catchUpInto(log, createSessionRebuildTarget(db), batchSize)).toBe(events.length);
      // The audit checkpoint went with the truncate: bring it back as it was.
      await db
        .insertInto("projection_checkpoints")
        .values({ name: "audit", position: events.length, updated_at: new Date() })
        .execute();
      expect(await tables()).toEqual(live);
    }
  });
});
