import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer, eventually, type Pair, startPair } from "../support/tessera.ts";
import { startTestIdp, type TestIdp } from "./idp-fixture.ts";

/**
 * IdP access tokens as Bearers and automatic recycling when their roles or groups change, on two
 * instances against the real NATS and Postgres, with the IdP's JWKS served by the test.
 */
let idp: TestIdp;
let pair: Pair;
let a: Tessera;
let b: Tessera;

beforeAll(async () => {
  idp = await startTestIdp();
  pair = await startPair("idpjwt", { env: idp.env });
  ({ a, b } = pair);
});

afterAll(async () => {
  await pair?.close();
  await idp?.close();
});

const secondsAgo = (s: number) => Math.floor(Date.now() / 1000) - s;

/** The caller's sessions, all statuses (with user_id: an admin's token would otherwise list everyone's). */
function listOwn(on: Tessera, token: string, userId?: string) {
  const query = userId === undefined ? "" : `&user_id=${userId}`;
  return on.app.inject({ method: "GET", url: `/v1/sessions?status=all${query}`, headers: bearer(token) });
}

async function userEvents(userId: string) {
  return (await a.log.readStream({ category: "user", id: userId })).events;
}

async function createAdminSession(on: Tessera, userId: string, roles: string[], groups: string[]) {
  const response = await on.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: adminHeaders,
    payload: { user_id: userId, roles, groups },
  });
  expect(response.statusCode).toBe(201);
  return response.json() as { session: { id: string }; token: string };
}

/**
 * Waits until the session read model holds everything in the log so far. A listing only waits for the
 * answering instance's own writes (and at most 1 s): events another instance or the recycle process
 * manager appended may not be in it yet.
 */
async function readModelCaughtUp(on: Tessera): Promise<void> {
  const end = await on.log.lastPosition();
  await eventually(async () => (await on.readModel.checkpoint()) >= end, 10_000);
}

/** Waits until the recycle process manager has caught up with the log: no fan-out is still to append. */
async function settled(on: Tessera): Promise<number> {
  let end = 0;
  // The fan-out appends events of its own, so "caught up" is checked against the log's end each time.
  await eventually(async () => {
    end = await on.log.lastPosition();
    return (await on.store.getCheckpoint("recycle")) >= end;
  }, 10_000);
  return end;
}

