import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/transport-node";
import pino, { type Logger } from "pino";
import { createUuidV7Generator, randomSecrets, systemClock } from "./adapters/clock/system-clock.ts";
import { buildHttpApp, type HttpApp } from "./adapters/http/app.ts";
import { createAuthenticate } from "./adapters/http/authenticate.ts";
import type { ReadinessCheck } from "./adapters/http/routes/health.ts";
import { connectNats } from "./adapters/jetstream/connection.ts";
import { createJetStreamEventLog } from "./adapters/jetstream/event-log.ts";
import { createInMemoryEventLog } from "./adapters/memory/event-log.ts";
import { createInMemoryLeaseManager } from "./adapters/memory/lease-manager.ts";
import { attachReplica, createValidationReplica } from "./adapters/memory/validation-replica.ts";
import { createInMemoryValidationStore } from "./adapters/memory/validation-store.ts";
import { createPrometheusMetrics } from "./adapters/metrics/prometheus.ts";
import { createKvLeaseManager } from "./adapters/nats-kv/lease-manager.ts";
import { createKvValidationStore } from "./adapters/nats-kv/validation-store.ts";
import { httpTracingPlugin } from "./adapters/otel/http-tracing.ts";
import { type DatabaseHandle, openDatabase } from "./adapters/postgres/database.ts";
import { createSessionProjection } from "./adapters/postgres/session-projection.ts";
import { createSessionReadModel } from "./adapters/postgres/session-read-model.ts";
import type { SessionReadModel, ValidationReplica, ValidationStore } from "./app/ports.ts";
import { createSessionService, type SessionService } from "./app/session-service.ts";
import { createValidator, type Validator } from "./app/validator.ts";
import type { Config } from "./config.ts";
import type { Clock, EventLog, LeaseHandle, LeaseManager } from "./domain/ports.ts";
import { type ProjectionTarget, runProjection } from "./projections/runner.ts";
import { createValidationProjection } from "./projections/validation-projection.ts";

/** A running Tessera instance: the HTTP app plus everything behind it, and how to stop it. */
export type Tessera = {
  config: Config;
  app: HttpApp;
  log: EventLog;
  service: SessionService;
  validator: Validator;
  replica: ValidationReplica;
  store: ValidationStore;
  readModel: SessionReadModel;
  clock: Clock;
  logger: Logger;
  instanceId: string;
  /** Stops projections, closes the HTTP server and every connection. */
  close(): Promise<void>;
};

export type TesseraOverrides = {
  clock?: Clock;
  logger?: Logger;
  /** Share one in-memory event log / store between embedded instances (tests of multi-instance behaviour). */
  embedded?: { log: EventLog; store: ValidationStore } | undefined;
};

/**
 * The composition root: the only place that knows which adapters exist. Embedded mode (no NATS_URL /
 * DATABASE_URL) wires the in-memory log and PGlite; distributed mode wires JetStream, NATS KV and Postgres.
 */
