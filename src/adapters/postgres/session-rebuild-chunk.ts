import { type Kysely, type QueryCreator, sql, type Transaction } from "kysely";
import type { SessionRow } from "../../app/ports.ts";
import { isSessionEvent, type RecordedEvent, type SessionEvent } from "../../domain/events.ts";
import { evolveSessionRow } from "../../projections/session-row.ts";
import type { Database } from "./schema.ts";
import { loadSessionRows } from "./session-projection.ts";
import {
  SESSION_ROWS_PER_STATEMENT,
  type SessionColumnArrays,
  sessionColumnArrays,
  sessionRowsInsert,
  writeSessionRows,
} from "./session-upsert.ts";

/**
 * One batch of a sessions rebuild (session-rebuild.ts): folded in memory as it is read, then written
 * either in one statement or, when the table has to be read, in a transaction.
 */

/** Where a row of a batch started from. */
export type Origin =
  /** Created in this batch (its SessionCreated comes first), assumed absent from the table. */
  | "new"
  /** Remembered from the previous batch. */
  | "carried"
  /** Neither: folded on the stored row when the batch is written. */
  | "stored";

export type Chunk = {
  /** Events of the batch folded here (those after the position it was prepared at). */
  count: number;
  /** The position the batch was prepared at: its events start after it. */
  after: number;
  /** The batch's last position: the checkpoint once it is written. */
  last: number;
  sessionEvents: RecordedEvent<SessionEvent>[];
  origin: Map<string, Origin>;
  /** Rows of "new" and "carried" sessions after the batch; "stored" ones are added when written. */
  rows: Map<string, SessionRow>;
  newIds: string[];
  carriedIds: string[];
  /** The "new" and "carried" rows as statements, built ahead of the write. */
  inserts: SessionColumnArrays[];
  updates: SessionColumnArrays[];
};

/** Events folded in a row before I/O callbacks (the Postgres replies of the batch being written) get a turn. */
const FOLD_SLICE = 500;
const yieldToIo = () => new Promise(setImmediate);

export async function foldChunk(
  batch: RecordedEvent[],
  after: number,
  previous: ReadonlyMap<string, SessionRow> | undefined,
): Promise<Chunk> {
  const origin = new Map<string, Origin>();
  const rows = new Map<string, SessionRow>();
  const sessionEvents: RecordedEvent<SessionEvent>[] = [];
  const newIds: string[] = [];
  const carriedIds: string[] = [];
  let count = 0;
  let last = after;
  for (let i = 0; i < batch.length; i++) {
    if (i > 0 && i % FOLD_SLICE === 0) await yieldToIo();
    const event = batch[i] as RecordedEvent;
    if (event.position <= after) continue;
    count++;
    last = Math.max(last, event.position);
    if (!isSessionEvent(event)) continue;
    const sessionEvent = event as RecordedEvent<SessionEvent>;
    sessionEvents.push(sessionEvent);
    const id = sessionEvent.data.sessionId;
    let from = origin.get(id);
    if (from === undefined) {
      const remembered = previous?.get(id);
      if (remembered !== undefined) {
        from = "carried";
        carriedIds.push(id);
        rows.set(id, remembered);
      } else if (sessionEvent.type === "SessionCreated") {
        from = "new";
        newIds.push(id);
      } else {
        from = "stored";
      }
      origin.set(id, from);
    }
    if (from === "stored") continue;
    const next = evolveSessionRow(rows.get(id), sessionEvent);
    if (next !== undefined) rows.set(id, next);
  }
  await yieldToIo();
  return {
    count,
    after,
    last,
    sessionEvents,
    origin,
    rows,
    newIds,
    carriedIds,
    inserts: statements(newIds, rows),
    updates: statements(carriedIds, rows),
  };
}

function statements(ids: readonly string[], rows: ReadonlyMap<string, SessionRow>): SessionColumnArrays[] {
  const arrays: SessionColumnArrays[] = [];
  for (let i = 0; i < ids.length; i += SESSION_ROWS_PER_STATEMENT) {
    const slice = ids.slice(i, i + SESSION_ROWS_PER_STATEMENT);
    arrays.push(sessionColumnArrays(slice.map((id) => rows.get(id) as SessionRow)));
  }
  return arrays;
}

