import type { ExpressionBuilder, Selectable } from "kysely";
import type { SessionRow } from "../../app/ports.ts";
import type { Database, SessionsTable } from "./schema.ts";

/** Mapping between the `sessions` table and SessionRow, and the read model's notion of "live". */

export const SESSION_PROJECTION_NAME = "sessions";

/** The columns of `sessions`, in the order the projection writes them. */
export const SESSION_COLUMNS = [
  "id",
  "user_id",
  "username",
  "kind",
  "status",
  "roles",
  "groups",
  "client",
  "ip_address",
  "user_agent",
  "created_at",
  "last_activity_at",
  "expires_at",
  "idle_timeout_seconds",
  "idle_expires_at",
  "ended_at",
  "end_reason",
  "metadata",
  "last_position",
] as const;

export function rowFromDb(r: Selectable<SessionsTable>): SessionRow {
  return {
    id: r.id,
    userId: r.user_id,
    username: r.username,
    kind: r.kind,
    status: r.status,
    roles: r.roles,
    groups: r.groups,
    client: r.client,
    ipAddress: r.ip_address,
    userAgent: r.user_agent,
    createdAt: r.created_at,
    lastActivityAt: r.last_activity_at,
    expiresAt: r.expires_at,
    idleExpiresAt: r.idle_expires_at,
    endedAt: r.ended_at,
    endReason: r.end_reason,
    metadata: r.metadata,
    lastPosition: Number(r.last_position),
  };
}

/**
 * Active in the read model and not past either deadline at `now`. A row the scheduler has not expired yet
 * is already over for every reader (validation agrees: it checks deadlines itself).
 */
export function isLive(eb: ExpressionBuilder<Database, "sessions">, now: Date) {
  return eb.and([
    eb("status", "=", "active"),
    eb("expires_at", ">", now),
    eb.or([eb("idle_expires_at", "is", null), eb("idle_expires_at", ">", now)]),
  ]);
}

/** Active in the read model but past a deadline at `now`: what the scheduler still has to expire. */
export function isOverdue(eb: ExpressionBuilder<Database, "sessions">, now: Date) {
  return eb.and([
    eb("status", "=", "active"),
    eb.or([eb("expires_at", "<=", now), eb("idle_expires_at", "<=", now)]),
  ]);
}
