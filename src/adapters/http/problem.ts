import type { FastifyReply } from "fastify";
import type { DomainErrorCode } from "../../domain/errors.ts";

/**
 * RFC 9457 problem details with a stable machine-readable `code`. Every error response of the REST API is
 * one of these; 5xx bodies never carry internals.
 */
export type ProblemCode =
  | DomainErrorCode
  | "unauthorized"
  | "access_denied"
  | "malformed_json"
  | "unsupported_media_type"
  | "payload_too_large"
  | "rate_limited"
  | "not_found"
  | "method_not_allowed"
  | "service_unavailable"
  | "internal_error";

export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: ProblemCode,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = "HttpProblem";
  }
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export const DOMAIN_STATUS: Record<DomainErrorCode, number> = {
  session_not_found: 404,
  session_exists: 409,
  session_ended: 409,
  invalid_grant: 400,
  invalid_request: 400,
  concurrency_conflict: 409,
  session_limit_reached: 409,
};

export function sendProblem(reply: FastifyReply, problem: HttpProblem) {
  for (const [name, value] of Object.entries(problem.headers)) reply.header(name, value);
  if (problem.status === 401 && !reply.hasHeader("www-authenticate")) {
    reply.header("www-authenticate", 'Bearer realm="tessera"');
  }
  return reply
    .code(problem.status)
    .type("application/problem+json")
    .send({
      type: `https://tessera.dev/problems/${problem.code}`,
      title: TITLES[problem.status] ?? "Error",
      status: problem.status,
      code: problem.code,
      detail: problem.detail,
      instance: reply.request.url.split("?")[0],
      ...problem.extra,
    });
}

export const unauthorized = (detail = "Authentication required") =>
  new HttpProblem(401, "unauthorized", detail);
export const accessDenied = (detail = "Access denied") => new HttpProblem(403, "access_denied", detail);
