import type { RecordedEvent } from "../domain/events.ts";
import { CheckpointConflictError, type ProjectionTarget } from "../projections/runner.ts";
import type { ValidationStore } from "./ports.ts";

/**
 * The machinery a process manager shares: it follows the log as a ProjectionTarget (one runner at a time
 * under a lease, see runProjection) whose checkpoint lives in the validation store's checkpoints (KV, or
 * memory when embedded). A batch's work is done, then the checkpoint moves; a crash in between leaves the
 * checkpoint before the batch, so each manager's work must be safe to do again.
 *
 * Each manager keeps only its decision: `select` picks the work in a batch, `act` does one piece of it.
 */

export type CheckpointedProcessManagerOptions<Work extends { position: number }> = {
  name: string;
  checkpoints: Pick<ValidationStore, "getCheckpoint" | "setCheckpoint">;
  /**
   * The work in `batch`, in log order; `after` is the checkpoint this runner last saw (0 when unknown).
   * An empty answer defers the checkpoint write. Work at or before the stored checkpoint is skipped.
   */
  select: (batch: RecordedEvent[], after: number) => Work[];
  act: (work: Work) => Promise<void>;
  /** Forgets what `select` learned, on a re-seek or a failed batch (the retry re-reads from the checkpoint). */
  reset?: (() => void) | undefined;
};

/**
 * How long a checkpoint with no work behind it may wait before it is written. Almost every event is one a
 * manager skips; writing the checkpoint for each of them cost two KV round trips per event under load.
 * Deferred, a burst of them costs two per burst. A crash loses at most this much progress, which is
 * re-read (and skipped again) by the next runner.
 */
const DEFERRED_CHECKPOINT_MS = 200;

export function createCheckpointedProcessManager<Work extends { position: number }>(
  options: CheckpointedProcessManagerOptions<Work>,
): ProjectionTarget {
  const { name, checkpoints, select, act, reset } = options;
  /** The checkpoint as this runner last read or wrote it. */
  let seen: number | undefined;
  /** A position reached through batches with no work only, not written yet. */
  let deferred: number | undefined;
  /** A conflict a deferred write found; the next batch reports it, so the runner re-seeks. */
  let conflict: CheckpointConflictError | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // Batches and deferred writes run one at a time: a deferred write must never land after (and so
  // undo) a newer batch's checkpoint.
  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  };

  /** Moves the stored checkpoint forward to `position`, unless another runner moved it meanwhile. */
  async function advanceTo(position: number): Promise<void> {
    const stored = await checkpoints.getCheckpoint(name);
    if (seen !== undefined && stored !== seen) throw new CheckpointConflictError(name, seen, stored);
    const next = Math.max(stored, position);
    if (next !== stored) await checkpoints.setCheckpoint(name, next);
    seen = next;
  }

  function writeDeferredSoon() {
    if (timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      void serially(async () => {
        const position = deferred;
        if (position === undefined) return;
        deferred = undefined;
        try {
          await advanceTo(position);
        } catch (error) {
          if (error instanceof CheckpointConflictError) {
            conflict = error;
            seen = undefined;
          } else {
            // A failed write (a connection hiccup, or closed after the runner stopped): the next batch
            // writes it, unless newer progress replaced it. No retry loop on its own.
            deferred ??= position;
          }
        }
      });
    }, DEFERRED_CHECKPOINT_MS);
    timer.unref?.();
  }

  return {
    name,
    checkpoint: () =>
      serially(async () => {
        deferred = undefined;
        conflict = undefined;
        reset?.();
        seen = await checkpoints.getCheckpoint(name);
        return seen;
      }),
    applyBatch: (batch) =>
      serially(async () => {
        const last = batch.at(-1);
        if (last === undefined) return;
        try {
          if (conflict !== undefined) throw conflict;
          const work = select(batch, seen ?? 0);
          if (work.length === 0) {
            deferred = last.position;
            writeDeferredSoon();
            return;
          }
          deferred = undefined;
          const stored = await checkpoints.getCheckpoint(name);
          if (seen !== undefined && stored !== seen) throw new CheckpointConflictError(name, seen, stored);
          for (const piece of work) if (piece.position > stored) await act(piece);
          const position = Math.max(stored, last.position);
          if (position !== stored) await checkpoints.setCheckpoint(name, position);
          seen = position;
        } catch (error) {
          seen = undefined;
          conflict = undefined;
          deferred = undefined;
          reset?.();
          throw error;
        }
      }),
  };
}
