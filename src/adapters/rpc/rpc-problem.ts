import type { Logger } from "pino";
import { z } from "zod";
import type { Permission } from "../../app/access.ts";
import { logAccessDenied } from "../../app/security-events.ts";
import { DependencyUnavailableError } from "../../app/unavailable.ts";
import { DomainError } from "../../domain/errors.ts";
import { AccessDeniedProblem, DOMAIN_STATUS, HttpProblem } from "../http/problem.ts";
import type { RpcCaller } from "./session-operations.ts";

/**
 * Any failure of a session operation as the problem REST would answer (status, stable code, detail,
 * extensions), so every transport reports the same thing: WebSocket puts it in a JSON-RPC error's `data`,
 * gRPC maps its status to a gRPC code. 5xx problems never carry internals.
 */
export function toRpcProblem(error: unknown): HttpProblem {
  if (error instanceof HttpProblem) return error;
  if (error instanceof DomainError) {
    const { status, endReason } = error.details as { status?: unknown; endReason?: unknown };
    const extra = error.code === "session_ended" ? { session_status: status, end_reason: endReason } : {};
    return new HttpProblem(DOMAIN_STATUS[error.code], error.code, error.message, extra);
  }
  if (error instanceof DependencyUnavailableError) {
    return new HttpProblem(
      503,
      "service_unavailable",
      `The ${error.dependency} is unavailable; retry shortly`,
    );
  }
  if (error instanceof z.ZodError) return invalidParams(error);
  return new HttpProblem(500, "internal_error", "Something went wrong on our side");
}

/** REST's 400 for a body that fails its schema, with the same `errors` list (path, message). */
export function invalidParams(error: z.ZodError): HttpProblem {
  return new HttpProblem(400, "invalid_request", "Invalid params", {
    errors: error.issues.map((issue) => ({
      path: issue.path.length === 0 ? "/" : `/${issue.path.join("/")}`,
      message: issue.message,
    })),
  });
}

/** The problem as a plain object (JSON-RPC `data`, gRPC trailer): RFC 9457 members after the extensions. */
export function problemBody(problem: HttpProblem): Record<string, unknown> {
  return { ...problem.extra, status: problem.status, code: problem.code, detail: problem.detail };
}

/**
 * Logs what REST's error handler logs for the same problem: outages as warnings, 5xx with the error,
 * refusals as security events (surface `ws` / `grpc`, the method as route).
 */
export function reportProblem(
  logger: Pick<Logger, "warn" | "error">,
  caller: RpcCaller,
  route: string,
  error: unknown,
  problem: HttpProblem,
): void {
  if (problem.code === "service_unavailable") logger.warn({ err: error, route }, "dependency unavailable");
  else if (problem.status >= 500) logger.error({ err: error, route }, "rpc failed");
  else if (problem.code === "access_denied") {
    const permission: Permission | undefined =
      problem instanceof AccessDeniedProblem ? problem.permission : undefined;
    logAccessDenied(logger, caller.principal, {
      surface: caller.source,
      route,
      permission,
      detail: problem.detail,
      ip: caller.facts.ip,
      requestId: caller.correlationId,
    });
  }
}
