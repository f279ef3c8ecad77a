import { type ChildProcess, spawn } from "node:child_process";
import { type Kysely, sql } from "kysely";
import pg from "pg";
import { connectNats } from "../../src/adapters/jetstream/connection.ts";
import { createJetStreamEventLog } from "../../src/adapters/jetstream/event-log.ts";
import { openDatabase } from "../../src/adapters/postgres/database.ts";
import { REBUILD_BATCH_SIZE } from "../../src/adapters/postgres/rebuild.ts";
import type { Database } from "../../src/adapters/postgres/schema.ts";
import { SESSION_COLUMNS } from "../../src/adapters/postgres/session-columns.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import { COMMAND_NODE_FLAGS } from "../../src/cli-node-flags.ts";
import { sessionStream } from "../../src/domain/events.ts";
import { catchUp } from "../../src/projections/runner.ts";
import { createTestDatabase } from "../../test/support/services.ts";
import type { Benchmark } from "../lib/bench.ts";
import { type BenchEnvironment, withEnvironment } from "../lib/environment.ts";
import { metadataFor, pipelined, sessionHistory } from "../lib/events.ts";
import { REPO_ROOT } from "../lib/processes.ts";
import { formatNumber, judge, type Target } from "../lib/report.ts";
import { alternate, median, pairedRatio } from "../lib/stats.ts";
import type { RebuildWorkerAnswer } from "../workers/rebuild.ts";

const SESSIONS = 10_000;
/** Rows per statement of each raw form: the fastest of 500, 1,000 and 5,000 for each, measured here. */
const VALUES_CHUNK = 500;
const UNNEST_CHUNK = 1_000;
/** Issue 4: "rebuild throughput in events/s vs. a raw batched Postgres upsert of the same rows ≥ 0.8". */
const TARGET: Target = { kind: "min-ratio", value: 0.8 };
const NO_TARGET: Target = { kind: "none" };

const COLUMNS = SESSION_COLUMNS;
const JSON_COLUMNS = new Set(["roles", "groups", "metadata"]);
const COLUMN_TYPES: Record<(typeof COLUMNS)[number], string> = {
  id: "uuid",
  user_id: "text",
  username: "text",
  kind: "text",
  status: "text",
  roles: "jsonb",
  groups: "jsonb",
  client: "text",
  ip_address: "text",
  user_agent: "text",
  created_at: "timestamptz",
  last_activity_at: "timestamptz",
  expires_at: "timestamptz",
  idle_timeout_seconds: "int4",
  idle_expires_at: "timestamptz",
  ended_at: "timestamptz",
  end_reason: "text",
  metadata: "jsonb",
  last_position: "int8",
};
const UPDATES = COLUMNS.filter((c) => c !== "id")
  .map((c) => `"${c}" = excluded."${c}"`)
  .join(", ");
const ON_CONFLICT = `ON CONFLICT (id) DO UPDATE SET ${UPDATES} WHERE sessions.last_position < excluded.last_position`;
const cell = (row: Record<string, unknown>, column: string) =>
  JSON_COLUMNS.has(column) ? JSON.stringify(row[column]) : row[column];

/** A fresh database with the read-model schema (migrated, not timed). */
async function freshDatabase(env: BenchEnvironment) {
  const database = await createTestDatabase("bench_rebuild");
  env.defer(() => database.drop());
  const handle = await openDatabase({ url: database.url });
  env.defer(() => handle.close());
  return { url: database.url, handle };
}

/** Writes `rows` with one autocommitted statement per chunk; returns the milliseconds it took. */
async function timedUpserts(
  url: string,
  rows: Record<string, unknown>[],
  chunkSize: number,
  statement: (chunk: Record<string, unknown>[]) => { text: string; values: unknown[] },
): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const started = performance.now();
    for (let i = 0; i < rows.length; i += chunkSize) {
      const { text, values } = statement(rows.slice(i, i + chunkSize));
      await client.query(text, values);
    }
    return performance.now() - started;
  } finally {
    await client.end();
  }
}

