import type {
  ExpiryCause,
  InvalidationReason,
  RecycleReason,
  SessionCreated,
  SessionExpired,
  SessionInvalidated,
  SessionRecycled,
  SessionRenewed,
  SessionTokensRotated,
  SessionTouched,
} from "../../src/domain/events.ts";
import type {
  CreateSession,
  ExpireSession,
  InvalidateSession,
  RecycleSession,
  RenewSession,
  RotateRefreshToken,
  TouchSession,
} from "../../src/domain/session-commands.ts";

/**
 * Builders for the session tests. Every instant is written as seconds after T0 so a case reads as a
 * timeline ("created at 0, touched at 100, expired at 700").
 */

export const T0 = Date.parse("2025-01-01T00:00:00.000Z");
/** Epoch milliseconds `seconds` after T0. */
export const at = (seconds: number) => T0 + seconds * 1000;
export const iso = (epochMs: number) => new Date(epochMs).toISOString();

export const SESSION_ID = "01943a5e-7c00-7a3b-8c1d-2e3f4a5b6c7d";
export const USER_ID = "user-1";
export const TOKEN_HASH = "token-hash-1";
export const REFRESH_1 = "refresh-hash-1";
export const REFRESH_2 = "refresh-hash-2";
export const REFRESH_3 = "refresh-hash-3";

/** The policy of the standard test session: 1 h TTL, 24 h cap, 10 min idle timeout, 60 s touches. */
export const POLICY = {
  ttlSeconds: 3600,
  maxLifetimeSeconds: 86_400,
  idleTimeoutSeconds: 600,
  touchIntervalSeconds: 60,
} as const;

type CreateOverrides = Partial<CreateSession["data"]>;

export const cmd = {
  create(now = T0, overrides: CreateOverrides = {}): CreateSession {
    return {
      type: "CreateSession",
      now,
      data: {
        sessionId: SESSION_ID,
        userId: USER_ID,
        username: "alice",
        kind: "web",
        roles: ["user"],
        groups: ["staff"],
        scope: ["sessions:read"],
        tokenHash: TOKEN_HASH,
        refreshTokenHash: REFRESH_1,
        ttlSeconds: POLICY.ttlSeconds,
        maxLifetimeSeconds: POLICY.maxLifetimeSeconds,
        idleTimeoutSeconds: POLICY.idleTimeoutSeconds,
        client: "test-client",
        ipAddress: "192.0.2.1",
        userAgent: "vitest",
        binding: { mode: "off" },
        metadata: { purpose: "test" },
        ...overrides,
      },
    };
  },
  renew(now: number, ttlSeconds: number = POLICY.ttlSeconds): RenewSession {
    return { type: "RenewSession", now, data: { ttlSeconds } };
  },
  touch(
    now: number,
    touchIntervalSeconds: number = POLICY.touchIntervalSeconds,
    client: { ipAddress?: string; userAgent?: string } = {},
  ): TouchSession {
    return { type: "TouchSession", now, data: { touchIntervalSeconds, ...client } };
  },
  rotate(now: number, presentedRefreshTokenHash: string, newRefreshTokenHash: string): RotateRefreshToken {
    return { type: "RotateRefreshToken", now, data: { presentedRefreshTokenHash, newRefreshTokenHash } };
  },
  recycle(now: number, reason: RecycleReason = "claims_changed", causeEventId?: string): RecycleSession {
    return { type: "RecycleSession", now, data: { reason, causeEventId } };
  },
  invalidate(now: number, reason: InvalidationReason = "logout"): InvalidateSession {
    return { type: "InvalidateSession", now, data: { reason } };
  },
  expire(now: number, tick?: number): ExpireSession {
    return { type: "ExpireSession", now, data: { tick } };
  },
};

/** What `cmd.create(now, overrides)` records; written out independently of the decider. */
function created(now = T0, overrides: CreateOverrides = {}): SessionCreated {
  const { data } = cmd.create(now, overrides);
  const maxExpiresAt = now + data.maxLifetimeSeconds * 1000;
  return {
    type: "SessionCreated",
    version: 1,
    data: {
      sessionId: data.sessionId,
      userId: data.userId,
      username: data.username,
      kind: data.kind,
      roles: data.roles,
      groups: data.groups,
      scope: data.scope,
      tokenHash: data.tokenHash,
      refreshTokenHash: data.refreshTokenHash,
      createdAt: iso(now),
      expiresAt: iso(Math.min(now + data.ttlSeconds * 1000, maxExpiresAt)),
      maxExpiresAt: iso(maxExpiresAt),
      idleTimeoutSeconds: data.idleTimeoutSeconds,
      client: data.client,
      ipAddress: data.ipAddress,
      userAgent: data.userAgent,
      binding: data.binding,
      metadata: data.metadata,
      idpSessionId: data.idpSessionId,
    },
  };
}

export const evt = {
  created,
  renewed(now: number, previousExpiresAt: number, expiresAt: number): SessionRenewed {
    return {
      type: "SessionRenewed",
      version: 1,
      data: {
        sessionId: SESSION_ID,
        previousExpiresAt: iso(previousExpiresAt),
        expiresAt: iso(expiresAt),
        renewedAt: iso(now),
      },
    };
  },
  touched(now: number, client: { ipAddress?: string; userAgent?: string } = {}): SessionTouched {
    return { type: "SessionTouched", version: 1, data: { sessionId: SESSION_ID, at: iso(now), ...client } };
  },
  rotated(now: number, refreshGeneration: number, previous: string, next: string): SessionTokensRotated {
    return {
      type: "SessionTokensRotated",
      version: 1,
      data: {
        sessionId: SESSION_ID,
        refreshGeneration,
        previousRefreshTokenHash: previous,
        refreshTokenHash: next,
        rotatedAt: iso(now),
      },
    };
  },
  recycled(now: number, reason: RecycleReason = "claims_changed", causeEventId?: string): SessionRecycled {
    return {
      type: "SessionRecycled",
      version: 1,
      data: { sessionId: SESSION_ID, userId: USER_ID, reason, causeEventId, recycledAt: iso(now) },
    };
  },
  invalidated(now: number, reason: InvalidationReason = "logout"): SessionInvalidated {
    return {
      type: "SessionInvalidated",
      version: 1,
      data: { sessionId: SESSION_ID, userId: USER_ID, reason, invalidatedAt: iso(now) },
    };
  },
  expired(now: number, cause: ExpiryCause, deadline: number, tick?: number): SessionExpired {
    return {
      type: "SessionExpired",
      version: 1,
      data: {
        sessionId: SESSION_ID,
        userId: USER_ID,
        cause,
        deadline: iso(deadline),
        expiredAt: iso(now),
        tick,
      },
    };
  },
};
