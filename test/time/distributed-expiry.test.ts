import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { timeStreamName } from "../../src/adapters/jetstream/time-stream.ts";
import type { Tessera } from "../../src/main.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { bearer, eventually } from "../support/tessera.ts";
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
 * Two instances on the real NATS and Postgres sharing one fake clock: both publish every tick, the time
 * stream keeps one per second, each tick is handled by one instance, and every overdue session is
 * expired exactly once.
 */

let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let clock: FakeClock;
let a: Tessera;
let b: Tessera;

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("time");
  database = await createTestDatabase();
  clock = fakeClockAt(T0);
  const env = { TESSERA_TOUCH_INTERVAL_SECONDS: "60" };
  a = await startDistributedAt(prefix, database.url, { clock, env });
  b = await startDistributedAt(prefix, database.url, { clock, env });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

const lastTick = () =>
  Math.max(a.time.scheduler.stats.lastPass?.tick ?? 0, b.time.scheduler.stats.lastPass?.tick ?? 0);

/** Moves the shared clock and waits until one of the instances has run the pass of the new second. */
async function advance(ms: number) {
  clock.advance(ms);
  const second = Math.floor(clock.now() / 1000);
  await eventually(() => lastTick() >= second, 5_000);
}

async function storedTicks(): Promise<number[]> {
  const jsm = await jetstreamManager(nc);
  const name = timeStreamName(prefix);
  const info = await jsm.streams.info(name);
  const seconds: number[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const message = await jsm.streams.getMessage(name, { seq });
    if (message) seconds.push((message.json() as { second: number }).second);
  }
  return seconds;
}

describe("time on two instances", () => {
  it("both publish every tick; the stream holds one per second and each is handled once", async () => {
    for (let i = 0; i < 5; i++) await advance(1_000);
    await Promise.all([a.time.publisher.flushed(), b.time.publisher.flushed()]);
    const first = Math.floor(T0 / 1000);
    expect(await storedTicks()).toEqual([first + 1, first + 2, first + 3, first + 4, first + 5]);
    const published = a.time.publisher.stats.published + b.time.publisher.stats.published;
    const duplicates = a.time.publisher.stats.duplicates + b.time.publisher.stats.duplicates;
    expect({ published, duplicates }).toEqual({ published: 5, duplicates: 5 });
    // Every stored tick reached exactly one instance's scheduler.
    await eventually(() => a.time.scheduler.stats.ticks + b.time.scheduler.stats.ticks === 5, 5_000);
  });

  it("expires sessions created on either instance exactly once, whichever instance takes the tick", async () => {
    const start = clock.now();
    const sessions = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        createSession(i % 2 === 0 ? a : b, `dist-${i % 3}`, { ttl_seconds: 60 }),
      ),
    );
    await advance(59_000);
    for (const { id } of sessions) expect(await typesOf(a, id)).toEqual(["SessionCreated"]);
    await advance(1_000);
    const tick = Math.floor((start + 60_000) / 1000);
    for (const { id, token } of sessions) {
      const expired = (await eventsOf(a, id)).filter((e) => e.type === "SessionExpired");
      expect(expired).toHaveLength(1);
      expect(expired[0]?.data).toMatchObject({ cause: "absolute", tick });
      expect((await validate(b, token)).body.reason).toBe("expired");
    }
    await advance(3_000);
    for (const { id } of sessions) {
      expect((await typesOf(b, id)).filter((t) => t === "SessionExpired")).toHaveLength(1);
    }
  });

  it("a renewal on one instance just before the deadline wins over the other instance's stale view", async () => {
    const { id, token } = await createSession(a, "racer", { ttl_seconds: 60 });
    await advance(59_000);
    const renewed = await b.app.inject({
      method: "POST",
      url: `/v1/sessions/${id}/renew`,
      headers: bearer(token),
      payload: { ttl_seconds: 600 },
    });
    expect(renewed.statusCode).toBe(200);
    clock.advance(2_000);
    // The instance that created it still has the pre-renewal state cached; its expire must find out.
    const tick = Math.floor(clock.now() / 1000);
    const [result] = await Promise.all([
      a.service.expire(id, tick, {
        commandId: `expire:${id}`,
        actor: { kind: "system", id: "test" },
        source: "scheduler",
      }),
      a.time.scheduler.runPass({ tick }),
      b.time.scheduler.runPass({ tick }),
    ]);
    expect(result.appended).toEqual([]);
    expect(result.state.status).toBe("active");
    await advance(1_000);
    expect(await typesOf(a, id)).toEqual(["SessionCreated", "SessionRenewed"]);
    expect((await validate(a, token)).status).toBe(200);
  });

  it("touches from both instances coalesce to one per interval, and keep an idle session alive", async () => {
    const start = clock.now();
    const { id, token } = await createSession(a, "toucher", {
      ttl_seconds: 3_600,
      idle_timeout_seconds: 120,
    });
    await advance(61_000);
    const results = await Promise.all([validate(a, token), validate(b, token), validate(a, token)]);
    for (const result of results) expect(result.status).toBe(200);
    await eventually(async () => (await typesOf(a, id)).includes("SessionTouched"));
    await Promise.all([validate(b, token), validate(a, token)]);
    await advance(100_000); // +161 s: alive only thanks to the touch at +61 s
    const touched = (await typesOf(a, id)).filter((t) => t === "SessionTouched");
    expect(touched).toHaveLength(1);
    expect((await validate(b, token)).status).toBe(200);
    await eventually(async () => (await typesOf(a, id)).filter((t) => t === "SessionTouched").length === 2);
    // Last activity +161 s: idle deadline +281 s.
    await advance(119_000); // +280 s
    expect((await typesOf(a, id)).includes("SessionExpired")).toBe(false);
    await advance(1_000); // +281 s
    const expired = (await eventsOf(b, id)).find((e) => e.type === "SessionExpired");
    expect(expired?.data).toMatchObject({ cause: "idle", deadline: new Date(start + 281_000).toISOString() });
  });
});
