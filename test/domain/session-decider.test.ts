import { describe, expect, it } from "vitest";
import type { SessionEvent } from "../../src/domain/events.ts";
import { effectiveTouchIntervalMs } from "../../src/domain/session-decider.ts";
import { given } from "./decider-spec.ts";
import { at, cmd, evt, REFRESH_1, REFRESH_2, REFRESH_3, T0 } from "./fixtures.ts";

/**
 * Every session command against every state a session can be in. The standard session (see fixtures) is
 * created at 0 s with a 1 h TTL (absolute deadline 3600 s), a 24 h cap and a 10 min idle timeout; touches
 * are coalesced to one per 60 s.
 */

const created = evt.created();
const withoutIdleTimeout = evt.created(T0, { idleTimeoutSeconds: 0 });

/** Past its absolute deadline (3600 s) while never idle-checked: no idle timeout. */
const overdueByAbsolute = {
  history: [withoutIdleTimeout],
  now: at(3600),
  expiry: (tick?: number) => evt.expired(at(3600), "absolute", at(3600), tick),
};

/** Last active at 100 s, so idle since 700 s although the absolute deadline is far away. */
const overdueByIdle = {
  history: [created, evt.touched(at(100))],
  now: at(700),
  expiry: (tick?: number) => evt.expired(at(700), "idle", at(700), tick),
};

/** [status, history] of each way a session ends; `%s` in a case name is the status. */
const ENDED: [string, SessionEvent[]][] = [
  ["an expired", [created, evt.expired(at(600), "idle", at(600))]],
  ["an invalidated", [created, evt.invalidated(at(60), "logout")]],
  ["a recycled", [created, evt.recycled(at(60), "claims_changed")]],
];
const LATER = at(900);

describe("CreateSession", () => {
  it("given no session, when created, then SessionCreated with deadlines from the policy", () => {
    const { events } = given([]).when(cmd.create(T0)).then([created]);
    expect(events[0]?.type === "SessionCreated" && events[0].data).toMatchObject({
      createdAt: "2025-01-01T00:00:00.000Z",
      expiresAt: "2025-01-01T01:00:00.000Z",
      maxExpiresAt: "2025-01-02T00:00:00.000Z",
    });
  });

  it("given no session, when created with a TTL beyond the maximum lifetime, then expiry is the cap", () => {
    const { events } = given([])
      .when(cmd.create(T0, { ttlSeconds: 10_000, maxLifetimeSeconds: 7200 }))
      .then([evt.created(T0, { ttlSeconds: 10_000, maxLifetimeSeconds: 7200 })]);
    expect(events[0]?.type === "SessionCreated" && events[0].data.expiresAt).toBe(
      new Date(at(7200)).toISOString(),
    );
  });

  it("given no session, when created without idle timeout, then SessionCreated", () => {
    given([])
      .when(cmd.create(T0, { idleTimeoutSeconds: 0 }))
      .then([withoutIdleTimeout]);
  });

  it.each([
    ["ttl 0", { ttlSeconds: 0 }],
    ["negative ttl", { ttlSeconds: -1 }],
    ["NaN ttl", { ttlSeconds: Number.NaN }],
    ["infinite ttl", { ttlSeconds: Number.POSITIVE_INFINITY }],
    ["max lifetime 0", { maxLifetimeSeconds: 0 }],
    ["negative idle timeout", { idleTimeoutSeconds: -1 }],
    ["NaN idle timeout", { idleTimeoutSeconds: Number.NaN }],
  ])("given no session, when created with %s, then invalid_request", (_, overrides) => {
    given([]).when(cmd.create(T0, overrides)).thenThrows("invalid_request");
  });

  it("given an active session, when created again, then session_exists", () => {
    given([created])
      .when(cmd.create(at(30)))
      .thenThrows("session_exists");
  });

  it("given a session past its absolute deadline, when created again, then session_exists", () => {
    given(overdueByAbsolute.history).when(cmd.create(overdueByAbsolute.now)).thenThrows("session_exists");
  });

  it("given a session past its idle deadline, when created again, then session_exists", () => {
    given(overdueByIdle.history).when(cmd.create(overdueByIdle.now)).thenThrows("session_exists");
  });

  it.each(ENDED)("given %s session, when created again, then session_exists", (_, history) => {
    given(history).when(cmd.create(LATER)).thenThrows("session_exists");
  });
});

