import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { initializeMessage, MCP_ACCEPT } from "../mcp/support.ts";
import { adminHeaders, bearer, eventually, type Pair, startPair } from "../support/tessera.ts";
import { startTestIdp, type TestIdp, unsecuredToken } from "./idp-fixture.ts";

/**
 * OIDC Back-Channel Logout 1.0 at POST /v1/backchannel-logout, with a local IdP (JWKS served by the test),
 * on two instances against the real NATS and Postgres.
 */
let idp: TestIdp;
let pair: Pair;
let a: Tessera;
let b: Tessera;

beforeAll(async () => {
  idp = await startTestIdp();
  pair = await startPair("bcl", { env: idp.env });
  ({ a, b } = pair);
});

afterAll(async () => {
  await pair?.close();
  await idp?.close();
});

function logout(on: Tessera, token: string | undefined) {
  return on.app.inject({
    method: "POST",
    url: "/v1/backchannel-logout",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    payload: token === undefined ? "" : new URLSearchParams({ logout_token: token }).toString(),
  });
}

/** Signs in through the IdP: the first request with its token creates the Tessera session. */
async function signIn(on: Tessera, sub: string, sid: string | undefined) {
  const token = await idp.accessToken({ sub, sid, roles: ["user"], groups: [] });
  const response = await on.app.inject({ method: "GET", url: "/v1/sessions", headers: bearer(token) });
  expect(response.statusCode, response.body).toBe(200);
  const listed = response.json() as { sessions: Array<{ id: string; status: string }> };
  return { token, sessions: listed.sessions };
}

async function sessionIdsOf(sub: string) {
  // Sessions created on the other instance are not this instance's writes: wait for the log's end.
  const end = await a.log.lastPosition();
  await eventually(async () => (await a.readModel.checkpoint()) >= end, 10_000);
  const page = await a.readModel.listSessions({ userId: sub, status: "all", limit: 100, now: Date.now() });
  return page.sessions;
}

