import type { InjectOptions } from "fastify";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { bearer, eventually, type Pair, startPair } from "../support/tessera.ts";
import { addUser, getSession, login, refresh, sessionStatus, tokenRequest } from "./helpers.ts";

/** The token endpoint, refresh rotation and logout across two instances on the real NATS and Postgres. */
let pair: Pair;
let a: Tessera;
let b: Tessera;

const env = { TESSERA_RATE_LIMIT_TOKEN_PER_IP: "0", TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: "0" };

beforeAll(async () => {
  pair = await startPair("auth", { env });
  ({ a, b } = pair);
});

afterAll(async () => {
  await pair?.close();
});

describe("password grant", () => {
  it("opens a session and answers RFC 6749 fields, form or JSON", async () => {
    const alice = await addUser(a, "alice");
    const response = await tokenRequest(a, {
      grant_type: "password",
      username: "alice",
      password: alice.password,
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers["cache-control"]).toBe("no-store");
    expect(response.headers.pragma).toBe("no-cache");
    const body = response.json();
    expect(body).toMatchObject({
      token_type: "Bearer",
      expires_in: 900,
      scope: "sessions:read sessions:write",
      session_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      refresh_token: expect.stringMatching(/^tsr_/),
    });
    expect(body.access_token.split(".")).toHaveLength(3);

    const json = await a.app.inject({
      method: "POST",
      url: "/v1/auth/token",
      payload: { grant_type: "password", username: "ALICE", password: alice.password },
    });
    expect(json.statusCode, json.body).toBe(200);
    expect(json.json().session_id).not.toBe(body.session_id);

    // The session exists in the log with the caller's facts, and the JWT works on the other instance.
    const read = await getSession(b, body.session_id, body.access_token);
    expect(read.statusCode, read.body).toBe(200);
    expect(read.json()).toMatchObject({
      user_id: alice.id,
      username: "alice",
      status: "active",
      kind: "web",
    });
    const { events } = await a.log.readStream({ category: "session", id: body.session_id });
    expect(events.map((event) => event.type)).toEqual(["SessionCreated"]);
    expect(events[0]?.metadata.actor).toEqual({ kind: "user", id: alice.id });
    expect(JSON.stringify(events)).not.toContain(body.refresh_token.slice(-43));
  });

  it("refuses bad credentials with invalid_grant and no hint which part was wrong", async () => {
    const bob = await addUser(a, "bob");
    const wrongPassword = await tokenRequest(a, {
      grant_type: "password",
      username: "bob",
      password: "nope-nope",
    });
    const unknownUser = await tokenRequest(a, {
      grant_type: "password",
      username: "nobody",
      password: bob.password,
    });
    for (const response of [wrongPassword, unknownUser]) {
      expect(response.statusCode).toBe(400);
      expect(response.headers["content-type"]).toContain("application/json");
      expect(response.json()).toEqual({
        error: "invalid_grant",
        error_description: "Invalid username or password",
      });
    }
    await a.auth.directory.setDisabled(bob.id, true);
    const disabled = await tokenRequest(a, {
      grant_type: "password",
      username: "bob",
      password: bob.password,
    });
    expect(disabled.json()).toEqual(unknownUser.json());
  });

  it("answers malformed requests with RFC 6749 errors, never problem+json", async () => {
    const cases: Array<[InjectOptions, string]> = [
      [
        { method: "POST", url: "/v1/auth/token", payload: { grant_type: "client_credentials" } },
        "unsupported_grant_type",
      ],
      [
        { method: "POST", url: "/v1/auth/token", payload: { username: "x", password: "y" } },
        "invalid_request",
      ],
      [
        { method: "POST", url: "/v1/auth/token", payload: { grant_type: "password", username: "x" } },
        "invalid_request",
      ],
      [
        { method: "POST", url: "/v1/auth/token", payload: { grant_type: "refresh_token" } },
        "invalid_request",
      ],
      [
        {
          method: "POST",
          url: "/v1/auth/token",
          headers: { "content-type": "application/json" },
          payload: "{not json",
        },
        "invalid_request",
      ],
      [{ method: "POST", url: "/v1/auth/token", payload: { grant_type: 7 } }, "invalid_request"],
      [
        {
          method: "POST",
          url: "/v1/auth/token",
          payload: { grant_type: "password", username: "alice", password: "x", scope: "root" },
        },
        "invalid_scope",
      ],
    ];
    for (const [request, error] of cases) {
      const response = await a.app.inject(request);
      expect(response.statusCode, response.body).toBe(400);
      expect(response.headers["content-type"]).not.toContain("problem");
      expect(response.json()).toMatchObject({ error, error_description: expect.any(String) });
    }
  });

  it("grants what the roles allow, narrowed by the requested scope", async () => {
    const viewer = await addUser(a, "vera", ["viewer"]);
    const token = await login(a, "vera", viewer.password);
    expect(token.scope).toBe("sessions:read");
    const admin = await addUser(a, "adam", ["admin"]);
    expect((await login(a, "adam", admin.password)).scope).toBe(
      "sessions:read sessions:write admin:sessions",
    );
    const narrowed = await login(a, "adam", admin.password, { scope: "sessions:read" });
    expect(narrowed.scope).toBe("sessions:read");
    const refused = await tokenRequest(a, {
      grant_type: "password",
      username: "vera",
      password: viewer.password,
      scope: "admin:sessions",
    });
    expect(refused.json()).toMatchObject({ error: "invalid_scope" });
  });
});

describe("refresh tokens", () => {
  it("rotates on every use, on any instance, and keeps the session", async () => {
    const carol = await addUser(a, "carol");
    const first = await login(a, "carol", carol.password);
    const second = await refresh(b, first.refresh_token);
    expect(second.statusCode, second.body).toBe(200);
    const rotated = second.json();
    expect(rotated.session_id).toBe(first.session_id);
    expect(rotated.refresh_token).not.toBe(first.refresh_token);
    expect(rotated.access_token).not.toBe(first.access_token);
    const third = await refresh(a, rotated.refresh_token, { scope: "sessions:read" });
    expect(third.statusCode, third.body).toBe(200);
    expect(third.json().scope).toBe("sessions:read");
    const { events } = await a.log.readStream({ category: "session", id: first.session_id });
    const rotations = events.filter((event) => event.type === "SessionTokensRotated");
    expect(
      rotations.map((event) => event.type === "SessionTokensRotated" && event.data.refreshGeneration),
    ).toEqual([1, 2]);
    expect((await getSession(b, first.session_id, third.json().access_token)).statusCode).toBe(200);
  });

  it("a superseded refresh token ends the session (refresh_token_reuse) and every token of it", async () => {
    const dave = await addUser(a, "dave");
    const original = await login(a, "dave", dave.password);
    const rotated = (await refresh(a, original.refresh_token)).json();
    expect((await getSession(b, original.session_id, rotated.access_token)).statusCode).toBe(200);

    // An attacker replays the stolen, already used refresh token on the other instance.
    const reuse = await refresh(b, original.refresh_token);
    expect(reuse.statusCode).toBe(400);
    expect(reuse.json()).toMatchObject({ error: "invalid_grant" });
    expect(await sessionStatus(a, original.session_id)).toMatchObject({
      status: "invalidated",
      end_reason: "refresh_token_reuse",
    });
    // Neither the legitimate client's new tokens nor the old access token work any more, anywhere.
    for (const on of [a, b]) {
      await eventually(
        async () => (await getSession(on, original.session_id, rotated.access_token)).statusCode === 401,
        2_000,
      );
      expect((await getSession(on, original.session_id, original.access_token)).statusCode).toBe(401);
    }
    expect((await refresh(a, rotated.refresh_token)).json()).toMatchObject({ error: "invalid_grant" });
  });

  it("an unknown or malformed refresh token is invalid_grant and ends nothing", async () => {
    const erin = await addUser(a, "erin");
    const session = await login(a, "erin", erin.password);
    const guessed = `tsr_${session.session_id}_${"A".repeat(43)}`;
    for (const token of [guessed, "tsr_garbage", session.access_token]) {
      const response = await refresh(a, token);
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ error: "invalid_grant" });
    }
    expect(await sessionStatus(a, session.session_id)).toMatchObject({ status: "active" });
  });
});