describe("IdP access tokens", () => {
  it("the first request with a sign-in's token creates one session, shared by every instance", async () => {
    const token = await idp.accessToken({
      sub: "jwt-ann",
      sid: "ann-1",
      roles: ["user"],
      groups: ["eng"],
      preferred_username: "ann",
    });
    const [first, second] = await Promise.all([listOwn(a, token), listOwn(a, token)]);
    expect(first.statusCode, first.body).toBe(200);
    expect(second.statusCode).toBe(200);
    expect((await listOwn(b, token)).statusCode).toBe(200);
    // B resolved the sign-in without creating a session of its own: after the catch-up there is still one.
    await readModelCaughtUp(a);
    const onB = await listOwn(b, token);
    expect(onB.statusCode).toBe(200);
    const sessions = onB.json().sessions as Array<{
      id: string;
      roles: string[];
      groups: string[];
      username: string;
    }>;
    expect(sessions).toHaveLength(1);
    expect(sessions[0]).toMatchObject({ roles: ["user"], groups: ["eng"], username: "ann" });
    const created = (await a.log.readStream({ category: "session", id: sessions[0]!.id })).events[0];
    expect(created).toMatchObject({
      type: "SessionCreated",
      data: { idpSessionId: "ann-1", userId: "jwt-ann" },
    });
    // The first sign-in records the IdP's claims as the user's.
    expect((await userEvents("jwt-ann")).map((e) => [e.type, e.metadata.source])).toEqual([
      ["UserClaimsChanged", "jwt"],
    ]);
  });

  it("refuses tokens that are not from the IdP or not valid", async () => {
    const foreign = await idp.foreignToken({ sub: "jwt-ann", roles: ["admin"] });
    expect((await listOwn(a, foreign)).statusCode).toBe(401);
    const expired = await idp.accessToken({ sub: "jwt-ann", iat: secondsAgo(600), exp: secondsAgo(300) });
    const response = await listOwn(a, expired);
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ reason: "expired" });
    const wrongAudience = await idp.accessToken({ sub: "jwt-ann", aud: "other" });
    expect((await listOwn(a, wrongAudience)).statusCode).toBe(401);
  });

  it("refuses a signed token whose claims hold text no event can carry, recording nothing", async () => {
    const before = await a.log.lastPosition();
    for (const claims of [
      { sub: "jwt-nul\u0000" },
      { sub: "jwt-bea", preferred_username: "bea\ud800" },
      { sub: "jwt-bea", sid: "sid\u0000" },
      { sub: "jwt-bea", roles: ["viewer", "adm\udc00in"] },
    ]) {
      const response = await listOwn(a, await idp.accessToken(claims));
      expect(response.statusCode, JSON.stringify(claims)).toBe(401);
      expect(response.json()).toMatchObject({ code: "unauthorized", reason: "malformed" });
    }
    expect(await a.log.lastPosition()).toBe(before);
  });

  it("a token with other roles recycles the user's sessions on every instance and answers 401 recycled", async () => {
    const before = await idp.accessToken({
      sub: "jwt-bo",
      sid: "bo-1",
      roles: ["user"],
      groups: ["eng"],
      iat: secondsAgo(30),
    });
    expect((await listOwn(a, before)).statusCode).toBe(200);
    // Another session of the same user, created by an admin with the same claims, on the other instance.
    const other = await createAdminSession(b, "jwt-bo", ["user"], ["eng"]);
    await b.validator.validate(other.token);

    const after = await idp.accessToken({ sub: "jwt-bo", sid: "bo-1", roles: ["admin"], groups: ["eng"] });
    const started = performance.now();
    const refused = await listOwn(b, after);
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toMatchObject({ reason: "recycled" });

    const changes = (await userEvents("jwt-bo")).filter((e) => e.type === "UserClaimsChanged");
    expect(changes.at(-1)).toMatchObject({
      data: { before: { roles: ["user"], groups: ["eng"] }, after: { roles: ["admin"], groups: ["eng"] } },
      metadata: { source: "jwt", actor: { kind: "idp", id: idp.issuer } },
    });
    // The admin-made session is recycled by the process manager, and refused on the other instance too.
    const elapsed = await eventually(() => {
      const outcome = a.validator.validateFromMemory(other.token);
      return outcome !== undefined && !outcome.valid && outcome.reason === "recycled";
    }, 5_000);
    console.log(
      `IdP token with new roles → the user's other session refused on the other instance after ${(performance.now() - started).toFixed(1)} ms`,
    );
    expect(elapsed).toBeLessThan(5_000);
    // That refusal comes from the user's entry, in O(1); the process manager's SessionRecycled follows on
    // its own schedule (it first waits for the read model), usually tens of ms later, more under load.
    const cause = changes.at(-1)!.metadata.eventId;
    await eventually(async () => {
      const { events } = await a.log.readStream({ category: "session", id: other.session.id });
      return events.some((e) => e.type === "SessionRecycled");
    }, 10_000);
    const { events: otherEvents } = await a.log.readStream({ category: "session", id: other.session.id });
    expect(otherEvents.filter((e) => e.type === "SessionRecycled")).toEqual([
      expect.objectContaining({
        data: expect.objectContaining({ reason: "claims_changed", causeEventId: cause }),
      }),
    ]);

    // Signing in again with the new token gives a fresh session with the new claims.
    const signedIn = await listOwn(a, after, "jwt-bo");
    expect(signedIn.statusCode, signedIn.body).toBe(200);
    // The listing is read once the read model holds the whole log (the recycling of both old sessions
    // included), and with the same token: it must resolve to the session just created, not make another.
    await readModelCaughtUp(a);
    const again = await listOwn(a, after, "jwt-bo");
    expect(again.statusCode, again.body).toBe(200);
    const sessions = again.json().sessions as Array<{
      id: string;
      status: string;
      roles: string[];
      end_reason: string | null;
    }>;
    const live = sessions.filter((s) => s.status === "active");
    expect(live).toHaveLength(1);
    expect(live[0]!.roles).toEqual(["admin"]);
    expect(
      sessions
        .filter((s) => s.status === "recycled")
        .map((s) => s.end_reason)
        .sort(),
    ).toEqual(["claims_changed", "claims_changed"]);

    // The old token, issued before the change, is stale: refused, and the user's claims do not flip back.
    const count = (await userEvents("jwt-bo")).length;
    const stale = await listOwn(b, before);
    expect(stale.statusCode).toBe(401);
    expect(stale.json()).toMatchObject({ reason: "recycled" });
    expect((await userEvents("jwt-bo")).length).toBe(count);
  });

  it("groups count as claims too", async () => {
    const first = await idp.accessToken({ sub: "jwt-cy", sid: "cy-1", roles: ["user"], groups: ["a"] });
    expect((await listOwn(a, first)).statusCode).toBe(200);
    const moved = await idp.accessToken({ sub: "jwt-cy", sid: "cy-1", roles: ["user"], groups: ["b"] });
    expect((await listOwn(a, moved)).json()).toMatchObject({ reason: "recycled" });
  });
});

