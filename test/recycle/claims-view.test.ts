import { describe, expect, it } from "vitest";
import { compactUserValidationEntry } from "../../src/adapters/memory/compact-validation-entry.ts";
import type { RecordedEvent, UserEvent } from "../../src/domain/events.ts";
import {
  evolveUserValidationEntry,
  isRecycledByUser,
  type UserValidationEntry,
} from "../../src/projections/validation-entry.ts";

/** The per-user entry's claims and the O(1) recycling rule the validator applies with it. */
const at = (seconds: number) => Date.parse("2026-01-01T00:00:00Z") + seconds * 1000;

const claimsChanged = (position: number, changedAt: number, roles: string[], groups: string[] = []) =>
  ({
    type: "UserClaimsChanged",
    version: 1,
    data: {
      userId: "u",
      before: { roles: [], groups: [] },
      after: { roles, groups },
      changedAt: new Date(changedAt).toISOString(),
    },
    metadata: {
      eventId: `e${position}`,
      commandId: `c${position}`,
      correlationId: "x",
      causationId: "x",
      occurredAt: new Date(changedAt).toISOString(),
      actor: { kind: "admin", id: "a" },
      source: "rest",
    },
    stream: { category: "user", id: "u" },
    position,
  }) satisfies RecordedEvent<UserEvent>;

const session = (createdAt: number, roles: string[], groups: string[] = []) => ({ createdAt, roles, groups });

describe("isRecycledByUser", () => {
  const user = evolveUserValidationEntry(undefined, claimsChanged(3, at(100), ["admin", "user"], ["ops"]));

  it("records when the claims changed", () => {
    expect(user).toMatchObject({
      claims: { roles: ["admin", "user"], groups: ["ops"] },
      claimsChangedAt: at(100),
    });
  });

  it("refuses sessions created at or before the change that hold other roles or groups", () => {
    expect(isRecycledByUser(user, session(at(50), ["user"], ["ops"]))).toBe(true);
    expect(isRecycledByUser(user, session(at(100), ["admin", "user"], []))).toBe(true);
  });

  it("keeps sessions holding the recorded claims, in any order or with duplicates", () => {
    expect(isRecycledByUser(user, session(at(50), ["admin", "user"], ["ops"]))).toBe(false);
    expect(isRecycledByUser(user, session(at(50), ["user", "admin", "user"], ["ops"]))).toBe(false);
  });

  it("keeps sessions created after the change, and users without recorded claims", () => {
    expect(isRecycledByUser(user, session(at(100) + 1, ["viewer"]))).toBe(false);
    expect(isRecycledByUser(undefined, session(at(50), ["viewer"]))).toBe(false);
    const revokedOnly: UserValidationEntry = { userId: "u", revocations: [], claims: undefined, position: 1 };
    expect(isRecycledByUser(revokedOnly, session(at(50), ["viewer"]))).toBe(false);
  });

  it("follows the latest change, and an older event never moves it back", () => {
    const later = evolveUserValidationEntry(user, claimsChanged(5, at(200), ["viewer"]));
    expect(isRecycledByUser(later, session(at(150), ["admin", "user"], ["ops"]))).toBe(true);
    expect(isRecycledByUser(later, session(at(150), ["viewer"]))).toBe(false);
    expect(evolveUserValidationEntry(later, claimsChanged(4, at(300), ["user"]))).toBe(later);
  });

  it("survives the compact form the KV view and the replicas keep", () => {
    expect(compactUserValidationEntry(user)).toEqual(user);
    expect(JSON.parse(JSON.stringify(compactUserValidationEntry(user)))).toEqual(user);
  });
});