describe("RenewSession", () => {
  it("given no session, when renewed, then session_not_found", () => {
    given([])
      .when(cmd.renew(at(30)))
      .thenThrows("session_not_found");
  });

  it("given an active session, when renewed, then the new expiry is now + ttl", () => {
    given([created])
      .when(cmd.renew(at(30), 3600))
      .then([evt.renewed(at(30), at(3600), at(3630))]);
  });

  it("given an active session, when renewed past the maximum lifetime, then expiry clamps at the cap", () => {
    const capped = evt.created(T0, { maxLifetimeSeconds: 7200 });
    given([capped])
      .when(cmd.renew(at(30), 86_400))
      .then([evt.renewed(at(30), at(3600), at(7200))]);
  });

  it("given a session already renewed to its cap, when renewed again, then nothing is appended", () => {
    const capped = evt.created(T0, { maxLifetimeSeconds: 7200 });
    given([capped, evt.renewed(at(30), at(3600), at(7200))])
      .when(cmd.renew(at(60), 86_400))
      .thenNothing();
  });

  it("given an active session, when renewed to the expiry it already has, then nothing is appended", () => {
    given([created]).when(cmd.renew(T0, 3600)).thenNothing();
  });

  it("given an active session, when renewed with a ttl shorter than what is left, then it is not shortened", () => {
    // DESIGN §6: renew extends expiry; the HTTP edge fills in the default TTL when the body has none.
    given([evt.created(T0, { ttlSeconds: 7200 })])
      .when(cmd.renew(at(30), 3600))
      .thenNothing();
  });

  it.each([0, -5, Number.NaN])(
    "given an active session, when renewed with ttl %s, then invalid_request",
    (ttl) => {
      given([created])
        .when(cmd.renew(at(30), ttl))
        .thenThrows("invalid_request");
    },
  );

  it("given an active session, when renewed, then the renewal counts as activity", () => {
    const { state } = given([created])
      .when(cmd.renew(at(30)))
      .then([evt.renewed(at(30), at(3600), at(3630))]);
    expect(state.status === "active" && state.lastActivityAt).toBe(at(30));
  });

  it("given a session past its absolute deadline, when renewed, then SessionExpired (absolute)", () => {
    given(overdueByAbsolute.history)
      .when(cmd.renew(overdueByAbsolute.now))
      .then([overdueByAbsolute.expiry()]);
  });

  it("given a session past its idle deadline, when renewed, then SessionExpired (idle)", () => {
    given(overdueByIdle.history).when(cmd.renew(overdueByIdle.now)).then([overdueByIdle.expiry()]);
  });

  it.each(ENDED)("given %s session, when renewed, then session_ended", (_, history) => {
    given(history).when(cmd.renew(LATER)).thenThrows("session_ended");
  });
});