describe("logout and keys", () => {
  it("logout ends the caller's session; its JWT is refused at once on the other instance", async () => {
    const frank = await addUser(a, "frank");
    const session = await login(a, "frank", frank.password);
    expect((await getSession(b, session.session_id, session.access_token)).statusCode).toBe(200);
    const out = await a.app.inject({
      method: "POST",
      url: "/v1/auth/logout",
      headers: bearer(session.access_token),
    });
    expect(out.statusCode, out.body).toBe(200);
    expect(out.json()).toEqual({
      session_id: session.session_id,
      status: "invalidated",
      end_reason: "logout",
    });
    const elapsed = await eventually(
      async () => (await getSession(b, session.session_id, session.access_token)).statusCode === 401,
      2_000,
    );
    expect(elapsed).toBeLessThan(500);
    const refused = await getSession(b, session.session_id, session.access_token);
    expect(refused.json()).toMatchObject({ code: "unauthorized", reason: "session_invalidated" });
    expect((await refresh(b, session.refresh_token)).json()).toMatchObject({ error: "invalid_grant" });
    const again = await a.app.inject({
      method: "POST",
      url: "/v1/auth/logout",
      headers: bearer(session.access_token),
    });
    expect(again.statusCode).toBe(401);
  });

  it("publishes the signing key; a client can verify access tokens with the JWKS alone", async () => {
    const gina = await addUser(a, "gina");
    const token = await login(a, "gina", gina.password);
    const jwks = await b.app.inject({ method: "GET", url: "/.well-known/jwks.json" });
    expect(jwks.statusCode).toBe(200);
    expect(jwks.headers["cache-control"]).toContain("max-age");
    const keys = jwks.json();
    expect(keys.keys).toHaveLength(1);
    expect(keys.keys[0]).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
    expect(keys.keys[0].d).toBeUndefined();
    expect(decodeProtectedHeader(token.access_token)).toEqual({
      alg: "EdDSA",
      kid: keys.keys[0].kid,
      typ: "at+jwt",
    });
    const { payload } = await jwtVerify(token.access_token, createLocalJWKSet(keys), {
      issuer: "tessera",
      audience: "tessera",
    });
    expect(payload).toMatchObject({
      sub: gina.id,
      sid: token.session_id,
      scope: "sessions:read sessions:write",
      roles: ["user"],
      groups: [],
      preferred_username: "gina",
    });
    expect(typeof payload.jti).toBe("string");
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(900);
  });
});

