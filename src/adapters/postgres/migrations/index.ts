import { type Kysely, type Migration, type MigrationResult, Migrator } from "kysely";
import * as m0001 from "./0001_sessions.ts";
import * as m0002 from "./0002_users.ts";
import * as m0003 from "./0003_audit_events.ts";
import * as m0004 from "./0004_idp.ts";

/**
 * Every migration, in order. Names sort lexically, so keep the zero-padded prefix; to add one, create
 * `000N_name.ts` exporting `up` (and `down`) and list it here. A static list rather than a folder scan so
 * the bundle and the test runner see the same migrations.
 */
export const migrations: Record<string, Migration> = {
  "0001_sessions": m0001,
  "0002_users": m0002,
  "0003_audit_events": m0003,
  "0004_idp": m0004,
};

export class MigrationError extends Error {
  readonly results: MigrationResult[];
  constructor(cause: unknown, results: MigrationResult[]) {
    super(`Database migration failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "MigrationError";
    this.results = results;
  }
}

/**
 * Brings the schema up to date. Safe to call from several instances at once: kysely's migrator holds a
 * Postgres advisory lock while it runs and skips migrations already recorded.
 */
export async function migrateToLatest<DB>(db: Kysely<DB>): Promise<MigrationResult[]> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results = [] } = await migrator.migrateToLatest();
  if (error !== undefined) throw new MigrationError(error, results);
  return results;
}
