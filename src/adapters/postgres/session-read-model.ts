import { type Kysely, sql } from "kysely";
import type { ListSessionsQuery, SessionPage, SessionReadModel, SessionStats } from "../../app/ports.ts";
import { invalidCommand } from "../../domain/errors.ts";
import { isStorableText } from "../../domain/storable-text.ts";
import type { Database } from "./schema.ts";
import { isLive, isOverdue, rowFromDb, SESSION_PROJECTION_NAME } from "./session-columns.ts";

const DAY_MS = 86_400_000;

/**
 * List, stats and sweeps over the `sessions` table that the session projection maintains. A user id
 * Postgres cannot store (storable-text.ts) is never queried: Postgres would answer with an error, and no
 * row can hold it, so such a lookup finds nothing. (The edge refuses such ids; IdP subjects and other
 * internal callers are not held to it.)
 */
export function createSessionReadModel(
  db: Kysely<Database>,
  options: { projectionName?: string | undefined } = {},
): SessionReadModel {
  const projectionName = options.projectionName ?? SESSION_PROJECTION_NAME;

  return {
    async getSession(sessionId) {
      if (!UUID.test(sessionId)) return undefined;
      const row = await db.selectFrom("sessions").selectAll().where("id", "=", sessionId).executeTakeFirst();
      return row ? rowFromDb(row) : undefined;
    },

    async listSessions(query: ListSessionsQuery): Promise<SessionPage> {
      if (query.userId !== undefined && !isStorableText(query.userId)) {
        return { sessions: [], total: 0, nextCursor: null };
      }
      const now = new Date(query.now);
      const limit = Math.max(1, Math.floor(query.limit));
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
      const filtered = db.selectFrom("sessions").where((eb) => {
        const conditions = [];
        if (query.userId !== undefined) conditions.push(eb("user_id", "=", query.userId));
        if (query.status === "active") conditions.push(isLive(eb, now));
        else if (query.status === "ended") conditions.push(eb.not(isLive(eb, now)));
        return eb.and(conditions);
      });
      const [rows, count] = await Promise.all([
        filtered
          .selectAll()
          .$if(after !== undefined, (qb) =>
            qb.where((eb) =>
              eb(eb.refTuple("created_at", "id"), "<", eb.tuple(new Date(after!.createdAt), after!.id)),
            ),
          )
          .orderBy("created_at", "desc")
          .orderBy("id", "desc")
          .limit(limit + 1)
          .execute(),
        filtered.select((eb) => eb.fn.countAll<number>().as("total")).executeTakeFirstOrThrow(),
      ]);
      const page = rows.slice(0, limit).map(rowFromDb);
      const last = page.at(-1);
      return {
        sessions: page,
        total: Number(count.total),
        nextCursor: rows.length > limit && last ? encodeCursor(last.createdAt.getTime(), last.id) : null,
      };
    },

    async stats(userId, nowMs): Promise<SessionStats> {
      if (userId !== undefined && !isStorableText(userId)) return NO_STATS;
      const now = new Date(nowMs);
      const dayStart = new Date(Math.floor(nowMs / DAY_MS) * DAY_MS);
      const dayEnd = new Date(dayStart.getTime() + DAY_MS);
      const row = await db
        .selectFrom("sessions")
        .$if(userId !== undefined, (qb) => qb.where("user_id", "=", userId!))
        .select((eb) => [
          eb.fn.countAll<number>().filterWhere(isLive(eb, now)).as("active"),
          eb.fn
            .countAll<number>()
            .filterWhere(eb.or([eb("status", "=", "expired"), isOverdue(eb, now)]))
            .as("expired"),
          eb.fn.countAll<number>().filterWhere("status", "=", "invalidated").as("invalidated"),
          eb.fn.countAll<number>().filterWhere("status", "=", "recycled").as("recycled"),
          eb.fn.countAll<number>().as("total"),
          eb.fn
            .countAll<number>()
            .filterWhere(eb.and([eb("created_at", ">=", dayStart), eb("created_at", "<", dayEnd)]))
            .as("created_today"),
          eb.fn.max("last_activity_at").as("last_activity_at"),
        ])
        .executeTakeFirstOrThrow();
      return {
        active: Number(row.active),
        expired: Number(row.expired),
        invalidated: Number(row.invalidated),
        recycled: Number(row.recycled),
        total: Number(row.total),
        createdToday: Number(row.created_today),
        lastActivityAt: row.last_activity_at ?? null,
      };
    },

    async overdueSessionIds(nowMs, limit) {
      const now = new Date(nowMs);
      const rows = await db
        .selectFrom("sessions")
        .select("id")
        .where((eb) => isOverdue(eb, now))
        // The longest overdue first, so a limited sweep never starves the oldest.
        .orderBy(sql`least(expires_at, coalesce(idle_expires_at, expires_at))`)
        .orderBy("id")
        .limit(Math.max(0, Math.floor(limit)))
        .execute();
      return rows.map((r) => r.id);
    },

    async activeSessionIds(userId) {
      if (!isStorableText(userId)) return [];
      const rows = await db
        .selectFrom("sessions")
        .select("id")
        .where("user_id", "=", userId)
        .where("status", "=", "active")
        .orderBy("created_at")
        .orderBy("id")
        .execute();
      return rows.map((r) => r.id);
    },

    async pruneEnded(endedBefore, beforeDelete) {
      let pruned = 0;
      for (;;) {
        const chunk = (
          await db
            .selectFrom("sessions")
            .select("id")
            .where("status", "<>", "active")
            .where("ended_at", "<", new Date(endedBefore))
            .limit(PRUNE_CHUNK)
            .execute()
        ).map((row) => row.id);
        if (chunk.length === 0) return pruned;
        await beforeDelete?.(chunk);
        const result = await db
          .deleteFrom("sessions")
          .where("id", "in", chunk)
          .where("status", "<>", "active")
          .executeTakeFirst();
        pruned += Number(result.numDeletedRows);
        if (chunk.length < PRUNE_CHUNK) return pruned;
      }
    },

    async checkpoint() {
      const row = await db
        .selectFrom("projection_checkpoints")
        .select("position")
        .where("name", "=", projectionName)
        .executeTakeFirst();
      return row ? Number(row.position) : 0;
    },
  };
}

const NO_STATS: SessionStats = {
  active: 0,
  expired: 0,
  invalidated: 0,
  recycled: 0,
  total: 0,
  createdToday: 0,
  lastActivityAt: null,
};

/** Rows pruned per statement: bounded transactions, and bounded batches for `beforeDelete`. */
const PRUNE_CHUNK = 1_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Cursor = { createdAt: number; id: string };

/** Opaque to clients: the (created_at, id) of the last row of the previous page. */
export function encodeCursor(createdAt: number, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString("base64url");
}

export function decodeCursor(cursor: string): Cursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  if (
    Array.isArray(parsed) &&
    parsed.length === 2 &&
    Number.isSafeInteger(parsed[0]) &&
    typeof parsed[1] === "string" &&
    UUID.test(parsed[1])
  ) {
    return { createdAt: parsed[0] as number, id: parsed[1] };
  }
  throw invalidCommand("Invalid cursor", { cursor });
}
