import type { NatsConnection } from "@nats-io/transport-node";
import type { FastifyInstance } from "fastify";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Authenticate, BearerAuthenticator } from "./adapters/http/authenticate.ts";
import { createJwtBearerAuthenticator } from "./adapters/http/jwt-bearer.ts";
import { openApiPlugin, securityHeadersPlugin } from "./adapters/http/openapi.ts";
import { rateLimitPlugin } from "./adapters/http/rate-limit.ts";
import { authRoutesPlugin } from "./adapters/http/routes/auth.ts";
import { userSessionRoutesPlugin } from "./adapters/http/routes/user-sessions.ts";
import { createInMemoryRateLimitCounter } from "./adapters/memory/rate-limit-counter.ts";
import { createInMemorySessionSlotStore } from "./adapters/memory/session-slots.ts";
import { createKvRateLimitCounter } from "./adapters/nats-kv/rate-limit-counter.ts";
import { createKvSessionSlotStore } from "./adapters/nats-kv/session-slots.ts";
import {
  createPostgresUserDirectory,
  DEMO_USERS,
  seedDemoUsers,
} from "./adapters/postgres/user-directory.ts";
import type { AsOfQuery } from "./app/as-of-query.ts";
import { type AccessTokens, createAccessTokens } from "./app/jwt.ts";
import type { SigningKey, VerificationKey } from "./app/jwt-keys.ts";
import { createLoginService, type LoginService } from "./app/login-service.ts";
import type { SessionPolicy } from "./app/policy.ts";
import type { SessionReadModel, UserDirectory, ValidationReplica } from "./app/ports.ts";
import type { RateLimitCounter } from "./app/rate-limit-counter.ts";
import { createSessionLimiter, type SessionLimiter } from "./app/session-limit.ts";
import type { SessionService } from "./app/session-service.ts";
import type { Validator } from "./app/validator.ts";
import type { Config } from "./config.ts";
import type { Clock, IdGenerator, SecretGenerator } from "./domain/ports.ts";

/**
 * The login side of the composition root (issue 3): user directory, signing key, access tokens, the
 * login service, the JWT authenticator and the HTTP plugins. src/wiring/application.ts calls these; nothing
 * here opens a connection of its own.
 */

type Plugin = (app: FastifyInstance) => Promise<void> | void;

export type Auth = {
  directory: UserDirectory;
  accessTokens: AccessTokens;
  login: LoginService;
  /** For createAuthenticate's bearerAuthenticators: Tessera's own access JWTs. */
  bearer: BearerAuthenticator;
  /** For buildHttpApp's beforeRoutes: OpenAPI, security headers, rate limits. */
  beforeRoutes: Plugin[];
  /** Route plugins (token endpoint, logout, JWKS, admin user sessions; `asOf` answers `?as_of=`). */
  routes(authenticate: Authenticate, asOf?: AsOfQuery): Plugin[];
};

/** The concurrent-session limit, or undefined when TESSERA_MAX_SESSIONS_PER_USER is 0. */
export async function createSessionLimiterFor(deps: {
  policy: SessionPolicy;
  nc: NatsConnection | undefined;
  prefix: string;
  replicas: number;
  replica: ValidationReplica;
  readModel: SessionReadModel;
  clock: Clock;
}): Promise<SessionLimiter | undefined> {
  if (deps.policy.maxSessionsPerUser <= 0) return undefined;
  const store = deps.nc
    ? await createKvSessionSlotStore({ nc: deps.nc, prefix: deps.prefix, replicas: deps.replicas })
    : createInMemorySessionSlotStore();
  return createSessionLimiter({
    store,
    replica: deps.replica,
    clock: deps.clock,
    max: deps.policy.maxSessionsPerUser,
    policy: deps.policy.limitPolicy,
    seed: (userId) => deps.readModel.activeSessionIds(userId),
  });
}

/**
 * The token endpoint's attempt counter: shared by every instance through NATS KV when there is a NATS
 * (a limit must not multiply with the number of instances), in memory otherwise. No bucket is made
 * while both token limits are off.
 */
export async function createRateLimitCounterFor(deps: {
  config: Config;
  nc: NatsConnection | undefined;
  clock: Clock;
}): Promise<RateLimitCounter> {
  const { rateLimit } = deps.config.auth;
  const { windowSeconds } = rateLimit;
  const used = rateLimit.tokenPerIp > 0 || rateLimit.tokenPerUsername > 0;
  return deps.nc && used
    ? await createKvRateLimitCounter({
        nc: deps.nc,
        prefix: deps.config.prefix,
        replicas: deps.config.natsReplicas,
        windowSeconds,
        clock: deps.clock,
      })
    : createInMemoryRateLimitCounter({ windowSeconds, clock: deps.clock });
}

export async function createAuth<DB>(deps: {
  config: Config;
  /** The NATS connection in distributed mode (rate limits shared by every instance); none when embedded. */
  nc: NatsConnection | undefined;
  db: Kysely<DB>;
  service: SessionService;
  validator: Validator;
  readModel: SessionReadModel;
  clock: Clock;
  ids: IdGenerator;
  secrets: SecretGenerator;
  logger: Logger;
  /** Loaded and checked at start-up, before any infrastructure (src/wiring/startup-secrets.ts). */
  keys: { signingKey: SigningKey; verifyKeys: VerificationKey[] };
}): Promise<Auth> {
  const { config, clock, ids, logger } = deps;
  const directory = createPostgresUserDirectory({ db: deps.db, ids, clock });
  if (config.mode === "embedded") {
    await seedDemoUsers(directory);
    logger.warn(
      { users: DEMO_USERS.map((user) => `${user.username} (${user.roles.join("+")})`) },
      "EMBEDDED MODE: demo users seeded with the passwords in docs/auth.md; never use them for anything real",
    );
  }

  const { signingKey: key, verifyKeys } = deps.keys;
  if (verifyKeys.length > 0) {
    // Kids are public (they are in the JWKS); saying which are live helps follow a rotation.
    logger.info(
      { signingKid: key.kid, verifyKids: verifyKeys.map((k) => k.kid) },
      "access tokens: verifying with verify-only keys besides the signing key (TESSERA_JWT_VERIFY_KEYS)",
    );
  }
  const accessTokens = createAccessTokens({
    key,
    verifyKeys,
    issuer: config.auth.jwtIssuer,
    audience: config.auth.jwtAudience,
    ttlSeconds: config.accessTokenTtlSeconds,
    clock,
    ids,
  });
  const rateLimitCounter = await createRateLimitCounterFor({ config, nc: deps.nc, clock });
  const login = createLoginService({
    users: directory,
    service: deps.service,
    validator: deps.validator,
    accessTokens,
    secrets: deps.secrets,
    logger,
  });

  return {
    directory,
    accessTokens,
    login,
    bearer: createJwtBearerAuthenticator({ accessTokens, validator: deps.validator }),
    beforeRoutes: [
      openApiPlugin({ version: "1.0.0", tls: config.tls !== undefined }),
      securityHeadersPlugin({ tls: config.tls !== undefined }),
      rateLimitPlugin(config.auth.rateLimit),
    ],
    routes: (authenticate, asOf) => [
      authRoutesPlugin({
        login,
        accessTokens,
        authenticate,
        ids,
        rateLimit: config.auth.rateLimit,
        rateLimitCounter,
      }),
      userSessionRoutesPlugin({
        service: deps.service,
        readModel: deps.readModel,
        authenticate,
        clock,
        ids,
        asOf,
      }),
    ],
  };
}
