import pg from "pg";
import { connectNats } from "../../src/adapters/jetstream/connection.ts";
import { createJetStreamEventLog } from "../../src/adapters/jetstream/event-log.ts";
import { openDatabase } from "../../src/adapters/postgres/database.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import { sessionStream } from "../../src/domain/events.ts";
import { catchUp } from "../../src/projections/runner.ts";
import { createTestDatabase } from "../../test/support/services.ts";
import type { Benchmark } from "../lib/bench.ts";
import { type BenchEnvironment, withEnvironment } from "../lib/environment.ts";
import { metadataFor, pipelined, sessionHistory } from "../lib/events.ts";
import { formatNumber, judge, type Target } from "../lib/report.ts";
import { alternate, median, pairedRatio } from "../lib/stats.ts";

const SESSIONS = 10_000;
const CHUNK = 500;
const TARGET: Target = { kind: "min-ratio", value: 0.8 };

const COLUMNS = [
  "id",
  "user_id",
  "username",
  "kind",
  "status",
  "roles",
  "groups",
  "client",
  "ip_address",
  "user_agent",
  "created_at",
  "last_activity_at",
  "expires_at",
  "idle_timeout_seconds",
  "idle_expires_at",
  "ended_at",
  "end_reason",
  "metadata",
  "last_position",
] as const;
const JSON_COLUMNS = new Set(["roles", "groups", "metadata"]);

/** A fresh database with the read-model schema (migrated, not timed). */
async function freshDatabase(env: BenchEnvironment) {
  const database = await createTestDatabase("bench_rebuild");
  env.defer(() => database.drop());
  const handle = await openDatabase({ url: database.url });
  env.defer(() => handle.close());
  return { url: database.url, handle };
}

/** The baseline: the same rows written with plain multi-row upserts of 500 rows, one statement each. */
async function rawUpsert(url: string, rows: Record<string, unknown>[]): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const updates = COLUMNS.filter((c) => c !== "id")
      .map((c) => `"${c}" = excluded."${c}"`)
      .join(", ");
    const started = performance.now();
    for (let i = 0; i < rows.length; i += CHUNK) {
      const chunk = rows.slice(i, i + CHUNK);
      const values: unknown[] = [];
      const tuples = chunk.map((row, r) => {
        for (const column of COLUMNS) {
          const value = row[column];
          values.push(JSON_COLUMNS.has(column) ? JSON.stringify(value) : value);
        }
        return `(${COLUMNS.map((_, c) => `$${r * COLUMNS.length + c + 1}`).join(", ")})`;
      });
      await client.query(
        `INSERT INTO sessions (${COLUMNS.map((c) => `"${c}"`).join(", ")}) VALUES ${tuples.join(", ")}
         ON CONFLICT (id) DO UPDATE SET ${updates} WHERE sessions.last_position < excluded.last_position`,
        values,
      );
    }
    return performance.now() - started;
  } finally {
    await client.end();
  }
}

/**
 * Rebuild throughput: `catchUp` of the Postgres sessions projection (src/projections/runner.ts) from
 * position 1 into a fresh database — read the log from JetStream, decode, fold, upsert in transactions
 * with the checkpoint — against writing the resulting rows into another fresh database with raw batched
 * multi-row upserts. Both are timed to the same end state (the same rows); ABBA, a fresh database each run.
 */
export const rebuild: Benchmark = {
  name: "rebuild",
  issue: 4,
  description:
    "catchUp of the sessions projection into a fresh database vs a raw batched multi-row upsert of the same rows",
  run: (options) =>
    withEnvironment("rebuild", async (env) => {
      const nc = await connectNats(env.natsUrl, "bench-rebuild");
      env.defer(() => nc.close());
      const log = await createJetStreamEventLog({ nc, prefix: env.prefix });
      env.defer(() => log.close());

      const sessions = Math.round(SESSIONS * options.scale);
      const now = Date.now();
      const histories = Array.from({ length: sessions }, (_, i) => sessionHistory(i, now));
      const eventCount = histories.reduce((sum, h) => sum + h.events.length, 0);
      options.log(`  appending ${formatNumber(eventCount)} events for ${formatNumber(sessions)} sessions`);
      await pipelined(histories.length, 500, async (i) => {
        const history = histories[i] as (typeof histories)[number];
        let version = 0;
        for (const event of history.events) {
          const result = await log.append(sessionStream(history.sessionId), event, metadataFor(now), {
            expectedVersion: version,
            messageId: crypto.randomUUID(),
          });
          version = result.position;
        }
      });

      let rows: Record<string, unknown>[] = [];
      const runs = await alternate(
        2,
        async (which, round) => {
          const target = await freshDatabase(env);
          let ms: number;
          if (which === "subject") {
            const started = performance.now();
            await catchUp(log, createSessionProjection(target.handle.db));
            ms = performance.now() - started;
            if (rows.length === 0) {
              const client = new pg.Client({ connectionString: target.url });
              await client.connect();
              rows = (await client.query("SELECT * FROM sessions ORDER BY id")).rows;
              await client.end();
            }
          } else {
            if (rows.length === 0) throw new Error("the baseline needs the rows of a rebuild first");
            ms = await rawUpsert(target.url, rows);
          }
          const count = await target.handle.db
            .selectFrom("sessions")
            .select((eb) => eb.fn.countAll<number>().as("n"))
            .executeTakeFirstOrThrow();
          if (Number(count.n) !== sessions)
            throw new Error(`${which} wrote ${count.n} rows, expected ${sessions}`);
          const rate = (sessions / ms) * 1000;
          options.log(`  round ${round + 1} ${which}: ${formatNumber(rate)} rows/s (${formatNumber(ms)} ms)`);
          return rate;
        },
        "subject-first",
      );
      const value = median(runs.subject);
      const ratio = pairedRatio(runs.baseline, runs.subject);
      return [
        {
          bench: "rebuild",
          title: `rebuild of the sessions read model: ${formatNumber(eventCount)} events → ${formatNumber(sessions)} rows`,
          subject: {
            value,
            unit: "rows/s",
            label: "Tessera",
            detail: `catchUp from position 1, batches of 500 events: ${runs.subject.map(formatNumber).join(", ")} rows/s (${formatNumber((value * eventCount) / sessions)} events/s)`,
          },
          baseline: {
            value: median(runs.baseline),
            unit: "rows/s",
            label: `raw multi-row upsert, ${CHUNK} rows per statement`,
            detail: `${runs.baseline.map(formatNumber).join(", ")} rows/s`,
          },
          ratio,
          target: TARGET,
          pass: judge(TARGET, value, ratio),
          notes: [],
        },
      ];
    }),
};
