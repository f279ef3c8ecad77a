import { describe, expect, it } from "vitest";
import { decodeEvent, EventEncodeError, encodeEvent } from "../../src/adapters/codec/event-codec.ts";
import type { DomainEvent, SessionCreated } from "../../src/domain/events.ts";
import { metadata, newSessionId, sessionCreated, sessionTouched } from "../contract/event-fixtures.ts";

/**
 * A new SessionCreated holding text Postgres cannot store (NUL, an unpaired surrogate) is refused on
 * write; every other event, and every stored event on read, is taken as it is (the projections store such
 * text with U+FFFD in place).
 */

const NUL = "\u0000";
const HIGH = "\ud83d";

const encodeError = (fn: () => unknown): EventEncodeError => {
  try {
    fn();
  } catch (error) {
    if (error instanceof EventEncodeError) return error;
    throw error;
  }
  throw new Error("expected an EventEncodeError");
};

function createdWith(change: (event: SessionCreated) => void): SessionCreated {
  const event = sessionCreated(newSessionId());
  change(event);
  return event;
}

describe("encoding a SessionCreated with text Postgres cannot store", () => {
  it.each([
    ["userId", (e: SessionCreated) => Object.assign(e.data, { userId: `u${NUL}` }), ["data", "userId"]],
    [
      "a role",
      (e: SessionCreated) => Object.assign(e.data, { roles: ["ok", `r${HIGH}`] }),
      ["data", "roles", 1],
    ],
    [
      "a metadata value",
      (e: SessionCreated) => Object.assign(e.data, { metadata: { a: { b: `v${NUL}` } } }),
      ["data", "metadata", "a", "b"],
    ],
    [
      "the user agent",
      (e: SessionCreated) => Object.assign(e.data, { userAgent: `ua${HIGH}` }),
      ["data", "userAgent"],
    ],
  ])("is refused: %s, naming where", (_label, change, path) => {
    const error = encodeError(() => encodeEvent(createdWith(change), metadata()));
    expect(error.eventType).toBe("SessionCreated");
    expect(error.issues.map((issue) => issue.path)).toEqual([path]);
    // Neither the message nor the issues carry the value.
    expect(error.message).not.toContain(NUL);
    expect(JSON.stringify(error.issues)).not.toMatch(/\\u0000|\\ud83d/);
  });

  it("is refused for a metadata key, naming the object and not the key", () => {
    const event = createdWith((e) => Object.assign(e.data, { metadata: { [`k${NUL}`]: 1 } }));
    const error = encodeError(() => encodeEvent(event, metadata()));
    expect(error.issues.map((issue) => issue.path)).toEqual([["data", "metadata"]]);
  });

  it("is refused in the event's metadata, and on zod's slow path (a key to strip) too", () => {
    const event = sessionCreated(newSessionId());
    expect(() => encodeEvent(event, metadata({ userAgent: `x${NUL}` }))).toThrow(EventEncodeError);
    const stripped = { ...event, data: { ...event.data, userId: `u${NUL}`, unknownKey: 1 } } as DomainEvent;
    expect(() => encodeEvent(stripped, metadata())).toThrow(EventEncodeError);
  });

  it("keeps emoji, other control characters and a literal backslash-u", () => {
    const event = createdWith((e) =>
      Object.assign(e.data, { username: "😀 \u0001\t", metadata: { note: "\\u0000 \\ud800" } }),
    );
    const decoded = decodeEvent(encodeEvent(event, metadata()));
    expect(decoded.event).toEqual(event);
  });
});

describe("other events and reading", () => {
  it("writes other events as they are: they copy ids from sessions that may predate the edge's rule", () => {
    const touched = sessionTouched(newSessionId(), 5);
    Object.assign(touched.data, { userAgent: `ua${NUL}`, ipAddress: HIGH });
    const ended: DomainEvent = {
      type: "SessionExpired",
      version: 1,
      data: {
        sessionId: newSessionId(),
        userId: `u${NUL}`,
        cause: "absolute",
        deadline: "2025-01-01T00:00:00.000Z",
        expiredAt: "2025-01-01T00:00:00.000Z",
      },
    };
    const actor = metadata({ actor: { kind: "user", id: `u${NUL}` } });
    for (const event of [touched, ended]) expect(decodeEvent(encodeEvent(event, actor)).event).toEqual(event);
  });

  it("decodes a stored SessionCreated holding such text (never refused on read)", () => {
    const event = createdWith((e) => Object.assign(e.data, { userId: `u${NUL}`, roles: [HIGH] }));
    const stored = Buffer.from(JSON.stringify({ ...event, metadata: metadata() }));
    expect(decodeEvent(stored).event).toEqual(event);
  });
});
