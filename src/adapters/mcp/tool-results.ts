import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Permission } from "../../app/access.ts";
import { OAuthError } from "../../app/login-service.ts";
import { DependencyUnavailableError } from "../../app/unavailable.ts";
import { DomainError } from "../../domain/errors.ts";

/**
 * Tool outcomes. Success carries structured content (validated against the tool's output schema) plus the
 * same JSON as text for clients that only read text. Failure is a tool error (`isError`) whose text is
 * `{error, code}` with the Puppeteer-MCP seed's codes where the seed has one; messages never carry internals.
 */
export type ToolErrorCode =
  // The seed's codes.
  | "INVALID_CREDENTIALS"
  | "AUTH_FAILED"
  | "INVALID_SESSION_ID"
  | "SESSION_NOT_FOUND"
  | "DELETE_FAILED"
  // Situations the seed does not name.
  | "ACCESS_DENIED"
  | "SESSION_ENDED"
  | "SESSION_LIMIT_REACHED"
  | "INVALID_INPUT"
  | "RENEW_FAILED"
  | "LIST_FAILED"
  | "VALIDATE_FAILED"
  | "RECYCLE_FAILED"
  | "STATS_FAILED"
  | "NOT_AVAILABLE"
  | "BROWSER_UNAVAILABLE"
  | "BROWSER_CONTEXT_FAILED";

/** A failure a tool reports to the caller as-is: its message is safe to show. */
export class ToolFailure extends Error {
  constructor(
    readonly code: ToolErrorCode,
    message: string,
    /** ACCESS_DENIED: the permission the caller lacked (for the security log, never shown). */
    readonly permission?: Permission | undefined,
  ) {
    super(message);
    this.name = "ToolFailure";
  }
}

export function success<T extends Record<string, unknown>>(structured: T): CallToolResult {
  return { content: [{ type: "text", text: JSON.stringify(structured) }], structuredContent: structured };
}

export function failure(code: ToolErrorCode, error: string): CallToolResult {
  return { content: [{ type: "text", text: JSON.stringify({ error, code }) }], isError: true };
}

/**
 * Turns anything a tool threw into a tool error. Domain errors map to their codes; anything else is
 * reported with the tool's fallback code and a generic message (the caller logs the detail).
 */
export function toFailure(
  error: unknown,
  fallback: ToolErrorCode,
  fallbackMessage: string,
): { result: CallToolResult; unexpected: boolean } {
  if (error instanceof ToolFailure) return { result: failure(error.code, error.message), unexpected: false };
  // The login's RFC 6749 errors (e.g. roles that grant no scope) describe the request, not the server.
  if (error instanceof OAuthError)
    return { result: failure("AUTH_FAILED", error.description), unexpected: false };
  if (error instanceof DependencyUnavailableError) {
    return {
      result: failure("NOT_AVAILABLE", `The ${error.dependency} is unavailable; retry shortly`),
      unexpected: false,
    };
  }
  if (error instanceof DomainError) {
    switch (error.code) {
      case "session_not_found":
        return { result: failure("SESSION_NOT_FOUND", "Session not found"), unexpected: false };
      case "session_ended":
        return { result: failure("SESSION_ENDED", error.message), unexpected: false };
      case "invalid_grant":
        return { result: failure("INVALID_CREDENTIALS", "Invalid username or password"), unexpected: false };
      case "session_limit_reached":
        return { result: failure("SESSION_LIMIT_REACHED", error.message), unexpected: false };
      case "invalid_request":
      case "idempotency_key_reused":
        return { result: failure("INVALID_INPUT", error.message), unexpected: false };
      case "session_exists":
      case "concurrency_conflict":
        return { result: failure(fallback, fallbackMessage), unexpected: true };
      default: {
        const unreachable: never = error.code;
        return unreachable;
      }
    }
  }
  return { result: failure(fallback, fallbackMessage), unexpected: true };
}
