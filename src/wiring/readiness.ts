import type { NatsConnection } from "@nats-io/transport-node";
import type { ReadinessCheck } from "../adapters/http/routes/health.ts";
import type { DatabaseHandle } from "../adapters/postgres/database.ts";
import type { SessionReadModel } from "../app/ports.ts";
import type { EventLog } from "../domain/ports.ts";
import { describeProjectionHealth, type ProjectionHealthState } from "../projections/projection-health.ts";

/**
 * What `GET /readyz` reports: the event log's connection, the database, how far projections lag, and how
 * the projections this instance runs are faring (`projections`: never required, so a failing one makes
 * the instance `degraded`, not unready — see describeProjectionHealth). Which checks are required is the
 * route's business (TESSERA_READY_REQUIRES).
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
    const states = deps.projections.states();
    checks.projections = {
      // Never required (see describeProjectionHealth): a failing projection makes the instance degraded.
      ok: states.every((state) => state.consecutiveFailures === 0),
      detail: describeProjectionHealth(states, deps.projections.now()),
    };
  }
  return checks;
}
