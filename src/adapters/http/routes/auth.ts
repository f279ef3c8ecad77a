import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors, type ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { AccessTokens } from "../../../app/jwt.ts";
import { type LoginContext, type LoginService, OAuthError } from "../../../app/login-service.ts";
import type { RateLimitCounter } from "../../../app/rate-limit-counter.ts";
import { DependencyUnavailableError } from "../../../app/unavailable.ts";
import { DomainError } from "../../../domain/errors.ts";
import type { IdGenerator } from "../../../domain/ports.ts";
import { requestTraceparent } from "../../otel/http-tracing.ts";
import { type Authenticate, requestFacts } from "../authenticate.ts";
import { commandContext } from "../command-context.ts";
import { acceptFormBodies } from "../form-bodies.ts";
import { HttpProblem, unauthorized } from "../problem.ts";
import { type RateLimitSettings, tokenEndpointLimit } from "../rate-limit.ts";
import { storableText } from "../storable-text.ts";

/**
 * The OAuth 2.0 token endpoint (RFC 6749 §3.2, password and refresh_token grants), logout, and the JWKS.
 * The token endpoint speaks RFC 6749 everywhere, errors included (`{error, error_description}`, never
 * problem+json), so it lives in its own Fastify context with its own error handler.
 */

export type AuthRouteDeps = {
  login: LoginService;
  accessTokens: AccessTokens;
  authenticate: Authenticate;
  ids: IdGenerator;
  rateLimit: RateLimitSettings;
  /** Counts the token endpoint's attempts (shared by every instance in distributed mode). */
  rateLimitCounter: RateLimitCounter;
};

const tokenRequest = z
  .object({
    grant_type: z.string().max(64).optional().describe("`password` or `refresh_token`"),
    username: z.string().max(256).optional(),
    password: z.string().max(1024).optional(),
    scope: z
      .string()
      .max(512)
      .optional()
      .describe(
        "space-separated: sessions:read sessions:write admin:sessions (default: all the roles allow)",
      ),
    refresh_token: z.string().max(4096).optional(),
    // Recorded as the session's client, so it must be storable (storable-text.ts).
    client_id: storableText({ min: 1, max: 256 }).optional(),
  })
  .nullish();

const tokenResponse = z.object({
  access_token: z.string(),
  token_type: z.literal("Bearer"),
  expires_in: z.number(),
  refresh_token: z.string(),
  scope: z.string(),
  session_id: z.string(),
});

const oauthError = z.object({ error: z.string(), error_description: z.string() });
/** 429 is both an RFC 6749 error and the problem document the rest of the API answers when limited. */
const rateLimitedError = oauthError.extend({
  type: z.string(),
  title: z.string(),
  status: z.literal(429),
  code: z.literal("rate_limited"),
  detail: z.string(),
  retry_after: z.number(),
});

type OAuthErrorBody = { error: string; error_description: string };

export function authRoutesPlugin(deps: AuthRouteDeps) {
  return async (root: FastifyInstance) => {
    await root.register(async (scoped) => tokenEndpoint(scoped, deps));
    const app = root.withTypeProvider<ZodTypeProvider>();

    app.post(
      "/v1/auth/logout",
      {
        schema: {
          summary: "End the caller's session (the one its Bearer token belongs to)",
          tags: ["auth"],
          response: {
            200: z.object({ session_id: z.string(), status: z.string(), end_reason: z.string().nullable() }),
          },
        },
      },
      async (request) => {
        const principal = await deps.authenticate(request);
        if (!principal) throw unauthorized();
        if (principal.kind !== "user") {
          throw new HttpProblem(
            400,
            "invalid_request",
            "Log out with the session's own token, not the admin key",
          );
        }
        const ended = await deps.login.logout(
          principal,
          commandContext(request, principal, deps.ids, "logout"),
        );
        return {
          session_id: ended.sessionId,
          status: ended.status,
          end_reason: ended.status === "active" ? null : ended.endReason,
        };
      },
    );

    app.get(
      "/.well-known/jwks.json",
      {
        schema: {
          summary: "Public keys that verify access tokens (JWK Set)",
          description:
            "The signing key first, then the verify-only keys of TESSERA_JWT_VERIFY_KEYS (key rotation).",
          tags: ["auth"],
          response: { 200: z.object({ keys: z.array(z.record(z.string(), z.unknown())) }) },
        },
      },
      async (_request, reply) => {
        reply.header("cache-control", "public, max-age=300");
        return deps.accessTokens.jwks();
      },
    );
  };
}

