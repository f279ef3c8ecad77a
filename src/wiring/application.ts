import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { createUuidV7Generator, randomSecrets } from "../adapters/clock/system-clock.ts";
import { tickSourceFor } from "../adapters/clock/tick-source.ts";
import { buildHttpApp, type HttpApp } from "../adapters/http/app.ts";
import { createAuthenticate } from "../adapters/http/authenticate.ts";
import { createIdpBearerAuthenticator } from "../adapters/http/idp-bearer.ts";
import { auditRoutes } from "../adapters/http/routes/audit.ts";
import { backchannelLogoutRoutes } from "../adapters/http/routes/backchannel-logout.ts";
import { idpHookRoutes } from "../adapters/http/routes/idp-hooks.ts";
import { recycleRoutes } from "../adapters/http/routes/recycle.ts";
import { createMcpEndpoint, type McpEndpoint } from "../adapters/mcp/endpoint.ts";
import { attachReplica, createValidationReplica } from "../adapters/memory/validation-replica.ts";
import { registerProjectionHealthMetrics } from "../adapters/metrics/projection-health-metrics.ts";
import { createPrometheusMetrics } from "../adapters/metrics/prometheus.ts";
import { httpTracingPlugin } from "../adapters/otel/http-tracing.ts";
import { createAuditProjection } from "../adapters/postgres/audit-projection.ts";
import { createAuditReadModel } from "../adapters/postgres/audit-read-model.ts";
import { createIdpSessionIndex, createIdpSessionProjection } from "../adapters/postgres/idp-session-index.ts";
import { createSessionProjection } from "../adapters/postgres/session-projection.ts";
import { createSessionReadModel } from "../adapters/postgres/session-read-model.ts";
import { createAsOfQuery } from "../app/as-of-query.ts";
import { createDeadlineIndex, indexReplica } from "../app/deadline-index.ts";
import { createEntryExpirer } from "../app/entry-expiry.ts";
import { createExpiryScheduler, type ExpiryScheduler } from "../app/expiry-scheduler.ts";
import { createIdpVerifier } from "../app/idp.ts";
import { createBackchannelLogout } from "../app/idp-logout.ts";
import { createIdpSessions, type IdpSessions } from "../app/idp-sessions.ts";
import { createIdpWebhooks } from "../app/idp-webhooks.ts";
import type { SessionReadModel, ValidationReplica, ValidationStore } from "../app/ports.ts";
import { createRecycleProcessManager } from "../app/recycle-process-manager.ts";
import { createSessionService, type SessionService } from "../app/session-service.ts";
import { startTickPublisher, type TickPublisher } from "../app/tick-publisher.ts";
import { touchOnUse } from "../app/touch-on-use.ts";
import { createUserService, type UserService } from "../app/user-service.ts";
import { createValidator, type Validator } from "../app/validator.ts";
import { type Auth, createAuth, createSessionLimiterFor } from "../auth.ts";
import type { Config } from "../config.ts";
import type { Clock, EventLog, LeaseHandle, LeaseManager, TickLog, TickSource } from "../domain/ports.ts";
import { createProjectionHealth, type ProjectionHealth } from "../projections/projection-health.ts";
import { type ProjectionTarget, runProjection, waitForCheckpoint } from "../projections/runner.ts";
import { createValidationProjection } from "../projections/validation-projection.ts";
import { createCloseStack } from "./close-stack.ts";
import { createCredentials } from "./credentials.ts";
import type { Infrastructure } from "./infrastructure.ts";
import { projectionCheckpoints } from "./projection-checkpoints.ts";
import { readiness } from "./readiness.ts";
import type { StartupSecrets } from "./startup-secrets.ts";
import { createTransports } from "./transports.ts";

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

export type ApplicationRuntime = {
  clock: Clock;
  logger: Logger;
  instanceId: string;
  /** Where ticks come from (default: the fake clock's own ticks for a FakeClock, else the wall clock). */
  tickSource?: TickSource | undefined;
  /** The access-token keys and TLS material, loaded and checked before the infrastructure was opened. */
  secrets: StartupSecrets;
};

/**
 * Builds the service on opened infrastructure, whatever its mode: the in-memory validation view, the
 * session service and validator, expiry, auth, recycling and the IdP, the projections (each under a lease)
 * and the HTTP app with MCP, then starts the clock. It takes the infrastructure over: the returned close()
 * closes it last, and so does a failure while starting.
 */
