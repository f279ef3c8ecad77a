import { invalidCommand, invalidGrant, sessionEnded, sessionExists, sessionNotFound } from "./errors.ts";
import type { InvalidationReason, SessionEvent, SessionExpired, SessionInvalidated } from "./events.ts";
import type { SessionCommand } from "./session-commands.ts";
import {
  type ActiveSession,
  type DeadlineFacts,
  isEnded,
  overdueCause,
  type SessionState,
} from "./session-state.ts";
import { hashesEqual } from "./tokens.ts";

/**
 * decide(command, state) → the events the command causes (zero or one; the log has no atomic batches).
 *
 * Rules that hold for every command:
 * - On an ended session nothing happens: commands that can be no-ops are no-ops, the rest throw.
 * - A session whose deadline has passed is treated as what it is, expired: a command that would act on it
 *   records `SessionExpired` instead, so the log never says a dead session was renewed or touched.
 */
export function decide(command: SessionCommand, state: SessionState): SessionEvent[] {
  if (command.type === "CreateSession") return decideCreate(command, state);
  if (state.status === "none") {
    // Expiry is driven by the scheduler from possibly stale lists; an unknown id is nothing to do.
    if (command.type === "ExpireSession") return [];
    throw sessionNotFound("unknown");
  }
  if (isEnded(state)) return decideOnEnded(command, state);
  const expired = expiryOf(state, command.now, tickOf(command));
  if (expired !== undefined) return [expired];

  switch (command.type) {
    case "RenewSession": {
      requirePositive(command.data.ttlSeconds, "ttl_seconds");
      const expiresAt = Math.min(command.now + command.data.ttlSeconds * 1000, state.maxExpiresAt);
      // Renewal extends (DESIGN §6): a ttl shorter than what is left, e.g. the default filled in by an
      // edge, must not cut a longer session short.
      if (expiresAt <= state.expiresAt) return [];
      return [
        {
          type: "SessionRenewed",
          version: 1,
          data: {
            sessionId: state.sessionId,
            previousExpiresAt: iso(state.expiresAt),
            expiresAt: iso(expiresAt),
            renewedAt: iso(command.now),
          },
        },
      ];
    }
    case "TouchSession": {
      const interval = effectiveTouchIntervalMs(command.data.touchIntervalSeconds, state.idleTimeoutSeconds);
      if (command.now - state.lastActivityAt < interval) return [];
      return [
        {
          type: "SessionTouched",
          version: 1,
          data: {
            sessionId: state.sessionId,
            at: iso(command.now),
            ipAddress: command.data.ipAddress,
            userAgent: command.data.userAgent,
          },
        },
      ];
    }
    case "RotateRefreshToken":
      return decideRotate(command.data, command.now, state);
    case "RecycleSession":
      return [
        {
          type: "SessionRecycled",
          version: 1,
          data: {
            sessionId: state.sessionId,
            userId: state.userId,
            reason: command.data.reason,
            causeEventId: command.data.causeEventId,
            recycledAt: iso(command.now),
          },
        },
      ];
    case "InvalidateSession":
      return [invalidationOf(state, command.data.reason, command.now)];
    case "ExpireSession":
      // Not overdue (checked above): the session was renewed or touched since the scheduler looked.
      return [];
    default: {
      const unreachable: never = command;
      return unreachable;
    }
  }
}

/**
 * Touches are coalesced to one per interval. When the idle timeout is shorter than twice the interval,
 * touching only once per interval would let an active session idle out, so the interval shrinks to half
 * the idle timeout.
 */
export function effectiveTouchIntervalMs(touchIntervalSeconds: number, idleTimeoutSeconds: number): number {
  const interval = touchIntervalSeconds * 1000;
  if (idleTimeoutSeconds <= 0) return interval;
  return Math.min(interval, (idleTimeoutSeconds * 1000) / 2);
}

function decideCreate(command: Extract<SessionCommand, { type: "CreateSession" }>, state: SessionState) {
  if (state.status !== "none") throw sessionExists(state.sessionId);
  const d = command.data;
  requirePositive(d.ttlSeconds, "ttl_seconds");
  requirePositive(d.maxLifetimeSeconds, "max_lifetime_seconds");
  if (!(d.idleTimeoutSeconds >= 0)) throw invalidCommand("idle_timeout_seconds must not be negative");
  const maxExpiresAt = command.now + d.maxLifetimeSeconds * 1000;
  const expiresAt = Math.min(command.now + d.ttlSeconds * 1000, maxExpiresAt);
  const event: SessionEvent = {
    type: "SessionCreated",
    version: 1,
    data: {
      sessionId: d.sessionId,
      userId: d.userId,
      username: d.username,
      kind: d.kind,
      roles: d.roles,
      groups: d.groups,
      scope: d.scope,
      tokenHash: d.tokenHash,
      refreshTokenHash: d.refreshTokenHash,
      createdAt: iso(command.now),
      expiresAt: iso(expiresAt),
      maxExpiresAt: iso(maxExpiresAt),
      idleTimeoutSeconds: d.idleTimeoutSeconds,
      client: d.client,
      ipAddress: d.ipAddress,
      userAgent: d.userAgent,
      binding: d.binding,
      metadata: d.metadata,
      idpSessionId: d.idpSessionId,
      credentials: d.credentials,
    },
  };
  return [event];
}

