import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { addUser, login } from "../auth/helpers.ts";
import { adminHeaders, bearer, startEmbedded } from "../support/tessera.ts";

/**
 * Edges found by the contract audit: every refusal is a problem document with a numeric `status`, the
 * router's own refusals included; no request can write a string Postgres cannot store (it would stop the
 * read-model projections at that event for good); no request answers 5xx for a bad value.
 */

let tessera: Tessera;

beforeAll(async () => {
  tessera = await startEmbedded();
});
afterAll(async () => {
  await tessera?.close();
});

const inject = (options: InjectOptions) => tessera.app.inject(options);

async function create(body: Record<string, unknown>, headers: Record<string, string> = adminHeaders) {
  return inject({ method: "POST", url: "/v1/sessions", headers, payload: body });
}

function expectProblem(response: Awaited<ReturnType<typeof inject>>, status: number, code: string) {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(response.json()).toMatchObject({ status, code });
}

/** The read model has applied everything this instance wrote (it waits ≤ 1 s for that). */
async function readModelBehind(): Promise<string | undefined> {
  const listed = await inject({ method: "GET", url: "/v1/sessions?status=all", headers: adminHeaders });
  expect(listed.statusCode, listed.body).toBe(200);
  return listed.headers["tessera-read-model-behind"] as string | undefined;
}

describe("problem documents", () => {
  it("keeps the numeric status of a 409 session_ended and names the session's status apart", async () => {
    const created = await create({ user_id: "ended-user" });
    const { session } = created.json() as { session: { id: string } };
    await inject({ method: "DELETE", url: `/v1/sessions/${session.id}`, headers: adminHeaders });

    const renewed = await inject({
      method: "POST",
      url: `/v1/sessions/${session.id}/renew`,
      headers: adminHeaders,
    });
    expectProblem(renewed, 409, "session_ended");
    expect(renewed.json()).toMatchObject({ session_status: "invalidated", end_reason: "revoked_by_admin" });
  });

  it("answers the router's own refusals as problem documents", async () => {
    const badUrl = await inject({ method: "GET", url: "/v1/users/%ZZ/sessions", headers: adminHeaders });
    expectProblem(badUrl, 400, "invalid_request");
    expect(badUrl.headers["cache-control"]).toBe("no-store");
    expectProblem(
      await inject({ method: "GET", url: `/v1/users/${"a".repeat(3000)}/sessions`, headers: adminHeaders }),
      414,
      "invalid_request",
    );
  });

  it("addresses every user id it accepts, even 256 percent-encoded characters", async () => {
    for (const userId of ["u".repeat(256), "é".repeat(256)]) {
      expect((await create({ user_id: userId })).statusCode).toBe(201);
      const listed = await inject({
        method: "GET",
        url: `/v1/users/${encodeURIComponent(userId)}/sessions`,
        headers: adminHeaders,
      });
      expect(listed.statusCode, listed.body).toBe(200);
      expect(listed.json()).toMatchObject({ user_id: userId, total: 1 });
    }
  });
});

describe("instants outside what Postgres can hold", () => {
  it.each([
    "/v1/audit?from=0000-01-01T00:00:00Z",
    "/v1/audit?to=9999-12-31T23:00:00-05:00",
    "/v1/users/alice/sessions?as_of=0000-06-01T00:00:00Z",
    "/v1/users/alice/sessions?as_of=0001-01-01T00:00:00%2B05:00",
  ])("refuses %s with 400, not 500", async (url) => {
    expectProblem(await inject({ method: "GET", url, headers: adminHeaders }), 400, "invalid_request");
  });

  it("still accepts the first and last instants", async () => {
    const response = await inject({
      method: "GET",
      url: "/v1/audit?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z&limit=1",
      headers: adminHeaders,
    });
    expect(response.statusCode, response.body).toBe(200);
  });
});

