import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../../src/adapters/postgres/database.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import { createSessionReadModel } from "../../src/adapters/postgres/session-read-model.ts";
import type { Tessera } from "../../src/main.ts";
import { catchUp } from "../../src/projections/runner.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { adminHeaders, bearer, eventually, startDistributed } from "../support/tessera.ts";

/**
 * Two instances against the real NATS and Postgres, sharing one prefix and one database, as a scaled-out
 * deployment would.
 */
let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let a: Tessera;
let b: Tessera;

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("dist");
  database = await createTestDatabase();
  a = await startDistributed({ prefix, databaseUrl: database.url });
  b = await startDistributed({ prefix, databaseUrl: database.url });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

async function create(on: Tessera, userId: string, headers: Record<string, string> = {}) {
  const response = await on.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: { ...adminHeaders, ...headers },
    payload: { user_id: userId, roles: ["user"] },
  });
  expect(response.statusCode, response.body).toBe(201);
  return response.json() as { session: { id: string; expires_at: string }; token: string };
}

async function validate(on: Tessera, token: string) {
  const response = await on.app.inject({ method: "POST", url: "/v1/sessions/validate", payload: { token } });
  return { status: response.statusCode, body: response.json() as { valid: boolean; reason?: string } };
}

describe("two instances on real NATS and Postgres", () => {
  it("a token created on one instance validates on the other at once", async () => {
    const { token } = await create(a, "u-create");
    const result = await validate(b, token);
    expect(result).toMatchObject({ status: 200, body: { valid: true } });
  });

  it("an invalidation on one instance is refused by the other within a few ms", async () => {
    const { token, session } = await create(a, "u-revoke");
    await eventually(async () => (await validate(b, token)).status === 200);
    const ended = await a.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${session.id}`,
      headers: adminHeaders,
    });
    expect(ended.statusCode).toBe(200);
    expect((await validate(a, token)).body.reason).toBe("invalidated");
    const elapsed = await eventually(() => b.validator.validateFromMemory(token)?.valid === false, 2_000);
    expect(elapsed).toBeLessThan(250);
    expect((await validate(b, token)).body).toEqual({ valid: false, reason: "invalidated" });
  });

  it("renews on one instance and reads the new expiry on the other", async () => {
    const { token, session } = await create(a, "u-renew");
    const renewed = await b.app.inject({
      method: "POST",
      url: `/v1/sessions/${session.id}/renew`,
      headers: bearer(token),
      payload: { ttl_seconds: 7200 },
    });
    expect(renewed.statusCode, renewed.body).toBe(200);
    const expiresAt = renewed.json().session.expires_at;
    expect(Date.parse(expiresAt)).toBeGreaterThan(Date.parse(session.expires_at));
    const read = await a.app.inject({
      method: "GET",
      url: `/v1/sessions/${session.id}`,
      headers: adminHeaders,
    });
    expect(read.json().expires_at).toBe(expiresAt);
  });

  it("revoke-all on one instance ends every session of the user on both", async () => {
    const sessions = await Promise.all([create(a, "u-all"), create(b, "u-all"), create(a, "u-all")]);
    const [first] = sessions;
    const response = await b.app.inject({
      method: "DELETE",
      url: "/v1/sessions",
      headers: bearer(first!.token),
    });
    expect(response.json()).toEqual({ count: 3, user_id: "u-all" });
    for (const { token } of sessions) {
      await eventually(async () => (await validate(a, token)).status === 401, 2_000);
      expect((await validate(b, token)).body.reason).toBe("invalidated");
    }
  });

  it("a retried create with the same Idempotency-Key appends one event, on either instance", async () => {
    const before = await a.log.lastPosition();
    const first = await create(a, "u-idem", { "idempotency-key": "k-1" });
    const retry = await create(b, "u-idem", { "idempotency-key": "k-1" });
    expect(retry.session.id).toBe(first.session.id);
    expect(retry.token).toBe(first.token);
    expect(await a.log.lastPosition()).toBe(before + 1);
  });

  it("20 concurrent renews of one session, split over both instances, all land in order", async () => {
    const { token, session } = await create(a, "u-race");
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? a : b).app.inject({
          method: "POST",
          url: `/v1/sessions/${session.id}/renew`,
          headers: bearer(token),
          payload: { ttl_seconds: 10_000 + i * 100 },
        }),
      ),
    );
    for (const response of responses) expect(response.statusCode, response.body).toBe(200);
    const { events } = await a.log.readStream({ category: "session", id: session.id });
    const renewals = events.filter((event) => event.type === "SessionRenewed");
    // A renewal that would shorten the session appends nothing; every other one is in the log.
    expect(renewals.length).toBeGreaterThanOrEqual(2);
    const positions = events.map((event) => event.position);
    expect([...positions].sort((x, y) => x - y)).toEqual(positions);
    for (let i = 1; i < renewals.length; i++) {
      const previous = renewals[i - 1]!;
      const current = renewals[i]!;
      if (current.type === "SessionRenewed" && previous.type === "SessionRenewed") {
        // No lost update: each renewal starts from the expiry the previous one set.
        expect(current.data.previousExpiresAt).toBe(previous.data.expiresAt);
      }
    }
    const longest = Math.max(...responses.map((r) => Date.parse(r.json().session.expires_at)));
    const final = await b.app.inject({
      method: "GET",
      url: `/v1/sessions/${session.id}`,
      headers: adminHeaders,
    });
    expect(Date.parse(final.json().expires_at)).toBe(longest);
  });

  it("the read model rebuilt from the stream equals the live one", async () => {
    await a.service.readYourWrites(5_000);
    await b.service.readYourWrites(5_000);
    const live = await a.readModel.listSessions({ status: "all", limit: 100, now: Date.now() });
    const fresh = await createTestDatabase();
    const rebuilt = await openDatabase({ url: fresh.url });
    try {
      await catchUp(a.log, createSessionProjection(rebuilt.db), 200);
      const model = createSessionReadModel(rebuilt.db);
      const replayed = await model.listSessions({ status: "all", limit: 100, now: Date.now() });
      expect(replayed.total).toBe(live.total);
      expect(replayed.sessions).toEqual(live.sessions);
    } finally {
      await rebuilt.close();
      await fresh.drop();
    }
  });

  it("restarting every instance loses nothing", async () => {
    const { token, session } = await create(a, "u-restart");
    await a.close();
    await b.close();
    a = await startDistributed({ prefix, databaseUrl: database.url });
    b = await startDistributed({ prefix, databaseUrl: database.url });
    expect((await validate(b, token)).status).toBe(200);
    const read = await a.app.inject({
      method: "GET",
      url: `/v1/sessions/${session.id}`,
      headers: adminHeaders,
    });
    expect(read.statusCode).toBe(200);
    const list = await a.app.inject({
      method: "GET",
      url: "/v1/sessions?user_id=u-restart",
      headers: adminHeaders,
    });
    expect(list.json().sessions.map((s: { id: string }) => s.id)).toContain(session.id);
  });
});
