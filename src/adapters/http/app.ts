import { randomUUID } from "node:crypto";
import Fastify, { type FastifyError, type FastifyInstance, LogController } from "fastify";
import {
  hasZodFastifySchemaValidationErrors,
  isResponseSerializationError,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from "fastify-type-provider-zod";
import type { Logger } from "pino";
import { DependencyUnavailableError } from "../../app/unavailable.ts";
import { DomainError } from "../../domain/errors.ts";
import { logRefusal } from "./access-denied-log.ts";
import { requestLogView } from "./log-serializers.ts";
import { registerNotFound } from "./not-found.ts";
import { DOMAIN_STATUS, HttpProblem, sendProblem } from "./problem.ts";
import { rawRoutesServerFactory } from "./raw-routes.ts";
import { addStaticHeaders } from "./request-lifecycle.ts";
import { type HealthDeps, registerHealthRoutes } from "./routes/health.ts";
import { registerSessionRoutes, type SessionRouteDeps } from "./routes/sessions.ts";

export type HttpAppDeps = SessionRouteDeps &
  HealthDeps & {
    bodyLimitBytes: number;
    logLevel: string;
    /** Extra route plugins (token endpoint, MCP, hooks…) registered by the composition root. */
    plugins?: Array<(app: FastifyInstance) => Promise<void> | void>;
    /** Plugins that must see every route as it is added (OpenAPI, per-route limits), run before the routes. */
    beforeRoutes?: Array<(app: FastifyInstance) => Promise<void> | void>;
    /** Where authorization refusals go as security events (default: the request's logger). */
    securityLog?: Logger | undefined;
  };

export type HttpApp = FastifyInstance;

const MAX_PATH_PARAM_CHARACTERS = 256 * 9;

/**
 * The REST edge: zod schemas on requests and responses, one error handler that turns every failure into
 * problem+json with a stable code, and nothing that knows about NATS or Postgres.
 */
export async function buildHttpApp(
  deps: HttpAppDeps,
  options: { https?: { key: Buffer; cert: Buffer; ca?: Buffer } | undefined } = {},
) {
  // POST /v1/sessions/validate is mostly answered before Fastify (fast-validate.ts).
  const rawRoutes = rawRoutesServerFactory(options.https);
  const app = Fastify({
    serverFactory: rawRoutes.serverFactory,
    logger: {
      level: deps.logLevel,
      // Tokens travel in headers and bodies; neither is ever logged.
      redact: ["req.headers.authorization", "req.headers['x-admin-key']", "req.headers['mcp-session-id']"],
      // URLs may carry one too (a session URL, /mcp/u/tss_…): the request line is logged without it.
      serializers: { req: requestLogView },
    },
    bodyLimit: deps.bodyLimitBytes,
    // Every user id the API accepts (≤ 256 characters) must be addressable in /v1/users/{id}/…, even
    // percent-encoded (up to 9 characters each); the route schemas still bound the decoded value.
    routerOptions: { maxParamLength: MAX_PATH_PARAM_CHARACTERS },
    // A URL the router itself refuses (bad percent-encoding, an over-long id) is a problem document too.
    // The onRequest hook that sets the static headers has not run for these: set the two that matter.
    frameworkErrors: (error, _request, reply) =>
      sendProblem(
        reply.header("cache-control", "no-store").header("x-content-type-options", "nosniff"),
        error.code === "FST_ERR_MAX_PARAM_LENGTH"
          ? new HttpProblem(414, "invalid_request", "A path segment is too long")
          : new HttpProblem(400, "invalid_request", "The request URL is malformed"),
      ),
    genReqId: () => randomUUID(),
    trustProxy: false,
    // Per-request access logs only when debugging: at info they cost more than validation itself.
    logController: new LogController({
      disableRequestLogging: deps.logLevel !== "debug" && deps.logLevel !== "trace",
    }),
    ...(options.https ? { https: options.https } : {}),
  }).withTypeProvider<ZodTypeProvider>();

  rawRoutes.attach(app);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // Bodies are JSON. Forms are accepted only by the routes that document them (acceptFormBodies), and
  // Fastify's default text/plain parser would hand a string to JSON schemas (a 400 instead of a 415).
  app.removeContentTypeParser("text/plain");

  // Set as each request arrives (one shared synchronous hook, see request-lifecycle.ts): a route that
  // sets its own cache-control replaces the default.
  addStaticHeaders(app, { "cache-control": "no-store", "x-content-type-options": "nosniff" });

  registerNotFound(app);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const problem = toProblem(error);
    // An outage is logged (it says when it began and ended) but is no bug of ours.
    if (problem.code === "service_unavailable") request.log.warn({ err: error }, "dependency unavailable");
    else if (problem.status >= 500) request.log.error({ err: error }, "request failed");
    else if (problem.status === 403) logRefusal(deps.securityLog, request, problem);
    return sendProblem(reply, problem);
  });

  for (const plugin of deps.beforeRoutes ?? []) await plugin(app);
  registerHealthRoutes(app, deps);
  registerSessionRoutes(app, deps);
  for (const plugin of deps.plugins ?? []) await plugin(app);
  return app;
}

function toProblem(error: FastifyError): HttpProblem {
  if (error instanceof HttpProblem) return error;
  if (error instanceof DomainError) {
    return new HttpProblem(DOMAIN_STATUS[error.code], error.code, error.message, publicDetails(error));
  }
  if (error instanceof DependencyUnavailableError) {
    // The detail names the dependency and nothing of the driver's message (which may name hosts).
    return new HttpProblem(
      503,
      "service_unavailable",
      `The ${error.dependency} is unavailable; retry shortly`,
      {},
      { "retry-after": "1" },
    );
  }
  if (hasZodFastifySchemaValidationErrors(error)) {
    return new HttpProblem(400, "invalid_request", `Invalid ${error.validationContext ?? "request"}`, {
      errors: error.validation.map((issue) => ({
        path: issue.instancePath || "/",
        message: issue.message ?? "invalid",
      })),
    });
  }
  if (isResponseSerializationError(error)) return internal();
  switch (error.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new HttpProblem(400, "malformed_json", "Request body is not valid JSON");
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new HttpProblem(413, "payload_too_large", "Request body is too large");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new HttpProblem(415, "unsupported_media_type", "Send application/json");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new HttpProblem(400, "invalid_request", "Content-Length does not match the body");
    default:
      break;
  }
  if (error.statusCode === 429) return new HttpProblem(429, "rate_limited", "Too many requests");
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
    return new HttpProblem(error.statusCode, "invalid_request", "The request could not be processed");
  }
  return internal();
}

const internal = () => new HttpProblem(500, "internal_error", "Something went wrong on our side");

function publicDetails(error: DomainError): Record<string, unknown> {
  const { status, endReason } = error.details as { status?: unknown; endReason?: unknown };
  // `session_status`, not `status`: that member of a problem document is the HTTP status code.
  return error.code === "session_ended" ? { session_status: status, end_reason: endReason } : {};
}
