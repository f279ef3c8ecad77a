import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createInMemoryEventLog } from "../../src/adapters/memory/event-log.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import { catchUp, type ProjectionTarget } from "../../src/projections/runner.ts";
import { eventLog } from "./fixtures.ts";

/**
 * catchUp reads one batch ahead while the previous one is applied. These pin what must not change with
 * that: batches apply one at a time and in order, a failure anywhere (the last batch included) fails the
 * catch-up, and nothing is still being applied once catchUp has returned or thrown.
 */

type Deferred = { promise: Promise<void>; resolve(): void; reject(error: unknown): void };
function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function until(condition: () => boolean, what: string) {
  const deadline = Date.now() + 2_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** A target whose batches finish only when the test says so. */
function manualTarget() {
  const applies: { first: number; last: number; done: Deferred }[] = [];
  let running = 0;
  let maxRunning = 0;
  let checkpoint = 0;
  const target: ProjectionTarget = {
    name: "manual",
    async checkpoint() {
      return checkpoint;
    },
    async applyBatch(batch) {
      const done = deferred();
      applies.push({ first: batch[0]?.position ?? 0, last: batch.at(-1)?.position ?? 0, done });
      running++;
      maxRunning = Math.max(maxRunning, running);
      try {
        await done.promise;
        checkpoint = batch.at(-1)?.position ?? checkpoint;
      } finally {
        running--;
      }
    },
  };
  return { target, applies, running: () => running, maxRunning: () => maxRunning };
}

describe("catchUp with one batch of look-ahead", () => {
  let log: EventLog;
  let handedOver: number[];

  beforeEach(async () => {
    const inner = createInMemoryEventLog();
    handedOver = [];
    // Records when the follower hands a batch over, to see the read run ahead of the apply.
    log = {
      ...inner,
      follow: (options, handler) =>
        inner.follow(options, (batch) => {
          handedOver.push(batch[0]?.position ?? 0);
          return handler(batch);
        }),
    };
    const events = eventLog();
    for (let i = 0; i < 10; i++) {
      const { metadata, stream, position: _position, ...event } = events.created({ userId: "u", atS: i });
      await inner.append(stream, event as RecordedEvent, metadata, {
        expectedVersion: 0,
        messageId: metadata.commandId,
      });
    }
  });

  afterEach(async () => {
    await log.close();
  });

  it("reads the next batch while one applies, applies one at a time in order, returns after the last", async () => {
    const manual = manualTarget();
    let returned = false;
    const result = catchUp(log, manual.target, 4).then((position) => {
      returned = true;
      return position;
    });

    await until(() => manual.applies.length === 1, "the first apply");
    // Batch 5–8 is handed over while 1–4 is still being applied, but not applied yet.
    await until(() => handedOver.length === 2, "the look-ahead batch");
    expect(manual.applies).toHaveLength(1);
    manual.applies[0]?.done.resolve();

    await until(() => manual.applies.length === 2, "the second apply");
    manual.applies[1]?.done.resolve();
    await until(() => manual.applies.length === 3, "the third apply");
    expect(returned).toBe(false);
    manual.applies[2]?.done.resolve();

    expect(await result).toBe(10);
    expect(manual.applies.map((a) => [a.first, a.last])).toEqual([
      [1, 4],
      [5, 8],
      [9, 10],
    ]);
    expect(manual.maxRunning()).toBe(1);
  });

  it("fails when the last batch fails (no later batch is there to notice)", async () => {
    const manual = manualTarget();
    const result = catchUp(log, manual.target, 4);
    await until(() => manual.applies.length === 1, "the first apply");
    manual.applies[0]?.done.resolve();
    await until(() => manual.applies.length === 2, "the second apply");
    manual.applies[1]?.done.resolve();
    await until(() => manual.applies.length === 3, "the last apply");
    manual.applies[2]?.done.reject(new Error("disk full"));
    await expect(result).rejects.toThrow("disk full");
    expect(manual.running()).toBe(0);
  });

  it("fails on a failed batch without applying any batch after it", async () => {
    const manual = manualTarget();
    const result = catchUp(log, manual.target, 4);
    await until(() => handedOver.length === 2, "the look-ahead batch");
    manual.applies[0]?.done.reject(new Error("constraint violated"));
    await expect(result).rejects.toThrow("constraint violated");
    // Give a wrongly started later apply the chance to show up.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(manual.applies).toHaveLength(1);
    expect(manual.running()).toBe(0);
  });
});
