import type { FastifyRequest } from "fastify";
import type { Principal } from "../../app/access.ts";
import type { CommandContext } from "../../app/command-handler.ts";
import type { IdGenerator } from "../../domain/ports.ts";
import { requestTraceparent } from "../otel/http-tracing.ts";
import { checkedIdempotencyKey, idempotentCommandId } from "../session-ops/idempotency-key.ts";

/** The Idempotency-Key header, validated; undefined when absent. */
export function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  return checkedIdempotencyKey(request.headers["idempotency-key"], "Idempotency-Key");
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
  const commandId = key === undefined ? ids.uuidv7() : idempotentCommandId(principal, operation, key);
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
