import { Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient } from "kysely";
import pg from "pg";
import { DependencyUnavailableError } from "../../app/unavailable.ts";
import { migrateToLatest } from "./migrations/index.ts";
import type { Database } from "./schema.ts";
import { isDatabaseUnavailable } from "./unavailable.ts";

export type DatabaseConfig =
  | {
      url: string;
      poolSize?: number | undefined;
      /** Errors of pooled connections, idle or in use (e.g. the server restarted); the pool replaces them. */
      onPoolError?: ((error: Error) => void) | undefined;
      /** How long acquiring a connection may take before it fails (default 5 s). */
      connectTimeoutMs?: number | undefined;
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
    const pool = new pg.Pool({
      connectionString: config.url,
      max: config.poolSize ?? 10,
      types,
      // Without it, a server that accepts connections but never answers (frozen, or behind a black hole)
      // holds every query, listing and readiness probe for as long as TCP cares to retry.
      connectionTimeoutMillis: config.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    });
    // A client that loses its connection emits 'error'. The pool listens only while the client is idle,
    // so one that dies while checked out (a restart in the middle of a projection's transaction) would
    // crash the process. Its query fails anyway and the pool drops it on release: reporting is all that
    // is left to do, once per error (the pool re-emits an idle client's error, hence the quiet listener).
    pool.on("connect", (client) => client.on("error", (error) => config.onPoolError?.(error)));
    pool.on("error", () => {});
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: unavailableAware(pool) }) });
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

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/**
 * The pool as kysely uses it, with connection failures (acquiring a client, or a query on one that lost
 * its server) rethrown as DependencyUnavailableError so callers can tell "retry shortly" from a bug.
 */
function unavailableAware(pool: pg.Pool): PostgresPool {
  const wrapped = new WeakMap<pg.PoolClient, PostgresPoolClient>();
  const rethrow = (error: unknown): never => {
    throw isDatabaseUnavailable(error) ? new DependencyUnavailableError("database", error) : error;
  };
  return {
    async connect() {
      const client = await pool.connect().catch(rethrow);
      let facade = wrapped.get(client);
      if (facade === undefined) {
        facade = {
          // kysely passes (sql, parameters) for a query, answered with a promise, or a cursor, answered
          // with the cursor itself (whose own reads fail as they fail).
          query: ((...args: unknown[]) => {
            const result: unknown = (client.query as (...a: unknown[]) => unknown)(...args);
            return result instanceof Promise ? result.catch(rethrow) : result;
          }) as PostgresPoolClient["query"],
          // kysely keeps one connection object per client object, so the facade must be the same object
          // every time its client comes round; release is re-bound by the pool on each checkout.
          release: () => client.release(),
        };
        wrapped.set(client, facade);
      }
      return facade;
    },
    end: () => pool.end(),
  };
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
