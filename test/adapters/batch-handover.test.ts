import { describe, expect, it } from "vitest";
import { createBatchHandover } from "../../src/adapters/jetstream/batch-handover.ts";

/** A handler whose batches finish only when the test says so. */
function gatedHandler() {
  const batches: number[][] = [];
  const gates: Array<() => void> = [];
  const handler = (batch: number[]) => {
    batches.push(batch);
    return new Promise<void>((resolve) => gates.push(resolve));
  };
  return {
    batches,
    handler,
    /** Lets the oldest unfinished batch finish and gives the handover its turns. */
    async finishOne() {
      gates.shift()?.();
      await turns();
    },
  };
}

const turns = async (count = 3) => {
  for (let i = 0; i < count; i++) await new Promise(setImmediate);
};
const fail = (error: unknown) => {
  throw error;
};

describe("batch handover", () => {
  it("given an idle handler, when the backlog is drained, then everything buffered goes as one batch on the next turn", async () => {
    const { batches, handler } = gatedHandler();
    const handover = createBatchHandover(10, handler, fail);
    handover.push(1);
    handover.push(2);
    handover.flushSoon();
    handover.push(3);
    expect(batches).toEqual([]);
    await turns();
    expect(batches).toEqual([[1, 2, 3]]);
  });

  it("given a batch being applied, when items keep arriving, then the next batch is everything that arrived meanwhile", async () => {
    const { batches, handler, finishOne } = gatedHandler();
    const handover = createBatchHandover(100, handler, fail);
    handover.push(1);
    handover.flushSoon();
    await turns();
    expect(batches).toEqual([[1]]);
    // Live traffic: every message says the server has nothing more.
    for (const item of [2, 3, 4, 5]) {
      handover.push(item);
      handover.flushSoon();
    }
    await turns();
    expect(batches).toHaveLength(1);
    await finishOne();
    expect(batches).toEqual([[1], [2, 3, 4, 5]]);
  });

  it("given no drained backlog, when a batch fills up, then it is handed over at once and the rest waits", async () => {
    const { batches, handler } = gatedHandler();
    const handover = createBatchHandover(3, handler, fail);
    expect(handover.push(1)).toBeUndefined();
    expect(handover.push(2)).toBeUndefined();
    expect(handover.push(3)).toBeUndefined();
    expect(batches).toEqual([[1, 2, 3]]);
    handover.push(4);
    await turns();
    expect(batches).toEqual([[1, 2, 3]]);
    expect(handover.buffered).toBe(1);
  });

  it("given a full batch waiting behind the one being applied, then the reader waits for room", async () => {
    const { batches, handler, finishOne } = gatedHandler();
    const handover = createBatchHandover(2, handler, fail);
    handover.push(1);
    handover.push(2);
    handover.push(3);
    const wait = handover.push(4);
    expect(wait).toBeInstanceOf(Promise);
    let released = false;
    void wait?.then(() => {
      released = true;
    });
    await turns();
    expect(released).toBe(false);
    await finishOne();
    expect(released).toBe(true);
    expect(batches).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });

  it("given more than a batch buffered when the backlog drains, then it goes in full batches and nothing is stranded", async () => {
    const { batches, handler, finishOne } = gatedHandler();
    const handover = createBatchHandover(2, handler, fail);
    handover.push(1);
    handover.push(2);
    // Batch [1, 2] is being applied; 3, 4 and 5 arrive (the reader would wait at 4, then push 5).
    handover.push(3);
    void handover.push(4);
    await finishOne();
    handover.push(5);
    handover.flushSoon();
    await finishOne();
    await finishOne();
    expect(batches).toEqual([[1, 2], [3, 4], [5]]);
  });

  it("given a failing handler, then it reports the error once, drops the buffer and hands nothing more over", async () => {
    const failure = new Error("apply failed");
    const batches: number[][] = [];
    const errors: unknown[] = [];
    const handover = createBatchHandover(
      2,
      async (batch: number[]) => {
        batches.push(batch);
        throw failure;
      },
      (error) => errors.push(error),
    );
    handover.push(1);
    handover.push(2);
    handover.push(3);
    await turns();
    handover.push(4);
    handover.push(5);
    handover.flushSoon();
    await turns();
    expect(errors).toEqual([failure]);
    expect(batches).toEqual([[1, 2]]);
  });

  it("given a batch being applied, when closed, then close waits for it and nothing more is handed over", async () => {
    const { batches, handler, finishOne } = gatedHandler();
    const handover = createBatchHandover(10, handler, fail);
    handover.push(1);
    handover.flushSoon();
    await turns();
    handover.push(2);
    handover.flushSoon();
    let closed = false;
    const closing = handover.close().then(() => {
      closed = true;
    });
    await turns();
    expect(closed).toBe(false);
    await finishOne();
    await closing;
    expect(closed).toBe(true);
    expect(batches).toEqual([[1]]);
  });
});
