import { type Kysely, sql } from "kysely";
import { createAuditProjection } from "../../src/adapters/postgres/audit-projection.ts";
import { openDatabase } from "../../src/adapters/postgres/database.ts";
import type { Database } from "../../src/adapters/postgres/schema.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import { catchUp } from "../../src/projections/runner.ts";
import { createTestDatabase } from "../support/services.ts";

/** Everything the Postgres read models hold, in a stable order, for equality checks. */
export async function snapshot(db: Kysely<Database>) {
  const sessions = await db.selectFrom("sessions").selectAll().orderBy("id").execute();
  const audit = await db.selectFrom("audit_events").selectAll().orderBy("position").execute();
  const checkpoints = await db
    .selectFrom("projection_checkpoints")
    .select(["name", "position"])
    .where("name", "in", ["sessions", "audit"])
    .orderBy("name")
    .execute();
  return { sessions, audit, checkpoints };
}

/** The read models a fresh database gets from replaying the log from position 1 to `until`'s end. */
export async function freshRebuild(log: EventLog) {
  const fresh = await createTestDatabase("tessera_fresh");
  const handle = await openDatabase({ url: fresh.url, poolSize: 2 });
  try {
    await catchUp(log, createSessionProjection(handle.db), 500);
    await catchUp(log, createAuditProjection(handle.db), 500);
    return await snapshot(handle.db);
  } finally {
    await handle.close();
    await fresh.drop();
  }
}

export async function indexNames(db: Kysely<Database>, table: string): Promise<string[]> {
  const { rows } = await sql<{ indexname: string }>`
    select indexname from pg_indexes where schemaname = current_schema() and tablename = ${table} order by indexname
  `.execute(db);
  return rows.map((r) => r.indexname);
}

export async function rebuildSchemas(db: Kysely<Database>): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select nspname as name from pg_namespace where nspname like 'rebuild_%' order by nspname
  `.execute(db);
  return rows.map((r) => r.name);
}
