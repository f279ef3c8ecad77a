import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { adminHeaders, bearer, eventually, startDistributed } from "../support/tessera.ts";
import { addUser, getSession, login, tokenRequest } from "./helpers.ts";

/**
 * TESSERA_MAX_SESSIONS_PER_USER under racing logins spread over two instances: the slot list in NATS KV
 * (compare-and-set) lets exactly the limit survive, under both policies.
 */
const LIMIT = 3;
const RACERS = 12;

type Deployment = { prefix: string; database: TestDatabase; a: Tessera; b: Tessera };
let nc: NatsConnection;
let reject: Deployment;
let evict: Deployment;

async function deploy(label: string, policy: "reject" | "evict_oldest"): Promise<Deployment> {
  const prefix = uniquePrefix(label);
  const database = await createTestDatabase();
  const env = {
    TESSERA_MAX_SESSIONS_PER_USER: String(LIMIT),
    TESSERA_SESSION_LIMIT_POLICY: policy,
    TESSERA_RATE_LIMIT_TOKEN_PER_IP: "0",
    TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: "0",
  };
  const a = await startDistributed({ prefix, databaseUrl: database.url, env });
  const b = await startDistributed({ prefix, databaseUrl: database.url, env });
  return { prefix, database, a, b };
}

async function teardown(deployment: Deployment | undefined) {
  if (!deployment) return;
  await deployment.a.close();
  await deployment.b.close();
  await removeNatsPrefix(nc, deployment.prefix);
  await deployment.database.drop();
}

beforeAll(async () => {
  nc = await connectNats();
  [reject, evict] = await Promise.all([deploy("limrej", "reject"), deploy("limevi", "evict_oldest")]);
});

afterAll(async () => {
  await teardown(reject);
  await teardown(evict);
  await nc?.close();
});

function race(deployment: Deployment, username: string, password: string) {
  return Promise.all(
    Array.from({ length: RACERS }, (_, i) =>
      tokenRequest(i % 2 === 0 ? deployment.a : deployment.b, { grant_type: "password", username, password }),
    ),
  );
}

/** Every session of the user as the log's projection has them, once it has caught up with the log. */
async function sessionsOf(deployment: Deployment, userId: string) {
  const { a } = deployment;
  const end = await a.log.lastPosition();
  await eventually(async () => (await a.readModel.checkpoint()) >= end, 5_000);
  const page = await a.readModel.listSessions({ userId, status: "all", limit: 100, now: a.clock.now() });
  return page.sessions;
}

describe("policy reject", () => {
  it(`${RACERS} racing logins on two instances: exactly ${LIMIT} succeed, the rest get 409`, async () => {
    const racer = await addUser(reject.a, "racer");
    const responses = await race(reject, "racer", racer.password);
    const ok = responses.filter((r) => r.statusCode === 200);
    const refused = responses.filter((r) => r.statusCode !== 200);
    expect(ok).toHaveLength(LIMIT);
    for (const response of refused) {
      expect(response.statusCode).toBe(409);
      expect(response.json()).toMatchObject({ error: "session_limit_reached" });
    }
    const sessions = await sessionsOf(reject, racer.id);
    expect(sessions.filter((s) => s.status === "active")).toHaveLength(LIMIT);
    expect(sessions).toHaveLength(LIMIT); // a refused login appends nothing
    for (const response of ok) {
      const { session_id, access_token } = response.json();
      expect((await getSession(reject.b, session_id, access_token)).statusCode).toBe(200);
    }
  });

  it("an ended session frees its slot; admin-created sessions count too", async () => {
    const user = await addUser(reject.a, "slots");
    const first = await login(reject.a, "slots", user.password);
    await login(reject.b, "slots", user.password);
    const viaAdmin = await reject.b.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: adminHeaders,
      payload: { user_id: user.id, username: "slots", roles: ["user"] },
    });
    expect(viaAdmin.statusCode, viaAdmin.body).toBe(201);
    const full = await reject.a.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: adminHeaders,
      payload: { user_id: user.id, username: "slots" },
    });
    expect(full.statusCode).toBe(409);
    expect(full.headers["content-type"]).toContain("application/problem+json");
    expect(full.json()).toMatchObject({ code: "session_limit_reached" });

    const out = await reject.b.app.inject({
      method: "POST",
      url: "/v1/auth/logout",
      headers: bearer(first.access_token),
    });
    expect(out.statusCode).toBe(200);
    const again = await tokenRequest(reject.a, {
      grant_type: "password",
      username: "slots",
      password: user.password,
    });
    expect(again.statusCode, again.body).toBe(200);
    const active = (await sessionsOf(reject, user.id)).filter((s) => s.status === "active");
    expect(active).toHaveLength(LIMIT);
  });
});

describe("policy evict_oldest", () => {
  it("a login over the limit ends the oldest session with reason evicted, and its tokens stop working", async () => {
    const user = await addUser(evict.a, "evictee");
    const sessions = [];
    for (let i = 0; i < LIMIT; i++)
      sessions.push(await login(i % 2 ? evict.a : evict.b, "evictee", user.password));
    const newest = await login(evict.a, "evictee", user.password);
    const oldest = sessions[0]!;
    const status = await evict.b.app.inject({
      method: "GET",
      url: `/v1/sessions/${oldest.session_id}`,
      headers: adminHeaders,
    });
    expect(status.json()).toMatchObject({ status: "invalidated", end_reason: "evicted" });
    await eventually(
      async () => (await getSession(evict.b, oldest.session_id, oldest.access_token)).statusCode === 401,
      2_000,
    );
    for (const kept of [...sessions.slice(1), newest]) {
      expect((await getSession(evict.b, kept.session_id, kept.access_token)).statusCode).toBe(200);
    }
  });

  it(`${RACERS} racing logins on two instances: exactly ${LIMIT} sessions survive, every other one evicted`, async () => {
    const racer = await addUser(evict.a, "evict-racer");
    const responses = await race(evict, "evict-racer", racer.password);
    for (const response of responses) {
      // A login displaced by a racing one while it ran reports the limit instead of dead tokens.
      if (response.statusCode !== 200)
        expect(response.json()).toMatchObject({ error: "session_limit_reached" });
    }
    const sessions = await sessionsOf(evict, racer.id);
    const active = sessions.filter((s) => s.status === "active");
    expect(active).toHaveLength(LIMIT);
    expect(sessions.length).toBeGreaterThan(LIMIT);
    for (const ended of sessions.filter((s) => s.status !== "active")) {
      expect(ended).toMatchObject({ status: "invalidated", endReason: "evicted" });
    }
    // Every survivor was handed to a caller, and exactly the survivors' access tokens work.
    const activeIds = new Set(active.map((s) => s.id));
    const handedOut = responses
      .filter((r) => r.statusCode === 200)
      .map((r) => r.json() as { session_id: string; access_token: string });
    expect(handedOut.map((t) => t.session_id)).toEqual(expect.arrayContaining([...activeIds]));
    for (const { session_id, access_token } of handedOut) {
      const expected = activeIds.has(session_id) ? 200 : 401;
      await eventually(
        async () => (await getSession(evict.a, session_id, access_token)).statusCode === expected,
        2_000,
      );
    }
  });
});
