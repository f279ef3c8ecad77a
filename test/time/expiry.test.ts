import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import type { SessionExpired } from "../../src/domain/events.ts";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer, eventually } from "../support/tessera.ts";
import { createSession, eventsOf, fakeClockAt, startEmbeddedAt, T0, typesOf, validate } from "./helpers.ts";

/**
 * Expiry end to end on one embedded instance, driven by a fake clock: moving the clock publishes ticks,
 * the scheduler turns them into ExpireSession commands. No sleeps — each step waits (bounded) until the
 * scheduler has handled the tick of the clock's current second.
 */

let clock: FakeClock;
let tessera: Tessera;

beforeAll(async () => {
  clock = fakeClockAt(T0);
  tessera = await startEmbeddedAt({ clock, env: { TESSERA_TOUCH_INTERVAL_SECONDS: "60" } });
});

afterAll(async () => {
  await tessera?.close();
});

/** Moves the clock and waits until the scheduler has run the pass of the second it lands in. */
async function advance(ms: number) {
  clock.advance(ms);
  const second = Math.floor(clock.now() / 1000);
  await eventually(() => (tessera.time.scheduler.stats.lastPass?.tick ?? 0) >= second, 5_000);
}

const expiredEvent = async (sessionId: string) =>
  (await eventsOf(tessera, sessionId)).find((e) => e.type === "SessionExpired") as
    | (SessionExpired & { metadata: { actor: { kind: string }; source: string } })
    | undefined;