/**
 * The baseline: the same rows with the statement form Tessera's projection uses, written raw —
 * `INSERT … SELECT * FROM unnest($1::uuid[], …) ON CONFLICT …`, one array per column, 1,000 rows each.
 */
function unnestUpsert(url: string, rows: Record<string, unknown>[]): Promise<number> {
  const arrays = COLUMNS.map((c, i) => `$${i + 1}::${COLUMN_TYPES[c]}[]`).join(", ");
  const text = `INSERT INTO sessions (${COLUMNS.map((c) => `"${c}"`).join(", ")}) SELECT * FROM unnest(${arrays}) ${ON_CONFLICT}`;
  return timedUpserts(url, rows, UNNEST_CHUNK, (chunk) => ({
    text,
    values: COLUMNS.map((column) => chunk.map((row) => cell(row, column))),
  }));
}

/** The previous baseline, for comparison: a VALUES list with one parameter per cell, 500 rows each. */
function valuesUpsert(url: string, rows: Record<string, unknown>[]): Promise<number> {
  return timedUpserts(url, rows, VALUES_CHUNK, (chunk) => {
    const values: unknown[] = [];
    const tuples = chunk.map((row, r) => {
      for (const column of COLUMNS) values.push(cell(row, column));
      return `(${COLUMNS.map((_, c) => `$${r * COLUMNS.length + c + 1}`).join(", ")})`;
    });
    return {
      text: `INSERT INTO sessions (${COLUMNS.map((c) => `"${c}"`).join(", ")}) VALUES ${tuples.join(", ")} ${ON_CONFLICT}`,
      values,
    };
  });
}

type RebuildTimes = { buildMs: number; swapMs: number; cpuMs: number };

/**
 * The rebuild's own process (bench/workers/rebuild.ts), started with the Node flags `tessera replay` runs
 * with; `rebuild(url)` runs rebuildProjection of the sessions projection into that database there.
 */
