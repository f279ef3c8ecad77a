import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer, eventually, type Pair, startPair } from "../support/tessera.ts";
import { addUser, login, type TokenResponse } from "./helpers.ts";

/**
 * Roles → permissions, scopes narrowing them, and the admin routes, on two instances (requests alternate
 * between them: access decisions must not depend on where a session was created).
 */
let pair: Pair;
let a: Tessera;
let b: Tessera;
const env = { TESSERA_RATE_LIMIT_TOKEN_PER_IP: "0", TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: "0" };

type Person = { id: string; token: TokenResponse };
let admin: Person;
let user: Person;
let other: Person;
let viewer: Person;

async function person(on: Tessera, username: string, roles: string[], scope?: string): Promise<Person> {
  const created = await addUser(on, username, roles);
  return { id: created.id, token: await login(on, username, created.password, scope ? { scope } : {}) };
}

const as = (who: Person) => bearer(who.token.access_token);

beforeAll(async () => {
  pair = await startPair("acl", { env });
  ({ a, b } = pair);
  admin = await person(a, "root", ["admin", "user"]);
  user = await person(b, "ursula", ["user"]);
  other = await person(a, "oscar", ["user"]);
  viewer = await person(b, "victor", ["viewer"]);
});

afterAll(async () => {
  await pair?.close();
});

describe("someone else's session", () => {
  it("a user gets 403 access_denied reading, renewing or ending another user's session", async () => {
    const target = other.token.session_id;
    const requests = [
      { method: "GET" as const, url: `/v1/sessions/${target}` },
      { method: "POST" as const, url: `/v1/sessions/${target}/renew`, payload: {} },
      { method: "DELETE" as const, url: `/v1/sessions/${target}` },
      { method: "GET" as const, url: `/v1/sessions?user_id=${other.id}` },
    ];
    for (const [index, request] of requests.entries()) {
      const response = await (index % 2 ? a : b).app.inject({ ...request, headers: as(user) });
      expect(response.statusCode, `${request.method} ${request.url}`).toBe(403);
      expect(response.json()).toMatchObject({ code: "access_denied", status: 403 });
    }
    // Still active: nothing the refused calls asked for happened.
    const read = await a.app.inject({ method: "GET", url: `/v1/sessions/${target}`, headers: as(other) });
    expect(read.json()).toMatchObject({ status: "active" });
  });

  it("an admin (by role, through a JWT) may do all of it", async () => {
    const read = await b.app.inject({
      method: "GET",
      url: `/v1/sessions/${other.token.session_id}`,
      headers: as(admin),
    });
    expect(read.statusCode).toBe(200);
    const list = await a.app.inject({
      method: "GET",
      url: `/v1/sessions?user_id=${other.id}`,
      headers: as(admin),
    });
    expect(list.statusCode).toBe(200);
    expect(list.json().sessions.map((s: { id: string }) => s.id)).toContain(other.token.session_id);
    const stats = await a.app.inject({ method: "GET", url: "/v1/sessions/stats", headers: as(admin) });
    expect(stats.json()).toMatchObject({ scope: "global" });
    const ownStats = await a.app.inject({ method: "GET", url: "/v1/sessions/stats", headers: as(user) });
    expect(ownStats.json()).toMatchObject({ scope: "user" });
  });
});

