/**
 * The log's vocabulary. Every event is also the audit record, so each one says who did it, from where,
 * and why a session ended. Shapes are versioned; old versions are upcast in the codec, never here.
 */

export type ActorKind = "user" | "admin" | "service" | "system" | "idp";
export type Actor = { kind: ActorKind; id: string };
/** The actor a recorded event names: as with RecordedSource below, a newer version's kind reads as text. */
export type RecordedActor = { kind: ActorKind | (string & {}); id: string };
/** Where a command came from: the sources this version writes. */
export type CommandSource = "rest" | "mcp" | "ws" | "grpc" | "scheduler" | "webhook" | "cli" | "jwt";
/**
 * The source a recorded event names. Readers take any short lowercase token, not only this version's
 * CommandSource: during a rolling upgrade a newer version may record a source this one has never heard of
 * (a transport added since), and that must not stop this version's projections; the source is only ever
 * stored and shown as text.
 */
export type RecordedSource = CommandSource | (string & {});

export type EventMetadata = {
  eventId: string;
  commandId: string;
  correlationId: string;
  causationId: string;
  /** ISO-8601 instant, from the Clock port. */
  occurredAt: string;
  actor: RecordedActor;
  source: RecordedSource;
  ip?: string | undefined;
  userAgent?: string | undefined;
};

export type SessionKind = "web" | "api" | "mcp";
export type BindingMode = "off" | "ua" | "ip" | "ip+ua";
export type SessionBinding = { mode: BindingMode; ip?: string | undefined; userAgent?: string | undefined };

/** Why an active session stopped being active. Every ending carries one. */
export type EndReason =
  | "logout"
  | "revoked"
  | "revoked_by_admin"
  | "revoke_all"
  | "refresh_token_reuse"
  | "evicted"
  | "user_disabled"
  | "password_changed"
  | "backchannel_logout"
  | "idp_revoked"
  | "claims_changed"
  | "recycled"
  | "expired_absolute"
  | "expired_idle";

export type InvalidationReason = Exclude<
  EndReason,
  "expired_absolute" | "expired_idle" | "claims_changed" | "recycled"
>;
export type RecycleReason = "claims_changed" | "recycled";
export type ExpiryCause = "absolute" | "idle";

export type Claims = { roles: string[]; groups: string[] };

export type SessionCreatedData = {
  sessionId: string;
  userId: string;
  username: string;
  kind: SessionKind;
  roles: string[];
  groups: string[];
  scope: string[];
  /** base64url sha256 of the token secret; the secret itself is never stored. */
  tokenHash: string;
  refreshTokenHash?: string | undefined;
  createdAt: string;
  expiresAt: string;
  /** createdAt + the absolute maximum lifetime in force when the session was created. */
  maxExpiresAt: string;
  /** 0 means no idle timeout. */
  idleTimeoutSeconds: number;
  client?: string | undefined;
  ipAddress?: string | undefined;
  userAgent?: string | undefined;
  binding: SessionBinding;
  metadata: Record<string, unknown>;
  /** The IdP's own session id (OIDC `sid`), for back-channel logout. */
  idpSessionId?: string | undefined;
  /**
   * Upstream credentials given at login, encrypted under a per-session data key that lives outside the log
   * and is destroyed when the session ends (crypto-shredding, docs/credentials.md).
   */
  credentials?: SealedCredentials | undefined;
};

/** AES-256-GCM ciphertext of a session's upstream credentials (JSON); the session id is its AAD. base64url. */
export type SealedCredentials = { alg: "A256GCM"; iv: string; ciphertext: string; tag: string };

export type SessionRenewedData = {
  sessionId: string;
  previousExpiresAt: string;
  expiresAt: string;
  renewedAt: string;
};

export type SessionTouchedData = {
  sessionId: string;
  at: string;
  ipAddress?: string | undefined;
  userAgent?: string | undefined;
};

export type SessionTokensRotatedData = {
  sessionId: string;
  refreshGeneration: number;
  previousRefreshTokenHash: string;
  refreshTokenHash: string;
  rotatedAt: string;
};

export type SessionRecycledData = {
  sessionId: string;
  userId: string;
  reason: RecycleReason;
  /** eventId of the UserClaimsChanged that caused it, when there was one. */
  causeEventId?: string | undefined;
  recycledAt: string;
};

export type SessionInvalidatedData = {
  sessionId: string;
  userId: string;
  reason: InvalidationReason;
  invalidatedAt: string;
};

export type SessionExpiredData = {
  sessionId: string;
  userId: string;
  cause: ExpiryCause;
  deadline: string;
  expiredAt: string;
  /** The tick (epoch second) that triggered the expiry, when the scheduler did. */
  tick?: number | undefined;
};

export type UserClaimsChangedData = {
  userId: string;
  before: Claims;
  after: Claims;
  changedAt: string;
};

export type UserSessionsRevokedData = {
  userId: string;
  /** Every session of the user created at or before this instant is revoked. */
  revokedBefore: string;
  reason: InvalidationReason;
  exceptSessionId?: string | undefined;
};

type Event<T extends string, D> = { type: T; version: 1; data: D };

export type SessionCreated = Event<"SessionCreated", SessionCreatedData>;
export type SessionRenewed = Event<"SessionRenewed", SessionRenewedData>;
export type SessionTouched = Event<"SessionTouched", SessionTouchedData>;
export type SessionTokensRotated = Event<"SessionTokensRotated", SessionTokensRotatedData>;
export type SessionRecycled = Event<"SessionRecycled", SessionRecycledData>;
export type SessionInvalidated = Event<"SessionInvalidated", SessionInvalidatedData>;
export type SessionExpired = Event<"SessionExpired", SessionExpiredData>;
export type UserClaimsChanged = Event<"UserClaimsChanged", UserClaimsChangedData>;
export type UserSessionsRevoked = Event<"UserSessionsRevoked", UserSessionsRevokedData>;

export type SessionEvent =
  | SessionCreated
  | SessionRenewed
  | SessionTouched
  | SessionTokensRotated
  | SessionRecycled
  | SessionInvalidated
  | SessionExpired;

export type UserEvent = UserClaimsChanged | UserSessionsRevoked;
export type DomainEvent = SessionEvent | UserEvent;
export type DomainEventType = DomainEvent["type"];

export const SESSION_EVENT_TYPES = [
  "SessionCreated",
  "SessionRenewed",
  "SessionTouched",
  "SessionTokensRotated",
  "SessionRecycled",
  "SessionInvalidated",
  "SessionExpired",
] as const satisfies readonly SessionEvent["type"][];

export const USER_EVENT_TYPES = [
  "UserClaimsChanged",
  "UserSessionsRevoked",
] as const satisfies readonly UserEvent["type"][];

/** An event as the log holds it: its payload, its metadata, and where it sits. */
export type RecordedEvent<E extends DomainEvent = DomainEvent> = E & {
  metadata: EventMetadata;
  stream: StreamName;
  /** Global position in the log (the JetStream stream sequence). */
  position: number;
  /** W3C trace context given to the append (carried in the message headers, not the payload). */
  traceparent?: string | undefined;
};

export type StreamName = { category: "session"; id: string } | { category: "user"; id: string };

export function sessionStream(sessionId: string): StreamName {
  return { category: "session", id: sessionId };
}

export function userStream(userId: string): StreamName {
  return { category: "user", id: userId };
}

export function isSessionEvent(event: DomainEvent): event is SessionEvent {
  return (SESSION_EVENT_TYPES as readonly string[]).includes(event.type);
}
