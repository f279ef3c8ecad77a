import { type Kysely, sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabase, type DatabaseHandle } from "../../src/adapters/postgres/database.ts";
import { migrateToLatest, migrations } from "../../src/adapters/postgres/migrations/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/services.ts";

async function tablesOf<DB>(db: Kysely<DB>): Promise<string[]> {
  const { rows } = await sql<{ table_name: string }>`
    select table_name from information_schema.tables where table_schema = 'public' order by table_name
  `.execute(db);
  return rows.map((r) => r.table_name);
}

async function indexesOf<DB>(db: Kysely<DB>): Promise<string[]> {
  const { rows } = await sql<{ indexname: string }>`
    select indexname from pg_indexes where tablename = 'sessions' order by indexname
  `.execute(db);
  return rows.map((r) => r.indexname);
}

const EXPECTED_TABLES = [
  "audit_events",
  "idp_sessions",
  "kysely_migration",
  "kysely_migration_lock",
  "projection_checkpoints",
  "sessions",
  "users",
];
const EXPECTED_INDEXES = [
  "sessions_ended_at_idx",
  "sessions_pkey",
  "sessions_status_expires_idx",
  "sessions_status_idle_expires_idx",
  "sessions_user_created_idx",
];

describe("migrations on a fresh Postgres database", () => {
  let database: TestDatabase;
  const handles: DatabaseHandle[] = [];

  beforeAll(async () => {
    database = await createTestDatabase("tessera_mig");
    for (let i = 0; i < 3; i++) handles.push(await createDatabase({ url: database.url, poolSize: 2 }));
  });

  afterAll(async () => {
    for (const handle of handles) await handle.close();
    await database?.drop();
  });

  it("runs once when three instances start at the same time, then is a no-op", async () => {
    const results = await Promise.all(handles.map((h) => migrateToLatest(h.db)));
    const applied = results.flat().filter((r) => r.status === "Success");
    expect(applied.map((r) => r.migrationName)).toEqual(Object.keys(migrations));
    expect(results.flat().filter((r) => r.status !== "Success")).toEqual([]);

    const first = handles[0]!.db;
    expect(await tablesOf(first)).toEqual(EXPECTED_TABLES);
    expect(await indexesOf(first)).toEqual(EXPECTED_INDEXES);

    expect(await migrateToLatest(first)).toEqual([]);
    const { rows } = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(
      first,
    );
    expect(rows.map((r) => r.name)).toEqual(Object.keys(migrations));
  });

  it("reads int8 as numbers", async () => {
    const { rows } = await sql<{ n: unknown }>`select 9007199254740991::int8 as n`.execute(handles[0]!.db);
    expect(rows[0]?.n).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe("migrations on PGlite", () => {
  it("migrates an in-memory database and is idempotent", async () => {
    const handle = await createDatabase({ embedded: true });
    try {
      const first = await migrateToLatest(handle.db);
      expect(first.map((r) => [r.migrationName, r.status])).toEqual(
        Object.keys(migrations).map((name) => [name, "Success"]),
      );
      expect(await migrateToLatest(handle.db)).toEqual([]);
      expect(await tablesOf(handle.db)).toEqual(EXPECTED_TABLES);
      expect(await indexesOf(handle.db)).toEqual(EXPECTED_INDEXES);
    } finally {
      await handle.close();
    }
  });
});
