import type { Logger } from "pino";
import type { Permission, Principal } from "./access.ts";

/**
 * Authorization refusals as security events (DESIGN §9: NIST 800-53 AC-3 access enforcement, AU-3 audit
 * content). One shape for REST and MCP so an operator's query finds both: who was refused (actor, and for
 * users their session), where (surface and route or tool), what they lacked (the permission). Session ids
 * and user ids are public; tokens, admin keys and request bodies never appear.
 */
export type AccessDeniedFacts = {
  surface: "rest" | "mcp" | "ws" | "grpc";
  /** REST: method and route pattern (`DELETE /v1/sessions/:id`); MCP: `tool <name>`; WS/gRPC: the method. */
  route: string;
  /** The permission the caller lacked, when the refusing check names one. */
  permission: Permission | undefined;
  /** The refusal as the caller was told it. */
  detail: string;
  ip?: string | undefined;
  requestId?: string | undefined;
};

export function logAccessDenied(
  logger: Pick<Logger, "warn"> | undefined,
  principal: Principal | undefined,
  facts: AccessDeniedFacts,
): void {
  logger?.warn(
    {
      component: "authz",
      event: "access_denied",
      nist: ["ac-3", "au-3"],
      actor: principal?.actor,
      via: principal?.via,
      ...(principal?.kind === "user" ? { userId: principal.userId, sessionId: principal.sessionId } : {}),
      ...facts,
    },
    "access denied",
  );
}

/**
 * The permission a refused principal lacked for acting on a session owned by `ownerId` with `permission`:
 * its own session → that permission; someone else's → admin:sessions.
 */
export function missingPermission(principal: Principal, ownerId: string, permission: Permission): Permission {
  return principal.kind === "user" && principal.userId === ownerId ? permission : "admin:sessions";
}
