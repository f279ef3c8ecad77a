import { describe, expect, it } from "vitest";
import type { Claims, UserClaimsChanged, UserSessionsRevoked } from "../../src/domain/events.ts";
import {
  type ChangeUserClaims,
  normalizeClaims,
  type RevokeUserSessions,
  sameClaims,
} from "../../src/domain/user-decider.ts";
import { givenUser } from "./decider-spec.ts";
import { at, iso } from "./fixtures.ts";

const USER = "alice@example.com";

const changeClaims = (now: number, after: Claims): ChangeUserClaims => ({
  type: "ChangeUserClaims",
  now,
  data: { userId: USER, after },
});

const revoke = (now: number, exceptSessionId?: string, userId = USER): RevokeUserSessions => ({
  type: "RevokeUserSessions",
  now,
  data: { userId, reason: "revoke_all", exceptSessionId },
});

const claimsChanged = (now: number, before: Claims, after: Claims): UserClaimsChanged => ({
  type: "UserClaimsChanged",
  version: 1,
  data: { userId: USER, before, after, changedAt: iso(now) },
});

const revoked = (now: number, exceptSessionId?: string): UserSessionsRevoked => ({
  type: "UserSessionsRevoked",
  version: 1,
  data: { userId: USER, revokedBefore: iso(now), reason: "revoke_all", exceptSessionId },
});

const NO_CLAIMS: Claims = { roles: [], groups: [] };
const USER_CLAIMS: Claims = { roles: ["user"], groups: ["staff"] };
const ADMIN_CLAIMS: Claims = { roles: ["admin", "user"], groups: ["staff"] };

describe("ChangeUserClaims", () => {
  it("given an unknown user, when claims are set, then UserClaimsChanged from no claims, normalized", () => {
    const { state } = givenUser([])
      .when(changeClaims(at(10), { roles: ["user", "admin", "user"], groups: ["staff"] }))
      .then([claimsChanged(at(10), NO_CLAIMS, ADMIN_CLAIMS)]);
    expect(state).toEqual({ status: "known", userId: USER, claims: ADMIN_CLAIMS, revokedBefore: undefined });
  });

  it("given recorded claims, when the same claims are set in another order with duplicates, then nothing", () => {
    givenUser([claimsChanged(at(10), NO_CLAIMS, ADMIN_CLAIMS)])
      .when(changeClaims(at(20), { roles: ["user", "admin", "admin"], groups: ["staff", "staff"] }))
      .thenNothing();
  });

  it("given recorded claims, when different claims are set, then UserClaimsChanged from the recorded ones", () => {
    givenUser([claimsChanged(at(10), NO_CLAIMS, ADMIN_CLAIMS)])
      .when(changeClaims(at(20), USER_CLAIMS))
      .then([claimsChanged(at(20), ADMIN_CLAIMS, USER_CLAIMS)]);
  });

  it("given a user known only from a revocation, when claims are set, then UserClaimsChanged from no claims", () => {
    givenUser([revoked(at(5))])
      .when(changeClaims(at(10), USER_CLAIMS))
      .then([claimsChanged(at(10), NO_CLAIMS, USER_CLAIMS)]);
  });

  it("given a role, when the same name moves from roles to groups, then UserClaimsChanged", () => {
    const asRole = { roles: ["ops"], groups: [] };
    const asGroup = { roles: [], groups: ["ops"] };
    givenUser([claimsChanged(at(10), NO_CLAIMS, asRole)])
      .when(changeClaims(at(20), asGroup))
      .then([claimsChanged(at(20), asRole, asGroup)]);
  });

  it("given a role whose name contains a newline, when it is split into two roles, then UserClaimsChanged", () => {
    // A claims change that is not recorded recycles no session, so "same" must mean element-wise equal.
    const joined = { roles: ["a\nb"], groups: [] };
    const split = { roles: ["a", "b"], groups: [] };
    givenUser([claimsChanged(at(10), NO_CLAIMS, joined)])
      .when(changeClaims(at(20), split))
      .then([claimsChanged(at(20), joined, split)]);
  });
});

describe("RevokeUserSessions", () => {
  it("given any user, when their sessions are revoked, then UserSessionsRevoked before now", () => {
    const { state } = givenUser([])
      .when(revoke(at(30)))
      .then([revoked(at(30))]);
    expect(state).toEqual({ status: "known", userId: USER, claims: undefined, revokedBefore: at(30) });
  });

  it("given any user, when revoked except the current session, then the exception is recorded", () => {
    givenUser([claimsChanged(at(10), NO_CLAIMS, USER_CLAIMS)])
      .when(revoke(at(30), "current-session"))
      .then([revoked(at(30), "current-session")]);
  });

  it("given an earlier revocation, when revoked again, then a new instant is recorded", () => {
    const { state } = givenUser([revoked(at(30))])
      .when(revoke(at(60)))
      .then([revoked(at(60))]);
    expect(state.status === "known" && state.revokedBefore).toBe(at(60));
  });

  it("given any user, when revoked without a user id, then invalid_request", () => {
    givenUser([])
      .when(revoke(at(30), undefined, ""))
      .thenThrows("invalid_request");
  });
});

describe("claims comparison", () => {
  it("normalizeClaims sorts and removes duplicates without touching its input", () => {
    const input = { roles: ["b", "a", "b"], groups: ["z", "y"] };
    expect(normalizeClaims(input)).toEqual({ roles: ["a", "b"], groups: ["y", "z"] });
    expect(input.roles).toEqual(["b", "a", "b"]);
  });

  it.each([
    [{ roles: ["a", "b"], groups: [] }, { roles: ["b", "a"], groups: [] }, true],
    [{ roles: ["a"], groups: ["g"] }, { roles: ["a", "a"], groups: ["g"] }, true],
    [{ roles: ["a"], groups: [] }, { roles: [], groups: ["a"] }, false],
    [{ roles: ["a"], groups: [] }, { roles: ["a", "b"], groups: [] }, false],
    [{ roles: ["a\nb"], groups: [] }, { roles: ["a", "b"], groups: [] }, false],
    [{ roles: [""], groups: [] }, { roles: [], groups: [] }, false],
  ])("sameClaims(%j, %j) is %s", (a, b, expected) => {
    expect(sameClaims(a, b)).toBe(expected);
    expect(sameClaims(b, a)).toBe(expected);
  });
});
