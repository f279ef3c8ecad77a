import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../src/adapters/clock/system-clock.ts";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import { RECYCLE_PROCESS_MANAGER } from "../../src/app/recycle-process-manager.ts";
import { createValidator } from "../../src/app/validator.ts";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer, eventually, type Pair, startPair } from "../support/tessera.ts";

/**
 * Recycling on two instances against the real NATS and Postgres: claims changes fanned out by the
 * process manager, the explicit recycle APIs, and the O(1) revoke-all.
 */
let pair: Pair;
let a: Tessera;
let b: Tessera;

beforeAll(async () => {
  pair = await startPair("recy");
  ({ a, b } = pair);
});

afterAll(async () => {
  await pair?.close();
});

type Created = { session: { id: string }; token: string };

async function create(
  on: Tessera,
  userId: string,
  roles = ["user"],
  groups: string[] = [],
): Promise<Created> {
  const response = await on.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: adminHeaders,
    payload: { user_id: userId, roles, groups },
  });
  expect(response.statusCode, response.body).toBe(201);
  return response.json() as Created;
}

async function createMany(userId: string, count: number, roles = ["user"]) {
  const created: Created[] = [];
  for (let i = 0; i < count; i += 10) {
    const chunk = Array.from({ length: Math.min(10, count - i) }, (_, j) =>
      create((i + j) % 2 ? a : b, userId, roles),
    );
    created.push(...(await Promise.all(chunk)));
  }
  return created;
}

const refusedWith = (on: Tessera, token: string, reason: string) => {
  const outcome = on.validator.validateFromMemory(token);
  return outcome !== undefined && !outcome.valid && outcome.reason === reason;
};

async function endingsOf(sessionId: string) {
  const { events } = await a.log.readStream({ category: "session", id: sessionId });
  return events.filter(
    (e) => e.type === "SessionRecycled" || e.type === "SessionInvalidated" || e.type === "SessionExpired",
  );
}

async function recycleCheckpoint(on: Tessera) {
  return on.store.getCheckpoint(RECYCLE_PROCESS_MANAGER);
}

