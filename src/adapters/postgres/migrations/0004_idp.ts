import { type Kysely, sql } from "kysely";

/**
 * The IdP session index: which Tessera sessions were created under which IdP session (OIDC `sid`), so a
 * back-channel logout naming only a sid finds them. Its own projection keeps it (see idp-session-index.ts);
 * its checkpoint lives in projection_checkpoints like every Postgres projection's.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("idp_sessions")
    .addColumn("session_id", "uuid", (col) => col.primaryKey())
    .addColumn("idp_session_id", "text", (col) => col.notNull())
    .addColumn("user_id", "text", (col) => col.notNull())
    .addColumn("created_at", "timestamptz", (col) => col.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("idp_sessions_sid_idx").on("idp_sessions").column("idp_session_id").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("idp_sessions").execute();
}
