import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/transport-node";
import pino, { type Logger } from "pino";
import { createUuidV7Generator, randomSecrets, systemClock } from "./adapters/clock/system-clock.ts";
import { tickSourceFor } from "./adapters/clock/tick-source.ts";
import { buildHttpApp, type HttpApp } from "./adapters/http/app.ts";
import { createAuthenticate } from "./adapters/http/authenticate.ts";
import { createIdpBearerAuthenticator } from "./adapters/http/idp-bearer.ts";
import { auditRoutes } from "./adapters/http/routes/audit.ts";
import { backchannelLogoutRoutes } from "./adapters/http/routes/backchannel-logout.ts";
import type { ReadinessCheck } from "./adapters/http/routes/health.ts";
import { idpHookRoutes } from "./adapters/http/routes/idp-hooks.ts";
import { recycleRoutes } from "./adapters/http/routes/recycle.ts";
import { connectNats } from "./adapters/jetstream/connection.ts";
import { createJetStreamEventLog } from "./adapters/jetstream/event-log.ts";
import { createJetStreamTickLog } from "./adapters/jetstream/time-stream.ts";
import { createMcpEndpoint, type McpEndpoint } from "./adapters/mcp/endpoint.ts";
import { createInMemoryEventLog } from "./adapters/memory/event-log.ts";
import { createInMemoryLeaseManager } from "./adapters/memory/lease-manager.ts";
import { createInMemoryReplayStore } from "./adapters/memory/replay-store.ts";
import { createInMemoryTickLog } from "./adapters/memory/tick-log.ts";
import { attachReplica, createValidationReplica } from "./adapters/memory/validation-replica.ts";
import { createInMemoryValidationStore } from "./adapters/memory/validation-store.ts";
import { createPrometheusMetrics } from "./adapters/metrics/prometheus.ts";
import { createKvLeaseManager } from "./adapters/nats-kv/lease-manager.ts";
import { createKvReplayStore } from "./adapters/nats-kv/replay-store.ts";
import { createKvValidationStore } from "./adapters/nats-kv/validation-store.ts";
import { httpTracingPlugin } from "./adapters/otel/http-tracing.ts";
import { createAuditProjection } from "./adapters/postgres/audit-projection.ts";
import { createAuditReadModel } from "./adapters/postgres/audit-read-model.ts";
import { type DatabaseHandle, openDatabase } from "./adapters/postgres/database.ts";
import { createIdpSessionIndex, createIdpSessionProjection } from "./adapters/postgres/idp-session-index.ts";
import { createSessionProjection } from "./adapters/postgres/session-projection.ts";
import { createSessionReadModel } from "./adapters/postgres/session-read-model.ts";
import { createAsOfQuery } from "./app/as-of-query.ts";
import { createDeadlineIndex, indexReplica } from "./app/deadline-index.ts";
import { createEntryExpirer } from "./app/entry-expiry.ts";
import { createExpiryScheduler, type ExpiryScheduler } from "./app/expiry-scheduler.ts";
import { createIdpVerifier } from "./app/idp.ts";
import { createBackchannelLogout } from "./app/idp-logout.ts";
import { createIdpSessions, type IdpSessions } from "./app/idp-sessions.ts";
import { createIdpWebhooks } from "./app/idp-webhooks.ts";
import type { SessionReadModel, ValidationReplica, ValidationStore } from "./app/ports.ts";
import { createRecycleProcessManager } from "./app/recycle-process-manager.ts";
import { createSessionService, type SessionService } from "./app/session-service.ts";
import { startTickPublisher, type TickPublisher } from "./app/tick-publisher.ts";
import { createUserService, type UserService } from "./app/user-service.ts";
import { createValidator, type Validator } from "./app/validator.ts";
import { type Auth, createAuth, createSessionLimiterFor } from "./auth.ts";
import type { Config } from "./config.ts";
import type { Clock, EventLog, LeaseHandle, LeaseManager, TickLog, TickSource } from "./domain/ports.ts";
import { type ProjectionTarget, runProjection, waitForCheckpoint } from "./projections/runner.ts";
import { createValidationProjection } from "./projections/validation-projection.ts";

