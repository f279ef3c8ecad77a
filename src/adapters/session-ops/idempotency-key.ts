import { createHash } from "node:crypto";
import type { Principal } from "../../app/access.ts";
import { HttpProblem } from "../http/problem.ts";

/**
 * A client's retry-safe request id, for every transport: REST's `Idempotency-Key` header, WebSocket's
 * `idempotency_key` param, gRPC's `idempotency-key` metadata. One rule for the key and one derivation of
 * the command id, so a key means the same thing whichever transport carries it: a create retried over
 * another transport (or another instance) finds the original, and two callers never share a key.
 */

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** The operation name create's keys are scoped to (REST's since the header existed: keep it). */
export const CREATE_OPERATION = "create-session";

/** The key as given, or REST's 400 naming where it came from (`what`). Undefined stays undefined. */
export function checkedIdempotencyKey(value: unknown, what: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !IDEMPOTENCY_KEY.test(value)) {
    throw new HttpProblem(400, "invalid_request", `${what} must be 1-255 visible ASCII characters`);
  }
  return value;
}

/** Whom keys (and the secrets derived from them) belong to: a user, or the admin key. */
export function principalKey(principal: Principal): string {
  return principal.kind === "admin" ? "admin" : `user:${principal.userId}`;
}

/**
 * The command id of a keyed write: scoped to the caller (the user a token speaks for, or the admin key)
 * and the operation, so the log's de-duplication turns a retry into a no-op and one user's key cannot
 * reach another's command.
 */
export function idempotentCommandId(principal: Principal, operation: string, key: string): string {
  return `idem-${createHash("sha256")
    .update(`${principalKey(principal)}\u0000${operation}\u0000${key}`)
    .digest("base64url")}`;
}
