import type { ProjectionCheckpoint } from "../adapters/metrics/projection-lag.ts";
import { AUDIT_PROJECTION_NAME } from "../adapters/postgres/audit-projection.ts";
import { IDP_SESSION_PROJECTION } from "../adapters/postgres/idp-session-index.ts";
import { SESSION_PROJECTION_NAME } from "../adapters/postgres/session-columns.ts";
import { CREDENTIAL_SHREDDER } from "../app/credential-shredder.ts";
import type { ValidationStore } from "../app/ports.ts";
import { RECYCLE_PROCESS_MANAGER } from "../app/recycle-process-manager.ts";
import { VALIDATION_PROJECTION } from "../projections/validation-projection.ts";

type CheckpointReader = { checkpoint(): Promise<number> };

/**
 * Read-only access to every projection's stored checkpoint, by projection name, for the lag metrics. A
 * ProjectionTarget's own `checkpoint()` cannot serve: it also records what its runner last saw, so a scrape
 * calling it could hide a checkpoint moved by someone else from the runner.
 */
export function projectionCheckpoints(deps: {
  sessions: CheckpointReader;
  audit: CheckpointReader;
  /** Only when an IdP is configured (the projection runs only then). */
  idpSessions: CheckpointReader | undefined;
  store: Pick<ValidationStore, "getCheckpoint">;
}): ProjectionCheckpoint[] {
  const inStore = (name: string): ProjectionCheckpoint => ({
    name,
    checkpoint: () => deps.store.getCheckpoint(name),
  });
  const reader = (name: string, source: CheckpointReader): ProjectionCheckpoint => ({
    name,
    checkpoint: () => source.checkpoint(),
  });
  return [
    ...(deps.idpSessions ? [reader(IDP_SESSION_PROJECTION, deps.idpSessions)] : []),
    inStore(RECYCLE_PROCESS_MANAGER),
    reader(SESSION_PROJECTION_NAME, deps.sessions),
    reader(AUDIT_PROJECTION_NAME, deps.audit),
    inStore(VALIDATION_PROJECTION),
    inStore(CREDENTIAL_SHREDDER),
  ];
}