/** Expired sessions stay in memory this long, so recent ones still answer "expired" without a KV read. */
const REPLICA_GRACE_MS = 15 * 60_000;

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
  /** The MCP endpoint's parts (its tools are also served over stdio by `tessera mcp --stdio`). */
  mcp: McpEndpoint;
  /** Ticks, the expiry scheduler and its due index (DESIGN §5). */
  time: { scheduler: ExpiryScheduler; publisher: TickPublisher; ticks: TickLog };
  /** Claims changes and the recycle fan-out (docs/recycling.md). */
  users: UserService;
  /** IdP-token sessions; `checkSessionClaims` is what /mcp and validate call with the caller's IdP JWT. */
  idp: IdpSessions;
  /** Password users, access tokens and logins (docs/auth.md). */
  auth: Pick<Auth, "directory" | "accessTokens" | "login">;
  /** Stops projections, closes the HTTP server and every connection. */
  close(): Promise<void>;
};

export type TesseraOverrides = {
  clock?: Clock;
  logger?: Logger;
  /** Share one in-memory event log / store between embedded instances (tests of multi-instance behaviour). */
  embedded?: { log: EventLog; store: ValidationStore; ticks?: TickLog | undefined } | undefined;
  /** Where ticks come from (default: the fake clock's own ticks for a FakeClock, else the wall clock). */
  tickSource?: TickSource | undefined;
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

    const deadlines = createDeadlineIndex();
    const replica = indexReplica(createValidationReplica(), deadlines);
    const attached = await attachReplica(store, replica);
    const eviction = setInterval(() => replica.evictExpiredBefore(clock.now() - REPLICA_GRACE_MS), 60_000);
    eviction.unref();
    closers.push(async () => clearInterval(eviction));
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
      store,
      readModel,
      idempotencySecret: config.idempotencySecret ?? randomBytes(32).toString("base64url"),
      observer: metrics.observer,
      limiter: await createSessionLimiterFor({
        ...{ policy: config.policy, nc, prefix: config.prefix, replicas: config.natsReplicas },
        ...{ replica, readModel, clock },
      }),
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

    const ticks = nc
      ? await createJetStreamTickLog({
          nc,
          prefix: config.prefix,
          replicas: config.natsReplicas,
          onError: (error) => logger.warn({ err: error }, "tick consumer retrying"),
        })
      : (overrides.embedded?.ticks ?? createInMemoryTickLog());
    const scheduler = createExpiryScheduler({
      ticks,
      index: deadlines,
      replica,
      readModel,
      expire: createEntryExpirer({
        log,
        clock,
        ids,
        replica,
        store,
        observer: metrics.observer,
        appendedAt: (position) => service.observe(position),
        command: (sessionId, tick, context) => service.expire(sessionId, tick, context),
      }),
      clock,
      readModelCaughtUp: async (timeoutMs) =>
        waitForCheckpoint(readModel, await log.lastPosition(), timeoutMs),
      onError: (error, context) => logger.warn({ err: error, ...context }, "expiry failed"),
    });

    // Recycling and the IdP (docs/recycling.md).
    const auth = await createAuth({
      ...{
        config,
        db: database.db,
        service,
        validator,
        readModel,
        clock,
        ids,
        secrets: randomSecrets,
        logger,
      },
    });
    const users = createUserService({ log, clock, ids, replica, readModel, directory: auth.directory });
    const replay = nc
      ? await createKvReplayStore({ nc, prefix: config.prefix, clock, replicas: config.natsReplicas })
      : createInMemoryReplayStore(clock);
    const idpVerifier = config.idp ? createIdpVerifier(config.idp, { clock }) : undefined;
    const idp = createIdpSessions({
      verifier: idpVerifier,
      service,
      users,
      replica,
      store,
      bindings: replay,
      clock,
      ids,
      policy: config.policy,
      onError: (error, context) => logger.warn({ err: error, ...context }, "idp session work failed"),
    });

    const projections: ProjectionTarget[] = [
      // Only back-channel logout reads the IdP session index, and it needs an IdP.
      ...(config.idp ? [createIdpSessionProjection(database.db)] : []),
      createRecycleProcessManager({ users, checkpoints: store }),
      createSessionProjection(database.db),
      createAuditProjection(database.db),
      createValidationProjection({ store, replica }),
    ];
    const leaseHandles = projections.map((target) => runUnderLease(leases, log, target, logger));
    closers.push(async () => {
      await Promise.all(leaseHandles.map((handle) => handle.release()));
    });

    const authenticate = createAuthenticate({
      adminKey: config.adminKey,
      validator,
      bearerAuthenticators: [auth.bearer, createIdpBearerAuthenticator(idp)],
    });
    const mcp = createMcpEndpoint({
      passwordLogin: auth.login.passwordLogin,
      recycleUser: (userId, context) => users.recycleUser(userId, "recycled", context),
      recycleSession: (sessionId, context) => users.recycleSession(sessionId, undefined, context),
      service,
      validator,
      readModel,
      clock,
      ids,
      logger,
      authenticate,
      hostGuard: {
        listenHost: config.host,
        allowedHosts: config.mcp.allowedHosts,
        allowedOrigins: config.mcp.allowedOrigins,
      },
      sessionTtlSeconds: config.mcp.sessionTtlSeconds,
      chromiumPath: config.mcp.chromiumPath,
    });
    closers.push(() => mcp.close());
    const auditReadModel = createAuditReadModel(database.db);
    const asOf = createAsOfQuery({ audit: auditReadModel, lastPosition: () => log.lastPosition() });
    const auditPlugin = auditRoutes({
      audit: auditReadModel,
      asOf,
      authenticate,
      lastWrittenPosition: () => service.lastPosition,
    });
    const recyclePlugins = [
      recycleRoutes({ users, authenticate, ids }),
      idpHookRoutes({
        webhooks: config.idpWebhookSecret
          ? createIdpWebhooks({
              secret: config.idpWebhookSecret,
              replay,
              users,
              service,
              clock,
              directory: auth.directory,
            })
          : undefined,
      }),
      backchannelLogoutRoutes({
        logout: createBackchannelLogout({
          verifier: idpVerifier,
          replay,
          service,
          log,
          clock,
          index: createIdpSessionIndex(database.db),
        }),
      }),
    ];
    const app = await buildHttpApp(
      {
        service,
        validator,
        readModel,
        clock,
        ids,
        authenticate,
        bodyLimitBytes: config.bodyLimitBytes,
        logLevel: config.logLevel,
        readiness: () => readiness({ nc, database, readModel, log }),
        expireOverdue: (context) => scheduler.sweep(context),
        forgetEndedSessions: (sessionIds) => store.forgetSessions(sessionIds),
        checkJwtClaims: (entry, jwt, facts) => idp.checkSessionClaims(entry, jwt, facts),
        beforeRoutes: auth.beforeRoutes,
        plugins: [
          ...[metrics.plugin, httpTracingPlugin, mcp.plugin, auditPlugin, ...recyclePlugins],
          ...auth.routes(authenticate, asOf),
        ],
      },
      { https: tlsOptions(config) },
    );
    closers.push(() => app.close());

    scheduler.start();
    const publisher = startTickPublisher({
      source: overrides.tickSource ?? tickSourceFor(clock),
      ticks,
      onError: (error, second) => logger.warn({ err: error, second }, "tick publish failed"),
    });
    closers.push(async () => {
      await publisher.stop();
      await scheduler.stop();
    });

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
      mcp,
      time: { scheduler, publisher, ticks },
      users,
      idp,
      auth: { directory: auth.directory, accessTokens: auth.accessTokens, login: auth.login },
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
    // Leases are about whether a process is alive: wall time, even when the domain runs on a test clock
    // (a fake clock jumping an hour would otherwise hand every lease to whoever looks next).
    clock: systemClock,
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
