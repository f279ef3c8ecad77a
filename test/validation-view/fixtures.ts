import { randomBytes } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import {
  type DomainEvent,
  type EventMetadata,
  type RecordedEvent,
  sessionStream,
  userStream,
} from "../../src/domain/events.ts";
import type { UserValidationEntry, ValidationEntry } from "../../src/projections/validation-entry.ts";

export const T0 = Date.parse("2026-01-01T00:00:00.000Z");
export const iso = (epochMs: number) => new Date(epochMs).toISOString();

export function sessionEntry(overrides: Partial<ValidationEntry> = {}): ValidationEntry {
  return {
    sessionId: uuidv7(),
    userId: "user-1",
    username: "alice",
    kind: "web",
    status: "active",
    endReason: undefined,
    tokenHash: randomBytes(32).toString("base64url"),
    refreshGeneration: 0,
    roles: ["user"],
    groups: ["staff"],
    scope: ["sessions:read"],
    createdAt: T0,
    expiresAt: T0 + 3_600_000,
    idleTimeoutSeconds: 0,
    lastActivityAt: T0,
    binding: { mode: "off" },
    idpSessionId: undefined,
    position: 1,
    ...overrides,
  };
}

export function userEntry(overrides: Partial<UserValidationEntry> = {}): UserValidationEntry {
  return {
    userId: "user-1",
    revocations: [],
    claims: undefined,
    position: 1,
    ...overrides,
  };
}

/** Builds recorded events with increasing positions, as the log would hand them to a projection. */
export function createEventFactory(startPosition = 1) {
  let position = startPosition;
  const metadata = (at: number): EventMetadata => ({
    eventId: uuidv7(),
    commandId: uuidv7(),
    correlationId: uuidv7(),
    causationId: uuidv7(),
    occurredAt: iso(at),
    actor: { kind: "system", id: "test" },
    source: "cli",
  });
  const record = (event: DomainEvent, at: number): RecordedEvent => {
    const stream =
      "sessionId" in event.data ? sessionStream(event.data.sessionId) : userStream(event.data.userId);
    return { ...event, metadata: metadata(at), stream, position: position++ } as RecordedEvent;
  };
  return {
    created(sessionId: string, userId: string, at = T0): RecordedEvent {
      return record(
        {
          type: "SessionCreated",
          version: 1,
          data: {
            sessionId,
            userId,
            username: `name-of-${userId}`,
            kind: "web",
            roles: ["user"],
            groups: ["staff"],
            scope: ["sessions:read"],
            tokenHash: randomBytes(32).toString("base64url"),
            createdAt: iso(at),
            expiresAt: iso(at + 3_600_000),
            maxExpiresAt: iso(at + 86_400_000),
            idleTimeoutSeconds: 600,
            binding: { mode: "off" },
            metadata: {},
          },
        },
        at,
      );
    },
    renewed(sessionId: string, at: number, expiresAt: number): RecordedEvent {
      return record(
        {
          type: "SessionRenewed",
          version: 1,
          data: {
            sessionId,
            previousExpiresAt: iso(T0 + 3_600_000),
            expiresAt: iso(expiresAt),
            renewedAt: iso(at),
          },
        },
        at,
      );
    },
    touched(sessionId: string, at: number): RecordedEvent {
      return record({ type: "SessionTouched", version: 1, data: { sessionId, at: iso(at) } }, at);
    },
    invalidated(sessionId: string, userId: string, at: number): RecordedEvent {
      return record(
        {
          type: "SessionInvalidated",
          version: 1,
          data: { sessionId, userId, reason: "logout", invalidatedAt: iso(at) },
        },
        at,
      );
    },
    revokedAll(userId: string, at: number, exceptSessionId?: string): RecordedEvent {
      return record(
        {
          type: "UserSessionsRevoked",
          version: 1,
          data: { userId, revokedBefore: iso(at), reason: "revoke_all", exceptSessionId },
        },
        at,
      );
    },
    claimsChanged(userId: string, at: number, roles: string[]): RecordedEvent {
      return record(
        {
          type: "UserClaimsChanged",
          version: 1,
          data: {
            userId,
            before: { roles: ["user"], groups: ["staff"] },
            after: { roles, groups: ["staff"] },
            changedAt: iso(at),
          },
        },
        at,
      );
    },
  };
}

/** Polls `condition` until it holds or `timeoutMs` passes; returns whether it held. */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function shuffle<T>(items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = randomBytes(4).readUInt32LE(0) % (i + 1);
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}
