import { describe, expect, it } from "vitest";
import {
  createUpcasterRegistry,
  decodeEvent,
  defaultUpcasters,
  EventDecodeError,
  EventEncodeError,
  encodeEvent,
  type RawEvent,
} from "../../src/adapters/codec/event-codec.ts";
import type { DomainEvent } from "../../src/domain/events.ts";
import {
  metadata,
  newSessionId,
  sessionCreated,
  sessionTouched,
  T0,
  userClaimsChanged,
} from "../contract/event-fixtures.ts";

const iso = (ms: number) => new Date(ms).toISOString();
const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const decodeError = (fn: () => unknown): EventDecodeError => {
  try {
    fn();
  } catch (error) {
    if (error instanceof EventDecodeError) return error;
    throw error;
  }
  throw new Error("expected an EventDecodeError");
};

const sessionId = newSessionId();
const everyEvent: DomainEvent[] = [
  sessionCreated(sessionId),
  {
    type: "SessionRenewed",
    version: 1,
    data: { sessionId, previousExpiresAt: iso(T0), expiresAt: iso(T0 + 1000), renewedAt: iso(T0) },
  },
  sessionTouched(sessionId, 30),
  {
    type: "SessionTokensRotated",
    version: 1,
    data: {
      sessionId,
      refreshGeneration: 2,
      previousRefreshTokenHash: "h1",
      refreshTokenHash: "h2",
      rotatedAt: iso(T0),
    },
  },
  {
    type: "SessionRecycled",
    version: 1,
    data: { sessionId, userId: "u", reason: "claims_changed", causeEventId: "e1", recycledAt: iso(T0) },
  },
  {
    type: "SessionInvalidated",
    version: 1,
    data: { sessionId, userId: "u", reason: "refresh_token_reuse", invalidatedAt: iso(T0) },
  },
  {
    type: "SessionExpired",
    version: 1,
    data: {
      sessionId,
      userId: "u",
      cause: "idle",
      deadline: iso(T0),
      expiredAt: iso(T0 + 5),
      tick: 1735689600,
    },
  },
  userClaimsChanged("u"),
  {
    type: "UserSessionsRevoked",
    version: 1,
    data: { userId: "u", revokedBefore: iso(T0), reason: "revoke_all", exceptSessionId: sessionId },
  },
];