async function endReason(sessionId: string) {
  const session = await a.service.get(sessionId);
  return session === undefined || session.status === "active" ? undefined : session.endReason;
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

describe("back-channel logout: valid tokens", () => {
  it("ends the sessions of the IdP session named by sid, and only those", async () => {
    await signIn(a, "bcl-alice", "sid-1");
    await signIn(b, "bcl-alice", "sid-2");
    const sessions = await sessionIdsOf("bcl-alice");
    expect(sessions).toHaveLength(2);

    const response = await logout(b, await idp.logoutToken({ sub: "bcl-alice", sid: "sid-1" }));
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers["cache-control"]).toBe("no-store");

    const reasons = await Promise.all(sessions.map((s) => endReason(s.id)));
    expect(reasons.sort()).toEqual(["backchannel_logout", undefined].sort());
    // The token of the ended sign-in no longer authenticates; the other one still does.
    const first = await idp.accessToken({
      sub: "bcl-alice",
      sid: "sid-1",
      roles: ["user"],
      groups: [],
      iat: Math.floor(Date.now() / 1000) - 5,
    });
    expect(
      (await a.app.inject({ method: "GET", url: "/v1/sessions", headers: bearer(first) })).statusCode,
    ).toBe(401);
    const second = await idp.accessToken({ sub: "bcl-alice", sid: "sid-2", roles: ["user"], groups: [] });
    expect(
      (await a.app.inject({ method: "GET", url: "/v1/sessions", headers: bearer(second) })).statusCode,
    ).toBe(200);
  });

  it("a session created with POST /v1/sessions under an IdP token carries its sid and ends with it", async () => {
    const one = await signIn(a, "bcl-carol", "sid-c1");
    const two = await signIn(b, "bcl-carol", "sid-c2");
    const create = async (on: Tessera, headers: Record<string, string>, payload: object = {}) => {
      const response = await on.app.inject({ method: "POST", url: "/v1/sessions", headers, payload });
      expect(response.statusCode, response.body).toBe(201);
      return response.json() as { session: { id: string }; token: string };
    };
    const underOne = await create(a, bearer(one.token));
    const underTwo = await create(b, bearer(two.token));
    const byAdmin = await create(a, adminHeaders, { user_id: "bcl-carol", roles: ["user"] });
    // An MCP session opened under the same IdP token belongs to that sign-in too.
    const mcpInit = await a.app.inject({
      method: "POST",
      url: "/mcp",
      headers: { ...MCP_ACCEPT, ...bearer(one.token), host: "127.0.0.1" },
      payload: initializeMessage("2025-11-25"),
    });
    expect(mcpInit.statusCode, mcpInit.body).toBe(200);
    const mcpToken = String(mcpInit.headers["mcp-session-id"]);
    const mcpSessionId = mcpToken.slice(4, 40);

    // Every session of the user by the sid its SessionCreated carries: each sign-in's own session and the
    // one created under its token; none on the admin's.
    const all = (await sessionIdsOf("bcl-carol")).map((s) => s.id);
    const sids = new Map<string, string | undefined>();
    for (const id of all) {
      const created = (await a.log.readStream({ category: "session", id })).events[0];
      expect(created?.type).toBe("SessionCreated");
      sids.set(id, created?.type === "SessionCreated" ? created.data.idpSessionId : undefined);
    }
    const withSid = (sid: string | undefined) => all.filter((id) => sids.get(id) === sid).sort();
    const signInOne = withSid("sid-c1");
    expect(signInOne).toHaveLength(3);
    expect(signInOne).toContain(underOne.session.id);
    expect(signInOne).toContain(mcpSessionId);
    expect(withSid("sid-c2")).toHaveLength(2);
    expect(withSid("sid-c2")).toContain(underTwo.session.id);
    expect(withSid(undefined)).toEqual([byAdmin.session.id]);

    // A logout naming only the sid: the sessions are found through the sid, not the subject.
    const response = await logout(b, await idp.logoutToken({ sid: "sid-c1" }));
    expect(response.statusCode, response.body).toBe(200);
    for (const id of all) {
      expect(await endReason(id), id).toBe(signInOne.includes(id) ? "backchannel_logout" : undefined);
    }
    // Refused on the other instance too; the other sign-in's sessions and the admin's still validate there.
    await eventually(() => a.validator.validateFromMemory(underOne.token)?.valid === false, 5_000);
    expect(a.validator.validateFromMemory(underOne.token)).toMatchObject({ reason: "invalidated" });
    await eventually(() => a.validator.validateFromMemory(mcpToken)?.valid === false, 5_000);
    expect((await a.validator.validate(underTwo.token)).valid).toBe(true);
    expect((await a.validator.validate(byAdmin.token)).valid).toBe(true);
    expect(
      (await a.app.inject({ method: "GET", url: "/v1/sessions", headers: bearer(two.token) })).statusCode,
    ).toBe(200);
  });

  it("ends a sid's sessions with a token that carries only the sid", async () => {
    await signIn(a, "bcl-sidonly", "sid-only");
    const [session] = await sessionIdsOf("bcl-sidonly");
    const response = await logout(a, await idp.logoutToken({ sid: "sid-only" }));
    expect(response.statusCode).toBe(200);
    expect(await endReason(session!.id)).toBe("backchannel_logout");
  });

  it("ends every session of the subject when the token has no sid", async () => {
    await signIn(a, "bcl-bob", "sid-b1");
    await signIn(b, "bcl-bob", undefined);
    const sessions = await sessionIdsOf("bcl-bob");
    expect(sessions).toHaveLength(2);
    const response = await logout(a, await idp.logoutToken({ sub: "bcl-bob" }));
    expect(response.statusCode).toBe(200);
    for (const s of sessions) expect(await endReason(s.id)).toBe("backchannel_logout");
    const revocation = (await a.log.readStream({ category: "user", id: "bcl-bob" })).events.at(-1);
    expect(revocation).toMatchObject({ type: "UserSessionsRevoked", data: { reason: "backchannel_logout" } });
  });

  it("answers 200 when nothing matched", async () => {
    const before = await settled(a);
    const response = await logout(a, await idp.logoutToken({ sub: "bcl-nobody", sid: "sid-none" }));
    expect(response.statusCode).toBe(200);
    expect(response.headers["cache-control"]).toBe("no-store");
    expect(await a.log.lastPosition()).toBe(before);
  });

  it("accepts a token typed as a plain JWT, or not typed", async () => {
    expect(
      (await logout(a, await idp.logoutToken({ sub: "bcl-typ", sid: "s" }, { typ: "JWT" }))).statusCode,
    ).toBe(200);
    expect(
      (await logout(a, await idp.logoutToken({ sub: "bcl-typ", sid: "s" }, { typ: undefined }))).statusCode,
    ).toBe(200);
  });
});

