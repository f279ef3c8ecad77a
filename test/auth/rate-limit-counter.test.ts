import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { createInMemoryRateLimitCounter } from "../../src/adapters/memory/rate-limit-counter.ts";
import {
  createKvRateLimitCounter,
  rateLimitBucketName,
  subjectDigest,
} from "../../src/adapters/nats-kv/rate-limit-counter.ts";
import type { RateLimitCounter } from "../../src/app/rate-limit-counter.ts";
import { DependencyUnavailableError } from "../../src/app/unavailable.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";

/** The token endpoint's attempt counters: the NATS KV one every instance shares, and embedded mode's. */

const WINDOW_S = 60;
/** A window boundary (a multiple of 60 s), so the tests know where each window starts and ends. */
const ALIGNED = Date.parse("2026-01-01T00:00:00.000Z");

let admin: NatsConnection;
const connections: NatsConnection[] = [];
const prefixes: string[] = [];

beforeAll(async () => {
  admin = await connectNats();
});

afterAll(async () => {
  for (const nc of connections) if (!nc.isClosed()) await nc.close();
  for (const prefix of prefixes) await removeNatsPrefix(admin, prefix);
  await admin?.close();
});

function freshPrefix(): string {
  const prefix = uniquePrefix("rlc");
  prefixes.push(prefix);
  return prefix;
}

async function connection(): Promise<NatsConnection> {
  const nc = await connectNats();
  connections.push(nc);
  return nc;
}

async function bucketEntries(prefix: string): Promise<Map<string, string>> {
  const kv = await new Kvm(admin).open(rateLimitBucketName(prefix));
  const entries = new Map<string, string>();
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry?.operation === "PUT") entries.set(key, entry.string());
  }
  return entries;
}

const allowedCount = (verdicts: Array<{ allowed: boolean }>) => verdicts.filter((v) => v.allowed).length;

