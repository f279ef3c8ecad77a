import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { createManualTickSource } from "../../src/adapters/clock/tick-source.ts";
import type { Tessera } from "../../src/main.ts";
import { waitForCheckpoint } from "../../src/projections/runner.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { adminHeaders, bearer } from "../support/tessera.ts";
import {
  createSession,
  eventsOf,
  fakeClockAt,
  startDistributedAt,
  T0,
  typesOf,
  validate,
} from "./helpers.ts";

/**
 * POST /v1/sessions/cleanup on the real NATS and Postgres, with the scheduler kept idle (ticks only on
 * request), so every expiry here is the cleanup's own: it must find every overdue session and prune ended
 * rows past retention while the log keeps every event. (Paging through a read model of more overdue rows
 * than one page holds is covered in scheduler.test.ts.)
 */

let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let clock: FakeClock;
let tessera: Tessera;

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("clean");
  database = await createTestDatabase();
  clock = fakeClockAt(T0);
  tessera = await startDistributedAt(prefix, database.url, {
    clock,
    tickSource: createManualTickSource(),
    env: { TESSERA_RETENTION_SECONDS: "3600" },
  });
});

afterAll(async () => {
  await tessera?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

const cleanup = (headers: Record<string, string> = adminHeaders) =>
  tessera.app.inject({ method: "POST", url: "/v1/sessions/cleanup", headers });

async function settled() {
  await waitForCheckpoint(tessera.readModel, await tessera.log.lastPosition(), 5_000);
}

describe("POST /v1/sessions/cleanup", () => {
  it("expires every overdue session, prunes ended rows past retention, and keeps every event", async () => {
    const old = await Promise.all([0, 1, 2].map(() => createSession(tessera, "old-user")));
    for (const { id } of old.slice(0, 2)) {
      const ended = await tessera.app.inject({
        method: "DELETE",
        url: `/v1/sessions/${id}`,
        headers: adminHeaders,
      });
      expect(ended.statusCode).toBe(200);
    }
    clock.advance(2 * 3_600_000); // the third old one (default ttl 1 h) is now overdue too

    const short: Array<{ id: string; token: string }> = [];
    for (let batch = 0; batch < 4; batch++) {
      short.push(
        ...(await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            createSession(tessera, `bulk-${(batch + i) % 9}`, { ttl_seconds: 60 }),
          ),
        )),
      );
    }
    const long = await Promise.all(
      [0, 1, 2].map(() => createSession(tessera, "long-user", { ttl_seconds: 7_200 })),
    );
    clock.advance(61_000);
    await settled();

    expect((await cleanup({})).statusCode).toBe(401);
    expect((await cleanup(bearer(long[0]!.token))).statusCode).toBe(403);

    const response = await cleanup();
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ expired: short.length + 1, pruned: 2 });

    for (const { id, token } of [short[0]!, short.at(-1)!, old[2]!]) {
      expect((await validate(tessera, token)).body.reason).toBe("expired");
      const expired = (await eventsOf(tessera, id)).find((e) => e.type === "SessionExpired");
      expect(expired?.data).toMatchObject({ cause: "absolute" });
      expect(expired?.data).not.toHaveProperty("tick");
      expect(expired?.metadata).toMatchObject({ actor: { kind: "admin" }, source: "rest" });
    }
    for (const { token } of long) expect((await validate(tessera, token)).status).toBe(200);

    await settled();
    expect(await tessera.readModel.overdueSessionIds(clock.now(), 10)).toEqual([]);
    const listed = await tessera.app.inject({
      method: "GET",
      url: "/v1/sessions?user_id=old-user&status=all",
      headers: adminHeaders,
    });
    expect(listed.json().sessions.map((s: { id: string }) => s.id)).toEqual([old[2]!.id]);
    // Pruned from the read model, never from the log.
    for (const { id } of old.slice(0, 2)) {
      expect(await typesOf(tessera, id)).toEqual(["SessionCreated", "SessionInvalidated"]);
    }

    expect((await cleanup()).json()).toEqual({ expired: 0, pruned: 0 });
  });

  it("prunes the sessions it expired once they have been ended for longer than the retention", async () => {
    clock.advance(3_600_000 + 1_000);
    await settled();
    const response = await cleanup();
    // Everything the previous cleanup expired is past retention now; the long sessions are still active.
    expect(response.json()).toEqual({ expired: 0, pruned: 4 * 40 + 1 });
  });

  it("prunes the validation view (NATS KV) with the rows, and a pruned session's token is still refused", async () => {
    const kept = await createSession(tessera, "view-user", { ttl_seconds: 7_200 });
    const ended = await createSession(tessera, "view-user");
    expect(
      (await tessera.app.inject({ method: "DELETE", url: `/v1/sessions/${ended.id}`, headers: adminHeaders }))
        .statusCode,
    ).toBe(200);
    await settled();
    await expect.poll(() => tessera.store.getSession(ended.id)).toMatchObject({ status: "invalidated" });

    clock.advance(3_600_000 + 1_000);
    expect((await cleanup()).json()).toMatchObject({ pruned: 1 });
    expect(await tessera.store.getSession(ended.id)).toBeUndefined();
    expect(await tessera.store.getSession(kept.id)).toMatchObject({ status: "active" });
    // What a new instance loads at start no longer holds it either.
    const loaded: string[] = [];
    const watch = await tessera.store.watch({
      onSession: (entry) => loaded.push(entry.sessionId),
      onUser: () => {},
    });
    await watch.stop();
    expect(loaded).toContain(kept.id);
    expect(loaded).not.toContain(ended.id);
    // Still refused: this instance's memory holds it until its deadline; elsewhere a miss folds the stream.
    expect((await validate(tessera, ended.token)).body.reason).toBe("invalidated");
  });
});
