import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { systemClock } from "../../src/adapters/clock/system-clock.ts";
import {
  createFakeTickSource,
  createManualTickSource,
  createSystemTickSource,
} from "../../src/adapters/clock/tick-source.ts";
import { createJetStreamTickLog, timeStreamName } from "../../src/adapters/jetstream/time-stream.ts";
import { createInMemoryTickLog } from "../../src/adapters/memory/tick-log.ts";
import type { Tick, TickLog } from "../../src/domain/ports.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";
import { eventually } from "../support/tessera.ts";

/**
 * The time stream's contract, run against the JetStream adapter (two real connections standing for two
 * instances) and the in-memory one: one tick per second however many publish it, each tick to exactly one
 * consumer, one at a time, with `pending` telling a tick that newer ones wait behind it.
 */

type Pair = { a: TickLog; b: TickLog; dispose(): Promise<void>; stored(): Promise<number[] | undefined> };

const connections: NatsConnection[] = [];
const prefixes: string[] = [];

beforeAll(async () => {
  connections.push(await connectNats(), await connectNats());
});

afterAll(async () => {
  const [first] = connections;
  for (const prefix of prefixes) if (first) await removeNatsPrefix(first, prefix);
  for (const nc of connections) await nc.close();
});

const backends: Array<{ name: string; open(): Promise<Pair> }> = [
  {
    name: "jetstream",
    async open() {
      const prefix = uniquePrefix("tick");
      prefixes.push(prefix);
      const [ncA, ncB] = connections as [NatsConnection, NatsConnection];
      const a = await createJetStreamTickLog({ nc: ncA, prefix, ackWaitMs: 2_000 });
      const b = await createJetStreamTickLog({ nc: ncB, prefix, ackWaitMs: 2_000 });
      return {
        a,
        b,
        async dispose() {},
        async stored() {
          const jsm = await jetstreamManager(ncA);
          const info = await jsm.streams.info(timeStreamName(prefix));
          const seconds: number[] = [];
          for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
            const message = await jsm.streams.getMessage(timeStreamName(prefix), { seq });
            if (message) seconds.push((message.json() as { second: number }).second);
          }
          return seconds;
        },
      };
    },
  },
  {
    name: "in-memory",
    async open() {
      const log = createInMemoryTickLog();
      return { a: log, b: log, async dispose() {}, stored: async () => undefined };
    },
  },
];

describe.each(backends)("tick log on $name", (backend) => {
  it("keeps one tick per second however many instances publish it", async () => {
    const pair = await backend.open();
    const outcomes = await Promise.all(
      [100, 101, 102].flatMap((second) => [pair.a.publish(second), pair.b.publish(second)]),
    );
    expect(outcomes.filter((o) => o.duplicate)).toHaveLength(3);
    expect(await pair.a.publish(101)).toEqual({ duplicate: true });
    const stored = await pair.stored();
    if (stored) expect(stored).toEqual([100, 101, 102]);
    await pair.dispose();
  });

  it("hands each tick to exactly one consumer, one at a time, newest last with pending 0", async () => {
    const pair = await backend.open();
    const seen: Array<Tick & { by: string }> = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const handler = (by: string) => async (tick: Tick) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      seen.push({ ...tick, by });
      await new Promise((resolve) => setTimeout(resolve, 2));
      inFlight--;
    };
    for (const second of [10, 11, 12, 13, 14]) await pair.a.publish(second);
    const consumers = [pair.a.consume(handler("a")), pair.b.consume(handler("b"))];
    await eventually(() => seen.some((tick) => tick.second === 14), 5_000);
    for (const second of [15, 16]) await pair.b.publish(second);
    await eventually(() => seen.some((tick) => tick.second === 16) && inFlight === 0, 5_000);
    for (const consumer of consumers) await consumer.stop();

    const seconds = seen.map((tick) => tick.second);
    // A fresh consumer starts at the newest tick (JetStream: deliver last), the in-memory one at the oldest.
    expect(new Set(seconds).size).toBe(seconds.length);
    expect(seconds).toEqual([...seconds].sort((x, y) => x - y));
    expect(seconds.slice(-2)).toEqual([15, 16]);
    expect(maxInFlight).toBe(1);
    const last = seen.at(-1);
    expect(last?.pending).toBe(0);
    for (const tick of seen.slice(0, -1)) expect(tick.pending).toBeGreaterThanOrEqual(0);
    await pair.dispose();
  });

  it("a consumer stopped mid-tick lets it go at once: the next tick reaches another consumer", async () => {
    const pair = await backend.open();
    const handledBy: string[] = [];
    const stuck = pair.a.consume(async (tick, control) => {
      handledBy.push(`a:${tick.second}`);
      await new Promise<void>((resolve) => control.signal.addEventListener("abort", () => resolve()));
    });
    await pair.a.publish(500);
    await eventually(() => handledBy.includes("a:500"), 5_000);
    await stuck.stop();
    const other = pair.b.consume(async (tick) => {
      handledBy.push(`b:${tick.second}`);
    });
    await pair.b.publish(501);
    // Well inside the 2 s ack_wait: the stopped consumer's tick is not holding the line.
    await eventually(() => handledBy.includes("b:501"), 1_500);
    await other.stop();
    expect(handledBy).toEqual(["a:500", "b:501"]);
    await pair.dispose();
  });

  it("tells a tick that newer ones are waiting (so a backlog costs one pass)", async () => {
    const pair = await backend.open();
    const seen: Tick[] = [];
    // Something to start from: JetStream's consumer begins at the newest tick it finds.
    await pair.a.publish(1_000);
    const first = pair.a.consume(async (tick) => {
      seen.push(tick);
    });
    await eventually(() => seen.some((tick) => tick.second === 1_000), 5_000);
    await first.stop();
    for (let second = 1_001; second <= 1_050; second++) await pair.b.publish(second);
    const backlog: Tick[] = [];
    const second = pair.b.consume(async (tick) => {
      backlog.push(tick);
    });
    await eventually(() => backlog.some((tick) => tick.second === 1_050), 5_000);
    await second.stop();
    expect(backlog.map((tick) => tick.second)).toEqual(Array.from({ length: 50 }, (_, i) => 1_001 + i));
    expect(backlog.map((tick) => tick.pending)).toEqual(Array.from({ length: 50 }, (_, i) => 49 - i));
    await pair.dispose();
  });
});