describe("NATS KV rate-limit counter", () => {
  it("counts concurrent hits from two instances each exactly once", async () => {
    const prefix = freshPrefix();
    const clock = createFakeClock(ALIGNED + 5_000);
    const [one, two] = await Promise.all(
      [0, 1].map(async () =>
        createKvRateLimitCounter({ nc: await connection(), prefix, windowSeconds: WINDOW_S, clock }),
      ),
    );
    const counters = [one, two] as [RateLimitCounter, RateLimitCounter];
    const verdicts = await Promise.all(
      Array.from({ length: 20 }, (_, i) => counters[i % 2]?.hit("user", "alice", 10)),
    );
    expect(allowedCount(verdicts as Array<{ allowed: boolean }>)).toBe(10);
    for (const verdict of verdicts) {
      if (verdict?.allowed === false) expect(verdict.retryAfterSeconds).toBe(55);
    }
    // The stored count is the number of hits allowed: refused hits write nothing.
    expect([...(await bucketEntries(prefix)).values()]).toEqual(["10"]);
  });

  it("starts every clock-aligned window afresh, in a key of its own", async () => {
    const prefix = freshPrefix();
    const clock = createFakeClock(ALIGNED + 30_000);
    const counter = await createKvRateLimitCounter({
      nc: await connection(),
      prefix,
      windowSeconds: WINDOW_S,
      clock,
    });
    expect(await counter.hit("ip", "192.0.2.1", 2)).toEqual({ allowed: true });
    expect(await counter.hit("ip", "192.0.2.1", 2)).toEqual({ allowed: true });
    expect(await counter.hit("ip", "192.0.2.1", 2)).toEqual({ allowed: false, retryAfterSeconds: 30 });
    clock.advance(29_500);
    expect(await counter.hit("ip", "192.0.2.1", 2)).toEqual({ allowed: false, retryAfterSeconds: 1 });
    // The window ends at the clock's minute, not 60 s after the first hit.
    clock.advance(500);
    expect(await counter.hit("ip", "192.0.2.1", 2)).toEqual({ allowed: true });
    // Another subject, and the same subject under another limit, count separately.
    expect(await counter.hit("ip", "192.0.2.2", 2)).toEqual({ allowed: true });
    expect(await counter.hit("user", "192.0.2.1", 2)).toEqual({ allowed: true });

    const digest = subjectDigest("192.0.2.1");
    const start = ALIGNED / 1000;
    expect(Object.fromEntries(await bucketEntries(prefix))).toEqual({
      [`ip.${start}.${digest}`]: "2",
      [`ip.${start + WINDOW_S}.${digest}`]: "1",
      [`ip.${start + WINDOW_S}.${subjectDigest("192.0.2.2")}`]: "1",
      [`user.${start + WINDOW_S}.${digest}`]: "1",
    });
  });

  it("stores no address or username: keys hold a short digest, values a count", async () => {
    const prefix = freshPrefix();
    const counter = await createKvRateLimitCounter({
      nc: await connection(),
      prefix,
      windowSeconds: WINDOW_S,
      clock: createFakeClock(ALIGNED),
    });
    const subjects = ["203.0.113.77", "2001:db8::42", "alice.smith@example.com", "bob"];
    for (const subject of subjects) await counter.hit("user", subject, 5);
    const entries = await bucketEntries(prefix);
    expect(entries.size).toBe(subjects.length);
    for (const [key, value] of entries) {
      expect(key).toMatch(/^user\.\d+\.[-_A-Za-z0-9]{22}$/);
      expect(value).toBe("1");
      for (const subject of subjects) {
        for (const part of subject.split(/[.@:]/).filter((p) => p.length > 2)) {
          expect(key.toLowerCase()).not.toContain(part.toLowerCase());
        }
      }
    }
  });

  it("creates its bucket with a max age of two windows, and lengthens a shorter one on start", async () => {
    const prefix = freshPrefix();
    const stream = `KV_${rateLimitBucketName(prefix)}`;
    const jsm = await jetstreamManager(admin);
    const clock = createFakeClock(ALIGNED);
    await createKvRateLimitCounter({ nc: await connection(), prefix, windowSeconds: 10, clock });
    const created = await jsm.streams.info(stream);
    expect(created.config.max_age).toBe(nanos(20_000));
    expect(created.config.max_msgs_per_subject).toBe(1);

    await createKvRateLimitCounter({ nc: await connection(), prefix, windowSeconds: WINDOW_S, clock });
    expect((await jsm.streams.info(stream)).config.max_age).toBe(nanos(2 * WINDOW_S * 1000));
    // A shorter window later keeps the longer age: lingering keys cost nothing, vanishing counts would.
    await createKvRateLimitCounter({ nc: await connection(), prefix, windowSeconds: 10, clock });
    expect((await jsm.streams.info(stream)).config.max_age).toBe(nanos(2 * WINDOW_S * 1000));
  });

  it("reports a connection it cannot use as an unavailable dependency", async () => {
    const nc = await connection();
    const counter = await createKvRateLimitCounter({
      nc,
      prefix: freshPrefix(),
      windowSeconds: WINDOW_S,
      clock: createFakeClock(ALIGNED),
    });
    await nc.close();
    const failure = await counter.hit("ip", "192.0.2.9", 5).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(DependencyUnavailableError);
    expect((failure as DependencyUnavailableError).dependency).toBe("rate-limit store");
    expect(String((failure as Error).message)).not.toContain("192.0.2.9");
  });
});

describe("in-memory rate-limit counter (embedded mode)", () => {
  it("starts a key's window with its first hit and keeps limits apart", async () => {
    const clock = createFakeClock(ALIGNED + 30_000);
    const counter = createInMemoryRateLimitCounter({ windowSeconds: WINDOW_S, clock });
    expect(await counter.hit("ip", "a", 1)).toEqual({ allowed: true });
    expect(await counter.hit("user", "a", 1)).toEqual({ allowed: true });
    clock.advance(40_000);
    // Past the clock's minute, but still inside the 60 s that began with the first hit.
    expect(await counter.hit("ip", "a", 1)).toEqual({ allowed: false, retryAfterSeconds: 20 });
    clock.advance(20_000);
    expect(await counter.hit("ip", "a", 1)).toEqual({ allowed: true });
  });
});
