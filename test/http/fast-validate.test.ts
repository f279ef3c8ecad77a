import { request as httpRequest } from "node:http";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { fastValidateCounts } from "../../src/adapters/http/routes/session-validate.ts";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer, createSession, startEmbedded } from "../support/tessera.ts";

/**
 * POST /v1/sessions/validate is mostly answered before Fastify (src/adapters/http/fast-validate.ts). Every
 * request here goes over a real socket (the fast path, when it takes the request) and through `inject`
 * (always the Fastify route, which never sees the server's request listener): both must answer the same
 * status, headers and body, and the metrics and rate limit must count each request exactly once.
 */

type Answer = { status: number; headers: Record<string, string>; body: string };
/** `body: undefined` with `bodiless`: no body, no content type, no length (a gateway's auth subrequest). */
type Sent = { headers?: Record<string, string>; body?: string; chunked?: boolean; bodiless?: boolean };

// Written by Node's HTTP server for the socket, not by the route.
const CONNECTION_HEADERS = new Set(["date", "connection", "keep-alive", "transfer-encoding"]);

function comparable(status: number, headers: Record<string, unknown>, body: string): Answer {
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!CONNECTION_HEADERS.has(name)) kept[name] = String(value);
  }
  return { status, headers: kept, body };
}

async function overSocket(url: string, sent: Sent): Promise<Answer> {
  const body = sent.body ?? "";
  const headers: Record<string, string> = sent.bodiless
    ? { ...sent.headers }
    : { "content-type": "application/json", ...sent.headers };
  if (!sent.chunked && !sent.bodiless) headers["content-length"] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${url}/v1/sessions/validate`, { method: "POST", headers }, (response) => {
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        text += chunk;
      });
      response.on("end", () => resolve(comparable(response.statusCode ?? 0, response.headers, text)));
    });
    request.on("error", reject);
    if (sent.chunked) {
      // Two chunks, no Content-Length: the fast path leaves such a body to Fastify.
      request.write(body.slice(0, 5));
      request.end(body.slice(5));
    } else request.end(body);
  });
}

async function throughInject(app: Tessera["app"], sent: Sent): Promise<Answer> {
  const response = await app.inject({
    method: "POST",
    url: "/v1/sessions/validate",
    headers: sent.bodiless ? { ...sent.headers } : { "content-type": "application/json", ...sent.headers },
    ...(sent.bodiless ? {} : { payload: sent.body ?? "" }),
  });
  return comparable(response.statusCode, response.headers, response.body);
}

async function metricValue(tessera: Tessera, pattern: RegExp): Promise<number> {
  const text = (await tessera.app.inject({ method: "GET", url: "/metrics" })).body;
  return Number(pattern.exec(text)?.[1] ?? 0);
}
const VALID_OUTCOMES = /tessera_validations_total\{outcome="valid"\} (\d+)/;
const VALIDATE_2XX =
  /tessera_http_request_duration_seconds_count\{method="POST",route="\/v1\/sessions\/validate",status="2xx"\} (\d+)/;
const FAST_ANSWERED = /tessera_http_fast_validations_total\{path="answered"\} (\d+)/;
const FAST_HANDED_OVER = /tessera_http_fast_validations_total\{path="handed_over"\} (\d+)/;
const VALIDATE_4XX =
  /tessera_http_request_duration_seconds_count\{method="POST",route="\/v1\/sessions\/validate",status="4xx"\} (\d+)/;

describe("the fast validation path", () => {
  let tessera: Tessera;
  let url: string;
  let token: string;
  let ended: string;

  beforeAll(async () => {
    tessera = await startEmbedded();
    url = await tessera.app.listen({ host: "127.0.0.1", port: 0 });
    ({ token } = await createSession(tessera, "fast-user", { roles: ["reader"] }));
    const other = await createSession(tessera, "fast-user-2");
    const deleted = await tessera.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${other.id}`,
      headers: adminHeaders,
    });
    expect(deleted.statusCode).toBe(200);
    ended = other.token;
  });
  afterAll(async () => {
    await tessera?.close();
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** Sends `sent` both ways; returns the fast path's answer and whether the fast path answered it. */
  async function both(sent: Sent) {
    const counts = fastValidateCounts(tessera.app);
    if (counts === undefined) throw new Error("the fast path is not on");
    const answeredBefore = counts.answered;
    const fast = await overSocket(url, sent);
    const answeredFast = counts.answered - answeredBefore;
    const viaFastify = await throughInject(tessera.app, sent);
    expect(fast).toEqual(viaFastify);
    return { answer: fast, answeredFast: answeredFast === 1 };
  }

  it("answers a valid token itself, exactly as the Fastify route does", async () => {
    const { answer, answeredFast } = await both({ body: JSON.stringify({ token }) });
    expect(answeredFast).toBe(true);
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({
      valid: true,
      user: { id: "fast-user", roles: ["reader"] },
    });
    expect(answer.headers["x-content-type-options"]).toBe("nosniff");
    expect(answer.headers["cache-control"]).toBe("no-store");
    expect(answer.headers["content-type"]).toBe("application/json; charset=utf-8");
  });

  it("answers a session's new view once it changed (the answer it keeps is the old view's)", async () => {
    const own = await createSession(tessera, "renewed-user");
    const first = await both({ body: JSON.stringify({ token: own.token }) });
    const renewed = await tessera.app.inject({
      method: "POST",
      url: `/v1/sessions/${own.id}/renew`,
      headers: adminHeaders,
      payload: { ttl_seconds: 7200 },
    });
    expect(renewed.statusCode).toBe(200);
    const second = await both({ body: JSON.stringify({ token: own.token }) });
    expect(second.answeredFast).toBe(true);
    const expiresAt = (answer: { body: string }) => JSON.parse(answer.body).session.expires_at;
    expect(expiresAt(second.answer)).toBe(renewed.json().session.expires_at);
    expect(expiresAt(second.answer)).not.toBe(expiresAt(first.answer));
  });

  it("takes the token from the Authorization header, with or without a body, as the route does", async () => {
    for (const sent of [
      { body: "{}", headers: bearer(token) },
      { bodiless: true, headers: bearer(token) },
      { body: JSON.stringify({ user_agent: "gateway/1" }), headers: bearer(token) },
    ]) {
      const { answer, answeredFast } = await both(sent);
      expect({ status: answer.status, answeredFast }).toEqual({ status: 200, answeredFast: true });
    }
    const refused = await both({ bodiless: true, headers: bearer(ended) });
    expect({ status: refused.answer.status, answeredFast: refused.answeredFast }).toEqual({
      status: 401,
      answeredFast: true,
    });
    // No token anywhere: the route's own 401 (a challenge without an error code).
    const none = await both({ bodiless: true });
    expect({ status: none.answer.status, answeredFast: none.answeredFast }).toEqual({
      status: 401,
      answeredFast: false,
    });
  });

  it("answers refusals itself with the same 401 and challenge", async () => {
    for (const refused of [ended, `tss_${"0".repeat(36)}_${"x".repeat(43)}`, "tss_garbage"]) {
      const { answer, answeredFast } = await both({ body: JSON.stringify({ token: refused }) });
      expect(answeredFast).toBe(true);
      expect(answer.status).toBe(401);
      expect(answer.headers["www-authenticate"]).toContain('error="invalid_token"');
    }
  });

  it("hands every other request to the Fastify route, which answers it the same either way", async () => {
    const cases: Array<{ sent: Sent; status: number }> = [
      { sent: { body: "{not json" }, status: 400 },
      { sent: { body: JSON.stringify({ token: 42 }) }, status: 400 },
      { sent: { body: JSON.stringify({ token, extra: true }) }, status: 400 },
      { sent: { body: `{"token":"${token}","__proto__":{"x":1}}` }, status: 400 },
      { sent: { body: JSON.stringify({ token, constructor: { prototype: {} } }) }, status: 400 },
      { sent: { body: JSON.stringify({ token: "x".repeat(70_000) }) }, status: 413 },
      { sent: { body: JSON.stringify({ token }), headers: { "content-type": "text/plain" } }, status: 415 },
      { sent: { body: JSON.stringify({ token }), chunked: true }, status: 200 },
      { sent: { body: "null", headers: bearer(token) }, status: 200 },
      { sent: { body: "{}" }, status: 401 },
      { sent: { body: JSON.stringify({ token, jwt: "not.a.jwt" }) }, status: 401 },
    ];
    for (const { sent, status } of cases) {
      const { answer, answeredFast } = await both(sent);
      expect({ status: answer.status, answeredFast }).toEqual({ status, answeredFast: false });
    }
  });

  it("hands over a valid token whose session view is not cached, judged once", async () => {
    vi.spyOn(tessera.service, "cachedAtLeast").mockReturnValue(undefined);
    const validate = vi.spyOn(tessera.validator, "validateCached");
    const before = await metricValue(tessera, VALID_OUTCOMES);
    const answer = await overSocket(url, { body: JSON.stringify({ token }) });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ valid: true, user: { id: "fast-user" } });
    expect(validate).toHaveBeenCalledTimes(1);
    expect((await metricValue(tessera, VALID_OUTCOMES)) - before).toBe(1);
  });

  it("records each answer once in the latency histogram, the validation and the fast-path counters", async () => {
    const before = {
      ok: await metricValue(tessera, VALIDATE_2XX),
      refused: await metricValue(tessera, VALIDATE_4XX),
      valid: await metricValue(tessera, VALID_OUTCOMES),
      answered: await metricValue(tessera, FAST_ANSWERED),
      handedOver: await metricValue(tessera, FAST_HANDED_OVER),
    };
    for (let i = 0; i < 3; i++) await overSocket(url, { body: JSON.stringify({ token }) });
    await overSocket(url, { body: JSON.stringify({ token: ended }) });
    await overSocket(url, { body: "null", headers: bearer(token) });
    expect((await metricValue(tessera, VALIDATE_2XX)) - before.ok).toBe(4);
    expect((await metricValue(tessera, VALIDATE_4XX)) - before.refused).toBe(1);
    expect((await metricValue(tessera, VALID_OUTCOMES)) - before.valid).toBe(4);
    expect((await metricValue(tessera, FAST_ANSWERED)) - before.answered).toBe(4);
    expect((await metricValue(tessera, FAST_HANDED_OVER)) - before.handedOver).toBe(1);
  });
});

