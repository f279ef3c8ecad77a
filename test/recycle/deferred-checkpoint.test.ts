import { afterEach, describe, expect, it, vi } from "vitest";
import { createRecycleProcessManager } from "../../src/app/recycle-process-manager.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import { CheckpointConflictError } from "../../src/projections/runner.ts";
import { metadata, newSessionId, sessionCreated, userClaimsChanged } from "../contract/event-fixtures.ts";
import { countingStore } from "../support/counting-checkpoints.ts";
import { eventually } from "../support/tessera.ts";

/**
 * The recycle process manager skips session events; it writes its checkpoint for a run of them once,
 * shortly after, instead of two KV round trips per event — and still never lets a deferred write undo a
 * newer one, nor hide a checkpoint moved by another runner.
 */

function recorded(position: number, userEvent: boolean): RecordedEvent {
  const event = userEvent ? userClaimsChanged("u1") : sessionCreated(newSessionId());
  const stream = userEvent
    ? { category: "user" as const, id: "u1" }
    : { category: "session" as const, id: "s" };
  return { ...event, metadata: metadata(), stream, position } as RecordedEvent;
}

describe("recycle process manager checkpoints", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("writes the checkpoint of a run of session events once, soon after", async () => {
    const { store, checkpoints, calls } = countingStore();
    const fannedOut: number[] = [];
    const manager = createRecycleProcessManager({
      users: { fanOut: async () => 0 },
      checkpoints,
      onFannedOut: (event) => fannedOut.push(event.position),
    });
    await manager.checkpoint();
    for (let position = 1; position <= 100; position++) await manager.applyBatch([recorded(position, false)]);
    expect(calls.get + calls.set).toBeLessThanOrEqual(1 + 2);
    await eventually(async () => (await store.getCheckpoint("recycle")) === 100, 2_000);
    expect(calls.set).toBe(1);

    // A user event is fanned out and recorded at once.
    await manager.applyBatch([recorded(101, false), recorded(102, true)]);
    expect(fannedOut).toEqual([102]);
    expect(await store.getCheckpoint("recycle")).toBe(102);
  });

  it("reports a checkpoint another runner moved, found by a deferred write, on the next batch", async () => {
    const { store, checkpoints } = countingStore();
    const manager = createRecycleProcessManager({ users: { fanOut: async () => 0 }, checkpoints });
    vi.useFakeTimers({ toFake: ["setTimeout"] });
    await manager.checkpoint();
    await manager.applyBatch([recorded(1, false)]);
    await store.setCheckpoint("recycle", 50); // someone else
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await store.getCheckpoint("recycle")).toBe(50);
    await expect(manager.applyBatch([recorded(2, false)])).rejects.toBeInstanceOf(CheckpointConflictError);
    // Re-seeking starts afresh from the stored checkpoint.
    expect(await manager.checkpoint()).toBe(50);
    await manager.applyBatch([recorded(51, true)]);
    expect(await store.getCheckpoint("recycle")).toBe(51);
  });

  it("never lets a deferred write land after a newer batch's checkpoint", async () => {
    const { store, checkpoints } = countingStore();
    let release!: () => void;
    const slowFanOut = new Promise<void>((resolve) => {
      release = resolve;
    });
    const manager = createRecycleProcessManager({
      users: {
        fanOut: async () => {
          await slowFanOut;
          return 1;
        },
      },
      checkpoints,
    });
    vi.useFakeTimers({ toFake: ["setTimeout"] });
    await manager.checkpoint();
    await manager.applyBatch([recorded(1, false)]);
    const userBatch = manager.applyBatch([recorded(2, true)]);
    // The deferred write for position 1 comes due while the user event is being fanned out.
    await vi.advanceTimersByTimeAsync(1_000);
    release();
    await userBatch;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await store.getCheckpoint("recycle")).toBe(2);
  });
});
