import { randomUUID } from "node:crypto";
import formbody from "@fastify/formbody";
import Fastify, { type FastifyError, type FastifyInstance, LogController } from "fastify";
import {
  hasZodFastifySchemaValidationErrors,
  isResponseSerializationError,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from "fastify-type-provider-zod";
import { DomainError } from "../../domain/errors.ts";
import { DOMAIN_STATUS, HttpProblem, sendProblem } from "./problem.ts";
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
  };

export type HttpApp = FastifyInstance;

/**
 * The REST edge: zod schemas on requests and responses, one error handler that turns every failure into
 * problem+json with a stable code, and nothing that knows about NATS or Postgres.
 */
export async function buildHttpApp(
  deps: HttpAppDeps,
  options: { https?: { key: Buffer; cert: Buffer; ca?: Buffer } | undefined } = {},
) {
  const app = Fastify({
    logger: {
      level: deps.logLevel,
      // Tokens travel in headers and bodies; neither is ever logged.
      redact: ["req.headers.authorization", "req.headers['x-admin-key']", "req.headers['mcp-session-id']"],
    },
    bodyLimit: deps.bodyLimitBytes,
    genReqId: () => randomUUID(),
    trustProxy: false,
    // Per-request access logs only when debugging: at info they cost more than validation itself.
    logController: new LogController({
      disableRequestLogging: deps.logLevel !== "debug" && deps.logLevel !== "trace",
    }),
    ...(options.https ? { https: options.https } : {}),
  }).withTypeProvider<ZodTypeProvider>();

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await app.register(formbody, { bodyLimit: deps.bodyLimitBytes });

  // Set as each request arrives (one shared synchronous hook, see request-lifecycle.ts): a route that
  // sets its own cache-control replaces the default.
  addStaticHeaders(app, { "cache-control": "no-store", "x-content-type-options": "nosniff" });

  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      reply,
      new HttpProblem(404, "not_found", `No route for ${request.method} ${request.url.split("?")[0]}`),
    ),
  );

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const problem = toProblem(error);
    if (problem.status >= 500) request.log.error({ err: error }, "request failed");
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
  return error.code === "session_ended" ? { status, end_reason: endReason } : {};
}
