import type { z } from "zod";
import { isAdmin, type Principal } from "../../app/access.ts";
import type { CreateSessionInput } from "../../app/session-service.ts";
import { accessDenied, HttpProblem } from "../http/problem.ts";
import type { createSessionBody } from "../http/schemas.ts";
import { principalKey } from "./idempotency-key.ts";

/**
 * Who a new session belongs to and what it may carry, for every transport. Split in two around the
 * transport's own awaits (REST seals credentials in between) so the access decision comes first, and
 * built without an intermediate owner object: create is a benchmarked hot path (docs/performance.md).
 */

export type CreateBody = NonNullable<z.output<typeof createSessionBody>>;
type UserPrincipal = Extract<Principal, { kind: "user" }>;

/**
 * Throws unless the caller may open the session `body` asks for. Returns the caller when it opens its own
 * session, undefined when an admin opens one for `body.user_id`: the admin key, or a caller holding
 * admin:sessions who names another user (DESIGN §6: "or (admin/service) for user_id with given claims");
 * an admin naming no one opens its own session.
 */
export function authorizeCreate(principal: Principal, body: CreateBody): UserPrincipal | undefined {
  if (
    principal.kind === "admin" ||
    (isAdmin(principal) && body.user_id !== undefined && body.user_id !== principal.userId)
  ) {
    if (!body.user_id) throw new HttpProblem(400, "invalid_request", "user_id is required with x-admin-key");
    return undefined;
  }
  if (!principal.permissions.has("sessions:write"))
    throw accessDenied("Creating sessions needs sessions:write");
  if (body.user_id !== undefined && body.user_id !== principal.userId) {
    throw accessDenied("Only an admin may create sessions for another user");
  }
  if (body.roles !== undefined || body.groups !== undefined) {
    throw accessDenied("Only an admin may set roles or groups");
  }
  return principal;
}

/** The service's create input; `self` is what authorizeCreate returned. */
export function createInput(
  principal: Principal,
  self: UserPrincipal | undefined,
  body: CreateBody,
  ipAddress: string | undefined,
  userAgent: string | undefined,
  idempotencyKey: string | undefined,
  sealCredentials: CreateSessionInput["sealCredentials"],
): CreateSessionInput {
  // Locals, then one literal with every property listed, never a spread: V8 (Node 20) adds properties that
  // follow a spread in an object literal through its slow path, building new maps on every call (~9 µs per
  // create); the locals measured a little faster than a ternary per property.
  let userId: string;
  let username: string;
  let roles: string[];
  let groups: string[];
  let idpSessionId: string | undefined;
  let scope: string[];
  if (self === undefined) {
    userId = body.user_id as string;
    username = body.username ?? userId;
    roles = body.roles ?? [];
    groups = body.groups ?? [];
    idpSessionId = undefined;
    scope = [];
  } else {
    userId = self.userId;
    username = self.username;
    roles = self.roles;
    groups = self.groups;
    // Under an IdP token the new session carries its sid, as the sign-in's own session does: a
    // back-channel logout by sid then ends it too.
    idpSessionId = self.idpSessionId;
    // A session a user opens for itself carries the caller's permissions, so a narrowly scoped token
    // cannot mint a broader one.
    scope = [...self.permissions];
  }
  return {
    userId,
    username,
    roles,
    groups,
    idpSessionId,
    kind: body.kind ?? "api",
    scope,
    ttlSeconds: body.ttl_seconds,
    idleTimeoutSeconds: body.idle_timeout_seconds,
    client: body.client,
    ipAddress,
    userAgent,
    metadata: body.metadata ?? {},
    idempotencyKey,
    principal: principalKey(principal),
    sealCredentials,
  };
}