describe("text that Postgres cannot store never reaches the log", () => {
  const nul = "a\u0000b";
  const loneSurrogate = "a\ud800b";

  it.each([
    ["user_id", { user_id: nul }],
    ["user_id (lone surrogate)", { user_id: loneSurrogate }],
    ["username", { user_id: "x", username: nul }],
    ["roles", { user_id: "x", roles: [nul] }],
    ["client", { user_id: "x", client: loneSurrogate }],
    ["a metadata value", { user_id: "x", metadata: { note: nul } }],
    ["a nested metadata value", { user_id: "x", metadata: { deep: [{ note: loneSurrogate }] } }],
    ["a metadata key", { user_id: "x", metadata: { [nul]: 1 } }],
  ])("POST /v1/sessions refuses NUL or a lone surrogate in %s", async (_, body) => {
    const before = await tessera.log.lastPosition();
    expectProblem(await create(body), 400, "invalid_request");
    expect(await tessera.log.lastPosition()).toBe(before);
  });

  it("refuses it from a user's own token too, and in validate's client facts", async () => {
    const mine = (await create({ user_id: "plain-user", roles: ["user"] })).json() as { token: string };
    expectProblem(await create({ metadata: { note: nul } }, bearer(mine.token)), 400, "invalid_request");
    expectProblem(await create({ client: nul }, bearer(mine.token)), 400, "invalid_request");
    const validated = await inject({
      method: "POST",
      url: "/v1/sessions/validate",
      payload: { token: mine.token, client_ip: nul },
    });
    expectProblem(validated, 400, "invalid_request");
  });

  it("refuses it in user ids of paths and queries and in claims, with 400 rather than 500", async () => {
    const requests: InjectOptions[] = [
      { method: "GET", url: "/v1/users/a%00b/sessions" },
      { method: "DELETE", url: "/v1/users/a%00b/sessions" },
      { method: "POST", url: "/v1/users/a%00b/recycle" },
      { method: "PUT", url: "/v1/users/a%00b/claims", payload: { roles: ["user"] } },
      { method: "PUT", url: "/v1/users/someone/claims", payload: { roles: [nul] } },
      { method: "GET", url: "/v1/sessions?user_id=a%00b" },
      { method: "GET", url: "/v1/audit?user_id=a%00b" },
    ];
    for (const request of requests) {
      expectProblem(await inject({ ...request, headers: adminHeaders }), 400, "invalid_request");
    }
  });

  it("refuses it as the token endpoint's client_id (it becomes the session's client)", async () => {
    await addUser(tessera, "client-id-user", ["user"], "pass-word-1");
    const response = await inject({
      method: "POST",
      url: "/v1/auth/token",
      headers: { "content-type": "application/json" },
      payload: {
        grant_type: "password",
        username: "client-id-user",
        password: "pass-word-1",
        client_id: nul,
      },
    });
    expect(response.statusCode, response.body).toBe(400);
    expect(response.json()).toMatchObject({ error: "invalid_request" });
  });

  it("refuses deeply nested metadata with 400 rather than overflowing the stack", async () => {
    // Built as text: JSON.stringify of the value would overflow in the test itself.
    const payload = `{"user_id":"x","metadata":{"deep":${"[".repeat(20_000)}${"]".repeat(20_000)}}}`;
    const response = await inject({
      method: "POST",
      url: "/v1/sessions",
      headers: { ...adminHeaders, "content-type": "application/json" },
      payload,
    });
    expectProblem(response, 400, "invalid_request");
  });

  it("leaves the read model projecting after all of the above", async () => {
    const created = await create({
      user_id: "after-the-refusals",
      metadata: { ok: "yes", nested: { a: [1] } },
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(await readModelBehind()).toBe("0");
  });
});

describe("sessions created by an admin's own token", () => {
  it("may be for another user, with the claims given", async () => {
    await addUser(tessera, "token-admin", ["admin"], "pass-word-1");
    const { access_token } = await login(tessera, "token-admin", "pass-word-1");
    const created = await create({ user_id: "gateway-user", roles: ["viewer"] }, bearer(access_token));
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({ session: { user_id: "gateway-user", roles: ["viewer"] } });

    const own = await create({}, bearer(access_token));
    expect(own.statusCode, own.body).toBe(201);
    expect(own.json()).toMatchObject({ session: { username: "token-admin", roles: ["admin"] } });
  });

  it("stays refused for a user without admin:sessions", async () => {
    await addUser(tessera, "token-user", ["user"], "pass-word-1");
    const { access_token } = await login(tessera, "token-user", "pass-word-1");
    expectProblem(await create({ user_id: "someone-else" }, bearer(access_token)), 403, "access_denied");
  });
});