describe("TouchSession", () => {
  it("given no session, when touched, then session_not_found", () => {
    given([])
      .when(cmd.touch(at(30)))
      .thenThrows("session_not_found");
  });

  it("given an active session, when touched inside the touch interval, then nothing is appended", () => {
    given([created])
      .when(cmd.touch(at(59)))
      .thenNothing();
  });

  it("given an active session, when touched exactly one interval after its last activity, then SessionTouched", () => {
    given([created])
      .when(cmd.touch(at(60)))
      .then([evt.touched(at(60))]);
  });

  it("given an active session, when touched outside the interval, then SessionTouched with the client", () => {
    const client = { ipAddress: "198.51.100.7", userAgent: "curl/8" };
    given([created])
      .when(cmd.touch(at(61), 60, client))
      .then([evt.touched(at(61), client)]);
  });

  it("given a session touched at 100 s, when touched at 159 s, then nothing; at 160 s, SessionTouched", () => {
    const history = [created, evt.touched(at(100))];
    given(history)
      .when(cmd.touch(at(159)))
      .thenNothing();
    given(history)
      .when(cmd.touch(at(160)))
      .then([evt.touched(at(160))]);
  });

  it("given a session renewed at 30 s, when touched at 80 s, then nothing (the renewal was activity)", () => {
    given([created, evt.renewed(at(30), at(3600), at(3630))])
      .when(cmd.touch(at(80)))
      .thenNothing();
  });

  it("given a session rotated at 30 s, when touched at 80 s, then nothing (the rotation was activity)", () => {
    given([created, evt.rotated(at(30), 1, REFRESH_1, REFRESH_2)])
      .when(cmd.touch(at(80)))
      .thenNothing();
  });

  it("given an idle timeout shorter than twice the interval, then the interval shrinks to half of it", () => {
    // 90 s idle timeout, 60 s interval: touching every 60 s could leave 60 s + 30 s of silence, so 45 s.
    const shortIdle = evt.created(T0, { idleTimeoutSeconds: 90 });
    given([shortIdle])
      .when(cmd.touch(at(44)))
      .thenNothing();
    given([shortIdle])
      .when(cmd.touch(at(45)))
      .then([evt.touched(at(45))]);
  });

  it("given an idle timeout of exactly twice the interval, then the interval is unchanged", () => {
    const idle120 = evt.created(T0, { idleTimeoutSeconds: 120 });
    given([idle120])
      .when(cmd.touch(at(59)))
      .thenNothing();
    given([idle120])
      .when(cmd.touch(at(60)))
      .then([evt.touched(at(60))]);
  });

  it("given no idle timeout, then the configured interval applies", () => {
    given([withoutIdleTimeout])
      .when(cmd.touch(at(59)))
      .thenNothing();
    given([withoutIdleTimeout])
      .when(cmd.touch(at(60)))
      .then([evt.touched(at(60))]);
  });

  it("given a touch interval of 0, when touched a second after creation, then SessionTouched", () => {
    given([created])
      .when(cmd.touch(at(1), 0))
      .then([evt.touched(at(1))]);
  });

  it("given a session past its absolute deadline, when touched, then SessionExpired (absolute)", () => {
    given(overdueByAbsolute.history)
      .when(cmd.touch(overdueByAbsolute.now))
      .then([overdueByAbsolute.expiry()]);
  });

  it("given a session past its idle deadline, when touched, then SessionExpired (idle), not a touch", () => {
    given(overdueByIdle.history).when(cmd.touch(overdueByIdle.now)).then([overdueByIdle.expiry()]);
  });

  it.each(ENDED)("given %s session, when touched, then nothing is appended", (_, history) => {
    given(history).when(cmd.touch(LATER)).thenNothing();
  });
});

describe("effectiveTouchIntervalMs", () => {
  it.each([
    [60, 0, 60_000],
    [60, 1800, 60_000],
    [60, 120, 60_000],
    [60, 119, 59_500],
    [60, 90, 45_000],
    [0, 90, 0],
  ])("touch interval %s s with idle timeout %s s → %s ms", (interval, idle, expected) => {
    expect(effectiveTouchIntervalMs(interval, idle)).toBe(expected);
  });
});