/** Whether the batch can go as one statement: nothing to read first, and one statement's worth of rows. */
export function fitsOneStatement(chunk: Chunk, refoldedByLastWrite: ReadonlySet<string>): boolean {
  if (chunk.inserts.length > 1 || chunk.updates.length > 1) return false;
  for (const [id, from] of chunk.origin) {
    if (from === "stored" || (from === "carried" && refoldedByLastWrite.has(id))) return false;
  }
  return true;
}

const NO_ROWS = sessionColumnArrays([]);

/**
 * The whole batch as one statement, so one transaction and one round trip: insert the new rows, upsert
 * the carried ones, and move the checkpoint from `expected` — only if every new row was inserted (none
 * was there before) and the checkpoint is where this rebuild left it. Returns whether it moved; if not,
 * the rows written are harmless (a row never goes back, and folding an event twice changes nothing) and
 * the batch is written again in a transaction (writeChunk), which sorts it out.
 */
export async function writeChunkAtOnce(
  db: Kysely<Database>,
  name: string,
  expected: number,
  chunk: Chunk,
): Promise<boolean> {
  const result = await db
    .with("inserted", (qc) => sessionRowsInsert(qc, chunk.inserts[0] ?? NO_ROWS, "insert").returning("id"))
    // (The CTE before adds a table to the query creator's type; the insert only needs `sessions`.)
    .with("updated", (qc) =>
      sessionRowsInsert(
        qc as unknown as QueryCreator<Database>,
        chunk.updates[0] ?? NO_ROWS,
        "update",
      ).returning("id"),
    )
    .with("checkpoint", (qc) =>
      qc
        .updateTable("projection_checkpoints")
        .set({ position: chunk.last, updated_at: new Date() })
        .where("name", "=", name)
        .where("position", "=", expected)
        .where(sql`(select count(*) from inserted)`, "=", chunk.newIds.length)
        .returning("position"),
    )
    .selectNoFrom([
      sql<string>`(select count(*) from checkpoint)`.as("moved"),
      // Tables being rebuilt need no durability until they are swapped in: a crash loses the rebuild
      // either way, and the swap's own commit flushes the log up to it. Saves a WAL flush per batch.
      sql<string>`set_config('synchronous_commit', 'off', true)`.as("durability"),
    ])
    .executeTakeFirstOrThrow();
  return Number(result.moved) === 1;
}

/**
 * Writes a batch inside the caller's transaction, reading what memory cannot know: the stored rows of
 * "stored" sessions, of carried ones the previous write had to fold again, and of new ones whose insert
 * found a row already there. Those rows get the batch's events folded on top (an event at or below a
 * row's position changes nothing, so a row that is already ahead stays as it is). Returns the sessions it
 * folded again.
 */
export async function writeChunk(
  trx: Transaction<Database>,
  chunk: Chunk,
  refoldedByLastWrite: ReadonlySet<string>,
): Promise<Set<string>> {
  await sql`set local synchronous_commit = off`.execute(trx);
  const refold = new Set<string>();
  for (const [id, from] of chunk.origin) {
    if (from === "stored" || (from === "carried" && refoldedByLastWrite.has(id))) refold.add(id);
  }
  const inserted = new Set<string>();
  for (const arrays of chunk.inserts) {
    for (const { id } of await sessionRowsInsert(trx, arrays, "insert").returning("id").execute()) {
      inserted.add(id);
    }
  }
  for (const id of chunk.newIds) if (!inserted.has(id)) refold.add(id);
  const stored = refold.size > 0 ? await loadSessionRows(trx, [...refold]) : new Map<string, SessionRow>();
  for (const id of refold) {
    const row = stored.get(id);
    if (row === undefined) chunk.rows.delete(id);
    else chunk.rows.set(id, row);
  }
  for (const event of chunk.sessionEvents) {
    const id = event.data.sessionId;
    if (!refold.has(id)) continue;
    const next = evolveSessionRow(chunk.rows.get(id), event);
    if (next !== undefined) chunk.rows.set(id, next);
  }
  const updates: SessionRow[] = [];
  for (const [id, from] of chunk.origin) {
    if (from !== "carried" && !refold.has(id)) continue;
    const row = chunk.rows.get(id);
    // A refolded row the batch did not change (no stored row and no creation, or already ahead) is not written.
    if (row !== undefined && row !== stored.get(id)) updates.push(row);
  }
  for (let i = 0; i < updates.length; i += SESSION_ROWS_PER_STATEMENT) {
    const slice = updates.slice(i, i + SESSION_ROWS_PER_STATEMENT);
    await writeSessionRows(trx, sessionColumnArrays(slice), "update");
  }
  return refold;
}
