import type { RecordedEvent, UserEvent } from "../domain/events.ts";
import { USER_EVENT_TYPES } from "../domain/events.ts";
import { CheckpointConflictError, type ProjectionTarget } from "../projections/runner.ts";
import type { ValidationStore } from "./ports.ts";
import type { UserService } from "./user-service.ts";

/**
 * The recycle process manager: follows the log and turns each user-level event into per-session events.
 *
 * - UserClaimsChanged → SessionRecycled (reason claims_changed, causeEventId) on every session of the
 *   user that was live before the change and holds other roles or groups.
 * - UserSessionsRevoked → SessionInvalidated (the revocation's reason) on every session it covers. The
 *   validator already refuses those sessions in O(1) from the per-user entry; these events bring the read
 *   models and the audit trail in line.
 *
 * It runs like a projection (one runner at a time under a lease, see runProjection): a batch is fanned
 * out, then the checkpoint moves. A crash in the middle leaves the checkpoint before the event, so the
 * next runner fans out the same event again; each session's command has an id derived from (cause event,
 * session) and is decided on the session's own stream, so nothing is ended twice.
 *
 * Candidates come from the session read model only after its checkpoint has reached the cause event, so
 * a session created just before the change is never missed; the fan-out waits (bounded) and otherwise
 * fails the batch, which the runner retries.
 */

export const RECYCLE_PROCESS_MANAGER = "recycle";

export type RecycleProcessManagerOptions = {
  users: Pick<UserService, "fanOut">;
  /** Where the checkpoint lives (the validation store's checkpoints: KV, or memory when embedded). */
  checkpoints: Pick<ValidationStore, "getCheckpoint" | "setCheckpoint">;
  name?: string | undefined;
  /** Told after each user event is fanned out (logs, metrics, tests). */
  onFannedOut?: ((event: RecordedEvent<UserEvent>, ended: number) => void) | undefined;
};

const USER_TYPES: ReadonlySet<string> = new Set(USER_EVENT_TYPES);

export function isUserEvent(event: RecordedEvent): event is RecordedEvent<UserEvent> {
  return USER_TYPES.has(event.type);
}

/**
 * How long a checkpoint with only session events behind it may wait before it is written. Almost every
 * event is a session event, which the manager skips; writing the checkpoint for each of them cost two
 * KV round trips per event under load. Deferred, a burst of them costs two per burst. A crash loses at
 * most this much progress, which is re-read (and skipped again) by the next runner.
 */
const DEFERRED_CHECKPOINT_MS = 200;

export function createRecycleProcessManager(options: RecycleProcessManagerOptions): ProjectionTarget {
  const { users, checkpoints, onFannedOut } = options;
  const name = options.name ?? RECYCLE_PROCESS_MANAGER;
  /** The checkpoint as this runner last read or wrote it. */
  let seen: number | undefined;
  /** A position reached through session events only, not written yet. */
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
        seen = await checkpoints.getCheckpoint(name);
        return seen;
      }),
    applyBatch: (batch) =>
      serially(async () => {
        const last = batch.at(-1);
        if (last === undefined) return;
        try {
          if (conflict !== undefined) throw conflict;
          if (!batch.some(isUserEvent)) {
            deferred = last.position;
            writeDeferredSoon();
            return;
          }
          deferred = undefined;
          const stored = await checkpoints.getCheckpoint(name);
          if (seen !== undefined && stored !== seen) throw new CheckpointConflictError(name, seen, stored);
          for (const event of batch) {
            if (event.position <= stored || !isUserEvent(event)) continue;
            const ended = await users.fanOut(event);
            onFannedOut?.(event, ended);
          }
          const position = Math.max(stored, last.position);
          if (position !== stored) await checkpoints.setCheckpoint(name, position);
          seen = position;
        } catch (error) {
          seen = undefined;
          conflict = undefined;
          deferred = undefined;
          throw error;
        }
      }),
  };
}
