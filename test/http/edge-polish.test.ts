import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer, startEmbedded } from "../support/tessera.ts";

/**
 * HTTP edges: 405 with Allow, JSON-only bodies (forms where a protocol sends them), the 401 challenge,
 * strict parameters on the routes that take none, and /mcp's 415 — each a problem+json with a stable code
 * (JSON-RPC at /mcp) that appends nothing.
 */

let tessera: Tessera;
let userToken: string;

beforeAll(async () => {
  tessera = await startEmbedded();
  const created = await tessera.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: adminHeaders,
    payload: { user_id: "edge-user", roles: ["user"] },
  });
  userToken = (created.json() as { token: string }).token;
});
afterAll(async () => {
  await tessera?.close();
});

async function expectProblem(request: InjectOptions, status: number, code: string) {
  const before = await tessera.log.lastPosition();
  const response = await tessera.app.inject(request);
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers["content-type"]).toContain("application/problem+json");
  expect(response.json()).toMatchObject({ status, code });
  expect(await tessera.log.lastPosition()).toBe(before);
  return response;
}

describe("a method the path does not have", () => {
  it.each([
    ["GET", "/v1/auth/token", "POST"],
    ["PUT", "/v1/sessions/validate", "GET, HEAD, POST, DELETE"],
    ["PATCH", "/v1/sessions", "GET, HEAD, POST, DELETE"],
    ["DELETE", "/healthz", "GET, HEAD"],
    ["POST", "/.well-known/jwks.json", "GET, HEAD"],
    ["GET", "/v1/users/someone/claims", "PUT"],
  ] as const)("%s %s → 405 method_not_allowed, Allow: %s", async (method, url, allow) => {
    const response = await expectProblem({ method, url, headers: adminHeaders }, 405, "method_not_allowed");
    expect(response.headers.allow).toBe(allow);
    expect(response.json()).toMatchObject({ instance: url.split("?")[0] });
  });

  it("keeps the query out of the lookup and the answer", async () => {
    const response = await expectProblem(
      { method: "GET", url: "/v1/auth/token?grant_type=password" },
      405,
      "method_not_allowed",
    );
    expect(response.headers.allow).toBe("POST");
  });

  it.each([
    ["GET", "/v1/nothing-here"],
    ["POST", "/v1/sessions/validate/extra"],
    ["DELETE", "/v2/sessions"],
  ] as const)("%s %s (no such path) → 404 not_found without Allow", async (method, url) => {
    const response = await expectProblem({ method, url }, 404, "not_found");
    expect(response.headers.allow).toBeUndefined();
  });
});

describe("request bodies are JSON, forms only where a protocol sends them", () => {
  it.each([
    ["POST", "/v1/sessions", "user_id=form-user&roles=user"],
    ["POST", "/v1/sessions/validate", "token=tss_x"],
    ["POST", "/v1/sessions/cleanup", "a=b"],
    ["PUT", "/v1/users/form-user/claims", "roles=user"],
  ] as const)("a form body on %s %s → 415 unsupported_media_type", async (method, url, payload) => {
    await expectProblem(
      {
        method,
        url,
        headers: { ...adminHeaders, "content-type": "application/x-www-form-urlencoded" },
        payload,
      },
      415,
      "unsupported_media_type",
    );
  });

  it("a text/plain body → 415, not a schema error", async () => {
    await expectProblem(
      {
        method: "POST",
        url: "/v1/sessions",
        headers: { ...adminHeaders, "content-type": "text/plain" },
        payload: '{"user_id":"text-user"}',
      },
      415,
      "unsupported_media_type",
    );
  });

  it("the token endpoint and back-channel logout still take forms", async () => {
    const token = await tessera.app.inject({
      method: "POST",
      url: "/v1/auth/token",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: "grant_type=password&username=demo&password=demo123!",
    });
    expect(token.statusCode, token.body).toBe(200);
    expect(token.json()).toMatchObject({ token_type: "Bearer" });
    const logout = await tessera.app.inject({
      method: "POST",
      url: "/v1/backchannel-logout",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: "logout_token=not-a-jwt",
    });
    // Parsed as a form: the token itself is refused (no IdP is configured), not the media type.
    expect(logout.statusCode, logout.body).toBe(400);
    expect(logout.json()).toMatchObject({ error: "invalid_request" });
  });

  it("JSON still creates", async () => {
    const response = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: adminHeaders,
      payload: { user_id: "json-user" },
    });
    expect(response.statusCode, response.body).toBe(201);
  });
});

