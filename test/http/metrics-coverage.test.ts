import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { measureProjectionLag } from "../../src/adapters/metrics/projection-lag.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, eventually } from "../support/tessera.ts";
import { createSession, fakeClockAt, startEmbeddedAt, T0 } from "../time/helpers.ts";

/**
 * `tessera_events_appended_total` counts every event this instance appends, by type, whichever service
 * appends it (sessions, logins, the user service's claims changes and recycle fan-outs, revocations, the
 * expiry scheduler): the counters must equal the log's own tally. And the projection lag gauges.
 */

let clock: FakeClock;
let tessera: Tessera;

beforeAll(async () => {
  clock = fakeClockAt(T0);
  tessera = await startEmbeddedAt({ clock });
});

afterAll(async () => {
  await tessera?.close();
});

async function scrape(): Promise<string> {
  const response = await tessera.app.inject({ method: "GET", url: "/metrics" });
  expect(response.statusCode).toBe(200);
  return response.body;
}

function appendedByType(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const match of text.matchAll(/^tessera_events_appended_total\{type="(\w+)"\} (\d+)$/gm)) {
    counts.set(match[1] as string, Number(match[2]));
  }
  return counts;
}

async function logTally(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const last = await tessera.log.lastPosition();
  for (let position = 1; position <= last; position++) {
    const event = (await tessera.log.readAt(position)) as RecordedEvent | undefined;
    if (event) counts.set(event.type, (counts.get(event.type) ?? 0) + 1);
  }
  return counts;
}

describe("events appended", () => {
  it("counts every event type the log holds, including the user service's and the scheduler's", async () => {
    const inject = (method: "POST" | "PUT" | "DELETE", url: string, payload?: object) =>
      tessera.app.inject({ method, url, headers: adminHeaders, ...(payload ? { payload } : {}) });

    // Claims change → UserClaimsChanged, then the recycle process manager → SessionRecycled.
    await createSession(tessera, "claims-user", { roles: ["user"] });
    expect((await inject("PUT", "/v1/users/claims-user/claims", { roles: ["admin"] })).statusCode).toBe(200);
    // The explicit recycle API → SessionRecycled through the user service's fan-out.
    await createSession(tessera, "recycle-user");
    expect((await inject("POST", "/v1/users/recycle-user/recycle")).statusCode).toBe(200);
    // Revoke-all → UserSessionsRevoked, then SessionInvalidated per session.
    await createSession(tessera, "revoked-user");
    expect((await inject("DELETE", "/v1/users/revoked-user/sessions")).statusCode).toBe(200);
    // Password login and refresh → SessionCreated, SessionTokensRotated.
    const login = await tessera.app.inject({
      method: "POST",
      url: "/v1/auth/token",
      payload: { grant_type: "password", username: "demo", password: "demo123!" },
    });
    expect(login.statusCode).toBe(200);
    const refreshed = await tessera.app.inject({
      method: "POST",
      url: "/v1/auth/token",
      payload: { grant_type: "refresh_token", refresh_token: login.json().refresh_token },
    });
    expect(refreshed.statusCode).toBe(200);
    // The expiry scheduler → SessionExpired.
    await createSession(tessera, "expiring-user", { ttl_seconds: 5 });
    clock.advance(10_000);

    const wanted = [
      "UserClaimsChanged",
      "SessionRecycled",
      "UserSessionsRevoked",
      "SessionInvalidated",
      "SessionTokensRotated",
      "SessionExpired",
    ];
    // Fan-outs and expiry run in the background: wait until the log holds each type…
    await eventually(async () => {
      const tally = await logTally();
      return wanted.every((type) => (tally.get(type) ?? 0) > 0);
    }, 10_000);
    // …and then the counters must agree with it exactly, type by type.
    await eventually(async () => {
      const [tally, counted] = [await logTally(), appendedByType(await scrape())];
      return [...tally].every(([type, count]) => counted.get(type) === count);
    }, 5_000).catch(async () => {
      expect(Object.fromEntries(appendedByType(await scrape()))).toEqual(
        Object.fromEntries(await logTally()),
      );
    });
    const counted = appendedByType(await scrape());
    for (const type of wanted) expect(counted.get(type), type).toBeGreaterThan(0);
  });
});

describe("projection lag", () => {
  it("reports events and seconds for every projection, 0 once caught up", async () => {
    await createSession(tessera, "lag-user");
    await tessera.service.readYourWrites();
    await eventually(async () => {
      const text = await scrape();
      return ["recycle", "sessions", "audit", "validation"].every(
        (name) =>
          text.includes(`tessera_projection_lag_seconds{projection="${name}"} 0\n`) &&
          text.includes(`tessera_projection_lag_events{projection="${name}"} 0\n`),
      );
    }, 10_000);
    // No IdP configured: its projection does not run, so it has no series.
    expect(await scrape()).not.toContain('projection="idp_sessions"');
  });

  it("is the age of the oldest unapplied event, and skips a projection whose checkpoint fails", async () => {
    const at = (position: number, occurredAt: number) =>
      ({ position, metadata: { occurredAt: new Date(occurredAt).toISOString() } }) as RecordedEvent;
    const events = new Map([
      [4, at(4, T0 - 90_000)],
      [5, at(5, T0 - 30_000)],
      [6, at(6, T0 - 1_000)],
    ]);
    const log = { lastPosition: async () => 6, readAt: async (position: number) => events.get(position) };
    const lags = await measureProjectionLag({
      log,
      clock: { now: () => T0 },
      projections: [
        { name: "behind", checkpoint: async () => 3 },
        { name: "nearly", checkpoint: async () => 5 },
        { name: "caught-up", checkpoint: async () => 6 },
        // Its oldest unapplied event is gone: the newest one's age is a lower bound.
        { name: "gap", checkpoint: async () => 1 },
        { name: "down", checkpoint: async () => Promise.reject(new Error("database down")) },
      ],
    });
    expect(lags).toEqual([
      { name: "behind", ok: true, events: 3, seconds: 90 },
      { name: "nearly", ok: true, events: 1, seconds: 1 },
      { name: "caught-up", ok: true, events: 0, seconds: 0 },
      { name: "gap", ok: true, events: 5, seconds: 1 },
      { name: "down", ok: false, error: expect.any(Error) },
    ]);
  });

  it("a clock behind the appender's never reports a negative age", async () => {
    const log = {
      lastPosition: async () => 2,
      readAt: async () => ({ metadata: { occurredAt: new Date(T0 + 5_000).toISOString() } }) as RecordedEvent,
    };
    const [lag] = await measureProjectionLag({
      log,
      clock: { now: () => T0 },
      projections: [{ name: "p", checkpoint: async () => 1 }],
    });
    expect(lag).toEqual({ name: "p", ok: true, events: 1, seconds: 0 });
  });
});
