import { randomBytes } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import type {
  EventMetadata,
  SessionCreated,
  SessionEvent,
  SessionInvalidated,
  SessionRenewed,
} from "../../src/domain/events.ts";
import { hashSecret } from "../../src/domain/tokens.ts";

/**
 * Events shaped as the service appends them (payload size and field set matter here, not the values), for
 * benchmarks that write the log directly.
 */

const iso = (ms: number) => new Date(ms).toISOString();

export function metadataFor(now: number, actor: EventMetadata["actor"] = { kind: "admin", id: "admin-key" }) {
  const commandId = uuidv7();
  return {
    eventId: uuidv7(),
    commandId,
    correlationId: commandId,
    causationId: commandId,
    occurredAt: iso(now),
    actor,
    source: "rest",
    ip: "127.0.0.1",
  } satisfies EventMetadata;
}

export function sessionCreated(sessionId: string, userId: string, now: number): SessionCreated {
  return {
    type: "SessionCreated",
    version: 1,
    data: {
      sessionId,
      userId,
      username: userId,
      kind: "api",
      roles: ["user"],
      groups: [],
      scope: [],
      tokenHash: hashSecret(randomBytes(32).toString("base64url")),
      createdAt: iso(now),
      expiresAt: iso(now + 3_600_000),
      maxExpiresAt: iso(now + 2_592_000_000),
      idleTimeoutSeconds: 0,
      ipAddress: "127.0.0.1",
      userAgent: "bench",
      binding: { mode: "off" },
      metadata: { source: "bench" },
    },
  };
}

export function sessionRenewed(sessionId: string, now: number): SessionRenewed {
  return {
    type: "SessionRenewed",
    version: 1,
    data: {
      sessionId,
      previousExpiresAt: iso(now + 3_600_000),
      expiresAt: iso(now + 7_200_000),
      renewedAt: iso(now),
    },
  };
}

export function sessionInvalidated(sessionId: string, userId: string, now: number): SessionInvalidated {
  return {
    type: "SessionInvalidated",
    version: 1,
    data: { sessionId, userId, reason: "logout", invalidatedAt: iso(now) },
  };
}

/** One session's history: created, every third renewed, every tenth then invalidated. */
export function sessionHistory(index: number, now: number): { sessionId: string; events: SessionEvent[] } {
  const sessionId = uuidv7();
  const userId = `bench-user-${index % 500}`;
  const events: SessionEvent[] = [sessionCreated(sessionId, userId, now)];
  if (index % 3 === 0) events.push(sessionRenewed(sessionId, now + 1));
  if (index % 10 === 0) events.push(sessionInvalidated(sessionId, userId, now + 2));
  return { sessionId, events };
}

/** Runs `count` tasks with `inFlight` outstanding; resolves when all are done. */
export async function pipelined(count: number, inFlight: number, op: (i: number) => Promise<unknown>) {
  let next = 0;
  const lane = async () => {
    while (next < count) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, lane));
}