describe("claims changes", () => {
  it("PUT /v1/users/{id}/claims recycles every live session of the user on every instance within a bounded time", async () => {
    const sessions = await createMany("u-claims", 100);
    const bystander = await create(a, "u-bystander");
    await b.service.readYourWrites(5_000);
    for (const { token } of sessions) await b.validator.validate(token); // warm b's replica

    const started = performance.now();
    const response = await a.app.inject({
      method: "PUT",
      url: "/v1/users/u-claims/claims",
      headers: adminHeaders,
      payload: { roles: ["admin"], groups: ["ops"] },
    });
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json() as { changed: boolean; event_id: string; roles: string[] };
    expect(body).toMatchObject({ user_id: "u-claims", changed: true, roles: ["admin"], groups: ["ops"] });

    let refusedOnB = 0;
    await eventually(() => {
      refusedOnB = sessions.filter(({ token }) => refusedWith(b, token, "recycled")).length;
      return refusedOnB === sessions.length;
    }, 10_000);
    const elapsed = performance.now() - started;
    console.log(
      `claims change → all ${sessions.length} sessions refused on the other instance in ${elapsed.toFixed(1)} ms`,
    );
    expect(elapsed).toBeLessThan(5_000);
    await eventually(() => sessions.every(({ token }) => refusedWith(a, token, "recycled")), 2_000);

    // The process manager then records a SessionRecycled per session (the read models and audit follow).
    const change = (await a.log.readStream({ category: "user", id: "u-claims" })).events.at(-1)!;
    await eventually(async () => (await recycleCheckpoint(a)) >= change.position, 10_000);
    console.log(
      `claims change → the process manager had recorded all ${sessions.length} SessionRecycled events after ${(performance.now() - started).toFixed(1)} ms`,
    );
    // Exactly one ending per session, a SessionRecycled naming the change that caused it.
    for (const { session } of sessions) {
      const endings = await endingsOf(session.id);
      expect(endings).toHaveLength(1);
      expect(endings[0]).toMatchObject({
        type: "SessionRecycled",
        data: { reason: "claims_changed", causeEventId: body.event_id },
      });
    }
    expect(
      (
        await b.app.inject({
          method: "POST",
          url: "/v1/sessions/validate",
          payload: { token: bystander.token },
        })
      ).statusCode,
    ).toBe(200);

    const same = await b.app.inject({
      method: "PUT",
      url: "/v1/users/u-claims/claims",
      headers: adminHeaders,
      payload: { roles: ["admin"], groups: ["ops"] },
    });
    expect(same.json()).toMatchObject({ changed: false, event_id: null });
  });

  it("keeps sessions that already hold the new claims, and sessions created after the change", async () => {
    const old = await create(a, "u-keep", ["user"]);
    const already = await create(b, "u-keep", ["viewer"]);
    const change = await a.app.inject({
      method: "PUT",
      url: "/v1/users/u-keep/claims",
      headers: adminHeaders,
      payload: { roles: ["viewer"] },
    });
    expect(change.statusCode).toBe(200);
    // Created after the change but with the old claims (say, by an admin on purpose): not this change's business.
    const late = await create(b, "u-keep", ["user"]);
    const latePosition = await a.log.lastPosition();
    await eventually(async () => (await recycleCheckpoint(a)) >= latePosition, 5_000);
    expect((await endingsOf(old.session.id)).map((e) => e.type)).toEqual(["SessionRecycled"]);
    expect(await endingsOf(already.session.id)).toEqual([]);
    expect(await endingsOf(late.session.id)).toEqual([]);
  });

  it("only admins set claims", async () => {
    const { token } = await create(a, "u-nonadmin");
    const response = await a.app.inject({
      method: "PUT",
      url: "/v1/users/u-nonadmin/claims",
      headers: bearer(token),
      payload: { roles: ["admin"] },
    });
    expect(response.statusCode).toBe(403);
    const events = await a.log.readStream({ category: "user", id: "u-nonadmin" });
    expect(events.version).toBe(0);
  });
});

