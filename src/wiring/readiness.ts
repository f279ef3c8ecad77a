import type { NatsConnection } from "@nats-io/transport-node";
import type { ReadinessCheck } from "../adapters/http/routes/health.ts";
import { isNatsConnected } from "../adapters/jetstream/connection-state.ts";
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
  // isClosed() stays false while the client reconnects: ask whether the connection is up right now, and
  // do not ask the log (a request would wait out the 5 s timeout) when it is not.
  const natsUp = deps.nc === undefined || isNatsConnected(deps.nc);
  const [checkpoint, last] = await Promise.allSettled([
    deps.readModel.checkpoint(),
    natsUp ? deps.log.lastPosition() : Promise.reject(new Error("NATS is disconnected")),
  ]);
  if (deps.nc) {
    checks.nats = deps.nc.isClosed()
      ? { ok: false, detail: "closed" }
      : !natsUp
        ? { ok: false, detail: "disconnected (reconnecting)" }
        : last.status === "rejected"
          ? { ok: false, detail: `connected, event log unavailable: ${reason(last.reason)}` }
          : { ok: true, detail: deps.nc.getServer() };
  } else {
    checks.event_log = { ok: true, detail: "in-memory" };
  }
  // Each failure is blamed on its own dependency: NATS being away is not the database's fault.
  checks.database =
    checkpoint.status === "fulfilled"
      ? { ok: true, detail: deps.database.kind }
      : { ok: false, detail: reason(checkpoint.reason) };
  if (checkpoint.status === "fulfilled" && last.status === "fulfilled") {
    const lag = Math.max(0, last.value - checkpoint.value);
    // A read model far behind serves stale lists; say so rather than pretend.
    checks.projection_lag = { ok: lag < 10_000, detail: `${lag} events` };
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

function reason(error: unknown): string {
  return error instanceof Error ? error.message.slice(0, 200) : "unavailable";
}