describe("tick log on jetstream, when an instance dies", () => {
  it("a tick its consumer never acknowledged goes to another instance after ack_wait", async () => {
    const prefix = uniquePrefix("tickdead");
    prefixes.push(prefix);
    const doomed = await connectNats();
    const [survivorNc] = connections as [NatsConnection];
    const dying = await createJetStreamTickLog({ nc: doomed, prefix, ackWaitMs: 1_000 });
    const survivor = await createJetStreamTickLog({ nc: survivorNc, prefix, ackWaitMs: 1_000 });
    const handledBy: string[] = [];
    dying.consume(async (tick) => {
      handledBy.push(`dying:${tick.second}`);
      await new Promise(() => {});
    });
    await survivor.publish(900);
    await eventually(() => handledBy.includes("dying:900"), 5_000);
    const consumer = survivor.consume(async (tick) => {
      handledBy.push(`survivor:${tick.second}`);
    });
    await survivor.publish(901);
    await doomed.close();
    await eventually(() => handledBy.includes("survivor:901"), 5_000);
    await consumer.stop();
    // 900 was delivered once and never acknowledged, so it is handed out again; 901 waited behind it.
    expect(handledBy.slice(0, 1)).toEqual(["dying:900"]);
    expect(handledBy.filter((h) => h.startsWith("survivor:"))).toEqual(["survivor:900", "survivor:901"]);
  });
});

describe("tick sources", () => {
  it("a fake clock ticks every second it crosses, at most the newest burst of a long jump", () => {
    const clock = createFakeClock(Date.parse("2031-01-01T00:00:00.500Z"));
    const seconds: number[] = [];
    const stop = createFakeTickSource(clock, { maxBurst: 5 }).start((second) => seconds.push(second));
    const base = Math.floor(clock.now() / 1000);
    clock.advance(400);
    expect(seconds).toEqual([]);
    clock.advance(200);
    expect(seconds).toEqual([base + 1]);
    clock.advance(2_000);
    expect(seconds).toEqual([base + 1, base + 2, base + 3]);
    clock.advance(60_000);
    expect(seconds.slice(3)).toEqual([base + 59, base + 60, base + 61, base + 62, base + 63]);
    clock.set(clock.now() - 10_000);
    clock.advance(5_000);
    expect(seconds).toHaveLength(8);
    stop();
    clock.advance(10_000);
    expect(seconds).toHaveLength(8);
  });

  it("a manual source ticks only when told", () => {
    const source = createManualTickSource();
    const seconds: number[] = [];
    const stop = source.start((second) => seconds.push(second));
    source.tick(7);
    stop();
    source.tick(8);
    expect(seconds).toEqual([7]);
  });

  it("the system source fires just after a second boundary of the wall clock", async () => {
    const fired: Array<{ second: number; at: number }> = [];
    const stop = createSystemTickSource(systemClock).start((second) =>
      fired.push({ second, at: Date.now() }),
    );
    await eventually(() => fired.length >= 3, 4_500);
    stop();
    for (const { second, at } of fired) expect(second).toBe(Math.floor(at / 1000));
    // The best of three: one timer delayed by a busy machine says nothing about the alignment, a source
    // aligned to something else than the second boundary misses all three.
    expect(Math.min(...fired.map(({ at }) => at % 1000))).toBeLessThan(200);
  });
});
