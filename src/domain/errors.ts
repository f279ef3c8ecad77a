/**
 * Typed failures of the domain. Each carries a stable `code` that the edges map to problem+json
 * (REST), RFC 6749 errors (token endpoint) or tool errors (MCP).
 */

export type DomainErrorCode =
  | "session_not_found"
  | "session_exists"
  | "session_ended"
  | "invalid_grant"
  | "invalid_request"
  | "concurrency_conflict"
  | "session_limit_reached"
  /** An Idempotency-Key reused with a different request (the original is not handed out). */
  | "idempotency_key_reused";

export class DomainError extends Error {
  readonly code: DomainErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: DomainErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = "DomainError";
    this.code = code;
    this.details = details;
  }
}

export const sessionNotFound = (sessionId: string) =>
  new DomainError("session_not_found", "Session not found", { sessionId });

export const sessionExists = (sessionId: string) =>
  new DomainError("session_exists", "A session with this id already exists", { sessionId });

export const sessionEnded = (sessionId: string, status: string, endReason: string | undefined) =>
  new DomainError("session_ended", `Session has ended (${endReason ?? status})`, {
    sessionId,
    status,
    endReason,
  });

export const invalidGrant = (message: string) => new DomainError("invalid_grant", message);

export const invalidCommand = (message: string, details: Record<string, unknown> = {}) =>
  new DomainError("invalid_request", message, details);

export const concurrencyConflict = (stream: string, attempts: number) =>
  new DomainError("concurrency_conflict", "Too many concurrent changes to the same stream; retry", {
    stream,
    attempts,
  });