describe("RotateRefreshToken", () => {
  it("given no session, when a refresh token is presented, then session_not_found", () => {
    given([])
      .when(cmd.rotate(at(30), REFRESH_1, REFRESH_2))
      .thenThrows("session_not_found");
  });

  it("given an active session, when its current refresh token is presented, then SessionTokensRotated", () => {
    given([created])
      .when(cmd.rotate(at(30), REFRESH_1, REFRESH_2))
      .then([evt.rotated(at(30), 1, REFRESH_1, REFRESH_2)]);
  });

  it("given a rotated session, when the new current token is presented, then generation 2", () => {
    given([created, evt.rotated(at(30), 1, REFRESH_1, REFRESH_2)])
      .when(cmd.rotate(at(60), REFRESH_2, REFRESH_3))
      .then([evt.rotated(at(60), 2, REFRESH_2, REFRESH_3)]);
  });

  it("given a rotated session, when the superseded token is presented, then it ends with refresh_token_reuse", () => {
    const { state } = given([created, evt.rotated(at(30), 1, REFRESH_1, REFRESH_2)])
      .when(cmd.rotate(at(60), REFRESH_1, REFRESH_3))
      .then([evt.invalidated(at(60), "refresh_token_reuse")]);
    expect(state).toMatchObject({ status: "invalidated", endReason: "refresh_token_reuse" });
  });

  it("given a session rotated twice, when the first token is presented, then refresh_token_reuse", () => {
    given([
      created,
      evt.rotated(at(30), 1, REFRESH_1, REFRESH_2),
      evt.rotated(at(60), 2, REFRESH_2, REFRESH_3),
    ])
      .when(cmd.rotate(at(90), REFRESH_1, "refresh-hash-4"))
      .then([evt.invalidated(at(90), "refresh_token_reuse")]);
  });

  it("given an active session, when an unknown token is presented, then invalid_grant and nothing recorded", () => {
    // Ending the session here would let anyone who knows the (public) session id log its owner out.
    given([created])
      .when(cmd.rotate(at(30), "guessed-hash", REFRESH_2))
      .thenThrows("invalid_grant");
  });

  it("given a session created without a refresh token, when one is presented, then invalid_grant", () => {
    given([evt.created(T0, { refreshTokenHash: undefined })])
      .when(cmd.rotate(at(30), REFRESH_1, REFRESH_2))
      .thenThrows("invalid_grant");
  });

  it("given a session past its absolute deadline, when its current token is presented, then SessionExpired", () => {
    given(overdueByAbsolute.history)
      .when(cmd.rotate(overdueByAbsolute.now, REFRESH_1, REFRESH_2))
      .then([overdueByAbsolute.expiry()]);
  });

  it("given a session past its idle deadline, when its current token is presented, then SessionExpired", () => {
    given(overdueByIdle.history)
      .when(cmd.rotate(overdueByIdle.now, REFRESH_1, REFRESH_2))
      .then([overdueByIdle.expiry()]);
  });

  it.each(ENDED)(
    "given %s session, when its refresh token is presented, then invalid_grant",
    (_, history) => {
      given(history)
        .when(cmd.rotate(LATER, REFRESH_1, REFRESH_2))
        .thenThrows("invalid_grant");
    },
  );

  it("given a session ended by reuse, when the legitimate current token is presented, then invalid_grant", () => {
    given([
      created,
      evt.rotated(at(30), 1, REFRESH_1, REFRESH_2),
      evt.invalidated(at(60), "refresh_token_reuse"),
    ])
      .when(cmd.rotate(at(90), REFRESH_2, REFRESH_3))
      .thenThrows("invalid_grant");
  });
});

describe("RecycleSession", () => {
  it("given no session, when recycled, then session_not_found", () => {
    given([])
      .when(cmd.recycle(at(30)))
      .thenThrows("session_not_found");
  });

  it("given an active session, when recycled for a claims change, then SessionRecycled with its cause", () => {
    const { state } = given([created])
      .when(cmd.recycle(at(30), "claims_changed", "claims-event-1"))
      .then([evt.recycled(at(30), "claims_changed", "claims-event-1")]);
    expect(state).toMatchObject({ status: "recycled", endReason: "claims_changed", endedAt: at(30) });
  });

  it("given an active session, when recycled on request, then SessionRecycled (recycled)", () => {
    given([created])
      .when(cmd.recycle(at(30), "recycled"))
      .then([evt.recycled(at(30), "recycled")]);
  });

  it("given a session past its absolute deadline, when recycled, then SessionExpired (absolute)", () => {
    given(overdueByAbsolute.history)
      .when(cmd.recycle(overdueByAbsolute.now))
      .then([overdueByAbsolute.expiry()]);
  });

  it("given a session past its idle deadline, when recycled, then SessionExpired (idle)", () => {
    given(overdueByIdle.history).when(cmd.recycle(overdueByIdle.now)).then([overdueByIdle.expiry()]);
  });

  it.each(ENDED)("given %s session, when recycled, then nothing is appended", (_, history) => {
    given(history).when(cmd.recycle(LATER)).thenNothing();
  });
});