async function startRebuildWorker(env: BenchEnvironment) {
  // BENCH_PROFILE_DIR=<dir>: a V8 CPU profile of the rebuilding process, as for the benchmarks' servers.
  const profile = process.env.BENCH_PROFILE_DIR
    ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`]
    : [];
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...(COMMAND_NODE_FLAGS.replay ?? []),
      ...profile,
      "--import",
      "tsx",
      "bench/workers/rebuild.ts",
      env.natsUrl,
      env.prefix,
    ],
    { cwd: REPO_ROOT, stdio: ["ignore", "inherit", "inherit", "ipc"] },
  );
  const answers = new Map<number, (answer: RebuildWorkerAnswer) => void>();
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code) => {
      exitCode = code;
      // A worker that dies mid-rebuild fails that round instead of leaving it waiting.
      for (const [id, answer] of answers) answer({ id, error: `the rebuild worker exited (${code})` });
      resolve();
    }),
  );
  env.defer(async () => {
    if (child.connected) child.disconnect();
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  });
  child.on("message", (message: RebuildWorkerAnswer | { ready: true }) => {
    if ("id" in message) answers.get(message.id)?.(message);
  });
  await Promise.race([
    new Promise<void>((resolve) => child.once("message", () => resolve())),
    exited.then(() => {
      throw new Error(`the rebuild worker exited (${exitCode}) before it was ready`);
    }),
  ]);
  let next = 0;
  return {
    rebuild(url: string): Promise<RebuildTimes> {
      const id = next++;
      return new Promise((resolve, reject) => {
        answers.set(id, (answer) => {
          answers.delete(id);
          if ("error" in answer) reject(new Error(`rebuild worker: ${answer.error}`));
          else resolve(answer);
        });
        if (exitCode !== undefined)
          answers.get(id)?.({ id, error: `the rebuild worker exited (${exitCode})` });
        else child.send({ id, url, projection: "sessions" });
      });
    },
  };
}

/**
 * Rebuild throughput: the build phase of `rebuildProjection` for the sessions projection — what
 * `tessera replay sessions` runs: create empty copies of the tables, read the log from position 1 with the
 * event log's follower, decode, fold, write in batches with the checkpoint — into a fresh database,
 * against writing the resulting rows into another fresh database with raw batched upserts of the same
 * statement form (unnest of column arrays, as the projection writes), so the ratio is what everything
 * besides writing the rows costs. The rebuild is timed from position 1 to the end of the log (its
 * `buildMs`, the figure the CLI reports); the swap that follows is printed, not timed. Both sides end in
 * the same rows (checked: same count, and a digest of every row equal to the live projection's); ABBA, a
 * fresh database each run. The VALUES-list upsert that was the baseline before the projection switched to
 * unnest is run and printed too, not used for the ratio.
 *
 * The rebuild runs in a process of its own started with the Node flags `tessera replay` runs with (its
 * young generation: src/cli-node-flags.ts), kept for the whole benchmark so that it runs warm; the
 * baseline runs in the bench process, with Node's defaults.
 */
export const rebuild: Benchmark = {
  name: "rebuild",
  issue: 4,
  description:
    "rebuild of the sessions read model (tessera replay) vs a raw batched unnest upsert of the same rows",
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

      const worker = await startRebuildWorker(env);
      let rows: Record<string, unknown>[] = [];
      let digest = "";
      // Every row, as Postgres prints it: the rebuild must write exactly what the live projection wrote.
      const digestOf = async (db: Kysely<Database>) => {
        const { rows } = await sql<{ digest: string }>`
          select md5(string_agg(s::text, ',' order by id)) as digest from sessions s
        `.execute(db);
        return rows[0]?.digest ?? "";
      };
      const expectSameRows = async (db: Kysely<Database>, which: string) => {
        if ((await digestOf(db)) !== digest)
          throw new Error(`${which} wrote other rows than the live projection`);
      };
      // Each raw form into its own fresh database; checks the end state is the same rows count.
      const writeRaw = async (form: "unnest" | "values", round: number) => {
        const target = await freshDatabase(env);
        const ms = await (form === "unnest" ? unnestUpsert : valuesUpsert)(target.url, rows);
        await expectRows(target.handle.db, `raw ${form}`);
        const rate = (sessions / ms) * 1000;
        options.log(
          `  round ${round + 1} raw ${form}: ${formatNumber(rate)} rows/s (${formatNumber(ms)} ms)`,
        );
        return rate;
      };
      const expectRows = async (db: Kysely<Database>, which: string) => {
        const count = await db
          .selectFrom("sessions")
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .executeTakeFirstOrThrow();
        if (Number(count.n) !== sessions)
          throw new Error(`${which} wrote ${count.n} rows, expected ${sessions}`);
      };
      // Warm-up of both sides, not timed (a rebuild of a real log runs warm nearly all the time; this one
      // lasts half a second). A catch-up of the live projection gives the rows every baseline writes (and
      // the digest every rebuild must match).
      {
        const target = await freshDatabase(env);
        await catchUp(log, createSessionProjection(target.handle.db));
        await expectRows(target.handle.db, "warm-up catchUp");
        digest = await digestOf(target.handle.db);
        // The rebuild's warm-up, each into its own fresh database. Two: when the rebuild ran in this
        // process, the catch-up above had warmed the read path (NATS client, codec) once already.
        for (let i = 0; i < 2; i++) {
          const warm = await freshDatabase(env);
          await worker.rebuild(warm.url);
          await expectSameRows(warm.handle.db, "warm-up rebuild");
        }
        const client = new pg.Client({ connectionString: target.url });
        await client.connect();
        rows = (await client.query("SELECT * FROM sessions ORDER BY id")).rows;
        await client.end();
        const raw = await freshDatabase(env);
        await unnestUpsert(raw.url, rows);
        await valuesUpsert(raw.url, rows);
      }
      const valuesRates: number[] = [];
      const cpuMs: number[] = [];
      const rounds = 4;
      const runs = await alternate(
        rounds,
        async (which, round) => {
          if (which === "baseline") {
            // The previous baseline runs too (not part of the ratio), on alternating sides of the unnest one.
            if (round % 2 === 1) valuesRates.push(await writeRaw("values", round));
            const rate = await writeRaw("unnest", round);
            if (round % 2 === 0) valuesRates.push(await writeRaw("values", round));
            return rate;
          }
          const target = await freshDatabase(env);
          const result = await worker.rebuild(target.url);
          const ms = result.buildMs;
          cpuMs.push(result.cpuMs);
          await expectRows(target.handle.db, "rebuild");
          await expectSameRows(target.handle.db, "rebuild");
          const rate = (sessions / ms) * 1000;
          options.log(
            `  round ${round + 1} subject: ${formatNumber(rate)} rows/s (build ${formatNumber(ms)} ms, swap ${formatNumber(result.swapMs)} ms, Node CPU ${formatNumber(result.cpuMs)} ms)`,
          );
          return rate;
        },
        "subject-first",
      );
      // The issue's figure: rebuild throughput in events/s (what a rebuild reads and folds) against the
      // raw upsert's rows/s. The stricter rows/s against rows/s is reported next to it.
      const perRow = eventCount / sessions;
      const eventRates = runs.subject.map((rate) => rate * perRow);
      const rowsPerSecond = median(runs.subject);
      const eventsPerSecond = median(eventRates);
      const baselineFigure = {
        value: median(runs.baseline),
        unit: "rows/s",
        label: `raw unnest upsert, ${formatNumber(UNNEST_CHUNK)} rows per statement`,
        detail: `${runs.baseline.map(formatNumber).join(", ")} rows/s; the previous baseline (VALUES list, ${VALUES_CHUNK} rows per statement): ${valuesRates.map(formatNumber).join(", ")} rows/s, rows-to-rows ratio ${pairedRatio(valuesRates, runs.subject).toFixed(2)}`,
      };
      const eventsRatio = pairedRatio(runs.baseline, eventRates);
      const rowsRatio = pairedRatio(runs.baseline, runs.subject);
      const title = `rebuild of the sessions read model: ${formatNumber(eventCount)} events → ${formatNumber(sessions)} rows`;
      return [
        {
          bench: "rebuild",
          title: `${title}; events/s (issue 4's measure) vs the raw upsert's rows/s`,
          subject: {
            value: eventsPerSecond,
            unit: "events/s",
            label: "Tessera",
            detail: `rebuildProjection (what \`tessera replay sessions\` runs, in a process with its Node flags ${(COMMAND_NODE_FLAGS.replay ?? []).join(" ")}) into a fresh database, build phase (from position 1 to the end of the log, swap not counted), batches of ${formatNumber(REBUILD_BATCH_SIZE)} events, median of ${rounds} rounds after a warm-up: ${eventRates.map(formatNumber).join(", ")} events/s (${runs.subject.map(formatNumber).join(", ")} rows/s); CPU of the rebuilding process per rebuild (shadow tables, build and swap): ${cpuMs.map(formatNumber).join(", ")} ms`,
          },
          baseline: baselineFigure,
          ratio: eventsRatio,
          target: TARGET,
          pass: judge(TARGET, eventsPerSecond, eventsRatio),
          notes: [`rows/s against rows/s (stricter, no target): ${rowsRatio.toFixed(2)}`],
        },
        {
          bench: "rebuild",
          title: `${title}; rows/s vs rows/s (stricter than the issue's measure)`,
          subject: { value: rowsPerSecond, unit: "rows/s", label: "Tessera", detail: "the same rounds" },
          baseline: baselineFigure,
          ratio: rowsRatio,
          target: NO_TARGET,
          pass: undefined,
          notes: [],
        },
      ];
    }),
};
