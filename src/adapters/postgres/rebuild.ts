import { type Kysely, sql, type Transaction } from "kysely";
import type { EventLog } from "../../domain/ports.ts";
import { catchUp, type ProjectionTarget } from "../../projections/runner.ts";
import { AUDIT_PROJECTION_NAME, createAuditProjection } from "./audit-projection.ts";
import type { Database } from "./schema.ts";
import { SESSION_PROJECTION_NAME } from "./session-columns.ts";
import { createSessionProjection } from "./session-projection.ts";
import { createSessionRebuildTarget, type RebuildTarget } from "./session-rebuild.ts";

/**
 * Rebuilding a Postgres projection from position 1 without downtime (`tessera replay`).
 *
 * 1. A fresh schema `rebuild_<projection>_<n>` gets empty copies of the projection's tables (same
 *    columns, defaults and constraints, with the indexes behind them) and its own `projection_checkpoints`.
 *    The other indexes are built once the log has been read to its end: one sort per index instead of
 *    an index insertion per row written (what pg_restore does too).
 * 2. The projection's rebuild target (or its ordinary one) runs there (through kysely's withSchema), from
 *    position 1 up to the end of the log, while the live tables keep serving and the live runner keeps
 *    applying. A rebuild target knows nobody else writes these tables (the sessions one keeps the rows
 *    it wrote in memory instead of reading them back: session-rebuild.ts), and prepares each batch while
 *    the previous one is written.
 * 3. One short transaction swaps it in: it locks the live checkpoint row (so the live runner's next batch
 *    waits at that position), catches the copy up to the log's end (at least as far as the live runner
 *    got), moves the live tables out and the rebuilt ones in, gives the indexes back their canonical
 *    names, and sets the live checkpoint to the copy's position. The live runner then finds the
 *    checkpoint moved, re-reads it and carries on from there (CheckpointConflictError exists for exactly
 *    this), so nothing is skipped or applied twice, and the swapped-in tables are exactly "the log up to
 *    the checkpoint" at every moment. (Needs a pool of more than one connection, i.e. real Postgres.)
 * 4. The old tables are dropped with the rebuild schema.
 */

export type RebuildableProjection = {
  /** Projection and checkpoint name. */
  name: string;
  /** The tables it owns, all moved in one swap. */
  tables: string[];
  target(db: Kysely<Database>): ProjectionTarget;
  /** A target for the rebuild's own fresh tables, when there is one faster than `target` there. */
  rebuildTarget?: ((db: Kysely<Database>) => RebuildTarget) | undefined;
};

/** What a rebuild reads: the log's end and a follower of it. */
export type LogSource = Pick<EventLog, "lastPosition" | "follow">;

export const POSTGRES_PROJECTIONS: Record<string, RebuildableProjection> = {
  [SESSION_PROJECTION_NAME]: {
    name: SESSION_PROJECTION_NAME,
    tables: ["sessions"],
    target: (db) => createSessionProjection(db),
    rebuildTarget: (db) => createSessionRebuildTarget(db),
  },
  [AUDIT_PROJECTION_NAME]: {
    name: AUDIT_PROJECTION_NAME,
    tables: ["audit_events"],
    target: (db) => createAuditProjection(db),
  },
};

export type RebuildOptions = {
  db: Kysely<Database>;
  log: LogSource;
  projection: RebuildableProjection;
  /** Events per batch (one transaction each); default REBUILD_BATCH_SIZE. */
  batchSize?: number | undefined;
  /** Swap the rebuilt tables in (default true). Without, they stay in `schema` for inspection. */
  swap?: boolean | undefined;
  /** Runs after the last catch-up, right before the swap (tests use it to let the live runner get ahead). */
  beforeSwap?: (() => Promise<void>) | undefined;
};

export type RebuildResult = {
  projection: string;
  /** Where the rebuilt tables were built (dropped after a swap). */
  schema: string;
  /** Log position the rebuilt tables reflect. */
  position: number;
  /** Rows in each rebuilt table. */
  rows: Record<string, number>;
  /** Time to build from position 1 to the end of the log (ms), excluding the swap. */
  buildMs: number;
  /** Time the swap transaction held the live tables (ms), 0 without a swap. */
  swapMs: number;
  swapped: boolean;
};

/**
 * Events per batch of a rebuild. The sessions rebuild keeps the rows of two batches in memory and a
 * catch-up holds up to three batches of events (one written, one prepared, one being read).
 */
export const REBUILD_BATCH_SIZE = 2_000;

let counter = 0;

