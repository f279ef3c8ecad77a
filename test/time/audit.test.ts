import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { createManualTickSource } from "../../src/adapters/clock/tick-source.ts";
import type { Tessera } from "../../src/main.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { adminHeaders, bearer, eventually } from "../support/tessera.ts";
import { createSession, fakeClockAt, startDistributedAt, T0, typesOf, validate } from "./helpers.ts";

/**
 * The audit read model and its API on the real NATS and Postgres: GET /v1/audit filters and pages the
 * events of a scripted timeline, and GET /v1/users/{id}/sessions?as_of= answers from the log what was
 * active at each instant of it — including a session that was past its deadline long before its
 * SessionExpired was written (the scheduler is kept idle here).
 */

let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let clock: FakeClock;
let tessera: Tessera;

const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
const timeline: Record<string, string> = {};

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("audit");
  database = await createTestDatabase();
  clock = fakeClockAt(T0);
  tessera = await startDistributedAt(prefix, database.url, {
    clock,
    tickSource: createManualTickSource(),
    env: { TESSERA_TOUCH_INTERVAL_SECONDS: "60" },
  });

  // T0: alice s1 (1 h). +10 s: alice s2 (10 min, admin). +20 s: bob s3.
  const s1 = await createSession(tessera, "alice", { ttl_seconds: 3_600 });
  clock.set(T0 + 10_000);
  const s2 = await createSession(tessera, "alice", {
    ttl_seconds: 600,
    roles: ["admin", "user"],
    groups: ["ops"],
  });
  clock.set(T0 + 20_000);
  const s3 = await createSession(tessera, "bob");
  // +100 s: an admin renews s1 for 2 h; +170 s: a validation touches s1 (70 s after its last activity).
  clock.set(T0 + 100_000);
  await inject("POST", `/v1/sessions/${s1.id}/renew`, { ttl_seconds: 7_200 });
  clock.set(T0 + 170_000);
  await validate(tessera, s1.token);
  await eventually(async () => (await typesOf(tessera, s1.id)).includes("SessionTouched"));
  // +200 s: s2 revoked by an admin. +300 s: s4 for one minute, never expired by anybody.
  clock.set(T0 + 200_000);
  await inject("DELETE", `/v1/sessions/${s2.id}`);
  clock.set(T0 + 300_000);
  const s4 = await createSession(tessera, "alice", { ttl_seconds: 60 });
  // +500 s: an admin ends all of alice's sessions (s4, overdue since +360 s, is recorded as expired).
  clock.set(T0 + 500_000);
  await inject("DELETE", "/v1/users/alice/sessions");
  clock.set(T0 + 600_000);
  Object.assign(timeline, { s1: s1.id, s2: s2.id, s3: s3.id, s4: s4.id });
  await tessera.service.readYourWrites(5_000);
});