describe("the HTTP edge", () => {
  it("sends security headers and serves the OpenAPI document built from the route schemas", async () => {
    const health = await a.app.inject({ method: "GET", url: "/healthz" });
    expect(health.headers["content-security-policy"]).toContain("default-src 'none'");
    expect(health.headers["x-frame-options"]).toBe("DENY");
    expect(health.headers["referrer-policy"]).toBeUndefined(); // HTML-only headers are for the docs UI
    expect(health.headers["strict-transport-security"]).toBeUndefined(); // plain HTTP here; see tls.test.ts

    // The docs UI is an HTML page: helmet's document headers, and its own policy for its assets.
    const page = await a.app.inject({ method: "GET", url: "/docs" });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toContain("text/html");
    expect(page.headers["referrer-policy"]).toBe("no-referrer");
    expect(page.headers["x-frame-options"]).toBe("SAMEORIGIN");
    expect(page.headers["cross-origin-opener-policy"]).toBe("same-origin");
    expect(page.headers["content-security-policy"]).toContain("script-src 'self'");

    const document = await a.app.inject({ method: "GET", url: "/docs/json" });
    expect(document.statusCode).toBe(200);
    const openapi = document.json();
    expect(openapi.openapi).toMatch(/^3\./);
    for (const path of [
      "/v1/auth/token",
      "/v1/auth/logout",
      "/.well-known/jwks.json",
      "/v1/users/{id}/sessions",
      "/v1/sessions/{id}",
    ]) {
      expect(Object.keys(openapi.paths)).toContain(path);
    }
    const token = openapi.paths["/v1/auth/token"].post;
    expect(Object.keys(token.requestBody.content)).toEqual(
      expect.arrayContaining(["application/x-www-form-urlencoded", "application/json"]),
    );
    expect(Object.keys(token.responses["200"].content["application/json"].schema.properties)).toEqual(
      expect.arrayContaining(["access_token", "refresh_token", "session_id", "expires_in"]),
    );
    const ui = await a.app.inject({ method: "GET", url: "/docs" });
    expect([200, 302]).toContain(ui.statusCode);
  });
});
