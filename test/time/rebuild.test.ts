import type { NatsConnection } from "@nats-io/transport-node";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createManualTickSource } from "../../src/adapters/clock/tick-source.ts";
import { createAuditReadModel } from "../../src/adapters/postgres/audit-read-model.ts";
import { type DatabaseHandle, openDatabase } from "../../src/adapters/postgres/database.ts";
import { POSTGRES_PROJECTIONS, rebuildProjection } from "../../src/adapters/postgres/rebuild.ts";
import { runReplay } from "../../src/cli-replay.ts";
import type { Tessera } from "../../src/main.ts";
import { waitForCheckpoint } from "../../src/projections/runner.ts";
import {
  connectNats,
  createTestDatabase,
  NATS_URL,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { adminHeaders, TEST_JWT_PRIVATE_KEY } from "../support/tessera.ts";
import { createSession, fakeClockAt, startDistributedAt } from "./helpers.ts";
import { freshRebuild, indexNames, rebuildSchemas, snapshot } from "./read-models.ts";

/**
 * `tessera replay` against a live deployment: the Postgres read models are rebuilt from position 1 into
 * fresh tables and swapped in while the service keeps writing and reading, and the result equals a
 * rebuild into an empty database.
 */

let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let tessera: Tessera;
let handle: DatabaseHandle;

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("replay");
  database = await createTestDatabase();
  tessera = await startDistributedAt(prefix, database.url, {
    clock: fakeClockAt(),
    tickSource: createManualTickSource(),
  });
  handle = await openDatabase({ url: database.url, poolSize: 2 });
});

afterAll(async () => {
  await handle?.close();
  await tessera?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

async function caughtUp() {
  const end = await tessera.log.lastPosition();
  expect(await waitForCheckpoint(tessera.readModel, end, 10_000)).toBe(true);
  expect(await waitForCheckpoint(createAuditReadModel(handle.db), end, 10_000)).toBe(true);
}

async function someActivity(count: number, label: string) {
  const sessions = [];
  for (let i = 0; i < count; i += 25) {
    sessions.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(25, count - i) }, (_, j) =>
          createSession(tessera, `${label}-${(i + j) % 6}`),
        ),
      )),
    );
  }
  for (const [i, { id }] of sessions.entries()) {
    if (i % 5 === 0) {
      await tessera.app.inject({
        method: "POST",
        url: `/v1/sessions/${id}/renew`,
        headers: adminHeaders,
        payload: { ttl_seconds: 7_200 },
      });
    }
    if (i % 7 === 0)
      await tessera.app.inject({ method: "DELETE", url: `/v1/sessions/${id}`, headers: adminHeaders });
  }
}