describe("expiry on ticks (embedded, fake clock)", () => {
  it("expires a session at its absolute deadline, recording cause, deadline and tick", async () => {
    const start = clock.now();
    const { id, token } = await createSession(tessera, "abs-user", { ttl_seconds: 60 });
    await advance(59_000);
    expect(await typesOf(tessera, id)).toEqual(["SessionCreated"]);
    await advance(1_000);
    const expired = await expiredEvent(id);
    expect(expired?.data).toMatchObject({
      cause: "absolute",
      deadline: new Date(start + 60_000).toISOString(),
      expiredAt: new Date(start + 60_000).toISOString(),
      tick: Math.floor((start + 60_000) / 1000),
    });
    expect(expired?.metadata).toMatchObject({ actor: { kind: "system" }, source: "scheduler" });
    expect((await validate(tessera, token)).body).toEqual({ valid: false, reason: "expired" });
    // Later ticks find nothing more to do for it: one SessionExpired, ever.
    await advance(5_000);
    expect(await typesOf(tessera, id)).toEqual(["SessionCreated", "SessionExpired"]);
  });

  it("idles a session out after idle_timeout_seconds without activity; validations keep it alive", async () => {
    const start = clock.now();
    const { id, token } = await createSession(tessera, "idle-user", {
      ttl_seconds: 3_600,
      idle_timeout_seconds: 120,
    });
    const read = await tessera.app.inject({
      method: "GET",
      url: `/v1/sessions/${id}`,
      headers: adminHeaders,
    });
    expect(read.json().idle_expires_at).toBe(new Date(start + 120_000).toISOString());

    // Within the touch interval (min(60, 120/2) = 60 s) validation writes nothing.
    await advance(59_000);
    expect((await validate(tessera, token)).status).toBe(200);
    await advance(2_000);
    expect((await validate(tessera, token)).status).toBe(200);
    await eventually(async () => (await typesOf(tessera, id)).includes("SessionTouched"));
    // A second validation in the same interval touches nothing more.
    expect((await validate(tessera, token)).status).toBe(200);

    // Without the touch at +61 s it would have idled out at +120 s.
    await advance(118_000); // +179 s
    expect(await typesOf(tessera, id)).toEqual(["SessionCreated", "SessionTouched"]);
    expect((await validate(tessera, token)).status).toBe(200); // touches again at +179 s
    await eventually(
      async () => (await typesOf(tessera, id)).filter((t) => t === "SessionTouched").length === 2,
    );

    await advance(119_000); // +298 s: last activity +179 s, idle deadline +299 s
    expect((await typesOf(tessera, id)).includes("SessionExpired")).toBe(false);
    await advance(1_000); // +299 s
    const expired = await expiredEvent(id);
    expect(expired?.data).toMatchObject({ cause: "idle", deadline: new Date(start + 299_000).toISOString() });
    expect((await validate(tessera, token)).body).toEqual({ valid: false, reason: "expired" });
  });

  it("a touch handled late records the moment of use, and a second one for the same use appends nothing", async () => {
    const start = clock.now();
    const { id } = await createSession(tessera, "late-toucher", {
      ttl_seconds: 3_600,
      idle_timeout_seconds: 600,
    });
    const context = () => ({
      commandId: crypto.randomUUID(),
      actor: { kind: "user" as const, id: "late-toucher" },
      source: "rest" as const,
    });
    const touch = (usedAt?: number) =>
      tessera.service.touch(id, usedAt === undefined ? {} : { usedAt }, context());
    await advance(61_000);
    const usedAt = clock.now();
    await advance(30_000); // the touch for the use at +61 s is handled at +91 s
    await touch(usedAt);
    const touches = async () => (await eventsOf(tessera, id)).filter((e) => e.type === "SessionTouched");
    expect((await touches()).map((e) => e.data)).toEqual([
      { sessionId: id, at: new Date(start + 61_000).toISOString() },
    ]);
    // The retry of a touch that lost a version conflict to the one above, handled past the interval:
    await advance(70_000); // +161 s
    await touch(usedAt);
    expect(await touches()).toHaveLength(1);
    // Without a moment of use, a touch is as of now.
    await touch();
    expect((await touches()).map((e) => e.data.at)).toEqual([
      new Date(start + 61_000).toISOString(),
      new Date(start + 161_000).toISOString(),
    ]);
    await tessera.service.invalidate(id, "revoked", context()); // not left for the backlog test to expire
  });

  it("leaves a session renewed before its deadline alone, and expires it at the new one", async () => {
    const start = clock.now();
    const { id, token } = await createSession(tessera, "renew-user", { ttl_seconds: 60 });
    await advance(50_000);
    const renewed = await tessera.app.inject({
      method: "POST",
      url: `/v1/sessions/${id}/renew`,
      headers: bearer(token),
      payload: { ttl_seconds: 120 },
    });
    expect(renewed.statusCode).toBe(200);
    await advance(20_000); // past the original deadline (+60 s)
    expect(await typesOf(tessera, id)).toEqual(["SessionCreated", "SessionRenewed"]);
    await advance(100_000); // +170 s, past the renewed deadline (+50 s + 120 s)
    expect((await expiredEvent(id))?.data).toMatchObject({
      cause: "absolute",
      deadline: new Date(start + 170_000).toISOString(),
    });
  });

  it("after downtime, a backlog of ticks costs one pass that expires everything overdue once", async () => {
    const ids = await Promise.all(
      Array.from({ length: 40 }, (_, i) => createSession(tessera, `backlog-${i % 4}`, { ttl_seconds: 30 })),
    );
    const scheduler = tessera.time.scheduler;
    await scheduler.stop();
    const before = { ...scheduler.stats };
    // An hour passes while nobody consumes ticks; the newest of them wait in the time stream.
    clock.advance(3_600_000);
    await tessera.time.publisher.flushed();
    scheduler.start();
    const second = Math.floor(clock.now() / 1000);
    await eventually(() => (scheduler.stats.lastPass?.tick ?? 0) >= second, 5_000);
    const ticks = scheduler.stats.ticks - before.ticks;
    expect(ticks).toBeGreaterThan(10);
    expect(scheduler.stats.passes - before.passes).toBe(1);
    expect(scheduler.stats.coalesced - before.coalesced).toBe(ticks - 1);
    expect(scheduler.stats.lastPass).toMatchObject({ expired: 40, failed: 0 });
    for (const { id } of ids) {
      expect((await typesOf(tessera, id)).filter((t) => t === "SessionExpired")).toHaveLength(1);
    }
  });

  it("records it all in the audit trail, and as_of agrees, on the embedded database too", async () => {
    const start = clock.now();
    const { id } = await createSession(tessera, "audited", { ttl_seconds: 30 });
    await advance(31_000);
    await eventually(async () => (await typesOf(tessera, id)).includes("SessionExpired"));
    const response = await tessera.app.inject({
      method: "GET",
      url: `/v1/audit?session_id=${id}`,
      headers: adminHeaders,
    });
    expect(response.statusCode).toBe(200);
    const events = response.json().events as Array<Record<string, unknown>>;
    expect(events.map((e) => [e.type, e.source, e.reason])).toEqual([
      ["SessionCreated", "rest", null],
      ["SessionExpired", "scheduler", "expired_absolute"],
    ]);
    const asOf = async (ms: number) => {
      const answer = await tessera.app.inject({
        method: "GET",
        url: `/v1/users/audited/sessions?as_of=${new Date(ms).toISOString()}`,
        headers: adminHeaders,
      });
      expect(answer.statusCode, answer.body).toBe(200);
      return (answer.json().sessions as Array<{ id: string }>).map((session) => session.id);
    };
    expect(await asOf(start + 29_999)).toEqual([id]);
    expect(await asOf(start + 30_000)).toEqual([]);
  });
});
