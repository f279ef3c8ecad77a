import type { RecordedEvent, UserEvent } from "../domain/events.ts";
import { USER_EVENT_TYPES } from "../domain/events.ts";
import type { ProjectionTarget } from "../projections/runner.ts";
import { createCheckpointedProcessManager } from "./checkpointed-process-manager.ts";
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
 * It runs like a projection (createCheckpointedProcessManager: one runner at a time under a lease, a
 * batch is fanned out, then the checkpoint moves; a run of session events only defers its checkpoint).
 * A crash in the middle leaves the checkpoint before the event, so the next runner fans out the same
 * event again; each session's command has an id derived from (cause event, session) and is decided on
 * the session's own stream, so nothing is ended twice.
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

export function createRecycleProcessManager(options: RecycleProcessManagerOptions): ProjectionTarget {
  const { users, onFannedOut } = options;
  return createCheckpointedProcessManager({
    name: options.name ?? RECYCLE_PROCESS_MANAGER,
    checkpoints: options.checkpoints,
    // Every user event in the batch, even one before `after`: such a batch writes its checkpoint at once.
    select: (batch) => batch.filter(isUserEvent),
    act: async (event) => {
      const ended = await users.fanOut(event);
      onFannedOut?.(event, ended);
    },
  });
}