export async function rebuildProjection(options: RebuildOptions): Promise<RebuildResult> {
  const { db, log, projection } = options;
  const batchSize = options.batchSize ?? REBUILD_BATCH_SIZE;
  const live = await currentSchema(db);
  const schema = `rebuild_${projection.name}_${Date.now().toString(36)}${(counter++).toString(36)}`;
  const deferred = await createShadowTables(db, live, schema, projection);
  let swapped = false;
  try {
    const shadow = db.withSchema(schema);
    const build = () => catchUpInto(log, shadowTarget(projection, shadow), batchSize);
    const started = performance.now();
    await build();
    await createDeferredIndexes(db, schema, deferred);
    const buildMs = performance.now() - started;

    let swapMs = 0;
    if (options.swap !== false) {
      // The log moved on while we built: catch up once more so the locked step below stays short.
      await build();
      await options.beforeSwap?.();
      const swapStarted = performance.now();
      await db.transaction().execute(async (trx) => {
        await sql`select pg_advisory_xact_lock(hashtext(${`tessera.rebuild.${projection.name}`}))`.execute(
          trx,
        );
        await lockLiveCheckpoint(trx, live, projection.name);
        // The live runner is held at its checkpoint now; the copy catches up past it (on other pooled
        // connections: the copy has its own checkpoint row), so the swapped-in tables are never behind.
        await build();
        await swapTables(trx, live, schema, projection);
      });
      swapMs = performance.now() - swapStarted;
      swapped = true;
    }
    const position = await checkpointIn(db, swapped ? live : schema, projection.name);
    const rows: Record<string, number> = {};
    for (const table of projection.tables) rows[table] = await countRows(db, swapped ? live : schema, table);
    return { projection: projection.name, schema, position, rows, buildMs, swapMs, swapped };
  } finally {
    if (swapped) await dropSchema(db, schema);
  }
}

function shadowTarget(projection: RebuildableProjection, shadow: Kysely<Database>) {
  return projection.rebuildTarget?.(shadow) ?? projection.target(shadow);
}

/**
 * catchUp, letting a RebuildTarget prepare each batch as the log hands it over: catchUp only starts
 * applying a batch once the previous one is written, and this way folding it overlaps that write.
 */
export function catchUpInto(log: LogSource, target: ProjectionTarget | RebuildTarget, batchSize: number) {
  if (!("prepare" in target)) return catchUp(log, target, batchSize);
  const preparing: LogSource = {
    lastPosition: () => log.lastPosition(),
    follow: (options, handler) =>
      log.follow(options, async (batch) => {
        await target.prepare(batch);
        return handler(batch);
      }),
  };
  return catchUp(preparing, target, batchSize);
}

/** Drops a rebuild schema left by `swap: false` (or by an interrupted rebuild). */
export async function dropSchema(db: Kysely<Database>, schema: string): Promise<void> {
  if (!/^rebuild_[a-z0-9_]+$/.test(schema)) throw new Error(`Not a rebuild schema: ${schema}`);
  await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(db);
}

/** An index of a live table that its shadow copy gets only after the build (see createDeferredIndexes). */
type DeferredIndex = { table: string; shape: string };

/** Creates the shadow tables; returns the indexes left for after the build. */
async function createShadowTables(
  db: Kysely<Database>,
  live: string,
  schema: string,
  projection: RebuildableProjection,
): Promise<DeferredIndex[]> {
  await sql`create schema ${sql.id(schema)}`.execute(db);
  try {
    for (const table of [...projection.tables, "projection_checkpoints"]) {
      await sql`create table ${sql.id(schema, table)} (like ${sql.id(live, table)} including all)`.execute(
        db,
      );
    }
    // Indexes behind a constraint stay (upserts need them, and they keep the copy as strict as the live
    // table); the others are dropped until the rows are in. Copies get neutral names now, the live names
    // at the swap.
    const deferred: DeferredIndex[] = [];
    let i = 0;
    for (const table of projection.tables) {
      for (const index of await indexesOf(db, schema, table)) {
        if (index.constraint) {
          await sql`alter index ${sql.id(schema, index.name)} rename to ${sql.id(`${schema}_${i++}`)}`.execute(
            db,
          );
        } else {
          await sql`drop index ${sql.id(schema, index.name)}`.execute(db);
          deferred.push({ table, shape: index.shape });
        }
      }
    }
    return deferred;
  } catch (error) {
    await dropSchema(db, schema).catch(() => {});
    throw error;
  }
}

