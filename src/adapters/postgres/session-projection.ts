import { type Kysely, sql, type Transaction } from "kysely";
import type { SessionRow } from "../../app/ports.ts";
import { isSessionEvent, type RecordedEvent, type SessionEvent } from "../../domain/events.ts";
import type { ProjectionTarget } from "../../projections/runner.ts";
import { evolveSessionRow, idleTimeoutMs } from "../../projections/session-row.ts";
import { plainArray, textArray } from "./array-literal.ts";
import { createCheckpointedProjection } from "./checkpointed-projection.ts";
import type { Database } from "./schema.ts";
import { rowFromDb, SESSION_COLUMNS, SESSION_PROJECTION_NAME } from "./session-columns.ts";

/** Rows per INSERT: bounds one statement's size for very large batches. */
const UPSERT_CHUNK = 5_000;

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
  const ids = [...new Set(events.map((event) => event.data.sessionId))];
  // One array parameter instead of one per id: the statement stays small however large the batch. A typed
  // uuid[] parameter, not an array literal cast in SQL: with `$1::text::uuid[]` the array is no constant
  // to the planner, and on the fresh tables of a rebuild this query got ~40× slower.
  const loaded = await trx
    .selectFrom("sessions")
    .selectAll()
    .where("id", "=", sql<string>`any(${ids}::uuid[])`)
    .execute();
  const before = new Map(loaded.map((r) => [r.id, rowFromDb(r)]));
  const after = new Map<string, SessionRow>(before);
  const ordered = [...events].sort((a, b) => a.position - b.position);
  for (const event of ordered) {
    const id = event.data.sessionId;
    const next = evolveSessionRow(after.get(id), event);
    if (next) after.set(id, next);
  }
  const changed = [...after.values()].filter((row) => row !== before.get(row.id));
  for (let i = 0; i < changed.length; i += UPSERT_CHUNK) {
    await upsert(trx, changed.slice(i, i + UPSERT_CHUNK));
  }
}

/**
 * One INSERT … SELECT FROM unnest(one array per column) … ON CONFLICT: 19 parameters whatever the row
 * count. A multi-row VALUES list with a parameter per cell took Postgres about twice as long to parse,
 * bind and plan, and kysely a while to build. Each array goes as the text of an array literal (cast in
 * SQL), which node-postgres and PGlite both pass through unchanged.
 */
function upsert(trx: Transaction<Database>, rows: SessionRow[]) {
  const n = rows.length;
  const id = new Array<string>(n);
  const userId = new Array<string>(n);
  const username = new Array<string>(n);
  const kind = new Array<string>(n);
  const status = new Array<string>(n);
  const roles = new Array<string>(n);
  const groups = new Array<string>(n);
  const client = new Array<string | null>(n);
  const ipAddress = new Array<string | null>(n);
  const userAgent = new Array<string | null>(n);
  const createdAt = new Array<string>(n);
  const lastActivityAt = new Array<string>(n);
  const expiresAt = new Array<string>(n);
  const idleTimeoutSeconds = new Array<number>(n);
  const idleExpiresAt = new Array<string | null>(n);
  const endedAt = new Array<string | null>(n);
  const endReason = new Array<string | null>(n);
  const metadata = new Array<string>(n);
  const lastPosition = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const row = rows[i] as SessionRow;
    id[i] = row.id;
    userId[i] = row.userId;
    username[i] = row.username;
    kind[i] = row.kind;
    status[i] = row.status;
    roles[i] = JSON.stringify(row.roles);
    groups[i] = JSON.stringify(row.groups);
    client[i] = row.client;
    ipAddress[i] = row.ipAddress;
    userAgent[i] = row.userAgent;
    createdAt[i] = row.createdAt.toISOString();
    lastActivityAt[i] = row.lastActivityAt.toISOString();
    expiresAt[i] = row.expiresAt.toISOString();
    idleTimeoutSeconds[i] = Math.round(idleTimeoutMs(row) / 1000);
    idleExpiresAt[i] = row.idleExpiresAt?.toISOString() ?? null;
    endedAt[i] = row.endedAt?.toISOString() ?? null;
    endReason[i] = row.endReason;
    metadata[i] = JSON.stringify(row.metadata);
    lastPosition[i] = row.lastPosition;
  }
  // Built with kysely so that withSchema (rebuilds write into a side schema) qualifies the table.
  return trx
    .insertInto("sessions")
    .columns([...SESSION_COLUMNS])
    .expression(
      sql`select * from unnest(
        ${plainArray(id)}::text::uuid[], ${textArray(userId)}::text::text[],
        ${textArray(username)}::text::text[], ${textArray(kind)}::text::text[],
        ${textArray(status)}::text::text[], ${textArray(roles)}::text::jsonb[],
        ${textArray(groups)}::text::jsonb[], ${textArray(client)}::text::text[],
        ${textArray(ipAddress)}::text::text[], ${textArray(userAgent)}::text::text[],
        ${plainArray(createdAt)}::text::timestamptz[], ${plainArray(lastActivityAt)}::text::timestamptz[],
        ${plainArray(expiresAt)}::text::timestamptz[], ${plainArray(idleTimeoutSeconds)}::text::int4[],
        ${plainArray(idleExpiresAt)}::text::timestamptz[], ${plainArray(endedAt)}::text::timestamptz[],
        ${textArray(endReason)}::text::text[], ${textArray(metadata)}::text::jsonb[],
        ${plainArray(lastPosition)}::text::int8[]
      )`,
    )
    .onConflict((oc) =>
      oc
        .column("id")
        .doUpdateSet((eb) => ({
          user_id: eb.ref("excluded.user_id"),
          username: eb.ref("excluded.username"),
          kind: eb.ref("excluded.kind"),
          status: eb.ref("excluded.status"),
          roles: eb.ref("excluded.roles"),
          groups: eb.ref("excluded.groups"),
          client: eb.ref("excluded.client"),
          ip_address: eb.ref("excluded.ip_address"),
          user_agent: eb.ref("excluded.user_agent"),
          created_at: eb.ref("excluded.created_at"),
          last_activity_at: eb.ref("excluded.last_activity_at"),
          expires_at: eb.ref("excluded.expires_at"),
          idle_timeout_seconds: eb.ref("excluded.idle_timeout_seconds"),
          idle_expires_at: eb.ref("excluded.idle_expires_at"),
          ended_at: eb.ref("excluded.ended_at"),
          end_reason: eb.ref("excluded.end_reason"),
          metadata: eb.ref("excluded.metadata"),
          last_position: eb.ref("excluded.last_position"),
        }))
        // Belt and braces with the checkpoint: a row never moves back to an older state.
        .whereRef("sessions.last_position", "<", "excluded.last_position"),
    )
    .execute();
}
