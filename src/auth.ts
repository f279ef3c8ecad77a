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
import { createInMemorySessionSlotStore } from "./adapters/memory/session-slots.ts";
import { createKvSessionSlotStore } from "./adapters/nats-kv/session-slots.ts";
import {
  createPostgresUserDirectory,
  DEMO_USERS,
  seedDemoUsers,
} from "./adapters/postgres/user-directory.ts";
import type { AsOfQuery } from "./app/as-of-query.ts";
import { type AccessTokens, createAccessTokens } from "./app/jwt.ts";
import { generateSigningKey, loadSigningKey, loadVerifyKeys } from "./app/jwt-keys.ts";
import { createLoginService, type LoginService } from "./app/login-service.ts";
import type { SessionPolicy } from "./app/policy.ts";
import type { SessionReadModel, UserDirectory, ValidationReplica } from "./app/ports.ts";
import { createSessionLimiter, type SessionLimiter } from "./app/session-limit.ts";
import type { SessionService } from "./app/session-service.ts";
import type { Validator } from "./app/validator.ts";
import { type Config, ConfigError } from "./config.ts";
import type { Clock, IdGenerator, SecretGenerator } from "./domain/ports.ts";

/**
 * The login side of the composition root (issue 3): user directory, signing key, access tokens, the
 * login service, the JWT authenticator and the HTTP plugins. main.ts calls these; nothing here opens a
 * connection of its own.
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

export async function createAuth<DB>(deps: {
  config: Config;
  db: Kysely<DB>;
  service: SessionService;
  validator: Validator;
  readModel: SessionReadModel;
  clock: Clock;
  ids: IdGenerator;
  secrets: SecretGenerator;
  logger: Logger;
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

  if (config.jwtPrivateKey === undefined && config.mode === "distributed") {
    throw new ConfigError([
      "TESSERA_JWT_PRIVATE_KEY: required when NATS_URL/DATABASE_URL are set (every instance must sign with the same key); generate one with: openssl genpkey -algorithm ed25519",
    ]);
  }
  const key =
    config.jwtPrivateKey === undefined
      ? await generateSigningKey()
      : await loadSigningKey(config.jwtPrivateKey);
  const verifyKeys =
    config.jwtVerifyKeys === undefined ? [] : await loadVerifyKeys(config.jwtVerifyKeys, key);
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
      authRoutesPlugin({ login, accessTokens, authenticate, ids, rateLimit: config.auth.rateLimit }),
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
