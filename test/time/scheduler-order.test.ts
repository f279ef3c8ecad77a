import { describe, expect, it } from "vitest";
import { createFakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { createInMemoryTickLog } from "../../src/adapters/memory/tick-log.ts";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import type { HandleResult } from "../../src/app/command-handler.ts";
import { createDeadlineIndex, indexReplica } from "../../src/app/deadline-index.ts";
import { createExpiryScheduler, type ExpireFn } from "../../src/app/expiry-scheduler.ts";
import type { SessionState } from "../../src/domain/session-state.ts";
import type { ValidationEntry } from "../../src/projections/validation-entry.ts";

/**
 * The order of a pass: when a pass has more due sessions than it can expire at once, the ones that have
 * waited longest go first, so a long pass delays the sessions that fell due last.
 */

const T = 1_900_000_000_000;

function entry(sessionId: string, expiresAt: number): ValidationEntry {
  return {
    sessionId,
    userId: "u",
    username: "u",
    kind: "api",
    status: "active",
    endReason: undefined,
    tokenHash: "h",
    refreshGeneration: 0,
    roles: [],
    groups: [],
    scope: [],
    createdAt: T,
    expiresAt,
    idleTimeoutSeconds: 0,
    lastActivityAt: T,
    binding: { mode: "off" },
    idpSessionId: undefined,
    position: 1,
  };
}

function setup(
  readModelIds: string[] = [],
  concurrency = 1,
  following?: (sessionId: string) => Promise<unknown>,
) {
  const clock = createFakeClock(T);
  const index = createDeadlineIndex();
  const replica = indexReplica(createValidationReplica(), index);
  const calls: string[] = [];
  const expire: ExpireFn = async (sessionId) => {
    calls.push(sessionId);
    await new Promise((resolve) => setImmediate(resolve));
    const state = { status: "expired", sessionId } as unknown as SessionState;
    const result = { state, appended: [{}] } as unknown as HandleResult<SessionState>;
    return { ...result, following: following?.(sessionId) };
  };
  const scheduler = createExpiryScheduler({
    ticks: createInMemoryTickLog(),
    index,
    replica,
    readModel: { overdueSessionIds: async () => readModelIds },
    expire,
    clock,
    concurrency,
  });
  return { clock, replica, scheduler, calls };
}

describe("expiry pass order", () => {
  it("expires the index's sessions earliest deadline first, then read-model rows the replica has not seen", async () => {
    const { clock, replica, scheduler, calls } = setup(["unseen"]);
    // Filed in one one-second bucket out of order, and one in an earlier bucket filed last.
    replica.offerSession(entry("late", T + 10_900));
    replica.offerSession(entry("early", T + 10_100));
    replica.offerSession(entry("mid", T + 10_500));
    replica.offerSession(entry("older", T + 9_200));
    clock.advance(11_000);
    const pass = await scheduler.runPass({ tick: 1 });
    expect(pass).toMatchObject({ due: 5, expired: 5, failed: 0 });
    expect(calls).toEqual(["older", "early", "mid", "late", "unseen"]);
  });

  it("a read-model row the replica knows is taken at its replica deadline, once", async () => {
    const { clock, replica, scheduler, calls } = setup(["b", "a"]);
    replica.offerSession(entry("a", T + 5_300));
    replica.offerSession(entry("b", T + 5_700));
    replica.offerSession(entry("c", T + 5_100));
    clock.advance(6_000);
    await scheduler.runPass({ tick: 1 });
    expect(calls).toEqual(["c", "a", "b"]);
  });

  it("starts the next expiry while the previous one's write-through runs, and ends the pass after it", async () => {
    const written: string[] = [];
    const writes = new Map<string, () => void>();
    const { clock, replica, scheduler, calls } = setup([], 1, (sessionId) => {
      return new Promise<void>((resolve) => {
        writes.set(sessionId, () => {
          written.push(sessionId);
          resolve();
        });
      });
    });
    replica.offerSession(entry("a", T + 1_100));
    replica.offerSession(entry("b", T + 1_200));
    clock.advance(2_000);
    let ended = false;
    const pass = scheduler.runPass({ tick: 1 }).then((result) => {
      ended = true;
      return result;
    });
    // "a" is appended and its write-through is still running when "b" is appended.
    while (calls.length < 2) await new Promise((resolve) => setImmediate(resolve));
    expect(written).toEqual([]);
    writes.get("a")?.();
    await new Promise((resolve) => setImmediate(resolve));
    expect(ended).toBe(false);
    writes.get("b")?.();
    expect(await pass).toMatchObject({ due: 2, expired: 2 });
    expect(written).toEqual(["a", "b"]);
  });
});
