import type { FastifyReply } from "fastify";
import type { Permission } from "../../app/access.ts";
import type { CredentialsErrorCode } from "../../app/credential-vault.ts";
import type { DomainErrorCode } from "../../domain/errors.ts";

/**
 * RFC 9457 problem details with a stable machine-readable `code`. Every error response of the REST API is
 * one of these; 5xx bodies never carry internals.
 */
export type ProblemCode =
  | DomainErrorCode
  | CredentialsErrorCode
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
  410: "Gone",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  501: "Not Implemented",
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
  // draft-ietf-httpapi-idempotency-key-header §2.6 (Stripe answers the same).
  idempotency_key_reused: 422,
};

export function sendProblem(reply: FastifyReply, problem: HttpProblem) {
  for (const [name, value] of Object.entries(problem.headers)) reply.header(name, value);
  if (problem.status === 401 && !reply.hasHeader("www-authenticate")) {
    reply.header("www-authenticate", BEARER_CHALLENGE);
  }
  return reply
    .code(problem.status)
    .type("application/problem+json")
    .send({
      // Extensions first: RFC 9457's own members (a numeric `status` above all) must not be overwritten.
      ...problem.extra,
      type: `https://tessera.dev/problems/${problem.code}`,
      title: TITLES[problem.status] ?? "Error",
      status: problem.status,
      code: problem.code,
      detail: problem.detail,
      instance: reply.request.url.split("?")[0],
    });
}

export const unauthorized = (detail = "Authentication required") =>
  new HttpProblem(401, "unauthorized", detail);

/** RFC 6750 §3: the challenge of a 401 that had no credential to refuse. */
export const BEARER_CHALLENGE = 'Bearer realm="tessera"';

/** RFC 6750 §3.1: the challenge for a Bearer token that was presented and refused. */
export const INVALID_TOKEN_CHALLENGE = 'Bearer realm="tessera", error="invalid_token"';

/** A 401 for a presented Bearer token that is not valid (a missing one is `unauthorized`). */
export const invalidToken = (detail: string, extra: Record<string, unknown> = {}) =>
  new HttpProblem(401, "unauthorized", detail, extra, { "www-authenticate": INVALID_TOKEN_CHALLENGE });

/** A 403: carries the permission the caller lacked, for the security log (never sent in the body). */
export class AccessDeniedProblem extends HttpProblem {
  constructor(
    detail: string,
    readonly permission: Permission | undefined,
  ) {
    super(403, "access_denied", detail);
  }
}

export const accessDenied = (detail = "Access denied", permission?: Permission) =>
  new AccessDeniedProblem(detail, permission);