describe("back-channel logout: refused tokens", () => {
  const now = () => Math.floor(Date.now() / 1000);
  const invalid: Array<[string, () => Promise<string | undefined>]> = [
    ["no logout_token", async () => undefined],
    [
      "alg none",
      async () =>
        unsecuredToken({
          iss: idp.issuer,
          aud: "tessera-test",
          iat: now(),
          exp: now() + 60,
          jti: randomUUID(),
          sub: "bcl-victim",
          events: { "http://schemas.openid.net/event/backchannel-logout": {} },
        }),
    ],
    ["a wrong audience", () => idp.logoutToken({ sub: "bcl-victim", aud: "someone-else" })],
    ["a wrong issuer", () => idp.logoutToken({ sub: "bcl-victim", iss: "https://evil.example" })],
    ["a nonce", () => idp.logoutToken({ sub: "bcl-victim", nonce: "n-0S6_WzA2Mj" })],
    ["no events claim", () => idp.logoutToken({ sub: "bcl-victim" }, { omit: ["events"] })],
    [
      "events without the back-channel logout member",
      () => idp.logoutToken({ sub: "bcl-victim", events: { "http://schemas.openid.net/event/other": {} } }),
    ],
    ["neither sub nor sid", () => idp.logoutToken({})],
    ["no jti", () => idp.logoutToken({ sub: "bcl-victim" }, { omit: ["jti"] })],
    ["no iat", () => idp.logoutToken({ sub: "bcl-victim" }, { omit: ["iat"] })],
    ["an expired token", () => idp.logoutToken({ sub: "bcl-victim", iat: now() - 600, exp: now() - 300 })],
    [
      "a signature by a key the IdP does not publish",
      () =>
        idp.foreignToken({
          sub: "bcl-victim",
          jti: randomUUID(),
          events: { "http://schemas.openid.net/event/backchannel-logout": {} },
        }),
    ],
    ["an access-token typ", () => idp.logoutToken({ sub: "bcl-victim" }, { typ: "at+jwt" })],
    // Signed, but holding text no lookup or event can carry (src/domain/storable-text.ts).
    ["a NUL in sid", () => idp.logoutToken({ sub: "bcl-victim", sid: "sid-victim\u0000" })],
    ["an unpaired surrogate in sub", () => idp.logoutToken({ sub: "bcl-victim\ud800" })],
  ];

  it.each(invalid)("refuses %s with 400 and ends nothing", async (_name, make) => {
    const { sessions } = await signIn(a, "bcl-victim", "sid-victim");
    const before = await settled(a);
    const response = await logout(a, await make());
    expect(response.statusCode, response.body).toBe(400);
    expect(response.json()).toMatchObject({ error: "invalid_request" });
    expect(response.headers["cache-control"]).toBe("no-store");
    expect(await a.log.lastPosition()).toBe(before);
    for (const s of sessions) expect(await endReason(s.id)).toBeUndefined();
  });

  it("refuses a replayed jti, on the same and on another instance", async () => {
    const token = await idp.logoutToken({ sub: "bcl-replay", sid: "sid-replay" });
    expect((await logout(a, token)).statusCode).toBe(200);
    await signIn(a, "bcl-replay", "sid-replay-2");
    const before = await settled(a);
    for (const on of [a, b]) {
      const again = await logout(on, token);
      expect(again.statusCode).toBe(400);
      expect(again.json().error_description).toContain("jti");
    }
    expect(await a.log.lastPosition()).toBe(before);
  });
});
