import { randomUUID } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import type {
  EventMetadata,
  SessionCreated,
  SessionTouched,
  UserClaimsChanged,
} from "../../src/domain/events.ts";

/** Valid events and metadata for event-log tests; each call gives fresh ids. */

export const T0 = Date.parse("2025-01-01T00:00:00.000Z");
const iso = (epochMs: number) => new Date(epochMs).toISOString();

export function newSessionId(): string {
  return uuidv7();
}

export function metadata(overrides: Partial<EventMetadata> = {}): EventMetadata {
  const commandId = randomUUID();
  return {
    eventId: uuidv7(),
    commandId,
    correlationId: commandId,
    causationId: commandId,
    occurredAt: iso(T0),
    actor: { kind: "user", id: "user-1" },
    source: "rest",
    ...overrides,
  };
}

export function sessionCreated(sessionId: string, userId = "user-1"): SessionCreated {
  return {
    type: "SessionCreated",
    version: 1,
    data: {
      sessionId,
      userId,
      username: "alice",
      kind: "web",
      roles: ["user"],
      groups: [],
      scope: ["sessions:read"],
      tokenHash: "k7o0cXkDq2hPp0bN1q8w9m3cY6p1z2x3v4b5n6m7a8s",
      createdAt: iso(T0),
      expiresAt: iso(T0 + 3_600_000),
      maxExpiresAt: iso(T0 + 86_400_000),
      idleTimeoutSeconds: 0,
      ipAddress: "203.0.113.7",
      binding: { mode: "off" },
      metadata: { device: "laptop", nested: { tags: ["a", "b"] } },
    },
  };
}

export function sessionTouched(sessionId: string, secondsAfterT0: number): SessionTouched {
  return {
    type: "SessionTouched",
    version: 1,
    data: { sessionId, at: iso(T0 + secondsAfterT0 * 1000) },
  };
}

export function userClaimsChanged(userId: string): UserClaimsChanged {
  return {
    type: "UserClaimsChanged",
    version: 1,
    data: {
      userId,
      before: { roles: ["user"], groups: [] },
      after: { roles: ["user", "admin"], groups: ["ops"] },
      changedAt: iso(T0),
    },
  };
}

export const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/** Polls `condition` until it holds, failing after `timeoutMs`. */
export async function waitUntil(
  condition: () => boolean,
  timeoutMs = 10_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
