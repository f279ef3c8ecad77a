import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeClock, type FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { createInMemoryReplayStore } from "../../src/adapters/memory/replay-store.ts";
import { createKvReplayStore } from "../../src/adapters/nats-kv/replay-store.ts";
import type { ReplayStore } from "../../src/app/idp-ports.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";

/** One contract for both replay stores; the KV one runs against the real NATS (2.9: no per-key TTL). */
let nc: NatsConnection;
const prefixes: string[] = [];

beforeAll(async () => {
  nc = await connectNats();
});

afterAll(async () => {
  for (const prefix of prefixes) await removeNatsPrefix(nc, prefix);
  await nc?.close();
});

type Make = (clock: FakeClock) => Promise<ReplayStore>;

const stores: Array<[string, Make]> = [
  ["in-memory", async (clock) => createInMemoryReplayStore(clock, { sweepEvery: 3 })],
  [
    "NATS KV",
    async (clock) => {
      const prefix = uniquePrefix("replay");
      prefixes.push(prefix);
      return createKvReplayStore({ nc, prefix, clock });
    },
  ],
];

describe.each(stores)("replay store (%s)", (_name, make) => {
  it("lets exactly one of many concurrent claims of a key win", async () => {
    const clock = createFakeClock();
    const store = await make(clock);
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => store.claim("webhook\u0000msg_1", `v${i}`, clock.now() + 60_000)),
    );
    const winners = results.filter((r) => r.won);
    expect(winners).toHaveLength(1);
    for (const r of results) expect(r.value).toBe(winners[0]!.value);
    expect(await store.get("webhook\u0000msg_1")).toBe(winners[0]!.value);
  });

  it("treats an expired entry as absent and lets it be claimed again", async () => {
    const clock = createFakeClock();
    const store = await make(clock);
    expect((await store.claim("jti-1", "first", clock.now() + 1_000)).won).toBe(true);
    expect(await store.claim("jti-1", "second", clock.now() + 1_000)).toEqual({ won: false, value: "first" });
    clock.advance(1_001);
    expect(await store.get("jti-1")).toBeUndefined();
    expect(await store.claim("jti-1", "second", clock.now() + 1_000)).toEqual({ won: true, value: "second" });
  });

  it("replaces only the expected value, and forgets on release", async () => {
    const clock = createFakeClock();
    const store = await make(clock);
    await store.claim("binding", "s-1", clock.now() + 60_000);
    expect(await store.replace("binding", "s-0", "s-2", clock.now() + 60_000)).toBe(false);
    expect(await store.replace("binding", "s-1", "s-2", clock.now() + 60_000)).toBe(true);
    expect(await store.get("binding")).toBe("s-2");
    await store.release("binding");
    expect(await store.get("binding")).toBeUndefined();
    expect((await store.claim("binding", "s-3", clock.now() + 60_000)).won).toBe(true);
  });

  it("takes any string as a key (ids chosen by senders need not be valid KV keys)", async () => {
    const clock = createFakeClock();
    const store = await make(clock);
    const key = "webhook\u0000msg with spaces.*>/üñí";
    expect((await store.claim(key, "x", clock.now() + 1_000)).won).toBe(true);
    expect((await store.claim(key, "y", clock.now() + 1_000)).won).toBe(false);
  });
});