function decideOnEnded(command: SessionCommand, state: Exclude<SessionState, { status: "none" | "active" }>) {
  switch (command.type) {
    case "TouchSession":
    case "RecycleSession":
    case "InvalidateSession":
    case "ExpireSession":
      return [];
    case "RotateRefreshToken":
      throw invalidGrant("The session has ended");
    case "RenewSession":
    case "CreateSession":
      throw sessionEnded(state.sessionId, state.status, state.endReason);
    default: {
      const unreachable: never = command;
      return unreachable;
    }
  }
}

function decideRotate(
  data: { presentedRefreshTokenHash: string; newRefreshTokenHash: string },
  now: number,
  state: ActiveSession,
): SessionEvent[] {
  const current = state.refreshTokenHash;
  if (current !== undefined && hashesEqual(current, data.presentedRefreshTokenHash)) {
    return [
      {
        type: "SessionTokensRotated",
        version: 1,
        data: {
          sessionId: state.sessionId,
          refreshGeneration: state.refreshGeneration + 1,
          previousRefreshTokenHash: current,
          refreshTokenHash: data.newRefreshTokenHash,
          rotatedAt: iso(now),
        },
      },
    ];
  }
  const reused = state.supersededRefreshHashes.some((hash) =>
    hashesEqual(hash, data.presentedRefreshTokenHash),
  );
  if (reused) {
    return [
      {
        type: "SessionInvalidated",
        version: 1,
        data: {
          sessionId: state.sessionId,
          userId: state.userId,
          reason: "refresh_token_reuse",
          invalidatedAt: iso(now),
        },
      },
    ];
  }
  // Neither current nor superseded: a guess. Ending the session here would let anyone who knows a
  // (public) session id log its owner out, so nothing is recorded.
  throw invalidGrant("Unknown refresh token");
}

/**
 * The SessionExpired an active session records at `now`, or undefined while neither deadline has passed.
 * Takes only the facts it needs, so an expiry can also be decided on a projection of the session that
 * carries them (appended with that projection's position as the expected version).
 */
export function expiryOf(
  facts: DeadlineFacts & Pick<ActiveSession, "sessionId" | "userId">,
  now: number,
  tick: number | undefined,
): SessionExpired | undefined {
  const cause = overdueCause(facts, now);
  if (cause === undefined) return undefined;
  const deadline =
    cause === "absolute" ? facts.expiresAt : facts.lastActivityAt + facts.idleTimeoutSeconds * 1000;
  return {
    type: "SessionExpired",
    version: 1,
    data: {
      sessionId: facts.sessionId,
      userId: facts.userId,
      cause,
      deadline: iso(deadline),
      expiredAt: iso(now),
      tick,
    },
  };
}

/** What InvalidateSession depends on: a validation entry holds it, as of its log position. */
export type InvalidationFacts = DeadlineFacts &
  Pick<ActiveSession, "sessionId" | "userId"> & { status: SessionState["status"] };

/**
 * InvalidateSession decided on those facts alone (e.g. the validation entry of the stream's current
 * version, without reading the stream): exactly the event decide() records for a live session that is not
 * overdue. Undefined where decide() has more to say: an ended session is a no-op answered from the whole
 * state, an overdue one records SessionExpired instead.
 */
export function invalidationOn(
  facts: InvalidationFacts,
  reason: InvalidationReason,
  now: number,
): SessionInvalidated | undefined {
  if (facts.status !== "active" || overdueCause(facts, now) !== undefined) return undefined;
  return invalidationOf(facts, reason, now);
}

function invalidationOf(
  session: Pick<ActiveSession, "sessionId" | "userId">,
  reason: InvalidationReason,
  now: number,
): SessionInvalidated {
  return {
    type: "SessionInvalidated",
    version: 1,
    data: { sessionId: session.sessionId, userId: session.userId, reason, invalidatedAt: iso(now) },
  };
}

function tickOf(command: SessionCommand): number | undefined {
  return command.type === "ExpireSession" ? command.data.tick : undefined;
}

function requirePositive(value: number, name: string) {
  if (!Number.isFinite(value) || value <= 0) throw invalidCommand(`${name} must be a positive number`);
}

const iso = (epochMs: number) => new Date(epochMs).toISOString();
