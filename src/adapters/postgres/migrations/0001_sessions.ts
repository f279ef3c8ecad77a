import { type Kysely, sql } from "kysely";

/** The session list/stats read model and the checkpoints of every Postgres projection. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("sessions")
    .addColumn("id", "uuid", (col) => col.primaryKey())
    .addColumn("user_id", "text", (col) => col.notNull())
    .addColumn("username", "text", (col) => col.notNull())
    .addColumn("kind", "text", (col) => col.notNull())
    .addColumn("status", "text", (col) => col.notNull())
    .addColumn("roles", "jsonb", (col) => col.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn("groups", "jsonb", (col) => col.notNull().defaultTo(sql`'[]'::jsonb`))
    .addColumn("client", "text")
    .addColumn("ip_address", "text")
    .addColumn("user_agent", "text")
    .addColumn("created_at", "timestamptz", (col) => col.notNull())
    .addColumn("last_activity_at", "timestamptz", (col) => col.notNull())
    .addColumn("expires_at", "timestamptz", (col) => col.notNull())
    .addColumn("idle_timeout_seconds", "integer", (col) => col.notNull().defaultTo(0))
    .addColumn("idle_expires_at", "timestamptz")
    .addColumn("ended_at", "timestamptz")
    .addColumn("end_reason", "text")
    .addColumn("metadata", "jsonb", (col) => col.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn("last_position", "bigint", (col) => col.notNull())
    .execute();

  // Lists page by (created_at desc, id desc) within a user; id desc too so the index serves the order as is.
  await db.schema
    .createIndex("sessions_user_created_idx")
    .on("sessions")
    .expression(sql`user_id, created_at desc, id desc`)
    .execute();
  // The expiry sweep: active rows past one of their deadlines.
  await db.schema
    .createIndex("sessions_status_expires_idx")
    .on("sessions")
    .columns(["status", "expires_at"])
    .execute();
  await db.schema
    .createIndex("sessions_status_idle_expires_idx")
    .on("sessions")
    .columns(["status", "idle_expires_at"])
    .execute();
  // Pruning ended rows past retention.
  await db.schema.createIndex("sessions_ended_at_idx").on("sessions").column("ended_at").execute();

  await db.schema
    .createTable("projection_checkpoints")
    .addColumn("name", "text", (col) => col.primaryKey())
    .addColumn("position", "bigint", (col) => col.notNull())
    .addColumn("updated_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("projection_checkpoints").execute();
  await db.schema.dropTable("sessions").execute();
}