describe("rebuilding the Postgres read models", () => {
  it("tessera replay swaps in rebuilt tables while the service writes and reads, equal to a fresh rebuild", async () => {
    await someActivity(150, "before");
    await caughtUp();
    const indexesBefore = {
      sessions: await indexNames(handle.db, "sessions"),
      audit: await indexNames(handle.db, "audit_events"),
    };

    // Writers and readers carry on throughout the replay: no downtime, no failed request.
    let running = true;
    const failures: string[] = [];
    let writes = 0;
    let reads = 0;
    const writer = (async () => {
      while (running) {
        await createSession(tessera, `during-${writes % 4}`).catch((error) => failures.push(String(error)));
        writes++;
      }
    })();
    const reader = (async () => {
      while (running) {
        const list = await tessera.app.inject({
          method: "GET",
          url: "/v1/sessions?status=all",
          headers: adminHeaders,
        });
        const audit = await tessera.app.inject({
          method: "GET",
          url: "/v1/audit?limit=5",
          headers: adminHeaders,
        });
        if (list.statusCode !== 200 || audit.statusCode !== 200)
          failures.push(`${list.statusCode}/${audit.statusCode}`);
        reads++;
      }
    })();
    const lines: string[] = [];
    const code = await runReplay(
      ["all", "--batch-size=100"],
      {
        NATS_URL,
        DATABASE_URL: database.url,
        TESSERA_PREFIX: prefix,
        TESSERA_JWT_PRIVATE_KEY: TEST_JWT_PRIVATE_KEY,
        LOG_LEVEL: "silent",
      },
      { log: (line) => lines.push(line), error: (line) => lines.push(`error: ${line}`) },
    );
    running = false;
    await Promise.all([writer, reader]);

    expect(code, lines.join("\n")).toBe(0);
    expect(lines.some((line) => /^sessions: rebuilt to position \d+ .* swapped in/.test(line))).toBe(true);
    expect(lines.some((line) => /^audit: rebuilt to position \d+ .* swapped in/.test(line))).toBe(true);
    expect(failures).toEqual([]);
    expect(writes).toBeGreaterThan(0);
    expect(reads).toBeGreaterThan(0);

    await caughtUp();
    const live = await snapshot(handle.db);
    expect(live.sessions.length).toBeGreaterThanOrEqual(150 + writes);
    expect(live.audit.map((row) => Number(row.position))).toEqual(
      Array.from({ length: await tessera.log.lastPosition() }, (_, i) => i + 1),
    );
    expect(live).toEqual(await freshRebuild(tessera.log));
    // Same schema as before: canonical index names, nothing left behind.
    expect(await indexNames(handle.db, "sessions")).toEqual(indexesBefore.sessions);
    expect(await indexNames(handle.db, "audit_events")).toEqual(indexesBefore.audit);
    expect(await rebuildSchemas(handle.db)).toEqual([]);
  });

  it("never swaps in a copy behind the live tables, even when the live runner got ahead meanwhile", async () => {
    const sessions = POSTGRES_PROJECTIONS.sessions;
    if (!sessions) throw new Error("no sessions projection");
    await caughtUp();
    let rebuiltUpTo = 0;
    let liveAhead = 0;
    const result = await rebuildProjection({
      db: handle.db,
      log: tessera.log,
      projection: sessions,
      async beforeSwap() {
        rebuiltUpTo = await tessera.log.lastPosition();
        await someActivity(30, "late");
        liveAhead = await tessera.log.lastPosition();
        expect(await waitForCheckpoint(tessera.readModel, liveAhead, 10_000)).toBe(true);
      },
    });
    expect(liveAhead).toBeGreaterThan(rebuiltUpTo);
    // Caught up under the lock to at least what the live runner had applied; then nothing new arrives, so
    // the swapped-in tables must be complete on their own.
    expect(result.position).toBeGreaterThanOrEqual(liveAhead);
    await caughtUp();
    expect(await snapshot(handle.db)).toEqual(await freshRebuild(tessera.log));
  });

  it("can rebuild into a side schema without swapping (what a benchmark measures)", async () => {
    const sessions = POSTGRES_PROJECTIONS.sessions;
    if (!sessions) throw new Error("no sessions projection");
    await caughtUp();
    const result = await rebuildProjection({
      db: handle.db,
      log: tessera.log,
      projection: sessions,
      swap: false,
    });
    try {
      expect(result.swapped).toBe(false);
      expect(result.position).toBe(await tessera.log.lastPosition());
      const { rows } = await sql<{ count: string }>`select count(*) as count from sessions`.execute(
        handle.db,
      );
      expect(result.rows.sessions).toBe(Number(rows[0]?.count));
      expect(await rebuildSchemas(handle.db)).toEqual([result.schema]);
    } finally {
      await sql`drop schema ${sql.id(result.schema)} cascade`.execute(handle.db);
    }
  });

  it("refuses to replay an embedded deployment or an unknown projection", async () => {
    const errors: string[] = [];
    const out = { log: () => {}, error: (line: string) => errors.push(line) };
    expect(await runReplay(["nonsense"], {}, out)).toBe(2);
    expect(errors[0]).toMatch(/Unknown projection/);
    await expect(runReplay(["sessions"], { LOG_LEVEL: "silent" }, out)).rejects.toThrow(
      /NATS_URL and DATABASE_URL/,
    );
  });
});