/** Builds the indexes createShadowTables left out, from the live definitions, under neutral names. */
async function createDeferredIndexes(db: Kysely<Database>, schema: string, deferred: DeferredIndex[]) {
  let i = 0;
  for (const { table, shape } of deferred) {
    // The shape is pg_get_indexdef's own text with name and table taken out (see indexesOf).
    const rest = shape.replace(/^CREATE INDEX ON _ /, "");
    if (rest === shape) throw new Error(`Rebuild of ${table}: cannot recreate index ${shape}`);
    await sql`create index ${sql.id(`${schema}_d${i++}`)} on ${sql.id(schema, table)} ${sql.raw(rest)}`.execute(
      db,
    );
  }
}

async function lockLiveCheckpoint(trx: Transaction<Database>, live: string, name: string) {
  await sql`
    insert into ${sql.id(live, "projection_checkpoints")} (name, position, updated_at)
    values (${name}, 0, now()) on conflict (name) do nothing
  `.execute(trx);
  await sql`
    select position from ${sql.id(live, "projection_checkpoints")} where name = ${name} for update
  `.execute(trx);
}

async function swapTables(
  trx: Transaction<Database>,
  live: string,
  schema: string,
  projection: RebuildableProjection,
) {
  for (const table of projection.tables) {
    const liveIndexes = await indexesOf(trx, live, table);
    const rebuiltIndexes = await indexesOf(trx, schema, table);
    const renames: Array<[string, string]> = [];
    for (const index of liveIndexes) {
      const twin = rebuiltIndexes.find((candidate) => candidate.shape === index.shape);
      if (!twin) throw new Error(`Rebuild of ${table}: no copy of index ${index.name}`);
      renames.push([twin.name, index.name]);
    }
    const parked = `${table}_rebuilt`;
    await sql`alter table ${sql.id(schema, table)} rename to ${sql.id(parked)}`.execute(trx);
    // The old table (and its indexes, under their canonical names) leaves for the rebuild schema...
    await sql`alter table ${sql.id(live, table)} set schema ${sql.id(schema)}`.execute(trx);
    // ...and the rebuilt one takes its place.
    await sql`alter table ${sql.id(schema, parked)} set schema ${sql.id(live)}`.execute(trx);
    await sql`alter table ${sql.id(live, parked)} rename to ${sql.id(table)}`.execute(trx);
    for (const [from, to] of renames) {
      await sql`alter index ${sql.id(live, from)} rename to ${sql.id(to)}`.execute(trx);
    }
  }
  const position = await checkpointIn(trx, schema, projection.name);
  await sql`
    update ${sql.id(live, "projection_checkpoints")} set position = ${position}, updated_at = now()
    where name = ${projection.name}
  `.execute(trx);
}

type IndexInfo = { name: string; shape: string; constraint: boolean };

/**
 * A table's indexes, each with its definition minus name and table (what two copies have in common), and
 * whether it is unique or backs a constraint (primary key, unique, exclusion).
 */
async function indexesOf(db: Kysely<Database>, schema: string, table: string): Promise<IndexInfo[]> {
  const { rows } = await sql<{ name: string; def: string; constraint: boolean }>`
    select i.relname as name, pg_get_indexdef(i.oid) as def,
      (x.indisunique or exists (select 1 from pg_constraint c where c.conindid = i.oid)) as "constraint"
    from pg_index x
    join pg_class i on i.oid = x.indexrelid
    join pg_class t on t.oid = x.indrelid
    join pg_namespace n on n.oid = t.relnamespace
    where n.nspname = ${schema} and t.relname = ${table}
    order by i.relname
  `.execute(db);
  return rows.map((row) => ({
    name: row.name,
    shape: row.def.replace(/^CREATE (UNIQUE )?INDEX \S+ ON \S+ /, "CREATE $1INDEX ON _ "),
    constraint: row.constraint,
  }));
}

async function currentSchema(db: Kysely<Database>): Promise<string> {
  const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
  const schema = rows[0]?.schema;
  if (!schema) throw new Error("No current schema");
  return schema;
}

async function checkpointIn(db: Kysely<Database>, schema: string, name: string): Promise<number> {
  const { rows } = await sql<{ position: number | string }>`
    select position from ${sql.id(schema, "projection_checkpoints")} where name = ${name}
  `.execute(db);
  return rows[0] === undefined ? 0 : Number(rows[0].position);
}

async function countRows(db: Kysely<Database>, schema: string, table: string): Promise<number> {
  const { rows } = await sql<{ count: number | string }>`
    select count(*) as count from ${sql.id(schema, table)}
  `.execute(db);
  return Number(rows[0]?.count ?? 0);
}