export async function createTessera(config: Config, overrides: TesseraOverrides = {}): Promise<Tessera> {
  const clock = overrides.clock ?? systemClock;
  const logger = overrides.logger ?? pino({ level: config.logLevel, name: "tessera" });
  const ids = createUuidV7Generator(clock);
  const instanceId = config.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const close of closers.reverse())
      await close().catch((error) => logger.warn({ err: error }, "close failed"));
  };

  try {
    const infra = await openInfrastructure(config, clock, instanceId, logger, overrides, closers);
    const { log, store, leases, database, nc } = infra;

    const replica = createValidationReplica();
    const attached = await attachReplica(store, replica);
    closers.push(() => attached.stop());

    const readModel = createSessionReadModel(database.db);
    const metrics = createPrometheusMetrics({ log, replica, readModel, clock });
    const service = createSessionService({
      log,
      clock,
      ids,
      secrets: randomSecrets,
      policy: config.policy,
      replica,
      readModel,
      idempotencySecret: config.idempotencySecret ?? randomBytes(32).toString("base64url"),
      observer: metrics.observer,
    });
    // Lists served right after a restart should include what the previous run wrote.
    service.observe(await log.lastPosition());
    if (config.idempotencySecret === undefined && config.mode === "distributed") {
      logger.warn(
        "TESSERA_IDEMPOTENCY_SECRET is not set: a create retried with the same Idempotency-Key on another instance cannot return the original token",
      );
    }

    const validator = createValidator({
      onOutcome: metrics.validationOutcome,
      replica,
      store,
      foldSession: (sessionId) => service.fold(sessionId),
      clock,
      touchIntervalSeconds: config.policy.touchIntervalSeconds,
      maxLifetimeSeconds: config.policy.maxLifetimeSeconds,
      onTouchDue: (entry, facts) => {
        service
          .touch(
            entry.sessionId,
            { ipAddress: facts.ip, userAgent: facts.userAgent },
            {
              commandId: ids.uuidv7(),
              actor: { kind: "user", id: entry.userId },
              source: "rest",
              ip: facts.ip,
            },
          )
          .catch((error) => logger.warn({ err: error, sessionId: entry.sessionId }, "touch failed"));
      },
    });

    const projections: ProjectionTarget[] = [
      createSessionProjection(database.db),
      createValidationProjection({ store, replica }),
    ];
    const leaseHandles = projections.map((target) => runUnderLease(leases, log, target, logger));
    closers.push(async () => {
      await Promise.all(leaseHandles.map((handle) => handle.release()));
    });

    const app = await buildHttpApp(
      {
        service,
        validator,
        readModel,
        clock,
        ids,
        authenticate: createAuthenticate({ adminKey: config.adminKey, validator }),
        bodyLimitBytes: config.bodyLimitBytes,
        logLevel: config.logLevel,
        readiness: () => readiness({ nc, database, readModel, log }),
        plugins: [metrics.plugin, httpTracingPlugin],
      },
      { https: tlsOptions(config) },
    );
    closers.push(() => app.close());

    return {
      config,
      app,
      log,
      service,
      validator,
      replica,
      store,
      readModel,
      clock,
      logger,
      instanceId,
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

function tlsOptions(config: Config) {
  if (!config.tls) return undefined;
  return {
    cert: readFileSync(config.tls.certFile),
    key: readFileSync(config.tls.keyFile),
    ...(config.tls.caFile ? { ca: readFileSync(config.tls.caFile) } : {}),
  };
}

async function openInfrastructure(
  config: Config,
  clock: Clock,
  instanceId: string,
  logger: Logger,
  overrides: TesseraOverrides,
  closers: Array<() => Promise<void>>,
): Promise<{
  log: EventLog;
  store: ValidationStore;
  leases: LeaseManager;
  database: DatabaseHandle;
  nc: NatsConnection | undefined;
}> {
  if (config.mode === "embedded") {
    logger.warn(
      "EMBEDDED MODE: in-memory event log and PGlite, one process, ALL STATE IS LOST ON EXIT. Set NATS_URL and DATABASE_URL for real use.",
    );
    const log = overrides.embedded?.log ?? createInMemoryEventLog({ clock });
    if (!overrides.embedded) closers.push(() => log.close());
    const store = overrides.embedded?.store ?? createInMemoryValidationStore();
    const database = await openDatabase({ embedded: true });
    closers.push(() => database.close());
    return { log, store, leases: createInMemoryLeaseManager(), database, nc: undefined };
  }
  const nc = await connectNats(config.natsUrl ?? "", `tessera-${instanceId}`);
  closers.push(() => nc.drain().catch(() => nc.close()));
  const database = await openDatabase({
    url: config.databaseUrl ?? "",
    onPoolError: (error) => logger.warn({ err: error }, "postgres pool error"),
  });
  closers.push(() => database.close());
  const log = await createJetStreamEventLog({ nc, prefix: config.prefix, replicas: config.natsReplicas });
  const store = await createKvValidationStore({ nc, prefix: config.prefix, replicas: config.natsReplicas });
  const leases = await createKvLeaseManager({
    nc,
    prefix: config.prefix,
    holderId: instanceId,
    clock,
    replicas: config.natsReplicas,
    onError: (error, context) => logger.warn({ err: error, ...context }, "lease trouble"),
  });
  return { log, store, leases, database, nc };
}

function runUnderLease(
  leases: LeaseManager,
  log: EventLog,
  target: ProjectionTarget,
  logger: Logger,
): LeaseHandle {
  return leases.hold(`projection.${target.name}`, (signal) =>
    runProjection({
      log,
      target,
      signal,
      onError: (error) => logger.warn({ err: error, projection: target.name }, "projection retrying"),
    }),
  );
}

async function readiness(deps: {
  nc: NatsConnection | undefined;
  database: DatabaseHandle;
  readModel: SessionReadModel;
  log: EventLog;
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
  return checks;
}
