import { type Kysely, type Selectable, sql } from "kysely";
import type { AuditQuery, AuditReadModel } from "../../app/ports.ts";
import { isStorableText } from "../../domain/storable-text.ts";
import type { AuditRow } from "../../projections/audit-row.ts";
import { AUDIT_PROJECTION_NAME } from "./audit-projection.ts";
import type { AuditEventsTable } from "./audit-schema.ts";
import type { Database } from "./schema.ts";

/**
 * Queries over `audit_events`: filtered, position-ordered pages, and the history behind `as_of`. An id
 * Postgres cannot store (storable-text.ts) is never queried: no row can hold it, so it finds nothing.
 */
export function createAuditReadModel(
  db: Kysely<Database>,
  options: { projectionName?: string | undefined } = {},
): AuditReadModel {
  const projectionName = options.projectionName ?? AUDIT_PROJECTION_NAME;

  return {
    async list(query: AuditQuery) {
      if (!storableFilter(query.userId) || !storableFilter(query.sessionId)) {
        return { rows: [], nextAfter: null };
      }
      const limit = Math.max(1, Math.floor(query.limit));
      const rows = await db
        .selectFrom("audit_events")
        .selectAll()
        .where((eb) => {
          const conditions = [];
          if (query.userId !== undefined) conditions.push(eb("user_id", "=", query.userId));
          if (query.sessionId !== undefined) conditions.push(eb("session_id", "=", query.sessionId));
          if (query.types !== undefined && query.types.length > 0)
            conditions.push(eb("type", "in", query.types));
          if (query.from !== undefined) conditions.push(eb("occurred_at", ">=", query.from));
          if (query.to !== undefined) conditions.push(eb("occurred_at", "<=", query.to));
          if (query.after !== undefined) {
            conditions.push(eb("position", query.order === "asc" ? ">" : "<", query.after));
          }
          return eb.and(conditions);
        })
        .orderBy("position", query.order)
        .limit(limit + 1)
        .execute();
      const page = rows.slice(0, limit).map(rowFromDb);
      const last = page.at(-1);
      return { rows: page, nextAfter: rows.length > limit && last ? last.position : null };
    },

    async historyAsOf(userId, at) {
      if (!isStorableText(userId)) return [];
      const rows = await db
        .selectFrom("audit_events")
        .selectAll()
        .where("occurred_at", "<=", at)
        .where((eb) =>
          eb.or([
            eb(
              "session_id",
              "in",
              eb
                .selectFrom("audit_events as created")
                .select("created.session_id")
                .where("created.user_id", "=", userId)
                .where("created.type", "=", "SessionCreated")
                .where("created.occurred_at", "<=", at)
                // No session outlives its absolute cap, so sessions capped before `at` cannot matter.
                .where(sql<Date>`(created.data->>'maxExpiresAt')::timestamptz`, ">", at),
            ),
            eb.and([eb("user_id", "=", userId), eb("session_id", "is", null)]),
          ]),
        )
        .orderBy("position")
        .execute();
      return rows.map(rowFromDb);
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

const storableFilter = (value: string | undefined) => value === undefined || isStorableText(value);

function rowFromDb(r: Selectable<AuditEventsTable>): AuditRow {
  return {
    position: Number(r.position),
    occurredAt: r.occurred_at,
    type: r.type,
    sessionId: r.session_id,
    userId: r.user_id,
    actorKind: r.actor_kind,
    actorId: r.actor_id,
    source: r.source,
    reason: r.reason,
    data: r.data,
    metadata: r.metadata,
  };
}
