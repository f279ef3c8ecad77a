import { type Kysely, sql, type Transaction } from "kysely";
import type { SessionRow } from "../../app/ports.ts";
import { isSessionEvent, type RecordedEvent, type SessionEvent } from "../../domain/events.ts";
import type { ProjectionTarget } from "../../projections/runner.ts";
import { evolveSessionRow } from "../../projections/session-row.ts";
import { createCheckpointedProjection } from "./checkpointed-projection.ts";
import type { Database } from "./schema.ts";
import { rowFromDb, SESSION_PROJECTION_NAME } from "./session-columns.ts";
import { upsertSessionRows } from "./session-upsert.ts";

/**
 * Projects session events into the `sessions` table. Each batch is one transaction: lock the checkpoint
 * row, check it is where this runner last saw it, fold the batch over the affected rows (loaded in one
 * query), write them with one upsert of column arrays, and move the checkpoint. Replays are harmless twice
 * over: events at or below the checkpoint are dropped, and the upsert never lets a row go back in position.
 */
export function createSessionProjection(
  db: Kysely<Database>,
  options: { name?: string | undefined } = {},
): ProjectionTarget {
  return createCheckpointedProjection(db, options.name ?? SESSION_PROJECTION_NAME, (trx, fresh) =>
    applySessionEvents(trx, fresh.filter(isRecordedSessionEvent)),
  );
}

function isRecordedSessionEvent(event: RecordedEvent): event is RecordedEvent<SessionEvent> {
  return isSessionEvent(event);
}

async function applySessionEvents(trx: Transaction<Database>, events: RecordedEvent<SessionEvent>[]) {
  if (events.length === 0) return;
  const before = await loadSessionRows(trx, [...new Set(events.map((event) => event.data.sessionId))]);
  const after = new Map<string, SessionRow>(before);
  const ordered = [...events].sort((a, b) => a.position - b.position);
  for (const event of ordered) {
    const id = event.data.sessionId;
    const next = evolveSessionRow(after.get(id), event);
    if (next) after.set(id, next);
  }
  await upsertSessionRows(
    trx,
    [...after.values()].filter((row) => row !== before.get(row.id)),
  );
}

/** The stored rows of `ids` (those that exist). */
export async function loadSessionRows(
  trx: Transaction<Database>,
  ids: readonly string[],
): Promise<Map<string, SessionRow>> {
  if (ids.length === 0) return new Map();
  // One array parameter instead of one per id: the statement stays small however large the batch. A typed
  // uuid[] parameter, not an array literal cast in SQL: with `$1::text::uuid[]` the array is no constant
  // to the planner, and on the fresh tables of a rebuild this query got ~40× slower.
  const loaded = await trx
    .selectFrom("sessions")
    .selectAll()
    .where("id", "=", sql<string>`any(${ids}::uuid[])`)
    .execute();
  return new Map(loaded.map((r) => [r.id, rowFromDb(r)]));
}