describe("event codec", () => {
  it("round-trips every event type with its metadata", () => {
    expect(new Set(everyEvent.map((e) => e.type)).size).toBe(9);
    for (const event of everyEvent) {
      const meta = metadata({ ip: "192.0.2.1", userAgent: "ua/1.0", actor: { kind: "idp", id: "okta" } });
      const decoded = decodeEvent(encodeEvent(event, meta));
      expect(decoded).toEqual({ event, metadata: meta });
    }
  });

  it("writes {type, version, data, metadata} JSON and drops fields the schema does not know", () => {
    const event = sessionTouched(sessionId, 1);
    const meta = metadata();
    const withExtra = { ...event, data: { ...event.data, stray: true }, extra: 1 } as unknown as DomainEvent;
    const json = JSON.parse(new TextDecoder().decode(encodeEvent(withExtra, meta)));
    expect(json).toEqual({ type: "SessionTouched", version: 1, data: event.data, metadata: meta });
  });

  it("refuses to encode an invalid event or invalid metadata", () => {
    const bad = { ...sessionTouched(sessionId, 1), data: { sessionId, at: "soon" } } as DomainEvent;
    expect(() => encodeEvent(bad, metadata())).toThrow(EventEncodeError);
    expect(() =>
      encodeEvent(sessionTouched(sessionId, 1), { ...metadata(), source: "Fax Machine" } as never),
    ).toThrow(EventEncodeError);
    expect(() => encodeEvent({ type: "Nope", version: 1, data: {} } as never, metadata())).toThrow(
      EventEncodeError,
    );
  });

  it("reads a source or actor kind this version does not know (a newer version's), but only a short lowercase token", () => {
    // A rolling upgrade: a newer instance records events from a transport added since this version.
    const meta = { ...metadata(), source: "carrier-pigeon" };
    const event = sessionTouched(sessionId, 1);
    expect(decodeEvent(bytes({ ...event, metadata: meta }))).toEqual({ event, metadata: meta });
    // And carries it on when it re-records it (a fan-out inherits its cause's source).
    expect(decodeEvent(encodeEvent(event, meta)).metadata.source).toBe("carrier-pigeon");
    // The same for an actor kind added since (RecordedActor).
    const byRobot = { ...meta, actor: { kind: "robot", id: "r2" } };
    expect(decodeEvent(bytes({ ...event, metadata: byRobot })).metadata.actor).toEqual({
      kind: "robot",
      id: "r2",
    });
    const badKind = decodeError(() =>
      decodeEvent(bytes({ ...event, metadata: { ...meta, actor: { kind: "Robot!", id: "r2" } } })),
    );
    expect(badKind.issues.map((i) => i.path.join("."))).toContain("metadata.actor.kind");
    for (const source of ["", "Pigeon", "carrier pigeon", "x".repeat(33), 7]) {
      const refused = decodeError(() => decodeEvent(bytes({ ...event, metadata: { ...meta, source } })));
      expect(refused.issues.map((i) => i.path.join("."))).toContain("metadata.source");
    }
  });

  it("throws a typed EventDecodeError for each kind of bad payload", () => {
    const meta = metadata();
    expect(decodeError(() => decodeEvent(new Uint8Array([0xff, 0xfe]))).reason).toBe("malformed_json");
    expect(decodeError(() => decodeEvent(new TextEncoder().encode("{not json"))).reason).toBe(
      "malformed_json",
    );
    expect(decodeError(() => decodeEvent(bytes([1, 2]))).reason).toBe("invalid_envelope");
    expect(decodeError(() => decodeEvent(bytes({ type: "SessionTouched", version: "1" }))).reason).toBe(
      "invalid_envelope",
    );
    const unknown = decodeError(() =>
      decodeEvent(bytes({ type: "SessionCloned", version: 1, data: {}, metadata: meta })),
    );
    expect(unknown).toMatchObject({ reason: "unknown_type", eventType: "SessionCloned" });

    const badData = decodeError(() =>
      decodeEvent(bytes({ type: "SessionTouched", version: 1, data: { sessionId }, metadata: meta })),
    );
    expect(badData).toMatchObject({
      reason: "invalid_payload",
      eventType: "SessionTouched",
      eventVersion: 1,
    });
    expect(badData.issues.map((i) => i.path.join("."))).toContain("data.at");

    const badMeta = decodeError(() =>
      decodeEvent(
        bytes({ ...sessionTouched(sessionId, 1), metadata: { ...meta, occurredAt: "secret-xyz" } }),
      ),
    );
    expect(badMeta.reason).toBe("invalid_payload");
    expect(badMeta.issues.map((i) => i.path.join("."))).toContain("metadata.occurredAt");
    // Values never reach the message (they could be token hashes).
    expect(badMeta.message).not.toContain("secret-xyz");

    const future = decodeError(() =>
      decodeEvent(bytes({ ...sessionTouched(sessionId, 1), version: 2, metadata: meta })),
    );
    expect(future).toMatchObject({ reason: "invalid_payload", eventVersion: 2 });
  });

  describe("upcasting", () => {
    // A made-up v0 of SessionTouched that named its fields differently.
    const v0 = (meta = metadata()) =>
      bytes({
        type: "SessionTouched",
        version: 0,
        data: { session: sessionId, when: iso(T0 + 7000) },
        metadata: meta,
      });
    const touchedV0toV1 = (raw: RawEvent): RawEvent => {
      const data = raw.data as { session: string; when: string };
      return { type: raw.type, version: 1, data: { sessionId: data.session, at: data.when } };
    };

    it("runs the upcaster registered for type@version before validating", () => {
      const upcasters = createUpcasterRegistry();
      upcasters.register("SessionTouched", 0, touchedV0toV1);
      const meta = metadata();
      expect(decodeEvent(v0(meta), upcasters)).toEqual({
        event: { type: "SessionTouched", version: 1, data: { sessionId, at: iso(T0 + 7000) } },
        metadata: meta,
      });
      // Current events pass through untouched.
      const current = sessionTouched(sessionId, 3);
      expect(decodeEvent(encodeEvent(current, meta), upcasters).event).toEqual(current);
    });

    it("uses the default registry, and an old version without an upcaster is invalid", () => {
      expect(decodeError(() => decodeEvent(v0())).reason).toBe("invalid_payload");
      const unregister = defaultUpcasters.register("SessionTouched", 0, touchedV0toV1);
      try {
        expect(decodeEvent(v0()).event.data).toEqual({ sessionId, at: iso(T0 + 7000) });
      } finally {
        unregister();
      }
      expect(decodeError(() => decodeEvent(v0())).reason).toBe("invalid_payload");
    });

    it("chains upcasters and fails on ones that throw or do not move the version forward", () => {
      const chained = createUpcasterRegistry();
      chained.register("SessionTouched", -1, (raw) => ({ ...raw, version: 0 }));
      chained.register("SessionTouched", 0, touchedV0toV1);
      const vMinus1 = bytes({
        type: "SessionTouched",
        version: -1,
        data: { session: sessionId, when: iso(T0) },
        metadata: metadata(),
      });
      expect(decodeEvent(vMinus1, chained).event.data).toEqual({ sessionId, at: iso(T0) });

      const stuck = createUpcasterRegistry();
      stuck.register("SessionTouched", 0, (raw) => raw);
      expect(decodeError(() => decodeEvent(v0(), stuck)).reason).toBe("upcast_failed");

      const throwing = createUpcasterRegistry();
      throwing.register("SessionTouched", 0, () => {
        throw new Error("boom");
      });
      const error = decodeError(() => decodeEvent(v0(), throwing));
      expect(error.reason).toBe("upcast_failed");
      expect((error.cause as Error).message).toBe("boom");
    });

    it("refuses a second upcaster for the same type@version", () => {
      const upcasters = createUpcasterRegistry();
      upcasters.register("SessionTouched", 0, touchedV0toV1);
      expect(() => upcasters.register("SessionTouched", 0, touchedV0toV1)).toThrow(/already registered/);
    });
  });
});