describe("the fast validation path and the rate limit", () => {
  let tessera: Tessera;
  let url: string;
  beforeAll(async () => {
    tessera = await startEmbedded({ TESSERA_RATE_LIMIT_VALIDATE_PER_IP: "3" });
    url = await tessera.app.listen({ host: "127.0.0.1", port: 0 });
  });
  afterAll(async () => {
    await tessera?.close();
  });

  it("counts a request once, whichever path answers it, and leaves the 429 to Fastify", async () => {
    const { token } = await createSession(tessera, "limited-user");
    // Taken by the fast path, then handed over (a null body is the route's case): one count, not two.
    expect((await overSocket(url, { body: "null", headers: bearer(token) })).status).toBe(200);
    expect((await overSocket(url, { body: JSON.stringify({ token }) })).status).toBe(200);
    expect((await overSocket(url, { body: JSON.stringify({ token }) })).status).toBe(200);
    const refused = await overSocket(url, { body: JSON.stringify({ token }) });
    expect(refused.status).toBe(429);
    expect(refused.headers["content-type"]).toBe("application/problem+json; charset=utf-8");
    expect(JSON.parse(refused.body)).toMatchObject({ code: "rate_limited", status: 429 });
    expect(refused.headers["retry-after"]).toMatch(/^\d+$/);
  });
});

describe("when the fast path stays off", () => {
  it("is off at LOG_LEVEL=debug, where Fastify logs every request", async () => {
    const tessera = await startEmbedded({ LOG_LEVEL: "debug" });
    try {
      expect(fastValidateCounts(tessera.app)).toBeUndefined();
    } finally {
      await tessera.close();
    }
  });

  it("leaves every validation to the Fastify route with TESSERA_HTTP_FAST_VALIDATE=false", async () => {
    const tessera = await startEmbedded({ TESSERA_HTTP_FAST_VALIDATE: "false" });
    try {
      const url = await tessera.app.listen({ host: "127.0.0.1", port: 0 });
      const { token } = await createSession(tessera, "slow-user");
      expect(fastValidateCounts(tessera.app)).toBeUndefined();
      const answer = await overSocket(url, { body: JSON.stringify({ token }) });
      expect(answer.status).toBe(200);
      expect(answer).toEqual(await throughInject(tessera.app, { body: JSON.stringify({ token }) }));
    } finally {
      await tessera.close();
    }
  });
});