describe("roles", () => {
  it("viewer reads its own session but cannot renew, end or create", async () => {
    const own = viewer.token.session_id;
    expect(
      (await a.app.inject({ method: "GET", url: `/v1/sessions/${own}`, headers: as(viewer) })).statusCode,
    ).toBe(200);
    expect((await b.app.inject({ method: "GET", url: "/v1/sessions", headers: as(viewer) })).statusCode).toBe(
      200,
    );
    const writes = [
      { method: "POST" as const, url: `/v1/sessions/${own}/renew`, payload: {} },
      { method: "DELETE" as const, url: `/v1/sessions/${own}` },
      { method: "DELETE" as const, url: "/v1/sessions" },
      { method: "POST" as const, url: "/v1/sessions", payload: {} },
    ];
    for (const request of writes) {
      const response = await a.app.inject({ ...request, headers: as(viewer) });
      expect(response.statusCode, `${request.method} ${request.url}`).toBe(403);
      expect(response.json().code).toBe("access_denied");
    }
  });

  it("user renews and ends its own sessions", async () => {
    const second = await login(a, "ursula", "pass-word-1");
    const renew = await b.app.inject({
      method: "POST",
      url: `/v1/sessions/${second.session_id}/renew`,
      headers: bearer(second.access_token),
      payload: { ttl_seconds: 7200 },
    });
    expect(renew.statusCode, renew.body).toBe(200);
    const end = await a.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${second.session_id}`,
      headers: bearer(user.token.access_token),
    });
    expect(end.json()).toMatchObject({ end_reason: "revoked" });
  });

  it("admin routes refuse non-admins with 403, admins and the admin key get through", async () => {
    for (const route of [
      { method: "GET" as const, url: `/v1/users/${other.id}/sessions` },
      { method: "DELETE" as const, url: `/v1/users/${other.id}/sessions` },
      { method: "POST" as const, url: "/v1/sessions/cleanup" },
    ]) {
      for (const who of [user, viewer]) {
        const response = await b.app.inject({ ...route, headers: as(who) });
        expect(response.statusCode, `${route.method} ${route.url}`).toBe(403);
        expect(response.json().code).toBe("access_denied");
      }
      expect((await b.app.inject(route)).statusCode).toBe(401);
    }
    const listed = await a.app.inject({
      method: "GET",
      url: `/v1/users/${other.id}/sessions`,
      headers: as(admin),
    });
    expect(listed.statusCode).toBe(200);
    expect(listed.json()).toMatchObject({ user_id: other.id, total: 1 });
    expect(listed.headers["tessera-read-model-behind"]).toBe("0");
    const byKey = await b.app.inject({
      method: "GET",
      url: `/v1/users/${other.id}/sessions?status=all`,
      headers: adminHeaders,
    });
    expect(byKey.json().sessions[0]).toMatchObject({ id: other.token.session_id, status: "active" });
  });
});

describe("scopes narrow what roles allow", () => {
  it("an admin token scoped to sessions:read reads everything and changes nothing", async () => {
    const readOnly = await login(a, "root", "pass-word-1", { scope: "sessions:read" });
    const headers = bearer(readOnly.access_token);
    expect(
      (await a.app.inject({ method: "GET", url: `/v1/sessions/${own(readOnly)}`, headers })).statusCode,
    ).toBe(200);
    expect(
      (await b.app.inject({ method: "GET", url: `/v1/users/${other.id}/sessions`, headers })).statusCode,
    ).toBe(403);
    expect((await b.app.inject({ method: "POST", url: "/v1/sessions/cleanup", headers })).statusCode).toBe(
      403,
    );
    const renew = await a.app.inject({
      method: "POST",
      url: `/v1/sessions/${own(readOnly)}/renew`,
      headers,
      payload: {},
    });
    expect(renew.statusCode).toBe(403);
    // Without admin:sessions the admin sees only its own statistics.
    const stats = await a.app.inject({ method: "GET", url: "/v1/sessions/stats", headers });
    expect(stats.json()).toMatchObject({ scope: "user" });
  });

  it("a narrowly scoped token cannot mint a broader session token", async () => {
    const writeOnly = await login(a, "ursula", "pass-word-1", { scope: "sessions:write" });
    const minted = await b.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: bearer(writeOnly.access_token),
      payload: {},
    });
    expect(minted.statusCode, minted.body).toBe(201);
    const { session, token } = minted.json();
    for (const url of [`/v1/sessions/${session.id}`, "/v1/sessions", "/v1/sessions/stats"]) {
      const read = await a.app.inject({ method: "GET", url, headers: bearer(token) });
      expect(read.statusCode, url).toBe(403);
      expect(
        (await a.app.inject({ method: "GET", url, headers: bearer(writeOnly.access_token) })).statusCode,
      ).toBe(403);
    }
  });

  it("admin:sessions alone still lets an admin act for everyone", async () => {
    const adminOnly = await login(b, "root", "pass-word-1", { scope: "admin:sessions" });
    const response = await a.app.inject({
      method: "DELETE",
      url: `/v1/users/${other.id}/sessions`,
      headers: bearer(adminOnly.access_token),
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toEqual({ count: 1, user_id: other.id });
    // The other instance refuses the token as soon as the revocation reaches its replica (milliseconds).
    const read = () =>
      b.app.inject({ method: "GET", url: `/v1/sessions/${other.token.session_id}`, headers: as(other) });
    expect(await eventually(async () => (await read()).statusCode === 401, 2_000)).toBeLessThan(500);
  });
});

describe("distributed mode", () => {
  it("seeds no users: the demo accounts do not exist", async () => {
    expect(await a.auth.directory.findByUsername("admin")).toBeUndefined();
    const response = await a.app.inject({
      method: "POST",
      url: "/v1/auth/token",
      payload: { grant_type: "password", username: "admin", password: "admin123!" },
    });
    expect(response.json()).toMatchObject({ error: "invalid_grant" });
  });
});

const own = (token: TokenResponse) => token.session_id;
