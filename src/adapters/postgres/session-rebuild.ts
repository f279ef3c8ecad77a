import type { Kysely } from "kysely";
import type { SessionRow } from "../../app/ports.ts";
import type { RecordedEvent } from "../../domain/events.ts";
import { CheckpointConflictError, type ProjectionTarget } from "../../projections/runner.ts";
import { lockCheckpoint, readCheckpoint } from "./checkpointed-projection.ts";
import type { Database } from "./schema.ts";
import { SESSION_PROJECTION_NAME } from "./session-columns.ts";
import {
  type Chunk,
  fitsOneStatement,
  foldChunk,
  writeChunk,
  writeChunkAtOnce,
} from "./session-rebuild-chunk.ts";

/**
 * A target that can do its in-memory work on a batch as soon as the batch is read — while the previous
 * batch is still being written — before `applyBatch` gets the same batch (in the same order). `prepare` is
 * optional for callers: `applyBatch` prepares a batch nobody prepared.
 */
export interface RebuildTarget extends ProjectionTarget {
  /** Resolves once the batch is prepared; yields to I/O meanwhile (it runs while a write is waiting). */
  prepare(batch: RecordedEvent[]): Promise<void>;
}

/**
 * The sessions projection for a rebuild into tables nobody else writes: the same rows as
 * createSessionProjection, the same checkpoint discipline (a batch and its checkpoint in one transaction;
 * a checkpoint moved by someone else is a CheckpointConflictError and catchUp re-seeks), but it does not
 * read back a row it wrote itself.
 *
 * It keeps the rows the previous batch wrote in memory and folds each batch on top of them as the batch
 * is read (session-rebuild-chunk.ts), so each touched row is written once per batch. A batch of new and
 * remembered sessions only is one statement: insert the new rows, upsert the others, move the checkpoint
 * (only if no new row was there already). Otherwise — sessions last written before the previous batch,
 * a second SessionCreated of a session, a checkpoint that moved — the batch is written in a transaction
 * that reads those rows first and folds the batch's events on top. Either way the rows come out as the
 * live projection's.
 *
 * Memory: the rows of two batches (the one being written and the one prepared behind it), at most one per
 * event of each. Forgetting is always safe: without a remembered row the stored one is read.
 */
export function createSessionRebuildTarget(
  db: Kysely<Database>,
  options: { name?: string | undefined } = {},
): RebuildTarget {
  const name = options.name ?? SESSION_PROJECTION_NAME;
  // The checkpoint as this target last saw or wrote it; undefined until it has looked.
  let expected: number | undefined;
  // The rows as of the last prepared batch; undefined after a reset.
  let previous: Map<string, SessionRow> | undefined;
  // The last position prepared: a batch's events after it are the batch's.
  let preparedUpTo = 0;
  let prepared = new WeakMap<RecordedEvent[], Promise<Chunk>>();
  // Batches are prepared one after the other, in log order, each on the rows the one before left.
  let preparing: Promise<unknown> = Promise.resolve();
  // Sessions the last write had to fold again from the table: a batch prepared before that write
  // carried a stale copy of them.
  let refoldedByLastWrite: ReadonlySet<string> = new Set();

  function prepare(batch: RecordedEvent[]): Promise<Chunk> {
    const chunk = preparing.then(async () => {
      const folded = await foldChunk(batch, preparedUpTo, previous);
      previous = folded.rows;
      preparedUpTo = Math.max(preparedUpTo, folded.last);
      return folded;
    });
    preparing = chunk.catch(() => {});
    prepared.set(batch, chunk);
    return chunk;
  }

  async function writeInTransaction(chunk: Chunk, seen: number) {
    return db.transaction().execute(async (trx) => {
      const stored = await lockCheckpoint(trx, name);
      if (stored !== seen) throw new CheckpointConflictError(name, seen, stored);
      const refolded = await writeChunk(trx, chunk, refoldedByLastWrite);
      await trx
        .updateTable("projection_checkpoints")
        .set({ position: chunk.last, updated_at: new Date() })
        .where("name", "=", name)
        .execute();
      return refolded;
    });
  }

  return {
    name,
    async checkpoint() {
      // lockCheckpoint creates the row; the one-statement write only updates it.
      const position = await db.transaction().execute((trx) => lockCheckpoint(trx, name));
      // Whatever was remembered or prepared may belong to a state the table is no longer in.
      expected = position;
      previous = undefined;
      preparedUpTo = position;
      prepared = new WeakMap();
      preparing = Promise.resolve();
      refoldedByLastWrite = new Set();
      return position;
    },
    async prepare(batch) {
      await prepare(batch);
    },
    async applyBatch(batch) {
      const chunk = await (prepared.get(batch) ?? prepare(batch));
      prepared.delete(batch);
      const seen = expected ?? (await readCheckpoint(db, name));
      if (chunk.count === 0) return;
      if (chunk.after !== seen) {
        throw new Error(`Session rebuild: batch prepared at ${chunk.after}, checkpoint seen at ${seen}`);
      }
      if (fitsOneStatement(chunk, refoldedByLastWrite) && (await writeChunkAtOnce(db, name, seen, chunk))) {
        refoldedByLastWrite = new Set();
      } else {
        refoldedByLastWrite = await writeInTransaction(chunk, seen);
      }
      expected = chunk.last;
    },
  };
}