describe("InvalidateSession", () => {
  it("given no session, when invalidated, then session_not_found", () => {
    given([])
      .when(cmd.invalidate(at(30)))
      .thenThrows("session_not_found");
  });

  it("given an active session, when invalidated, then SessionInvalidated with the reason", () => {
    const { state } = given([created])
      .when(cmd.invalidate(at(30), "revoked_by_admin"))
      .then([evt.invalidated(at(30), "revoked_by_admin")]);
    expect(state).toMatchObject({ status: "invalidated", endReason: "revoked_by_admin", endedAt: at(30) });
  });

  it("given a session past its absolute deadline, when invalidated, then SessionExpired (it already was)", () => {
    given(overdueByAbsolute.history)
      .when(cmd.invalidate(overdueByAbsolute.now))
      .then([overdueByAbsolute.expiry()]);
  });

  it("given a session past its idle deadline, when invalidated, then SessionExpired (idle)", () => {
    given(overdueByIdle.history).when(cmd.invalidate(overdueByIdle.now)).then([overdueByIdle.expiry()]);
  });

  it.each(ENDED)("given %s session, when invalidated, then nothing is appended", (_, history) => {
    given(history).when(cmd.invalidate(LATER, "revoked")).thenNothing();
  });
});

describe("ExpireSession", () => {
  const tickOf = (epochMs: number) => Math.floor(epochMs / 1000);

  it("given no session, when expired, then nothing (the scheduler's list may be stale)", () => {
    given([])
      .when(cmd.expire(at(3600)))
      .thenNothing();
  });

  it("given an active session before its deadlines, when expired, then nothing", () => {
    given([created])
      .when(cmd.expire(at(599)))
      .thenNothing();
  });

  it("given a session at its absolute deadline, when expired by a tick, then SessionExpired with the tick", () => {
    const { state } = given(overdueByAbsolute.history)
      .when(cmd.expire(overdueByAbsolute.now, tickOf(overdueByAbsolute.now)))
      .then([overdueByAbsolute.expiry(tickOf(overdueByAbsolute.now))]);
    expect(state).toMatchObject({ status: "expired", endReason: "expired_absolute", endedAt: at(3600) });
  });

  it("given a session past its idle deadline, when expired by a tick, then SessionExpired (idle) with the tick", () => {
    const { state } = given(overdueByIdle.history)
      .when(cmd.expire(overdueByIdle.now, tickOf(overdueByIdle.now)))
      .then([overdueByIdle.expiry(tickOf(overdueByIdle.now))]);
    expect(state).toMatchObject({ status: "expired", endReason: "expired_idle" });
  });

  it("given a session past both deadlines, when expired, then the absolute deadline is the cause", () => {
    given([created])
      .when(cmd.expire(at(4000)))
      .then([evt.expired(at(4000), "absolute", at(3600))]);
  });

  it("given a session renewed before its deadline, when expired at the old deadline, then nothing", () => {
    given([withoutIdleTimeout, evt.renewed(at(1800), at(3600), at(5400))])
      .when(cmd.expire(at(3600)))
      .thenNothing();
  });

  it("given a session touched before its idle deadline, when expired at the old idle deadline, then nothing", () => {
    given([created, evt.touched(at(300))])
      .when(cmd.expire(at(600)))
      .thenNothing();
  });

  it.each(ENDED)("given %s session, when expired, then nothing is appended", (_, history) => {
    given(history).when(cmd.expire(LATER)).thenNothing();
  });
});