describe("401 answers carry the Bearer challenge (RFC 6750 §3)", () => {
  const plain = 'Bearer realm="tessera"';
  const invalid = 'Bearer realm="tessera", error="invalid_token"';

  it("no credential: the challenge without an error", async () => {
    const response = await expectProblem({ method: "GET", url: "/v1/sessions" }, 401, "unauthorized");
    expect(response.headers["www-authenticate"]).toBe(plain);
  });

  it("a wrong admin key (not a Bearer token): the challenge without an error", async () => {
    const response = await expectProblem(
      { method: "GET", url: "/v1/sessions", headers: { "x-admin-key": "wrong-key-0123456789" } },
      401,
      "unauthorized",
    );
    expect(response.headers["www-authenticate"]).toBe(plain);
  });

  it.each([
    ["a refused session token", `tss_01900000-0000-7000-8000-000000000000_${"A".repeat(43)}`],
    ["a Bearer token nobody understands", "eyJhbGciOiJub25lIn0.e30."],
  ])("%s: error=invalid_token", async (_name, token) => {
    const response = await expectProblem(
      { method: "GET", url: "/v1/sessions", headers: bearer(token) },
      401,
      "unauthorized",
    );
    expect(response.headers["www-authenticate"]).toBe(invalid);
  });

  it("validate: a refused token says invalid_token, a request without one gets the plain challenge", async () => {
    const refused = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions/validate",
      payload: { token: `${userToken}x` },
    });
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toEqual({ valid: false, reason: "malformed" });
    expect(refused.headers["www-authenticate"]).toBe(invalid);
    const none = await tessera.app.inject({ method: "POST", url: "/v1/sessions/validate", payload: {} });
    expect(none.statusCode).toBe(401);
    expect(none.headers["www-authenticate"]).toBe(plain);
    const valid = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions/validate",
      payload: { token: userToken },
    });
    expect(valid.statusCode).toBe(200);
    expect(valid.headers["www-authenticate"]).toBeUndefined();
  });
});

describe("routes that take no parameters refuse unknown ones by name", () => {
  it.each<[string, InjectOptions]>([
    ["stats query", { method: "GET", url: "/v1/sessions/stats?bogus=1" }],
    ["cleanup query", { method: "POST", url: "/v1/sessions/cleanup?bogus=1" }],
    ["cleanup body", { method: "POST", url: "/v1/sessions/cleanup", payload: { bogus: 1 } }],
    ["recycle query", { method: "POST", url: "/v1/sessions/recycle?bogus=1" }],
    ["recycle body", { method: "POST", url: "/v1/sessions/recycle", payload: { bogus: 1 } }],
    ["user recycle query", { method: "POST", url: "/v1/users/edge-user/recycle?bogus=1" }],
    ["user recycle body", { method: "POST", url: "/v1/users/edge-user/recycle", payload: { bogus: 1 } }],
  ])("%s → 400 invalid_request naming the field", async (_name, request) => {
    const headers = request.url?.toString().startsWith("/v1/sessions/recycle")
      ? bearer(userToken)
      : adminHeaders;
    const response = await expectProblem({ ...request, headers }, 400, "invalid_request");
    expect(JSON.stringify(response.json())).toContain("bogus");
  });

  it("without parameters they answer as before", async () => {
    const stats = await tessera.app.inject({
      method: "GET",
      url: "/v1/sessions/stats",
      headers: adminHeaders,
    });
    expect(stats.statusCode, stats.body).toBe(200);
    const cleanup = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions/cleanup",
      headers: adminHeaders,
      payload: {},
    });
    expect(cleanup.statusCode, cleanup.body).toBe(200);
    const recycle = await tessera.app.inject({
      method: "POST",
      url: "/v1/users/nobody-here/recycle",
      headers: adminHeaders,
    });
    expect(recycle.statusCode, recycle.body).toBe(200);
  });
});

describe("/mcp checks the Content-Type first", () => {
  const initialize = {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "t", version: "1" } },
  };

  it.each([
    ["text/plain", "text/plain", JSON.stringify(initialize)],
    ["a form", "application/x-www-form-urlencoded", "jsonrpc=2.0&method=initialize"],
    ["no Content-Type (and no body)", undefined, undefined],
  ])("an initialize sent with %s → 415 (JSON-RPC), no session", async (_name, contentType, payload) => {
    const before = await tessera.log.lastPosition();
    const response = await tessera.app.inject({
      method: "POST",
      url: "/mcp",
      headers: {
        ...bearer(userToken),
        accept: "application/json, text/event-stream",
        ...(contentType === undefined ? {} : { "content-type": contentType }),
      },
      ...(payload === undefined ? {} : { payload }),
    });
    expect(response.statusCode, response.body).toBe(415);
    expect(response.json()).toMatchObject({ jsonrpc: "2.0", error: { code: -32000 }, id: null });
    expect(response.headers["mcp-session-id"]).toBeUndefined();
    expect(await tessera.log.lastPosition()).toBe(before);
  });

  it("a JSON initialize still opens a session", async () => {
    const response = await tessera.app.inject({
      method: "POST",
      url: "/mcp",
      headers: { ...bearer(userToken), accept: "application/json, text/event-stream" },
      payload: initialize,
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers["mcp-session-id"]).toMatch(/^tss_/);
  });
});
