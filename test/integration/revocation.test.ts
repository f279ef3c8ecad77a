import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer, eventually, type Pair, startPair } from "../support/tessera.ts";

/**
 * DELETE /v1/sessions/{id} on an instance that did not create the session (no sticky routing): the
 * ownership check and the decision use its replica of the validation view, the ending is appended at the
 * entry's position and written through at once. Whatever races it — renewals on the other instance, a
 * second DELETE — the log ends with one correct outcome and loses no update.
 */
let pair: Pair;

beforeAll(async () => {
  pair = await startPair("rev");
});

afterAll(async () => {
  await pair?.close();
});

async function create(on: Tessera, userId: string) {
  const response = await on.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: adminHeaders,
    payload: { user_id: userId, roles: ["user"], client: "cli" },
  });
  expect(response.statusCode, response.body).toBe(201);
  return response.json() as { session: { id: string; expires_at: string }; token: string };
}

async function eventTypes(on: Tessera, sessionId: string) {
  const { events } = await on.log.readStream({ category: "session", id: sessionId });
  return events;
}

/** Created on B; resolves once A holds it through the KV watch (A's command cache never saw it). */
async function createdOnB(userId: string) {
  const { a, b } = pair;
  const created = await create(b, userId);
  await eventually(() => a.replica.getSession(created.session.id) !== undefined, 2_000);
  return created;
}

describe("revocation through an instance that has the session only through the view", () => {
  it("ends it with one append, B refuses it from memory, and a repeated DELETE changes nothing", async () => {
    const { a, b } = pair;
    const { session, token } = await createdOnB("u-cold");
    const ended = await a.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${session.id}`,
      headers: adminHeaders,
    });
    expect(ended.statusCode, ended.body).toBe(200);
    expect(ended.json()).toMatchObject({
      end_reason: "revoked_by_admin",
      session: { id: session.id, user_id: "u-cold", status: "invalidated", client: "cli" },
    });
    const elapsed = await eventually(() => b.validator.validateFromMemory(token)?.valid === false, 2_000);
    expect(elapsed).toBeLessThan(250);
    const events = await eventTypes(a, session.id);
    expect(events.map((e) => e.type)).toEqual(["SessionCreated", "SessionInvalidated"]);
    expect(await a.store.getSession(session.id)).toMatchObject({
      status: "invalidated",
      position: events[1]?.position,
    });

    const again = await a.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${session.id}`,
      headers: adminHeaders,
    });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toMatchObject({
      end_reason: "revoked_by_admin",
      session: { status: "invalidated" },
    });
    expect(await eventTypes(a, session.id)).toHaveLength(2);
  });

  it("checks ownership on the replica's entry: the owner revokes, anyone else is refused, unknown is 404", async () => {
    const { a } = pair;
    const mine = await createdOnB("u-owner");
    const theirs = await createdOnB("u-other");
    const refused = await a.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${theirs.session.id}`,
      headers: bearer(mine.token),
    });
    expect(refused.statusCode).toBe(403);
    expect(await eventTypes(a, theirs.session.id)).toHaveLength(1);
    const unknown = await a.app.inject({
      method: "DELETE",
      url: "/v1/sessions/01a20bf4-caea-717c-a711-bbe49450d4bf",
      headers: adminHeaders,
    });
    expect(unknown.statusCode).toBe(404);
    const own = await a.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${mine.session.id}`,
      headers: bearer(mine.token),
    });
    expect(own.statusCode, own.body).toBe(200);
    expect(own.json()).toMatchObject({ end_reason: "revoked", session: { status: "invalidated" } });
  });

  it("a renewal on B just before the DELETE on A: the ending is decided on the renewed session", async () => {
    const { a, b } = pair;
    const { session, token } = await createdOnB("u-renewed");
    const renewed = await b.app.inject({
      method: "POST",
      url: `/v1/sessions/${session.id}/renew`,
      headers: bearer(token),
      payload: { ttl_seconds: 7_200 },
    });
    expect(renewed.statusCode, renewed.body).toBe(200);
    // A's entry is usually still the created one here: its append conflicts and it decides on the log.
    const deleted = await a.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${session.id}`,
      headers: adminHeaders,
    });
    expect(deleted.statusCode, deleted.body).toBe(200);
    expect(deleted.json().session.expires_at).toBe(renewed.json().session.expires_at);
    const events = await eventTypes(a, session.id);
    expect(events.map((e) => e.type)).toEqual(["SessionCreated", "SessionRenewed", "SessionInvalidated"]);
    await eventually(() => b.validator.validateFromMemory(token)?.valid === false, 2_000);
    expect(await a.store.getSession(session.id)).toMatchObject({
      status: "invalidated",
      expiresAt: Date.parse(renewed.json().session.expires_at),
      position: events[2]?.position,
    });
  });

  it("renewals on B racing a DELETE on A: one ending, every renewal that answered 200 is before it", async () => {
    const { a, b } = pair;
    const sessions = await Promise.all(Array.from({ length: 10 }, (_, i) => createdOnB(`u-race-${i}`)));
    await Promise.all(
      sessions.map(async ({ session, token }, i) => {
        const renew = (ttl: number) =>
          b.app.inject({
            method: "POST",
            url: `/v1/sessions/${session.id}/renew`,
            headers: bearer(token),
            payload: { ttl_seconds: ttl },
          });
        // Staggered so that some renewals land first and some meet the ending.
        const [first, deleted, second] = await Promise.all([
          renew(7_200),
          new Promise((resolve) => setTimeout(resolve, i % 5)).then(() =>
            a.app.inject({ method: "DELETE", url: `/v1/sessions/${session.id}`, headers: adminHeaders }),
          ),
          renew(10_800),
        ]);
        expect(deleted.statusCode, deleted.body).toBe(200);
        expect(deleted.json()).toMatchObject({ end_reason: "revoked_by_admin" });
        const renewals = [first, second];
        for (const response of renewals) {
          // A renewal lands before the ending or meets it; nothing else.
          if (response.statusCode !== 200) {
            expect(response.statusCode, response.body).toBe(409);
            expect(response.json()).toMatchObject({ code: "session_ended" });
          }
        }
        const events = await eventTypes(a, session.id);
        const types = events.map((e) => e.type);
        expect(types.filter((t) => t === "SessionInvalidated")).toHaveLength(1);
        expect(types.at(-1)).toBe("SessionInvalidated");
        // No lost update and no phantom: exactly the renewals that answered 200 are in the log.
        const landed = renewals.filter((r) => r.statusCode === 200).length;
        expect(types.filter((t) => t === "SessionRenewed")).toHaveLength(landed);
        // The answer and the shared view both show the ending as decided on the latest renewal.
        const last = events.at(-1);
        await eventually(async () => (await b.store.getSession(session.id))?.status === "invalidated");
        expect(await b.store.getSession(session.id)).toMatchObject({ position: last?.position });
        expect(Date.parse(deleted.json().session.expires_at)).toBe(
          Math.max(
            Date.parse(session.expires_at),
            ...renewals
              .filter((r) => r.statusCode === 200)
              .map((r) => Date.parse(r.json().session.expires_at)),
          ),
        );
        await eventually(() => b.validator.validateFromMemory(token)?.valid === false, 2_000);
      }),
    );
  });
});
