import type { Kysely, Transaction } from "kysely";
import type { RecordedEvent } from "../../domain/events.ts";
import { CheckpointConflictError, type ProjectionTarget } from "../../projections/runner.ts";
import type { Database } from "./schema.ts";

/**
 * The discipline every Postgres projection shares: each batch is one transaction that locks the
 * checkpoint row, checks it is where this runner last saw it (else CheckpointConflictError, and the runner
 * re-seeks), hands `apply` only the events past the checkpoint, and moves the checkpoint to the batch's
 * last position. A replayed batch therefore changes nothing.
 */
export function createCheckpointedProjection(
  db: Kysely<Database>,
  name: string,
  apply: (trx: Transaction<Database>, fresh: RecordedEvent[]) => Promise<void>,
): ProjectionTarget {
  // The checkpoint as this runner last saw it; undefined until it has looked (then the stored one is taken).
  let expected: number | undefined;
  return {
    name,
    async checkpoint() {
      const position = await readCheckpoint(db, name);
      expected = position;
      return position;
    },
    async applyBatch(batch) {
      if (batch.length === 0) return;
      expected = await db.transaction().execute(async (trx) => {
        const stored = await lockCheckpoint(trx, name);
        if (expected !== undefined && stored !== expected) {
          throw new CheckpointConflictError(name, expected, stored);
        }
        const fresh = batch.filter((event) => event.position > stored);
        if (fresh.length === 0) return stored;
        await apply(trx, fresh);
        const last = fresh.reduce((max, event) => Math.max(max, event.position), stored);
        await trx
          .updateTable("projection_checkpoints")
          .set({ position: last, updated_at: new Date() })
          .where("name", "=", name)
          .execute();
        return last;
      });
    },
  };
}

export async function readCheckpoint(db: Kysely<Database>, name: string): Promise<number> {
  const row = await db
    .selectFrom("projection_checkpoints")
    .select("position")
    .where("name", "=", name)
    .executeTakeFirst();
  return row ? Number(row.position) : 0;
}

/** The stored checkpoint, locked until the transaction ends; created at 0 the first time. */
export async function lockCheckpoint(trx: Transaction<Database>, name: string): Promise<number> {
  const select = () =>
    trx
      .selectFrom("projection_checkpoints")
      .select("position")
      .where("name", "=", name)
      .forUpdate()
      .executeTakeFirst();
  let row = await select();
  if (!row) {
    await trx
      .insertInto("projection_checkpoints")
      .values({ name, position: 0, updated_at: new Date() })
      .onConflict((oc) => oc.column("name").doNothing())
      .execute();
    row = await select();
  }
  if (!row) throw new Error(`Projection ${name}: checkpoint row missing`);
  return Number(row.position);
}
