import { v7 as uuidv7 } from "uuid";
import type {
  DomainEvent,
  EventMetadata,
  ExpiryCause,
  InvalidationReason,
  RecordedEvent,
  RecycleReason,
  SessionCreatedData,
} from "../../src/domain/events.ts";
import { sessionStream, userStream } from "../../src/domain/events.ts";

/**
 * Hand-built recorded events for the read-model tests. Instants are seconds after T0, a fixed UTC
 * morning, so "today" and deadlines read as a timeline. Positions are handed out in call order.
 */

export const T0 = Date.parse("2030-01-15T08:00:00.000Z");
export const at = (seconds: number) => T0 + seconds * 1000;
export const iso = (epochMs: number) => new Date(epochMs).toISOString();

export function eventLog() {
  let position = 0;

  function record<E extends DomainEvent>(event: E, atMs: number): RecordedEvent<E> {
    const metadata: EventMetadata = {
      eventId: uuidv7(),
      commandId: uuidv7(),
      correlationId: uuidv7(),
      causationId: uuidv7(),
      occurredAt: iso(atMs),
      actor: { kind: "user", id: "tester" },
      source: "rest",
    };
    const stream =
      "sessionId" in event.data ? sessionStream(event.data.sessionId) : userStream(event.data.userId);
    position += 1;
    return { ...event, metadata, stream, position } as RecordedEvent<E>;
  }

  return {
    get position() {
      return position;
    },
    created(
      options: {
        userId?: string;
        atS?: number;
        ttlS?: number;
        idleS?: number;
      } & Partial<SessionCreatedData> = {},
    ) {
      const { userId = "user-a", atS = 0, ttlS = 3600, idleS = 0, ...overrides } = options;
      const created = at(atS);
      return record(
        {
          type: "SessionCreated",
          version: 1,
          data: {
            sessionId: uuidv7(),
            userId,
            username: `${userId}-name`,
            kind: "web",
            roles: ["user"],
            groups: ["staff"],
            scope: ["sessions:read"],
            tokenHash: "hash",
            createdAt: iso(created),
            expiresAt: iso(created + ttlS * 1000),
            maxExpiresAt: iso(created + 86_400_000),
            idleTimeoutSeconds: idleS,
            client: "test-client",
            ipAddress: "192.0.2.1",
            userAgent: "vitest",
            binding: { mode: "off" },
            metadata: { purpose: "test", nested: { n: 1 } },
            ...overrides,
          },
        },
        created,
      );
    },
    renewed(sessionId: string, atS: number, expiresAtS: number) {
      return record(
        {
          type: "SessionRenewed",
          version: 1,
          data: {
            sessionId,
            previousExpiresAt: iso(at(0)),
            expiresAt: iso(at(expiresAtS)),
            renewedAt: iso(at(atS)),
          },
        },
        at(atS),
      );
    },
    touched(sessionId: string, atS: number, extra: { ipAddress?: string; userAgent?: string } = {}) {
      return record(
        { type: "SessionTouched", version: 1, data: { sessionId, at: iso(at(atS)), ...extra } },
        at(atS),
      );
    },
    rotated(sessionId: string, atS: number) {
      return record(
        {
          type: "SessionTokensRotated",
          version: 1,
          data: {
            sessionId,
            refreshGeneration: 1,
            previousRefreshTokenHash: "r1",
            refreshTokenHash: "r2",
            rotatedAt: iso(at(atS)),
          },
        },
        at(atS),
      );
    },
    invalidated(sessionId: string, userId: string, atS: number, reason: InvalidationReason = "logout") {
      return record(
        {
          type: "SessionInvalidated",
          version: 1,
          data: { sessionId, userId, reason, invalidatedAt: iso(at(atS)) },
        },
        at(atS),
      );
    },
    recycled(sessionId: string, userId: string, atS: number, reason: RecycleReason = "claims_changed") {
      return record(
        {
          type: "SessionRecycled",
          version: 1,
          data: { sessionId, userId, reason, recycledAt: iso(at(atS)) },
        },
        at(atS),
      );
    },
    expired(sessionId: string, userId: string, atS: number, cause: ExpiryCause = "absolute") {
      return record(
        {
          type: "SessionExpired",
          version: 1,
          data: { sessionId, userId, cause, deadline: iso(at(atS)), expiredAt: iso(at(atS)) },
        },
        at(atS),
      );
    },
    claimsChanged(userId: string, atS: number) {
      return record(
        {
          type: "UserClaimsChanged",
          version: 1,
          data: {
            userId,
            before: { roles: ["user"], groups: [] },
            after: { roles: ["admin"], groups: [] },
            changedAt: iso(at(atS)),
          },
        },
        at(atS),
      );
    },
  };
}

export type EventFactory = ReturnType<typeof eventLog>;