async function tokenEndpoint(scoped: FastifyInstance, deps: AuthRouteDeps) {
  // RFC 6749 §4.3.2 / §6: token requests are form-encoded (JSON is accepted too).
  await acceptFormBodies(scoped);
  scoped.setErrorHandler((error: FastifyError, request, reply) => {
    const { status, body, headers } = oauthFailure(error);
    if (error instanceof DependencyUnavailableError)
      request.log.warn({ err: error }, "dependency unavailable");
    else if (status >= 500) request.log.error({ err: error }, "token endpoint failed");
    for (const [name, value] of Object.entries(headers)) reply.header(name, value);
    return sendOAuth(reply, status, body);
  });
  const limit = tokenEndpointLimit(deps.rateLimitCounter, deps.rateLimit);
  const app = scoped.withTypeProvider<ZodTypeProvider>();

  app.post(
    "/v1/auth/token",
    {
      schema: {
        summary: "OAuth 2.0 token endpoint: password and refresh_token grants (form or JSON)",
        description:
          "A password grant opens a session and returns an access JWT, a refresh token and the session id. " +
          "A refresh_token grant rotates the refresh token; presenting a superseded one ends the session.",
        tags: ["auth"],
        consumes: ["application/x-www-form-urlencoded", "application/json"],
        body: tokenRequest,
        response: {
          200: tokenResponse,
          400: oauthError,
          409: oauthError,
          429: rateLimitedError,
          503: oauthError,
        },
      },
      preHandler: async (request) => limit(request),
    },
    async (request, reply) => {
      reply.header("pragma", "no-cache");
      const body = request.body ?? {};
      const context = loginContext(request, deps.ids);
      switch (body.grant_type) {
        case "password": {
          if (!body.username || !body.password) {
            throw new OAuthError("invalid_request", "username and password are required");
          }
          const facts = requestFacts(request);
          const result = await deps.login.passwordLogin(
            {
              username: body.username,
              password: body.password,
              scope: body.scope,
              ip: facts.ip,
              userAgent: facts.userAgent,
              client: body.client_id,
            },
            context,
          );
          return {
            access_token: result.accessToken,
            token_type: "Bearer" as const,
            expires_in: result.expiresIn,
            refresh_token: result.refreshToken,
            scope: result.scope,
            session_id: result.session.sessionId,
          };
        }
        case "refresh_token": {
          if (!body.refresh_token) throw new OAuthError("invalid_request", "refresh_token is required");
          const result = await deps.login.refresh(body.refresh_token, context, {
            scope: body.scope,
            facts: requestFacts(request),
            ...(body.client_id === undefined ? {} : { client: body.client_id }),
          });
          return {
            access_token: result.accessToken,
            token_type: "Bearer" as const,
            expires_in: result.expiresIn,
            refresh_token: result.refreshToken,
            scope: result.scope,
            session_id: result.session.sessionId,
          };
        }
        case undefined:
        case "":
          throw new OAuthError("invalid_request", "grant_type is required");
        default:
          throw new OAuthError("unsupported_grant_type", "Supported grant types: password, refresh_token");
      }
    },
  );
}

function loginContext(request: FastifyRequest, ids: IdGenerator): LoginContext {
  const facts = requestFacts(request);
  return {
    commandId: ids.uuidv7(),
    correlationId: request.id,
    source: "rest",
    ip: facts.ip,
    userAgent: facts.userAgent,
    traceparent: requestTraceparent(request),
  };
}

function sendOAuth(reply: FastifyReply, status: number, body: OAuthErrorBody & Record<string, unknown>) {
  reply.header("cache-control", "no-store").header("pragma", "no-cache");
  // A 429 is also a problem document (the rest of the API's rate-limit answer), so it says so.
  if (status === 429) reply.type("application/problem+json");
  return reply.code(status).send(body);
}

function oauthFailure(error: unknown): {
  status: number;
  body: OAuthErrorBody & Record<string, unknown>;
  headers: Record<string, string>;
} {
  const fail = (status: number, code: string, description: string, headers: Record<string, string> = {}) => ({
    status,
    body: { error: code, error_description: description },
    headers,
  });
  if (error instanceof OAuthError) return fail(400, error.error, error.description);
  // Password users live in Postgres: while it is away a login is "retry shortly", not a server bug.
  if (error instanceof DependencyUnavailableError) {
    return fail(503, "temporarily_unavailable", `The ${error.dependency} is unavailable; retry shortly`, {
      "retry-after": "1",
    });
  }
  if (error instanceof DomainError) {
    switch (error.code) {
      case "invalid_grant":
        return fail(400, "invalid_grant", error.message);
      case "session_limit_reached":
        return fail(409, "session_limit_reached", error.message);
      case "concurrency_conflict":
        return fail(503, "temporarily_unavailable", "Too many concurrent changes; retry", {
          "retry-after": "1",
        });
      case "invalid_request":
      case "idempotency_key_reused":
      case "session_not_found":
      case "session_exists":
      case "session_ended":
        return fail(400, "invalid_request", error.message);
      default: {
        const unreachable: never = error.code;
        return unreachable;
      }
    }
  }
  if (error instanceof HttpProblem) {
    if (error.status === 429) {
      const retryAfter = error.headers["retry-after"] ?? "1";
      return {
        status: 429,
        body: {
          error: "rate_limited",
          error_description: error.detail,
          type: "https://tessera.dev/problems/rate_limited",
          title: "Too Many Requests",
          status: 429,
          code: "rate_limited",
          detail: error.detail,
          retry_after: Number(retryAfter),
        },
        headers: { "retry-after": retryAfter },
      };
    }
    if (error.status < 500) return fail(error.status, "invalid_request", error.detail, error.headers);
  }
  if (hasZodFastifySchemaValidationErrors(error)) {
    return fail(
      400,
      "invalid_request",
      `Invalid request: ${error.validation.map((i) => i.message).join("; ")}`,
    );
  }
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.code === "FST_ERR_CTP_BODY_TOO_LARGE")
    return fail(413, "invalid_request", "Request body is too large");
  if (fastifyError.code?.startsWith("FST_ERR_CTP_")) {
    return fail(400, "invalid_request", "Send application/x-www-form-urlencoded or JSON");
  }
  if (
    fastifyError.statusCode !== undefined &&
    fastifyError.statusCode >= 400 &&
    fastifyError.statusCode < 500
  ) {
    return fail(fastifyError.statusCode, "invalid_request", "The request could not be processed");
  }
  return fail(500, "server_error", "Something went wrong on our side");
}
