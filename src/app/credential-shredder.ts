import type { RecordedEvent } from "../domain/events.ts";
import type { ProjectionTarget } from "../projections/runner.ts";
import { createCheckpointedProcessManager } from "./checkpointed-process-manager.ts";
import { SESSION_ENDINGS } from "./credential-vault.ts";
import type { ValidationStore } from "./ports.ts";

/**
 * The credential shredder: follows the log and destroys a session's data key when the session ends
 * (SessionInvalidated, SessionExpired, SessionRecycled), so its credentials in SessionCreated can never be
 * decrypted again (docs/credentials.md).
 *
 * It runs like a projection (createCheckpointedProcessManager: one runner at a time under a lease,
 * checkpoint in the validation store's checkpoints): a batch's keys are purged, then the checkpoint
 * moves. A crash in between leaves the checkpoint before the batch and the next runner purges the same
 * keys again, which is harmless (a purge is idempotent); a purge that fails fails the batch, which the runner retries. So no ending is missed and
 * nothing is done twice that matters.
 *
 * Most sessions carry no credentials. The runner remembers which sessions it saw created with and without
 * them, and only asks the key store about a session created before it started; a batch with nothing to
 * purge defers its checkpoint write (like the recycle process manager), so following the log costs almost
 * nothing under load.
 */

export const CREDENTIAL_SHREDDER = "credential_keys";

export type CredentialShredderOptions = {
  /** Purges a session's key; true when there was one. */
  destroy: (sessionId: string) => Promise<boolean>;
  /** Is there a key for this session (for sessions created before this runner started)? */
  hasKey: (sessionId: string) => Promise<boolean>;
  checkpoints: Pick<ValidationStore, "getCheckpoint" | "setCheckpoint">;
  name?: string | undefined;
  /** Told after each purge that removed a key (logs, tests). */
  onShredded?: ((sessionId: string, event: RecordedEvent) => void) | undefined;
};

type Ending = { position: number; sessionId: string; event: RecordedEvent; known: boolean };

/** Sessions remembered as created with or without credentials; past this the memory starts over. */
const MAX_REMEMBERED = 200_000;

export function createCredentialShredder(options: CredentialShredderOptions): ProjectionTarget {
  const { destroy, hasKey, onShredded } = options;
  /** true: created with credentials; false: without. Absent: created before this runner saw it. */
  const created = new Map<string, boolean>();

  /**
   * The endings in `batch` past `after` whose session may have a key, in log order, each with whether its
   * session is known to have been created with credentials (else the key store is asked).
   */
  function endingsToShred(batch: RecordedEvent[], after: number): Ending[] {
    const endings: Ending[] = [];
    for (const event of batch) {
      if (event.position <= after) continue;
      if (event.type === "SessionCreated") {
        if (created.size >= MAX_REMEMBERED) created.clear();
        created.set(event.data.sessionId, event.data.credentials !== undefined);
      } else if (SESSION_ENDINGS.has(event.type) && "sessionId" in event.data) {
        const { sessionId } = event.data;
        const known = created.get(sessionId);
        created.delete(sessionId);
        if (known !== false)
          endings.push({ position: event.position, sessionId, event, known: known === true });
      }
    }
    return endings;
  }

  async function shred({ sessionId, event, known }: Ending) {
    if (!known && !(await hasKey(sessionId))) return;
    if (await destroy(sessionId)) onShredded?.(sessionId, event);
  }

  return createCheckpointedProcessManager({
    name: options.name ?? CREDENTIAL_SHREDDER,
    checkpoints: options.checkpoints,
    select: endingsToShred,
    act: shred,
    // A new start may begin anywhere, and a failed batch's retry re-reads from its checkpoint: what was
    // remembered may not hold for the events it re-reads.
    reset: () => created.clear(),
  });
}