afterAll(async () => {
  await tessera?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

async function inject(
  method: "GET" | "POST" | "DELETE" | "PUT",
  url: string,
  payload?: Record<string, unknown>,
  headers: Record<string, string> = adminHeaders,
) {
  const response = await tessera.app.inject({
    method,
    url,
    headers,
    ...(payload === undefined ? {} : { payload }),
  });
  if (response.statusCode >= 300)
    throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`);
  return response.json();
}

type AuditEvent = {
  position: number;
  occurred_at: string;
  type: string;
  session_id: string | null;
  user_id: string | null;
  actor: { kind: string; id: string };
  source: string;
  reason: string | null;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
};

async function audit(query: string): Promise<{ events: AuditEvent[]; next_cursor: string | null }> {
  return inject("GET", `/v1/audit${query}`);
}

async function allPages(query: string, limit: number): Promise<AuditEvent[]> {
  const events: AuditEvent[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const sep = query.includes("?") ? "&" : "?";
    const body = await audit(`${query}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`);
    events.push(...body.events);
    cursor = body.next_cursor;
    if (cursor === null) return events;
  }
  throw new Error("too many pages");
}

describe("GET /v1/audit", () => {
  it("is for admins only", async () => {
    const anonymous = await tessera.app.inject({ method: "GET", url: "/v1/audit" });
    expect(anonymous.statusCode).toBe(401);
    const bob = await createSession(tessera, "bob-auditor");
    const asUser = await tessera.app.inject({ method: "GET", url: "/v1/audit", headers: bearer(bob.token) });
    expect(asUser.statusCode).toBe(403);
    expect(asUser.json().code).toBe("access_denied");
  });

  it("lists a user's events in log order with actor, source and reason — touches and renewals included", async () => {
    const { events } = await audit("?user_id=alice");
    expect(events.map((e) => e.type)).toEqual([
      "SessionCreated",
      "SessionCreated",
      "SessionRenewed",
      "SessionTouched",
      "SessionInvalidated",
      "SessionCreated",
      "UserSessionsRevoked",
      "SessionInvalidated",
      "SessionExpired",
    ]);
    const positions = events.map((e) => e.position);
    expect(positions).toEqual([...positions].sort((x, y) => x - y));
    const [created, , renewed, touched, revoked] = events;
    expect(created).toMatchObject({
      session_id: timeline.s1,
      user_id: "alice",
      occurred_at: at(0),
      actor: { kind: "admin", id: "admin-key" },
      source: "rest",
      reason: null,
    });
    expect(created?.data).toMatchObject({ userId: "alice", roles: ["user"] });
    // Only hashes of tokens exist anywhere, and the audit trail does not even carry those.
    expect(created?.data).not.toHaveProperty("tokenHash");
    expect(created?.metadata).toHaveProperty("eventId");
    // Renewals and touches do not name the user; the projection found it from the session's creation.
    expect(renewed).toMatchObject({ user_id: "alice", session_id: timeline.s1, actor: { kind: "admin" } });
    expect(touched).toMatchObject({
      user_id: "alice",
      occurred_at: at(170),
      actor: { kind: "user", id: "alice" },
    });
    expect(revoked).toMatchObject({ session_id: timeline.s2, reason: "revoked_by_admin" });
    expect(events.at(-3)).toMatchObject({
      type: "UserSessionsRevoked",
      session_id: null,
      occurred_at: at(500),
    });
    expect(events.at(-2)).toMatchObject({ session_id: timeline.s1, reason: "revoked_by_admin" });
    expect(events.at(-1)).toMatchObject({ session_id: timeline.s4, reason: "expired_absolute" });
  });

  it("filters by session, type (several) and time range, newest first when asked", async () => {
    const s1 = await audit(`?session_id=${timeline.s1}`);
    expect(s1.events.map((e) => e.type)).toEqual([
      "SessionCreated",
      "SessionRenewed",
      "SessionTouched",
      "SessionInvalidated",
    ]);
    const created = await audit(`?type=SessionCreated,UserSessionsRevoked&to=${at(550)}`);
    expect(created.events.map((e) => e.type)).toEqual([
      "SessionCreated",
      "SessionCreated",
      "SessionCreated",
      "SessionCreated",
      "UserSessionsRevoked",
    ]);
    const window = await audit(`?from=${at(100)}&to=${at(300)}`);
    expect(window.events.map((e) => [e.type, e.occurred_at])).toEqual([
      ["SessionRenewed", at(100)],
      ["SessionTouched", at(170)],
      ["SessionInvalidated", at(200)],
      ["SessionCreated", at(300)],
    ]);
    const newest = await audit("?user_id=alice&order=desc&limit=2");
    expect(newest.events.map((e) => e.occurred_at)).toEqual([at(500), at(500)]);
    expect(newest.events[0]!.position).toBeGreaterThan(newest.events[1]!.position);
  });

  it("pages with an opaque cursor through exactly the whole list, either way round", async () => {
    const everything = (await audit("?limit=500")).events;
    expect(everything.length).toBeGreaterThanOrEqual(10);
    expect(await allPages("", 5)).toEqual(everything);
    expect(await allPages("?order=desc", 4)).toEqual([...everything].reverse());
    const first = await audit("?limit=3");
    const misused = await tessera.app.inject({
      method: "GET",
      url: `/v1/audit?order=desc&cursor=${first.next_cursor}`,
      headers: adminHeaders,
    });
    expect(misused.statusCode).toBe(400);
  });

  it("refuses unknown types, bad instants and an inverted range", async () => {
    for (const query of [
      "?type=SessionExploded",
      "?from=yesterday",
      `?from=${at(10)}&to=${at(5)}`,
      "?limit=0",
    ]) {
      const response = await tessera.app.inject({
        method: "GET",
        url: `/v1/audit${query}`,
        headers: adminHeaders,
      });
      expect(response.statusCode, query).toBe(400);
      expect(response.json().code).toBe("invalid_request");
    }
  });
});

describe("GET /v1/users/{id}/sessions?as_of=", () => {
  const asOf = (userId: string, seconds: number) =>
    inject("GET", `/v1/users/${userId}/sessions?as_of=${encodeURIComponent(at(seconds))}`) as Promise<{
      user_id: string;
      as_of: string;
      sessions: Array<{
        id: string;
        status: string;
        roles: string[];
        groups: string[];
        expires_at: string;
        last_activity_at: string;
      }>;
      claims: unknown;
      complete: boolean;
    }>;
  const ids = async (userId: string, seconds: number) =>
    (await asOf(userId, seconds)).sessions.map((s) => s.id);

  it("answers which sessions were active at each instant, as they stood then", async () => {
    expect(await ids("alice", -1)).toEqual([]);
    expect(await ids("alice", 5)).toEqual([timeline.s1]);
    const both = await asOf("alice", 50);
    expect(both).toMatchObject({ user_id: "alice", as_of: at(50), complete: true, claims: null });
    expect(both.sessions.map((s) => [s.id, s.status, s.roles, s.groups])).toEqual([
      [timeline.s1, "active", ["user"], []],
      [timeline.s2, "active", ["admin", "user"], ["ops"]],
    ]);
    // Before the renewal s1 was to end at +1 h; after it, at +100 s + 2 h.
    expect(both.sessions[0]!.expires_at).toBe(at(3_600));
    const later = await asOf("alice", 250);
    expect(later.sessions.map((s) => s.id)).toEqual([timeline.s1]);
    expect(later.sessions[0]).toMatchObject({ expires_at: at(7_300), last_activity_at: at(170) });
    expect(await ids("bob", 250)).toEqual([timeline.s3]);
  });

  it("counts a session as over from its deadline, not from when its SessionExpired was written", async () => {
    expect(await ids("alice", 330)).toEqual([timeline.s1, timeline.s4]);
    expect(await ids("alice", 360)).toEqual([timeline.s1]);
    const { events } = await audit(`?session_id=${timeline.s4}`);
    expect(events.map((e) => [e.type, e.occurred_at])).toEqual([
      ["SessionCreated", at(300)],
      ["SessionExpired", at(500)],
    ]);
    expect(events[1]?.data).toMatchObject({ deadline: at(360) });
  });

  it("applies a revoke-all from the instant it was made", async () => {
    expect(await ids("alice", 499)).toEqual([timeline.s1]);
    expect(await ids("alice", 500)).toEqual([]);
    // Bob was not affected by alice's revoke-all.
    expect(await ids("bob", 550)).toEqual([timeline.s3]);
  });

  it("refuses an as_of that is not an instant", async () => {
    const response = await tessera.app.inject({
      method: "GET",
      url: "/v1/users/alice/sessions?as_of=last-tuesday",
      headers: adminHeaders,
    });
    expect(response.statusCode).toBe(400);
  });
});
