import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { canActOn, isAdmin, type Permission } from "../../app/access.ts";
import { logAccessDenied, missingPermission } from "../../app/security-events.ts";
import { isUuid } from "../../domain/tokens.ts";
import { type McpToolDeps, mcpCommandContext, type ToolCaller } from "./tool-deps.ts";
import { success, type ToolErrorCode, ToolFailure, toFailure } from "./tool-results.ts";

export const sessionIdInput = z
  .string()
  .min(1)
  .max(128)
  .describe("The public session id (a UUID, as returned by create-session or list-sessions)");

/** Access rules and error handling shared by every tool, bound to one caller. Same rules as REST. */
export function createToolHelpers(deps: McpToolDeps, caller: ToolCaller) {
  /** Runs a tool body; any failure becomes a coded tool error, and only unexpected ones are logged. */
  async function guarded(
    tool: string,
    fallback: ToolErrorCode,
    fallbackMessage: string,
    body: () => Promise<Record<string, unknown>>,
  ): Promise<CallToolResult> {
    try {
      return success(await body());
    } catch (error) {
      if (error instanceof ToolFailure && error.code === "ACCESS_DENIED") {
        logAccessDenied(deps.logger, caller.principal, {
          surface: "mcp",
          route: `tool ${tool}`,
          permission: error.permission,
          detail: error.message,
          ip: caller.facts.ip,
          requestId: caller.correlationId,
        });
      }
      const { result, unexpected } = toFailure(error, fallback, fallbackMessage);
      if (unexpected) deps.logger.error({ err: error, tool }, "mcp tool failed");
      return result;
    }
  }

  /** The session, if it exists and the caller may act on it with `permission` (REST: 404 / 403). */
  async function loadOwned(sessionId: string, permission: Permission) {
    if (!isUuid(sessionId)) {
      throw new ToolFailure("INVALID_SESSION_ID", "sessionId must be a session id (UUID)");
    }
    const session = await deps.service.get(sessionId);
    if (!session) throw new ToolFailure("SESSION_NOT_FOUND", "Session not found");
    if (!canActOn(caller.principal, session.userId, permission)) {
      throw new ToolFailure(
        "ACCESS_DENIED",
        "Access denied to this session",
        missingPermission(caller.principal, session.userId, permission),
      );
    }
    return session;
  }

  function requirePermission(permission: Permission) {
    const { principal } = caller;
    if (principal.kind === "user" && !principal.permissions.has(permission) && !isAdmin(principal)) {
      throw new ToolFailure("ACCESS_DENIED", `This needs ${permission}`, permission);
    }
  }

  /** The user a per-user tool acts on: the caller, or (admins only) the one named; undefined = everyone. */
  function targetUser(userId: string | undefined, permission: Permission): string | undefined {
    const { principal } = caller;
    if (isAdmin(principal)) return userId;
    if (principal.kind !== "user") throw new ToolFailure("ACCESS_DENIED", "Access denied", "admin:sessions");
    if (userId !== undefined && userId !== principal.userId) {
      throw new ToolFailure(
        "ACCESS_DENIED",
        "Only an admin may act on another user's sessions",
        "admin:sessions",
      );
    }
    requirePermission(permission);
    return principal.userId;
  }

  return {
    guarded,
    loadOwned,
    requirePermission,
    targetUser,
    context: () => mcpCommandContext(caller, deps.ids),
  };
}
