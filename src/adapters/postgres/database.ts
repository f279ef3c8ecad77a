import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { migrateToLatest } from "./migrations/index.ts";
import type { Database } from "./schema.ts";

export type DatabaseConfig =
  | {
      url: string;
      poolSize?: number | undefined;
      /** Errors of idle pooled connections (e.g. the server restarted); the pool replaces them. */
      onPoolError?: ((error: Error) => void) | undefined;
    }
  | { embedded: true; dataDir?: string | undefined };

export type DatabaseHandle = {
  db: Kysely<Database>;
  close(): Promise<void>;
  kind: "postgres" | "pglite";
};

const INT8_OID = 20;

/**
 * node-postgres returns int8 (positions, count(*)) as strings to be safe past 2^53; log positions and row
 * counts never get there, so parse them as numbers. Scoped to this pool rather than the global pg.types so
 * other pools in the process keep their defaults.
 */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID && format !== "binary"
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * Opens the read-model database: a pg pool for a URL, or PGlite (in memory unless `dataDir`) for embedded
 * mode. Does not migrate; call `migrateToLatest(db)` (or `openDatabase`) for that.
 */
export async function createDatabase(config: DatabaseConfig): Promise<DatabaseHandle> {
  if ("url" in config) {
    const pool = new pg.Pool({ connectionString: config.url, max: config.poolSize ?? 10, types });
    // An idle client that loses its connection emits 'error' on the pool; unhandled, it would crash the process.
    pool.on("error", (error) => config.onPoolError?.(error));
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    return { db, kind: "postgres", close: () => db.destroy() };
  }
  // Imported lazily so a server pointed at real Postgres never loads the WASM build.
  const [{ PGlite }, { PGliteDialect }] = await Promise.all([
    import("@electric-sql/pglite"),
    import("kysely-pglite-dialect"),
  ]);
  const client = config.dataDir === undefined ? new PGlite() : new PGlite(config.dataDir);
  await client.waitReady;
  const db = new Kysely<Database>({ dialect: new PGliteDialect(client) });
  return { db, kind: "pglite", close: () => db.destroy() };
}

/** createDatabase + migrateToLatest: what the composition root wants on start. */
export async function openDatabase(config: DatabaseConfig): Promise<DatabaseHandle> {
  const handle = await createDatabase(config);
  try {
    await migrateToLatest(handle.db);
  } catch (error) {
    await handle.close();
    throw error;
  }
  return handle;
}
