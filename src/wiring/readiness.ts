import type { NatsConnection } from "@nats-io/transport-node";
import type { ReadinessCheck } from "../adapters/http/routes/health.ts";
import type { DatabaseHandle } from "../adapters/postgres/database.ts";
import type { SessionReadModel } from "../app/ports.ts";
import type { EventLog } from "../domain/ports.ts";
import { describeProjectionHealth, type ProjectionHealthState } from "../projections/projection-health.ts";

/**
 * What `GET /readyz` reports: the event log's connection, the database, how far projections lag, and how
 * the projections this instance runs are faring (`projections`: reported, never a readiness failure —
 * see describeProjectionHealth).
 */
export async function readiness(deps: {
  nc: NatsConnection | undefined;
  database: DatabaseHandle;
  readModel: SessionReadModel;
  log: EventLog;
  projections?: { states(): ProjectionHealthState[]; now(): number } | undefined;
}): Promise<Record<string, ReadinessCheck>> {
  const checks: Record<string, ReadinessCheck> = {};
  if (deps.nc) {
    checks.nats = deps.nc.isClosed()
      ? { ok: false, detail: "closed" }
      : { ok: true, detail: deps.nc.getServer() };
  } else {
    checks.event_log = { ok: true, detail: "in-memory" };
  }
  try {
    const [checkpoint, last] = await Promise.all([deps.readModel.checkpoint(), deps.log.lastPosition()]);
    const lag = Math.max(0, last - checkpoint);
    checks.database = { ok: true, detail: deps.database.kind };
    // A read model far behind serves stale lists; say so rather than pretend.
    checks.projection_lag = { ok: lag < 10_000, detail: `${lag} events` };
  } catch (error) {
    checks.database = {
      ok: false,
      detail: error instanceof Error ? error.message.slice(0, 200) : "unavailable",
    };
  }
  if (deps.projections) {
    checks.projections = {
      ok: true,
      detail: describeProjectionHealth(deps.projections.states(), deps.projections.now()),
    };
  }
  return checks;
}