describe("explicit recycling (seed 003)", () => {
  it("POST /v1/sessions/recycle recycles the caller's sessions and answers {recycled, user_id}", async () => {
    const sessions = await Promise.all([create(a, "u-own"), create(b, "u-own"), create(a, "u-own")]);
    const other = await create(a, "u-own-other");
    const response = await b.app.inject({
      method: "POST",
      url: "/v1/sessions/recycle",
      headers: bearer(sessions[0]!.token),
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toEqual({ recycled: 3, user_id: "u-own" });
    for (const { token } of sessions) await eventually(() => refusedWith(a, token, "recycled"), 2_000);
    expect(a.validator.validateFromMemory(other.token)?.valid).toBe(true);
  });

  it("POST /v1/users/{id}/recycle (admin) recycles a user's sessions, each once", async () => {
    const sessions = await Promise.all([create(a, "u-adm"), create(b, "u-adm")]);
    const first = await a.app.inject({
      method: "POST",
      url: "/v1/users/u-adm/recycle",
      headers: adminHeaders,
    });
    expect(first.json()).toEqual({ recycled: 2, user_id: "u-adm" });
    const again = await b.app.inject({
      method: "POST",
      url: "/v1/users/u-adm/recycle",
      headers: adminHeaders,
    });
    expect(again.json()).toEqual({ recycled: 0, user_id: "u-adm" });
    for (const { session } of sessions) {
      expect(
        (await endingsOf(session.id)).map((e) => [e.type, (e.data as { reason?: string }).reason]),
      ).toEqual([["SessionRecycled", "recycled"]]);
    }
    const denied = await a.app.inject({
      method: "POST",
      url: "/v1/users/u-adm/recycle",
      headers: bearer((await create(a, "u-adm-2")).token),
    });
    expect(denied.statusCode).toBe(403);
  });
});

describe("O(1) revoke-all", () => {
  it("sign-out-everywhere is refused on every instance at once, and each session gets one SessionInvalidated", async () => {
    const sessions = await createMany("u-revoke", 30);
    const keep = sessions[0]!;
    await b.service.readYourWrites(5_000);
    for (const { token } of sessions) await b.validator.validate(token);
    const revoked = sessions.slice(1);
    const started = performance.now();
    const refusedOnB = eventually(
      () => revoked.every(({ token }) => refusedWith(b, token, "invalidated")),
      5_000,
    ).then(() => performance.now() - started);
    const response = await a.app.inject({
      method: "DELETE",
      url: "/v1/sessions?except=current",
      headers: bearer(keep.token),
    });
    const answered = performance.now() - started;
    expect(response.statusCode, response.body).toBe(200);
    // Counted exactly although the process manager fans out the same revocation concurrently.
    expect(response.json()).toEqual({ count: sessions.length - 1, user_id: "u-revoke" });
    const refused = await refusedOnB;
    console.log(
      `revoke-all of ${revoked.length} sessions: all refused on the other instance ${refused.toFixed(1)} ms after the request began; the request (with its own fan-out) answered after ${answered.toFixed(1)} ms`,
    );
    expect(refused).toBeLessThan(2_000);
    expect(b.validator.validateFromMemory(keep.token)?.valid).toBe(true);

    const position = await a.log.lastPosition();
    await eventually(async () => (await recycleCheckpoint(a)) >= position, 5_000);
    for (const { session } of revoked) {
      const endings = await endingsOf(session.id);
      expect(endings.map((e) => [e.type, (e.data as { reason?: string }).reason])).toEqual([
        ["SessionInvalidated", "revoke_all"],
      ]);
    }
    expect(await endingsOf(keep.session.id)).toEqual([]);
  });

  it("the per-user revocation alone refuses every covered session on every instance, before any per-session event", async () => {
    const sessions = await Promise.all([create(a, "u-o1"), create(b, "u-o1"), create(a, "u-o1")]);
    await b.service.readYourWrites(5_000);
    for (const { token } of sessions) expect((await b.validator.validate(token)).valid).toBe(true);
    // b's view of the sessions before the revocation: all active.
    const before = sessions.map(({ session }) => b.replica.getSession(session.id)!);
    expect(before.every((entry) => entry.status === "active")).toBe(true);

    const count = await a.service.revokeAll("u-o1", "user_disabled", undefined, {
      commandId: crypto.randomUUID(),
      actor: { kind: "admin", id: "test" },
      source: "rest",
    });
    expect(count).toBe(3);
    const revocation = (await a.log.readStream({ category: "user", id: "u-o1" })).events.at(-1)!;
    expect(revocation.type).toBe("UserSessionsRevoked");
    // One KV entry for the user reaches b's memory…
    await eventually(() => (b.replica.getUser("u-o1")?.position ?? 0) >= revocation.position, 2_000);
    // …and it alone refuses every session: a validator that still holds the pre-revocation (active)
    // session entries, plus that one user entry, refuses them all.
    const stale = createValidationReplica();
    for (const entry of before) stale.offerSession(entry);
    stale.offerUser(b.replica.getUser("u-o1")!);
    const validator = createValidator({
      replica: stale,
      store: b.store,
      foldSession: async () => undefined,
      clock: systemClock,
      touchIntervalSeconds: 60,
      maxLifetimeSeconds: 2_592_000,
    });
    for (const { token } of sessions) {
      expect(validator.validateFromMemory(token)).toEqual(
        expect.objectContaining({ valid: false, reason: "invalidated" }),
      );
    }
    for (const { session } of sessions) {
      const endings = await endingsOf(session.id);
      expect(endings.map((e) => [e.type, (e.data as { reason?: string }).reason])).toEqual([
        ["SessionInvalidated", "user_disabled"],
      ]);
    }
  });
});
