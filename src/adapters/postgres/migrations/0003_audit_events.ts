import { type Kysely, sql } from "kysely";

/**
 * The audit read model: one row per event of the log, keyed by its position. Nothing here is ever
 * updated; rows are only inserted (and the whole table can be rebuilt from the log with `tessera replay`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("audit_events")
    .addColumn("position", "bigint", (col) => col.primaryKey())
    .addColumn("occurred_at", "timestamptz", (col) => col.notNull())
    .addColumn("type", "text", (col) => col.notNull())
    .addColumn("session_id", "text")
    .addColumn("user_id", "text")
    .addColumn("actor_kind", "text", (col) => col.notNull())
    .addColumn("actor_id", "text", (col) => col.notNull())
    .addColumn("source", "text", (col) => col.notNull())
    .addColumn("reason", "text")
    .addColumn("data", "jsonb", (col) => col.notNull())
    .addColumn("metadata", "jsonb", (col) => col.notNull())
    .execute();
  // Every filter of GET /v1/audit pages by position within it.
  await db.schema
    .createIndex("audit_events_user_position_idx")
    .on("audit_events")
    .columns(["user_id", "position"])
    .execute();
  await db.schema
    .createIndex("audit_events_session_position_idx")
    .on("audit_events")
    .columns(["session_id", "position"])
    .execute();
  await db.schema
    .createIndex("audit_events_type_position_idx")
    .on("audit_events")
    .columns(["type", "position"])
    .execute();
  await db.schema
    .createIndex("audit_events_occurred_at_idx")
    .on("audit_events")
    .column("occurred_at")
    .execute();
  // `as_of` folds: a user's session creations whose lifetime could still cover the instant asked about.
  await db.schema
    .createIndex("audit_events_created_idx")
    .on("audit_events")
    .columns(["user_id", "occurred_at"])
    .where(sql<boolean>`type = 'SessionCreated'`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("audit_events").execute();
}
