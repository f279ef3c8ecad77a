import {
  type DomainEvent,
  type DomainEventType,
  isSessionEvent,
  type RecordedActor,
  type RecordedEvent,
  type RecordedSource,
} from "../domain/events.ts";

/**
 * One audit row per event: who did what to which session of which user, when, from where and why.
 * Pure; the Postgres projection maps each batch through this and inserts the rows.
 *
 * Token hashes are left out of `data`: the log keeps them, but an audit export has no use for them and
 * should not carry credentials' derivatives around.
 */
export type AuditRow = {
  position: number;
  occurredAt: Date;
  type: DomainEventType;
  sessionId: string | null;
  userId: string | null;
  actorKind: RecordedActor["kind"];
  actorId: string;
  source: RecordedSource;
  reason: string | null;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
};

// `credentials` is ciphertext whose key is destroyed when the session ends (docs/credentials.md): an audit
// export must not keep a copy around to be read with a key that leaked before then.
const SECRET_DERIVED = new Set(["tokenHash", "refreshTokenHash", "previousRefreshTokenHash", "credentials"]);

/**
 * The session whose owner this event does not name itself (renewals, touches, rotations carry only the
 * session id): the projection looks the owner up from the session's SessionCreated.
 */
export function ownerLookupFor(event: DomainEvent): string | undefined {
  if (!isSessionEvent(event)) return undefined;
  return "userId" in event.data ? undefined : event.data.sessionId;
}

/** `owner` is the session's user when the event does not carry it (see ownerLookupFor). */
export function auditRowOf(event: RecordedEvent, owner: string | undefined): AuditRow {
  const { metadata } = event;
  const ownUser = "userId" in event.data ? event.data.userId : undefined;
  return {
    position: event.position,
    occurredAt: new Date(metadata.occurredAt),
    type: event.type,
    sessionId: isSessionEvent(event) ? event.data.sessionId : null,
    userId: ownUser ?? owner ?? null,
    actorKind: metadata.actor.kind,
    actorId: metadata.actor.id,
    source: metadata.source,
    reason: reasonOf(event),
    data: withoutSecrets(event.data),
    metadata: {
      eventId: metadata.eventId,
      commandId: metadata.commandId,
      correlationId: metadata.correlationId,
      causationId: metadata.causationId,
      ...(metadata.ip === undefined ? {} : { ip: metadata.ip }),
      ...(metadata.userAgent === undefined ? {} : { userAgent: metadata.userAgent }),
      ...(event.traceparent === undefined ? {} : { traceparent: event.traceparent }),
    },
  };
}

/** Why it happened, in the vocabulary of end reasons where there is one. */
export function reasonOf(event: DomainEvent): string | null {
  switch (event.type) {
    case "SessionCreated":
    case "SessionRenewed":
    case "SessionTouched":
    case "SessionTokensRotated":
      return null;
    case "SessionRecycled":
    case "SessionInvalidated":
    case "UserSessionsRevoked":
      return event.data.reason;
    case "SessionExpired":
      return event.data.cause === "idle" ? "expired_idle" : "expired_absolute";
    case "UserClaimsChanged":
      return "claims_changed";
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

function withoutSecrets(data: object): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    if (!SECRET_DERIVED.has(key) && value !== undefined) copy[key] = value;
  }
  return copy;
}
