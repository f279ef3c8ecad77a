import type {
  InvalidationReason,
  RecycleReason,
  SealedCredentials,
  SessionBinding,
  SessionKind,
} from "./events.ts";

/**
 * Commands carry everything decide needs, including `now` (from the Clock port) and the policy values in
 * force, so decide stays a pure function of (command, state).
 */

export type CreateSession = {
  type: "CreateSession";
  now: number;
  data: {
    sessionId: string;
    userId: string;
    username: string;
    kind: SessionKind;
    roles: string[];
    groups: string[];
    scope: string[];
    tokenHash: string;
    refreshTokenHash?: string | undefined;
    ttlSeconds: number;
    maxLifetimeSeconds: number;
    idleTimeoutSeconds: number;
    client?: string | undefined;
    ipAddress?: string | undefined;
    userAgent?: string | undefined;
    binding: SessionBinding;
    metadata: Record<string, unknown>;
    idpSessionId?: string | undefined;
    credentials?: SealedCredentials | undefined;
  };
};

export type RenewSession = { type: "RenewSession"; now: number; data: { ttlSeconds: number } };

export type TouchSession = {
  type: "TouchSession";
  now: number;
  data: { touchIntervalSeconds: number; ipAddress?: string | undefined; userAgent?: string | undefined };
};

export type RotateRefreshToken = {
  type: "RotateRefreshToken";
  now: number;
  data: { presentedRefreshTokenHash: string; newRefreshTokenHash: string };
};

export type RecycleSession = {
  type: "RecycleSession";
  now: number;
  data: { reason: RecycleReason; causeEventId?: string | undefined };
};

export type InvalidateSession = {
  type: "InvalidateSession";
  now: number;
  data: { reason: InvalidationReason };
};

export type ExpireSession = { type: "ExpireSession"; now: number; data: { tick?: number | undefined } };

export type SessionCommand =
  | CreateSession
  | RenewSession
  | TouchSession
  | RotateRefreshToken
  | RecycleSession
  | InvalidateSession
  | ExpireSession;
