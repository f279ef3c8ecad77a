import type { SessionRow } from "../app/ports.ts";
import type { RecordedEvent, SessionEvent } from "../domain/events.ts";

/**
 * The list/stats row of one session, folded from its events. Pure; the Postgres projection loads rows,
 * folds a batch through this and writes the results back.
 *
 * Follows the domain's evolve: once a session has ended, later events change nothing but the position.
 * ip_address and user_agent stay as they were at creation (they describe where the session began); only
 * last_activity_at moves on activity.
 */
export function evolveSessionRow(
  row: SessionRow | undefined,
  event: RecordedEvent<SessionEvent>,
): SessionRow | undefined {
  // Idempotence: a row already holds the effect of every event at or below its position.
  if (row && event.position <= row.lastPosition) return row;

  if (event.type === "SessionCreated") {
    // A session id is created once; a second SessionCreated for it is not ours to honour.
    if (row) return { ...row, lastPosition: event.position };
    const d = event.data;
    const createdAt = new Date(d.createdAt);
    return {
      id: d.sessionId,
      userId: d.userId,
      username: d.username,
      kind: d.kind,
      status: "active",
      roles: d.roles,
      groups: d.groups,
      client: d.client ?? null,
      ipAddress: d.ipAddress ?? null,
      userAgent: d.userAgent ?? null,
      createdAt,
      lastActivityAt: createdAt,
      expiresAt: new Date(d.expiresAt),
      idleExpiresAt: idleDeadline(createdAt, d.idleTimeoutSeconds * 1000),
      endedAt: null,
      endReason: null,
      metadata: d.metadata,
      lastPosition: event.position,
    };
  }

  // Nothing to update without the creation (e.g. the row was pruned, or the batch starts mid-stream).
  if (!row) return undefined;
  const next: SessionRow = { ...row, lastPosition: event.position };
  if (row.status !== "active") return next;

  switch (event.type) {
    case "SessionRenewed":
      return { ...withActivity(next, event.data.renewedAt), expiresAt: new Date(event.data.expiresAt) };
    case "SessionTouched":
      return withActivity(next, event.data.at);
    case "SessionTokensRotated":
      return withActivity(next, event.data.rotatedAt);
    case "SessionRecycled":
      return ended(next, "recycled", event.data.reason, event.data.recycledAt);
    case "SessionInvalidated":
      return ended(next, "invalidated", event.data.reason, event.data.invalidatedAt);
    case "SessionExpired":
      return ended(
        next,
        "expired",
        event.data.cause === "idle" ? "expired_idle" : "expired_absolute",
        event.data.expiredAt,
      );
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

/** The idle timeout a row was created with, recovered from its deadline (the row keeps no separate copy). */
export function idleTimeoutMs(row: SessionRow): number {
  return row.idleExpiresAt === null ? 0 : row.idleExpiresAt.getTime() - row.lastActivityAt.getTime();
}

function idleDeadline(lastActivityAt: Date, timeoutMs: number): Date | null {
  return timeoutMs > 0 ? new Date(lastActivityAt.getTime() + timeoutMs) : null;
}

function withActivity(row: SessionRow, atIso: string): SessionRow {
  const at = Date.parse(atIso);
  // Activity never moves backwards: events may carry instants from instances with slightly different clocks.
  if (at <= row.lastActivityAt.getTime()) return row;
  const lastActivityAt = new Date(at);
  return { ...row, lastActivityAt, idleExpiresAt: idleDeadline(lastActivityAt, idleTimeoutMs(row)) };
}

function ended(
  row: SessionRow,
  status: Exclude<SessionRow["status"], "active">,
  endReason: NonNullable<SessionRow["endReason"]>,
  atIso: string,
): SessionRow {
  return { ...row, status, endReason, endedAt: new Date(atIso) };
}
