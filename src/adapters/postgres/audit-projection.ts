import type { Insertable, Kysely, Transaction } from "kysely";
import type { RecordedEvent } from "../../domain/events.ts";
import { toStorableJsonText, toStorableText, toStorableTextOrNull } from "../../domain/storable-text.ts";
import { type AuditRow, auditRowOf, ownerLookupFor } from "../../projections/audit-row.ts";
import type { ProjectionTarget } from "../../projections/runner.ts";
import type { AuditEventsTable } from "./audit-schema.ts";
import { createCheckpointedProjection } from "./checkpointed-projection.ts";
import type { Database } from "./schema.ts";

export const AUDIT_PROJECTION_NAME = "audit";

/** Rows per INSERT: 11 parameters each, far below Postgres' 65,535-parameter limit. */
const INSERT_CHUNK = 2_000;

/**
 * Projects every event into `audit_events`, one row per log position. Same discipline as the session
 * projection: each batch is one transaction that locks the checkpoint row, checks it is where this runner
 * last saw it, inserts the rows and moves the checkpoint. Inserting a position twice does nothing (it is
 * the primary key), so a replayed batch changes nothing.
 *
 * Renewals, touches and rotations do not name the session's user; the user comes from the session's
 * SessionCreated — in the same batch, or already in the table (the table is its own lookup, so a rebuild
 * from position 1 needs nothing else).
 *
 * Text Postgres cannot store (NUL, unpaired surrogates) is stored with U+FFFD in its place, in the text
 * columns and in `data`/`metadata` (storable-text.ts): an old or foreign event holding one must not stop
 * the audit trail for good.
 */
export function createAuditProjection(
  db: Kysely<Database>,
  options: { name?: string | undefined } = {},
): ProjectionTarget {
  return createCheckpointedProjection(db, options.name ?? AUDIT_PROJECTION_NAME, async (trx, fresh) => {
    const rows = await auditRows(trx, fresh);
    for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
      await trx
        .insertInto("audit_events")
        .values(rows.slice(i, i + INSERT_CHUNK).map(toDb))
        .onConflict((oc) => oc.column("position").doNothing())
        .execute();
    }
  });
}

async function auditRows(trx: Transaction<Database>, events: RecordedEvent[]): Promise<AuditRow[]> {
  const ordered = [...events].sort((a, b) => a.position - b.position);
  const owners = new Map<string, string>();
  for (const event of ordered) {
    if (event.type === "SessionCreated") owners.set(event.data.sessionId, event.data.userId);
  }
  const missing = new Set<string>();
  for (const event of ordered) {
    const sessionId = ownerLookupFor(event);
    if (sessionId !== undefined && !owners.has(sessionId)) missing.add(sessionId);
  }
  if (missing.size > 0) {
    const found = await trx
      .selectFrom("audit_events")
      .select(["session_id", "user_id"])
      .where("type", "=", "SessionCreated")
      .where("session_id", "in", [...missing])
      .execute();
    for (const row of found) {
      if (row.session_id !== null && row.user_id !== null) owners.set(row.session_id, row.user_id);
    }
  }
  return ordered.map((event) => {
    const sessionId = ownerLookupFor(event);
    return auditRowOf(event, sessionId === undefined ? undefined : owners.get(sessionId));
  });
}

function toDb(row: AuditRow): Insertable<AuditEventsTable> {
  return {
    position: row.position,
    occurred_at: row.occurredAt,
    // type, actor_kind, source and reason are closed sets the codec checked on read.
    type: row.type,
    session_id: toStorableTextOrNull(row.sessionId),
    user_id: toStorableTextOrNull(row.userId),
    actor_kind: row.actorKind,
    actor_id: toStorableText(row.actorId),
    source: row.source,
    reason: row.reason,
    data: toStorableJsonText(JSON.stringify(row.data)),
    metadata: toStorableJsonText(JSON.stringify(row.metadata)),
  };
}