export async function startApplication(
  config: Config,
  infrastructure: Infrastructure,
  runtime: ApplicationRuntime,
): Promise<Tessera> {
  const { clock, logger, instanceId } = runtime;
  const { log, store, leases, ticks, replay, database, nc } = infrastructure;
  const ids = createUuidV7Generator(clock);
  const closers = createCloseStack(logger);
  closers.push(() => infrastructure.close());

  try {
    const deadlines = createDeadlineIndex();
    const transports = createTransports(config, logger);
    const replica = transports.watchEndings(indexReplica(createValidationReplica(), deadlines));
    const attached = await attachReplica(store, replica);
    const eviction = setInterval(() => replica.evictExpiredBefore(clock.now() - REPLICA_GRACE_MS), 60_000);
    eviction.unref();
    closers.push(async () => clearInterval(eviction));
    closers.push(() => attached.stop());

    const readModel = createSessionReadModel(database.db);
    const auditReadModel = createAuditReadModel(database.db);
    const idpSessionIndex = createIdpSessionIndex(database.db);
    const metrics = createPrometheusMetrics({
      ...{ log, replica, readModel, clock },
      projections: projectionCheckpoints({
        sessions: readModel,
        audit: auditReadModel,
        idpSessions: config.idp ? idpSessionIndex : undefined,
        store,
      }),
    });
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
      onTouchDue: (entry, facts, usedAt) =>
        touchOnUse({ service, ids }, entry, facts, usedAt, "rest", (error) =>
          logger.warn({ err: error, sessionId: entry.sessionId }, "touch failed"),
        ),
    });

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
        nc,
        db: database.db,
        service,
        validator,
        readModel,
        clock,
        ids,
        secrets: randomSecrets,
        logger,
        keys: runtime.secrets,
      },
    });
    const users = createUserService({
      ...{ log, clock, ids, replica, readModel },
      directory: auth.directory,
      observer: metrics.observer,
    });
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

    // Upstream credentials kept for a session's life (docs/credentials.md).
    const credentials = createCredentials({
      ...{ config, keys: infrastructure.credentialKeys, checkpoints: store, log, clock, logger },
      onUnderPreviousKey: metrics.credentialKeysUnderPreviousKey,
    });
    const credentialSweep = credentials.startSweep(leases);
    closers.push(() => credentialSweep.release());

    const projections: ProjectionTarget[] = [
      // Only back-channel logout reads the IdP session index, and it needs an IdP.
      ...(config.idp ? [createIdpSessionProjection(database.db)] : []),
      createRecycleProcessManager({ users, checkpoints: store }),
      createSessionProjection(database.db),
      createAuditProjection(database.db),
      createValidationProjection({ store, replica }),
      credentials.shredder,
    ];
    // Failures of the projections run here, for /readyz and /metrics.
    const projectionHealth = createProjectionHealth(() => clock.now());
    registerProjectionHealthMetrics(metrics.registry, projectionHealth);
    const leaseHandles = projections.map((target) =>
      runUnderLease(leases, log, projectionHealth.watch(target), logger, projectionHealth),
    );
    closers.push(async () => {
      await Promise.all(leaseHandles.map((handle) => handle.release()));
    });

    const authenticate = createAuthenticate({
      adminKey: config.adminKey,
      validator,
      bearerAuthenticators: [auth.bearer, createIdpBearerAuthenticator(idp)],
    });
    transports.bind({
      ...{ service, validator, readModel, clock, ids, authenticate },
      checkJwtClaims: (entry, jwt, facts) => idp.checkSessionClaims(entry, jwt, facts),
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
      publicUrl: config.publicUrl,
    });
    closers.push(() => mcp.close());
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
          index: idpSessionIndex,
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
        fastPath: config.fastValidate,
        logLevel: config.logLevel,
        // Embedded mode's in-memory log stands where NATS would (its check is `event_log`).
        readyRequires: new Set(
          config.readyRequires.includes("nats")
            ? [...config.readyRequires, "event_log"]
            : config.readyRequires,
        ),
        readiness: () =>
          readiness({
            ...{ nc, database, readModel, log },
            projections: { states: () => projectionHealth.states(), now: () => clock.now() },
          }),
        expireOverdue: (context) => scheduler.sweep(context),
        forgetEndedSessions: (sessionIds) => store.forgetSessions(sessionIds),
        checkJwtClaims: (entry, jwt, facts) => idp.checkSessionClaims(entry, jwt, facts),
        credentials: credentials.support,
        sessionUrl: mcp.sessionUrl,
        beforeRoutes: auth.beforeRoutes,
        securityLog: logger,
        plugins: [
          ...[metrics.plugin, httpTracingPlugin, mcp.plugin, auditPlugin, ...recyclePlugins],
          transports.websocket,
          ...auth.routes(authenticate, asOf),
          credentials.routes(authenticate, validator),
        ],
      },
      { https: runtime.secrets.tls },
    );
    closers.push(() => app.close());
    closers.push(await transports.startGrpc(runtime.secrets.tls));

    scheduler.start();
    const publisher = startTickPublisher({
      source: runtime.tickSource ?? tickSourceFor(clock),
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
      close: closers.closeAll,
    };
  } catch (error) {
    await closers.closeAll();
    throw error;
  }
}

function runUnderLease(
  leases: LeaseManager,
  log: EventLog,
  target: ProjectionTarget,
  logger: Logger,
  health: ProjectionHealth,
): LeaseHandle {
  return leases.hold(`projection.${target.name}`, (signal) =>
    runProjection({
      log,
      target,
      signal,
      onError: (error) => logger.warn({ err: error, projection: target.name }, "projection retrying"),
    }).finally(() => health.stopped(target.name)),
  );
}
