import { Counter, Gauge, type Registry } from "prom-client";
import type { ProjectionHealth } from "../../projections/projection-health.ts";

/**
 * `tessera_projection_failures_total{projection}`: batches (or checkpoint reads) a projection run by this
 * instance failed to apply, checkpoint conflicts left out; `tessera_projection_consecutive_failures`:
 * failures since its last applied batch. A projection stuck on one batch keeps the second above 0 and the
 * first rising (about every 5 s, the runner's longest backoff); a Postgres restart shows as a short run.
 * Labels are projection names: a closed set.
 */
export function registerProjectionHealthMetrics(
  registry: Registry,
  health: Pick<ProjectionHealth, "states">,
) {
  const counted = new Map<string, number>();
  new Counter({
    name: "tessera_projection_failures_total",
    help: "Failed attempts to apply a batch of events (or read the checkpoint), by projection run here",
    labelNames: ["projection"] as const,
    registers: [registry],
    collect() {
      for (const state of health.states()) {
        // Handed over as increments, so the series exists (at 0) from the projection's first run.
        this.inc({ projection: state.name }, state.totalFailures - (counted.get(state.name) ?? 0));
        counted.set(state.name, state.totalFailures);
      }
    },
  });
  new Gauge({
    name: "tessera_projection_consecutive_failures",
    help: "Failures since the projection last applied a batch (0: healthy), by projection run here",
    labelNames: ["projection"] as const,
    registers: [registry],
    collect() {
      for (const state of health.states()) this.set({ projection: state.name }, state.consecutiveFailures);
    },
  });
}
