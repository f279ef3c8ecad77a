import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { EventMetadata, RecordedEvent, UserEvent } from "../../src/domain/events.ts";
import { userStream } from "../../src/domain/events.ts";
import {
  evolveUserValidationEntry,
  isRevokedByUser,
  type UserValidationEntry,
} from "../../src/projections/validation-entry.ts";
import { at, iso } from "./fixtures.ts";

/** The per-user validation entry: O(1) revoke-all with an optional "except this session". */

const USER = "alice@example.com";

const metadata: EventMetadata = {
  eventId: "event",
  commandId: "command",
  correlationId: "correlation",
  causationId: "causation",
  occurredAt: iso(at(0)),
  actor: { kind: "admin", id: "root" },
  source: "rest",
};

const revokedAt = (position: number, before: number, except?: string): RecordedEvent<UserEvent> => ({
  type: "UserSessionsRevoked",
  version: 1,
  data: { userId: USER, revokedBefore: iso(before), reason: "revoke_all", exceptSessionId: except },
  metadata,
  stream: userStream(USER),
  position,
});

const claimsAt = (position: number, roles: string[]): RecordedEvent<UserEvent> => ({
  type: "UserClaimsChanged",
  version: 1,
  data: {
    userId: USER,
    before: { roles: [], groups: [] },
    after: { roles, groups: [] },
    changedAt: iso(at(0)),
  },
  metadata,
  stream: userStream(USER),
  position,
});

function fold(events: RecordedEvent<UserEvent>[]): UserValidationEntry | undefined {
  let entry: UserValidationEntry | undefined;
  for (const event of events) entry = evolveUserValidationEntry(entry, event);
  return entry;
}

describe("evolveUserValidationEntry and isRevokedByUser", () => {
  it("knows nothing of a user without an entry", () => {
    expect(isRevokedByUser(undefined, "s1", at(0))).toBe(false);
  });

  it("revokes sessions created at or before the instant, not after", () => {
    const user = fold([revokedAt(1, at(100))]);
    expect(user).toEqual({
      userId: USER,
      revocations: [{ before: at(100) }],
      claims: undefined,
      position: 1,
    });
    expect(isRevokedByUser(user, "s1", at(50))).toBe(true);
    expect(isRevokedByUser(user, "s1", at(100))).toBe(true);
    expect(isRevokedByUser(user, "s1", at(100) + 1)).toBe(false);
  });

  it("spares the excepted session and revokes its siblings", () => {
    const user = fold([revokedAt(1, at(100), "current")]);
    expect(isRevokedByUser(user, "current", at(50))).toBe(false);
    expect(isRevokedByUser(user, "sibling", at(50))).toBe(true);
  });

  it("a later full revocation supersedes an earlier one with an exception", () => {
    const user = fold([revokedAt(1, at(100), "current"), revokedAt(2, at(200))]);
    expect(user?.revocations).toEqual([{ before: at(200) }]);
    expect(isRevokedByUser(user, "current", at(50))).toBe(true);
    expect(user?.position).toBe(2);
  });

  it("a later revocation with an exception does not un-revoke what an earlier full one revoked", () => {
    const user = fold([revokedAt(1, at(100)), revokedAt(2, at(200), "early")]);
    expect(isRevokedByUser(user, "early", at(50))).toBe(true);
    expect(isRevokedByUser(user, "early", at(150))).toBe(false);
    expect(isRevokedByUser(user, "late", at(150))).toBe(true);
  });

  it("a full revocation whose instant is earlier (another instance's clock) keeps the later one in force", () => {
    const user = fold([revokedAt(1, at(200)), revokedAt(2, at(100))]);
    expect(isRevokedByUser(user, "s1", at(150))).toBe(true);
  });

  it("stays small however many revocations with exceptions pile up, and forgets none of them", () => {
    // Each sign-in is followed by "sign out my other sessions" from the new one.
    const events = Array.from({ length: 40 }, (_, i) => revokedAt(i + 1, at(100 * (i + 1)), `session-${i}`));
    const user = fold(events);
    expect(user?.revocations.length).toBeLessThanOrEqual(16);
    // session-0, created before the first revocation and excepted by it, is revoked by the second one.
    expect(isRevokedByUser(user, "session-0", at(50))).toBe(true);
    // session-39, signed in between the last two revocations, survives the one it issued; its sibling does not.
    expect(isRevokedByUser(user, "session-39", at(3950))).toBe(false);
    expect(isRevokedByUser(user, "session-38", at(3950))).toBe(true);
    // Created before the revocation that session-38 issued, session-39 falls under that one.
    expect(isRevokedByUser(user, "session-39", at(3850))).toBe(true);
  });

  it("keeps an exception the cap would otherwise drop when it is the only thing revoking a session", () => {
    // An old revocation except A, then many except B: a session B created before the first one is
    // revoked only by the first; dropping it would let B validate again.
    const events = [
      revokedAt(1, at(100), "A"),
      ...Array.from({ length: 20 }, (_, i) => revokedAt(i + 2, at(200 + i), "B")),
    ];
    const user = fold(events);
    expect(isRevokedByUser(user, "B", at(50))).toBe(true);
    expect(isRevokedByUser(user, "B", at(150))).toBe(false);
    expect(isRevokedByUser(user, "A", at(150))).toBe(true);
  });

  it("records the latest claims", () => {
    const user = fold([claimsAt(1, ["user"]), revokedAt(2, at(100)), claimsAt(3, ["admin"])]);
    expect(user?.claims).toEqual({ roles: ["admin"], groups: [] });
    expect(user?.revocations).toEqual([{ before: at(100) }]);
    expect(user?.position).toBe(3);
  });

  it("ignores a redelivered or older event", () => {
    const user = fold([revokedAt(1, at(100)), claimsAt(2, ["admin"])]);
    expect(evolveUserValidationEntry(user, revokedAt(2, at(500)))).toBe(user);
    expect(evolveUserValidationEntry(user, claimsAt(1, ["user"]))).toBe(user);
  });

  it("agrees with 'revoked by any revocation ever recorded', for any history, in bounded space", () => {
    const sessions = ["s1", "s2", "s3", "s4"];
    const revocation = fc.record({
      before: fc.integer({ min: 0, max: 20 }),
      except: fc.option(fc.constantFrom(...sessions), { nil: undefined, freq: 3 }),
    });
    fc.assert(
      fc.property(fc.array(revocation, { maxLength: 60 }), (revocations) => {
        const user = fold(revocations.map((r, i) => revokedAt(i + 1, at(r.before), r.except)));
        expect(user?.revocations.length ?? 0).toBeLessThanOrEqual(16);
        for (const sessionId of [...sessions, "other"]) {
          for (let created = -1; created <= 21; created++) {
            const expected = revocations.some((r) => created <= r.before && r.except !== sessionId);
            expect(isRevokedByUser(user, sessionId, at(created))).toBe(expected);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
