import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { sql } from "kysely";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createDatabase, type DatabaseHandle } from "../../src/adapters/postgres/database.ts";
import { isDatabaseUnavailable } from "../../src/adapters/postgres/unavailable.ts";
import { DependencyUnavailableError } from "../../src/app/unavailable.ts";
import { freePort } from "../support/ports.ts";
import { createTestDatabase, type TestDatabase } from "../support/services.ts";

/**
 * How the pg pool behaves when its server goes away: a connection lost while checked out must not crash
 * the process, and connection failures (not statement failures) surface as DependencyUnavailableError,
 * within a bounded time.
 */

let database: TestDatabase;
const handles: DatabaseHandle[] = [];
const uncaught: unknown[] = [];
const onUncaught = (error: unknown) => uncaught.push(error);

beforeAll(async () => {
  database = await createTestDatabase();
  process.on("uncaughtException", onUncaught);
});

afterEach(async () => {
  for (const handle of handles.splice(0)) await handle.close().catch(() => {});
});

afterAll(async () => {
  process.off("uncaughtException", onUncaught);
  await database?.drop();
});

async function open(url: string, options: { connectTimeoutMs?: number } = {}) {
  const poolErrors: Error[] = [];
  const handle = await createDatabase({ url, onPoolError: (error) => poolErrors.push(error), ...options });
  handles.push(handle);
  return { db: handle.db, poolErrors };
}

/** Ends the backend `pid` from another connection, as a restart of the server would. */
async function terminate(pid: number) {
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  try {
    await admin.query("select pg_terminate_backend($1)", [pid]);
  } finally {
    await admin.end();
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

describe("the Postgres pool when its server goes away", () => {
  it("survives a connection killed between statements of a transaction, and the next query works", async () => {
    const { db, poolErrors } = await open(database.url);
    const failed = await db
      .transaction()
      .execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
        await terminate(Number(rows[0]?.pid));
        // The client is checked out and idle now: its error arrives with no query to fail.
        await settle();
        await sql`select 1`.execute(trx);
      })
      .catch((error: unknown) => error);
    await settle();
    expect(uncaught).toEqual([]);
    expect(failed).toBeInstanceOf(DependencyUnavailableError);
    expect(poolErrors.length).toBeGreaterThan(0);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
    expect(rows).toEqual([{ one: 1 }]);
  });

  it("survives a connection killed while a statement of a transaction runs", async () => {
    const { db } = await open(database.url);
    const failed = await db
      .transaction()
      .execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
        const pid = Number(rows[0]?.pid);
        // Settled into a value at once: its failure is awaited below, not left unhandled meanwhile.
        const sleeping = sql`select pg_sleep(5)`.execute(trx).then(
          () => undefined,
          (error: unknown) => error,
        );
        await settle();
        await terminate(pid);
        const error = await sleeping;
        if (error !== undefined) throw error;
      })
      .catch((error: unknown) => error);
    await settle();
    expect(uncaught).toEqual([]);
    expect(failed).toBeInstanceOf(DependencyUnavailableError);
    expect((await sql`select 1`.execute(db)).rows).toHaveLength(1);
  });

  it("fails fast with DependencyUnavailableError when nothing listens", async () => {
    const { db } = await open(`postgres://postgres@127.0.0.1:${await freePort()}/postgres`);
    const started = performance.now();
    const failed = await sql`select 1`.execute(db).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(DependencyUnavailableError);
    expect((failed as DependencyUnavailableError).dependency).toBe("database");
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it("gives up on a server that accepts connections but never answers, after the connect timeout", async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((socket) => sockets.push(socket));
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    const address = silent.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    try {
      const { db } = await open(`postgres://postgres@127.0.0.1:${address.port}/postgres`, {
        connectTimeoutMs: 300,
      });
      const started = performance.now();
      const failed = await sql`select 1`.execute(db).catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(DependencyUnavailableError);
      expect(performance.now() - started).toBeLessThan(2_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });

  it("leaves a failing statement what it is", async () => {
    const { db } = await open(database.url);
    const failed = await sql`select * from no_such_table`.execute(db).catch((error: unknown) => error);
    expect(failed).not.toBeInstanceOf(DependencyUnavailableError);
    expect((failed as { code?: string }).code).toBe("42P01");
  });
});

describe("isDatabaseUnavailable", () => {
  const coded = (code: string, message = "x") => Object.assign(new Error(message), { code });

  it.each([
    ["a refused connection", coded("ECONNREFUSED")],
    ["a reset connection", coded("ECONNRESET")],
    ["an unresolvable host", coded("ENOTFOUND")],
    ["a server shutting down", coded("57P01", "terminating connection due to administrator command")],
    ["a server starting up", coded("57P03", "the database system is starting up")],
    ["too many connections", coded("53300")],
    ["a connection exception", coded("08006")],
    ["a lost connection", new Error("Connection terminated unexpectedly")],
    ["a broken client", new Error("Client has encountered a connection error and is not queryable")],
    ["a connect timeout", new Error("timeout exceeded when trying to connect")],
    ["every address refused", new AggregateError([coded("ECONNREFUSED"), coded("ECONNREFUSED")])],
  ])("is true for %s", (_name, error) => {
    expect(isDatabaseUnavailable(error)).toBe(true);
  });

  it.each([
    ["a unique violation", coded("23505")],
    ["an undefined table", coded("42P01")],
    ["a serialization failure", coded("40001")],
    ["a plain error", new Error("boom")],
    ["a mixed aggregate", new AggregateError([coded("ECONNREFUSED"), new Error("boom")])],
    ["something not an error", "Connection terminated"],
  ])("is false for %s", (_name, error) => {
    expect(isDatabaseUnavailable(error)).toBe(false);
  });
});
