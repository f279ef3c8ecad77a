import type { z } from "zod";
import { can, canActOn, isAdmin, type Principal } from "../../app/access.ts";
import type { CommandContext } from "../../app/command-handler.ts";
import type { ReadModelFreshness, SessionReadModel } from "../../app/ports.ts";
import { missingPermission } from "../../app/security-events.ts";
import type { SessionService } from "../../app/session-service.ts";
import { sessionNotFound } from "../../domain/errors.ts";
import type { Clock } from "../../domain/ports.ts";
import type { ExistingSession } from "../../domain/session-state.ts";
import { accessDenied, HttpProblem } from "../http/problem.ts";
import { type listQuery, viewFromRow, viewFromState } from "../http/schemas.ts";

/**
 * The one implementation of who may act on which session and of the session flows every transport runs
 * (REST's `/v1/sessions` routes, WebSocket JSON-RPC, gRPC). Failures are HttpProblem / DomainError, which
 * each transport maps to its own status. A transport authenticates, decodes, calls and encodes; anything
 * it owns (headers, idempotency, freshness reporting) stays with it.
 */

export type SessionOpsDeps = {
  service: SessionService;
  readModel: SessionReadModel;
  clock: Clock;
};

/**
 * The command metadata of a write, built only once the caller's access has been decided (so a malformed
 * Idempotency-Key never outranks a 403/404). `operation` names the write for REST's idempotent command ids.
 */
export type ContextFor = (operation: string) => CommandContext;

type ListQuery = z.output<typeof listQuery>;

export function createSessionOps(deps: SessionOpsDeps) {
  const { service, readModel, clock } = deps;

  const view = (session: ExistingSession) => viewFromState(session, clock.now());

  /** Reads need the log's current answer. */
  async function readable(principal: Principal, id: string): Promise<ExistingSession> {
    const session = await service.get(id);
    if (!session) throw sessionNotFound(id);
    if (!canActOn(principal, session.userId, "sessions:read")) {
      const missing = missingPermission(principal, session.userId, "sessions:read");
      throw accessDenied("Access denied to this session", missing);
    }
    return session;
  }

  /** A write only needs the (immutable) owner — the command decides the rest on the log. Returns it. */
  async function writableOwner(principal: Principal, id: string): Promise<string> {
    const owner = await service.ownerOf(id);
    if (owner === undefined) throw sessionNotFound(id);
    if (!canActOn(principal, owner, "sessions:write")) {
      throw accessDenied(
        "Access denied to this session",
        missingPermission(principal, owner, "sessions:write"),
      );
    }
    return owner;
  }

  return {
    view,
    /** GET /v1/sessions/{id} is `view(await readable(…))`: no promise layer of its own on that hot path. */
    readable,

    /**
     * A page of the caller's sessions (an admin's: everyone's, or one user's). `freshness` hears how
     * current the read model is before the page is read, so it is known even when the read fails.
     */
    async list(principal: Principal, query: ListQuery, freshness: (f: ReadModelFreshness) => void) {
      if (!can(principal, "sessions:read")) throw accessDenied("Listing sessions needs sessions:read");
      let userId: string | undefined;
      if (isAdmin(principal)) userId = query.user_id;
      else if (principal.kind === "user") {
        if (query.user_id !== undefined && query.user_id !== principal.userId)
          throw accessDenied("Access denied", "admin:sessions");
        userId = principal.userId;
      }
      freshness(await service.readYourWrites());
      const now = clock.now();
      const page = await readModel.listSessions({
        userId,
        status: query.status,
        limit: query.limit,
        cursor: query.cursor,
        now,
      });
      return {
        sessions: page.sessions.map((row) => viewFromRow(row, now)),
        total: page.total,
        next_cursor: page.nextCursor,
      };
    },

    /** Extends a session's expiry; an ended session is 409 `session_ended`. */
    async renew(principal: Principal, id: string, ttlSeconds: number | undefined, contextFor: ContextFor) {
      await writableOwner(principal, id);
      const renewed = await service.renew(id, ttlSeconds, contextFor(`renew:${id}`));
      if (renewed.status !== "active") {
        throw new HttpProblem(409, "session_ended", "Session has ended", {
          session_status: renewed.status,
          end_reason: renewed.endReason,
        });
      }
      return { session: view(renewed) };
    },

    /** Idempotent: an ended session answers with its end reason. The reason says who ended it. */
    async invalidate(principal: Principal, id: string, contextFor: ContextFor) {
      const owner = await writableOwner(principal, id);
      const reason = principal.kind === "user" && principal.userId === owner ? "revoked" : "revoked_by_admin";
      const ended = await service.invalidate(id, reason, contextFor(`invalidate:${id}`));
      const shown = view(ended);
      return { session: shown, end_reason: shown.end_reason ?? "revoked" };
    },

    /** Ends all of the caller's own sessions (`exceptCurrent` keeps the calling one). */
    async revokeAll(principal: Principal, exceptCurrent: boolean, contextFor: ContextFor) {
      if (principal.kind !== "user") {
        throw new HttpProblem(
          400,
          "invalid_request",
          "Use DELETE /v1/users/{id}/sessions to revoke a user's sessions as admin",
        );
      }
      if (!principal.permissions.has("sessions:write")) throw accessDenied("Needs sessions:write");
      const except = exceptCurrent ? principal.sessionId : undefined;
      const count = await service.revokeAll(principal.userId, "revoke_all", except, contextFor("revoke-all"));
      return { count, user_id: principal.userId };
    },

    /** Ends every session of `userId` as an admin (REST's DELETE /v1/users/{id}/sessions). */
    async revokeUser(principal: Principal, userId: string, contextFor: ContextFor) {
      if (!isAdmin(principal)) {
        throw accessDenied("Revoking another user's sessions needs admin:sessions", "admin:sessions");
      }
      const context = contextFor(`revoke-user:${userId}`);
      const count = await service.revokeAll(userId, "revoked_by_admin", undefined, context);
      return { count, user_id: userId };
    },
  };
}

export type SessionOps = ReturnType<typeof createSessionOps>;
