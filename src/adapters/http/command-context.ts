import { createHash } from "node:crypto";
import type { FastifyRequest } from "fastify";
import type { Principal } from "../../app/access.ts";
import type { CommandContext } from "../../app/command-handler.ts";
import type { IdGenerator } from "../../domain/ports.ts";
import { requestTraceparent } from "../otel/http-tracing.ts";
import { HttpProblem } from "./problem.ts";

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** The Idempotency-Key header, validated; undefined when absent. */
export function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  const value = request.headers["idempotency-key"];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !IDEMPOTENCY_KEY.test(value)) {
    throw new HttpProblem(400, "invalid_request", "Idempotency-Key must be 1-255 visible ASCII characters");
  }
  return value;
}

export function principalKey(principal: Principal): string {
  return principal.kind === "admin" ? "admin" : `user:${principal.userId}`;
}

/**
 * Turns a request into command metadata. With an Idempotency-Key the command id is derived from the key,
 * the caller and the operation, so a retried request appends nothing new (the log de-duplicates it).
 */
export function commandContext(
  request: FastifyRequest,
  principal: Principal,
  ids: IdGenerator,
  operation: string,
): CommandContext {
  const key = idempotencyKeyOf(request);
  const commandId =
    key === undefined
      ? ids.uuidv7()
      : `idem-${createHash("sha256")
          .update(`${principalKey(principal)}\u0000${operation}\u0000${key}`)
          .digest("base64url")}`;
  const userAgent = request.headers["user-agent"];
  return {
    commandId,
    correlationId: request.id,
    actor: principal.actor,
    source: "rest",
    ip: request.ip,
    userAgent: typeof userAgent === "string" ? userAgent : undefined,
    traceparent: requestTraceparent(request),
  };
}
