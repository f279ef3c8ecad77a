import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer, startEmbedded } from "../support/tessera.ts";

let tessera: Tessera;

beforeAll(async () => {
  tessera = await startEmbedded();
});
afterAll(async () => {
  await tessera?.close();
});

async function createFor(
  userId: string,
  body: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) {
  const response = await tessera.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: { ...adminHeaders, ...headers },
    payload: { user_id: userId, roles: ["user"], ...body },
  });
  expect(response.statusCode, response.body).toBe(201);
  return response.json() as { session: { id: string; expires_at: string; status: string }; token: string };
}

async function eventCount() {
  return tessera.log.lastPosition();
}

describe("session lifecycle over REST", () => {
  it("creates, validates, reads, renews and invalidates a session", async () => {
    const { session, token } = await createFor("alice", { ttl_seconds: 600, metadata: { device: "laptop" } });
    expect(token).toMatch(/^tss_[0-9a-f-]{36}_[A-Za-z0-9_-]{43}$/);
    const stored = JSON.stringify(await tessera.log.readStream({ category: "session", id: session.id }));
    expect(stored).toContain(session.id);
    expect(stored).not.toContain(token.slice(-43));

    const valid = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions/validate",
      payload: { token },
    });
    expect(valid.statusCode).toBe(200);
    expect(valid.json()).toMatchObject({ valid: true, session: { id: session.id }, user: { id: "alice" } });

    const read = await tessera.app.inject({
      method: "GET",
      url: `/v1/sessions/${session.id}`,
      headers: bearer(token),
    });
    expect(read.json()).toMatchObject({ id: session.id, metadata: { device: "laptop" }, status: "active" });

    const renewed = await tessera.app.inject({
      method: "POST",
      url: `/v1/sessions/${session.id}/renew`,
      headers: bearer(token),
      payload: { ttl_seconds: 7200 },
    });
    expect(renewed.statusCode).toBe(200);
    expect(Date.parse(renewed.json().session.expires_at)).toBeGreaterThan(Date.parse(session.expires_at));

    const ended = await tessera.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${session.id}`,
      headers: bearer(token),
    });
    expect(ended.statusCode).toBe(200);
    expect(ended.json()).toMatchObject({ end_reason: "revoked", session: { status: "invalidated" } });

    const after = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions/validate",
      payload: { token },
    });
    expect(after.statusCode).toBe(401);
    expect(after.json()).toEqual({ valid: false, reason: "invalidated" });

    const again = await tessera.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${session.id}`,
      headers: adminHeaders,
    });
    expect(again.statusCode).toBe(200);
    expect(again.json().end_reason).toBe("revoked");

    const renewEnded = await tessera.app.inject({
      method: "POST",
      url: `/v1/sessions/${session.id}/renew`,
      headers: adminHeaders,
    });
    expect(renewEnded.statusCode).toBe(409);
    expect(renewEnded.json()).toMatchObject({ code: "session_ended", end_reason: "revoked" });
  });

  it("lists the caller's own sessions with paging and counts them in stats", async () => {
    const first = await createFor("bob");
    await createFor("bob");
    await createFor("bob");
    await createFor("carol");
    const page1 = await tessera.app.inject({
      method: "GET",
      url: "/v1/sessions?limit=2",
      headers: bearer(first.token),
    });
    expect(page1.statusCode).toBe(200);
    const body1 = page1.json();
    expect(body1.total).toBe(3);
    expect(body1.sessions).toHaveLength(2);
    expect(body1.sessions.every((s: { user_id: string }) => s.user_id === "bob")).toBe(true);
    const page2 = await tessera.app.inject({
      method: "GET",
      url: `/v1/sessions?limit=2&cursor=${body1.next_cursor}`,
      headers: bearer(first.token),
    });
    expect(page2.json().sessions).toHaveLength(1);
    expect(page2.json().next_cursor).toBeNull();
    // Every write above went through this instance: the answer includes all of them and says so.
    const written = await eventCount();
    expect(Number(page1.headers["tessera-read-model-position"])).toBeGreaterThanOrEqual(written);
    expect(page1.headers["tessera-read-model-behind"]).toBe("0");

    const stats = await tessera.app.inject({
      method: "GET",
      url: "/v1/sessions/stats",
      headers: bearer(first.token),
    });
    expect(stats.json()).toMatchObject({ active: 3, total: 3, scope: "user" });
    expect(stats.headers["tessera-read-model-behind"]).toBe("0");
    const global = await tessera.app.inject({
      method: "GET",
      url: "/v1/sessions/stats",
      headers: adminHeaders,
    });
    expect(global.json().scope).toBe("global");
    expect(global.json().total).toBeGreaterThanOrEqual(4);
  });

  it("says so when a listing answers before the read model has this instance's writes", async () => {
    const { token } = await createFor("dora");
    const written = await eventCount();
    // A projection that has stalled at position 1: the listing waits its second, then answers anyway.
    const stalled = vi.spyOn(tessera.readModel, "checkpoint").mockResolvedValue(1);
    try {
      const started = Date.now();
      const listing = await tessera.app.inject({
        method: "GET",
        url: "/v1/sessions",
        headers: bearer(token),
      });
      expect(listing.statusCode).toBe(200);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      expect(listing.headers["tessera-read-model-position"]).toBe("1");
      expect(listing.headers["tessera-read-model-behind"]).toBe(String(written - 1));
      const stats = await tessera.app.inject({
        method: "GET",
        url: "/v1/sessions/stats",
        headers: adminHeaders,
      });
      expect(stats.headers["tessera-read-model-behind"]).toBe(String(written - 1));
    } finally {
      stalled.mockRestore();
    }
  });

  it("revokes all of the caller's sessions except the current one", async () => {
    const keep = await createFor("dave");
    const other1 = await createFor("dave");
    const other2 = await createFor("dave");
    const response = await tessera.app.inject({
      method: "DELETE",
      url: "/v1/sessions?except=current",
      headers: bearer(keep.token),
    });
    expect(response.json()).toEqual({ count: 2, user_id: "dave" });
    for (const { token } of [other1, other2]) {
      const v = await tessera.app.inject({
        method: "POST",
        url: "/v1/sessions/validate",
        payload: { token },
      });
      expect(v.json().reason).toBe("invalidated");
    }
    const kept = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions/validate",
      headers: bearer(keep.token),
    });
    expect(kept.statusCode).toBe(200);
  });

  it("a session token holder creates sessions only for itself, without new roles", async () => {
    const { token } = await createFor("erin");
    const own = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: bearer(token),
      payload: {},
    });
    expect(own.statusCode).toBe(201);
    expect(own.json().session).toMatchObject({ user_id: "erin", roles: ["user"] });
    const other = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: bearer(token),
      payload: { user_id: "mallory" },
    });
    expect(other.statusCode).toBe(403);
    const escalate = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: bearer(token),
      payload: { roles: ["admin"] },
    });
    expect(escalate.statusCode).toBe(403);
    expect(escalate.json().code).toBe("access_denied");
  });

  it("refuses someone else's session with 403 and an unknown one with 404", async () => {
    const alice = await createFor("frank");
    const bob = await createFor("grace");
    const cross = await tessera.app.inject({
      method: "GET",
      url: `/v1/sessions/${bob.session.id}`,
      headers: bearer(alice.token),
    });
    expect(cross.statusCode).toBe(403);
    expect(cross.json().code).toBe("access_denied");
    const crossDelete = await tessera.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${bob.session.id}`,
      headers: bearer(alice.token),
    });
    expect(crossDelete.statusCode).toBe(403);
    const unknown = await tessera.app.inject({
      method: "GET",
      url: "/v1/sessions/01900000-0000-7000-8000-000000000000",
      headers: adminHeaders,
    });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().code).toBe("session_not_found");
  });

  it("honours Idempotency-Key: a retried create returns the same session and token and appends once", async () => {
    const before = await eventCount();
    const first = await createFor("heidi", {}, { "idempotency-key": "create-heidi-1" });
    const second = await createFor("heidi", {}, { "idempotency-key": "create-heidi-1" });
    expect(second.session.id).toBe(first.session.id);
    expect(second.token).toBe(first.token);
    expect(await eventCount()).toBe(before + 1);
    const third = await createFor("heidi", {}, { "idempotency-key": "create-heidi-2" });
    expect(third.session.id).not.toBe(first.session.id);
  });

  it("cleanup needs admin rights", async () => {
    const { token } = await createFor("ivan");
    const denied = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions/cleanup",
      headers: bearer(token),
    });
    expect(denied.statusCode).toBe(403);
    const allowed = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions/cleanup",
      headers: adminHeaders,
    });
    expect(allowed.statusCode).toBe(200);
    expect(allowed.json()).toEqual({ expired: 0, pruned: 0 });
  });
});

describe("bad input never reaches the log", () => {
  const cases: Array<{ name: string; request: InjectOptions; status: number; code: string }> = [
    {
      name: "malformed JSON",
      request: {
        method: "POST",
        url: "/v1/sessions",
        headers: { ...adminHeaders, "content-type": "application/json" },
        payload: '{"user_id":',
      },
      status: 400,
      code: "malformed_json",
    },
    {
      name: "wrong types",
      request: {
        method: "POST",
        url: "/v1/sessions",
        headers: adminHeaders,
        payload: { user_id: 42, ttl_seconds: "soon" },
      },
      status: 400,
      code: "invalid_request",
    },
    {
      name: "unknown fields",
      request: {
        method: "POST",
        url: "/v1/sessions",
        headers: adminHeaders,
        payload: { user_id: "x", is_admin: true },
      },
      status: 400,
      code: "invalid_request",
    },
    {
      name: "negative ttl",
      request: {
        method: "POST",
        url: "/v1/sessions",
        headers: adminHeaders,
        payload: { user_id: "x", ttl_seconds: -5 },
      },
      status: 400,
      code: "invalid_request",
    },
    {
      name: "oversized body",
      request: {
        method: "POST",
        url: "/v1/sessions",
        headers: adminHeaders,
        payload: { user_id: "x", metadata: { blob: "a".repeat(200_000) } },
      },
      status: 413,
      code: "payload_too_large",
    },
    {
      name: "oversized metadata within the body limit",
      request: {
        method: "POST",
        url: "/v1/sessions",
        headers: adminHeaders,
        payload: { user_id: "x", metadata: { blob: "a".repeat(20_000) } },
      },
      status: 400,
      code: "invalid_request",
    },
    {
      name: "unsupported media type",
      request: {
        method: "POST",
        url: "/v1/sessions",
        headers: { ...adminHeaders, "content-type": "text/xml" },
        payload: "<a/>",
      },
      status: 415,
      code: "unsupported_media_type",
    },
    {
      name: "admin create without user_id",
      request: { method: "POST", url: "/v1/sessions", headers: adminHeaders, payload: {} },
      status: 400,
      code: "invalid_request",
    },
    {
      name: "no credentials",
      request: { method: "POST", url: "/v1/sessions", payload: { user_id: "x" } },
      status: 401,
      code: "unauthorized",
    },
    {
      name: "wrong admin key",
      request: {
        method: "POST",
        url: "/v1/sessions",
        headers: { "x-admin-key": "nope" },
        payload: { user_id: "x" },
      },
      status: 401,
      code: "unauthorized",
    },
    {
      name: "garbage bearer",
      request: { method: "GET", url: "/v1/sessions", headers: bearer("tss_garbage") },
      status: 401,
      code: "unauthorized",
    },
    {
      name: "non-uuid session id",
      request: { method: "GET", url: "/v1/sessions/not-a-uuid", headers: adminHeaders },
      status: 400,
      code: "invalid_request",
    },
    {
      name: "bad status filter",
      request: { method: "GET", url: "/v1/sessions?status=zombie", headers: adminHeaders },
      status: 400,
      code: "invalid_request",
    },
    {
      name: "bad cursor",
      request: { method: "GET", url: "/v1/sessions?cursor=%%%", headers: adminHeaders },
      status: 400,
      code: "invalid_request",
    },
    {
      name: "bad idempotency key",
      request: {
        method: "POST",
        url: "/v1/sessions",
        headers: { ...adminHeaders, "idempotency-key": "x".repeat(300) },
        payload: { user_id: "x" },
      },
      status: 400,
      code: "invalid_request",
    },
    {
      name: "unknown route",
      request: { method: "GET", url: "/v1/nothing-here" },
      status: 404,
      code: "not_found",
    },
  ];

  for (const testCase of cases) {
    it(`${testCase.name} → ${testCase.status} ${testCase.code}`, async () => {
      const before = await eventCount();
      const response = await tessera.app.inject(testCase.request);
      expect(response.statusCode, response.body).toBe(testCase.status);
      expect(response.headers["content-type"]).toContain("application/problem+json");
      expect(response.json()).toMatchObject({ status: testCase.status, code: testCase.code });
      expect(await eventCount()).toBe(before);
    });
  }

  it("refuses forged, truncated and tampered tokens without revealing which part was wrong", async () => {
    const { token, session } = await createFor("judy");
    const secret = token.slice(-43);
    const flipped = secret[0] === "A" ? "B" : "A";
    const forged = [
      "",
      "tss_",
      token.slice(0, -1),
      `${token}x`,
      token.replace(secret, `${flipped}${secret.slice(1)}`),
      token.replace("tss_", "tsr_"),
      `tss_01900000-0000-7000-8000-000000000000_${secret}`,
      `tss_${session.id}_${"!".repeat(43)}`,
      "eyJhbGciOiJub25lIn0.e30.",
    ];
    for (const candidate of forged) {
      const response = await tessera.app.inject({
        method: "POST",
        url: "/v1/sessions/validate",
        payload: { token: candidate },
      });
      expect(response.statusCode, candidate).toBe(401);
      expect(["malformed", "not_found"]).toContain(response.json().reason);
    }
  });
});
