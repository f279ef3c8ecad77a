import type { FastifyInstance } from "fastify";
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import type { CommandObserver } from "../../app/command-handler.ts";
import type { SessionReadModel, ValidationReplica } from "../../app/ports.ts";
import type { Clock, EventLog } from "../../domain/ports.ts";
import { type LifecycleStep, onEachResponse } from "../http/request-lifecycle.ts";
import { fastValidateCounts } from "../http/routes/session-validate.ts";
import { createLatencyHistogram, type HistogramCell } from "./latency-histogram.ts";
import { measureProjectionLag, type ProjectionCheckpoint, shareInFlight } from "./projection-lag.ts";

export type MetricsDeps = {
  log: EventLog;
  replica: ValidationReplica;
  readModel: SessionReadModel;
  clock: Clock;
  /** Every projection's stored checkpoint, for the lag gauges (labelled by `name`). */
  projections: readonly ProjectionCheckpoint[];
};

/**
 * Prometheus metrics (DESIGN §9). Labels are closed sets — event types, outcomes, route patterns — and
 * never carry tokens, session ids or user ids.
 */
export function createPrometheusMetrics(deps: MetricsDeps) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "tessera_process_" });

  const eventsAppended = new Counter({
    name: "tessera_events_appended_total",
    help: "Events appended to the log by this instance, by type",
    labelNames: ["type"] as const,
    registers: [registry],
  });
  const conflicts = new Counter({
    name: "tessera_command_conflicts_total",
    help: "Optimistic-concurrency conflicts that made a command re-read and retry",
    labelNames: ["stream"] as const,
    registers: [registry],
  });
  // Counted in a plain map on the validation path and handed to the counter when scraped.
  const outcomes = new Map<string, number>();
  new Counter({
    name: "tessera_validations_total",
    help: "Token validations by outcome",
    labelNames: ["outcome"] as const,
    registers: [registry],
    collect() {
      for (const [outcome, count] of outcomes) this.inc({ outcome }, count);
      outcomes.clear();
    },
  });
  const httpDuration = createLatencyHistogram({
    name: "tessera_http_request_duration_seconds",
    help: "HTTP request latency by route pattern and status class",
    labelNames: ["method", "route", "status"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registry,
  });
  // route → method → status class (1xx..5xx, index 1..5) → cell; the label sets are closed.
  const latencyCells = new Map<string, Map<string, HistogramCell[]>>();
  function latencyCell(method: string, route: string, statusClass: number): HistogramCell {
    let byMethod = latencyCells.get(route);
    if (!byMethod) {
      byMethod = new Map();
      latencyCells.set(route, byMethod);
    }
    let byStatus = byMethod.get(method);
    if (!byStatus) {
      byStatus = [];
      byMethod.set(method, byStatus);
    }
    let cell = byStatus[statusClass];
    if (!cell) {
      cell = httpDuration.cell({ method, route, status: `${statusClass}xx` });
      byStatus[statusClass] = cell;
    }
    return cell;
  }
  const observeLatency: LifecycleStep = (request, reply) => {
    const route = request.routeOptions.url ?? "unmatched";
    latencyCell(request.method, route, Math.floor(reply.statusCode / 100)).observe(reply.elapsedTime / 1000);
  };
  new Gauge({
    name: "tessera_validation_view_sessions",
    help: "Sessions held in this instance's in-memory validation view",
    registers: [registry],
    collect() {
      this.set(deps.replica.size);
    },
  });
  new Gauge({
    name: "tessera_active_sessions",
    help: "Active sessions according to the read model",
    registers: [registry],
    async collect() {
      // The read model's database being away must not fail the whole scrape (every other metric, and the
      // lag that says how far behind it is). The gauge keeps the last count it read: an unlabelled gauge
      // always has a sample, and 0 would claim nobody is signed in.
      const stats = await deps.readModel.stats(undefined, deps.clock.now()).catch(() => undefined);
      if (stats !== undefined) this.set(stats.active);
    },
  });
  // Both lag gauges are collected in the same scrape: they share one measurement. A projection whose
  // checkpoint cannot be read (its database is down) has no sample rather than a stale one.
  const projectionLag = shareInFlight(() =>
    measureProjectionLag({ log: deps.log, clock: deps.clock, projections: deps.projections }),
  );
  new Gauge({
    name: "tessera_projection_lag_events",
    help: "Events in the log not yet applied by each projection",
    labelNames: ["projection"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const lag of await projectionLag()) if (lag.ok) this.set({ projection: lag.name }, lag.events);
    },
  });
  new Gauge({
    name: "tessera_projection_lag_seconds",
    help: "Age of the oldest event each projection has not applied yet (0 when caught up)",
    labelNames: ["projection"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const lag of await projectionLag()) if (lag.ok) this.set({ projection: lag.name }, lag.seconds);
    },
  });

  // Set by the credential-key sweep's rewrap pass (docs/credentials.md, "Rotating the master key"). Only the
  // instance holding the sweep's lease counts; the others keep the unlabelled gauge's 0 (take the max).
  const underPreviousKey = new Gauge({
    name: "tessera_credential_keys_under_previous_key",
    help: "Credential data keys still wrapped under a previous master key after this instance's last sweep",
    registers: [registry],
  });

  const observer: CommandObserver = {
    appended: (type) => eventsAppended.inc({ type }),
    conflict: (stream) => conflicts.inc({ stream }),
  };

  return {
    registry,
    observer,
    credentialKeysUnderPreviousKey: (count: number) => underPreviousKey.set(count),
    validationOutcome: (outcome: string) => {
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    },
    /** Registers GET /metrics and the latency hook on the HTTP app. */
    plugin(app: FastifyInstance) {
      onEachResponse(app, observeLatency);
      // Counted by the fast validation path itself; handed to the counter (as totals) when scraped.
      new Counter({
        name: "tessera_http_fast_validations_total",
        help: "POST /v1/sessions/validate requests the fast path answered, or handed to the Fastify route",
        labelNames: ["path"] as const,
        registers: [registry],
        collect() {
          const counts = fastValidateCounts(app);
          if (counts === undefined) return;
          this.reset();
          this.inc({ path: "answered" }, counts.answered);
          this.inc({ path: "handed_over" }, counts.handedOver);
        },
      });
      app.get("/metrics", { schema: { hide: true } }, async (_request, reply) => {
        reply.type(registry.contentType);
        return registry.metrics();
      });
    },
  };
}