describe("POST /v1/sessions/validate with the gateway's jwt", () => {
  it("valid while the IdP token agrees with the session", async () => {
    const { token } = await createAdminSession(a, "jwt-gw", ["user"], ["eng"]);
    const jwt = await idp.accessToken({ sub: "jwt-gw", roles: ["user"], groups: ["eng"] });
    const response = await b.app.inject({
      method: "POST",
      url: "/v1/sessions/validate",
      payload: { token, jwt },
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toMatchObject({ valid: true, user: { id: "jwt-gw" } });
  });

  it("a token for another subject is a binding mismatch, a bad one malformed; neither records anything", async () => {
    const { token } = await createAdminSession(a, "jwt-gw2", ["user"], []);
    const before = await settled(a);
    const other = await idp.accessToken({ sub: "jwt-someone-else", roles: ["user"] });
    const mismatch = await a.app.inject({
      method: "POST",
      url: "/v1/sessions/validate",
      payload: { token, jwt: other },
    });
    expect(mismatch.json()).toEqual({ valid: false, reason: "binding_mismatch" });
    const forged = await idp.foreignToken({ sub: "jwt-gw2", roles: ["admin"] });
    const bad = await a.app.inject({
      method: "POST",
      url: "/v1/sessions/validate",
      payload: { token, jwt: forged },
    });
    expect(bad.json()).toEqual({ valid: false, reason: "malformed" });
    expect(await a.log.lastPosition()).toBe(before);
  });

  it("other roles record the change (source jwt), recycle the session and answer 401 recycled", async () => {
    const { token, session } = await createAdminSession(a, "jwt-gw3", ["user"], []);
    const jwt = await idp.accessToken({ sub: "jwt-gw3", roles: ["viewer"] });
    const response = await b.app.inject({
      method: "POST",
      url: "/v1/sessions/validate",
      payload: { token, jwt },
    });
    expect(response.statusCode).toBe(401);
    expect(response.json()).toEqual({ valid: false, reason: "recycled" });
    const change = (await userEvents("jwt-gw3")).at(-1)!;
    expect(change).toMatchObject({ type: "UserClaimsChanged", metadata: { source: "jwt" } });
    const { events } = await a.log.readStream({ category: "session", id: session.id });
    expect(events.filter((e) => e.type === "SessionRecycled")).toEqual([
      expect.objectContaining({
        data: expect.objectContaining({ reason: "claims_changed", causeEventId: change.metadata.eventId }),
      }),
    ]);
    const plain = await a.app.inject({ method: "POST", url: "/v1/sessions/validate", payload: { token } });
    expect(plain.json()).toEqual({ valid: false, reason: "recycled" });
  });
});
