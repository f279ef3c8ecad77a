import { describe, expect, it } from "vitest";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import { createDeadlineIndex, deadlineOf, indexReplica } from "../../src/app/deadline-index.ts";
import type { ValidationEntry } from "../../src/projections/validation-entry.ts";

const T = 1_900_000_000_000;

function entry(overrides: Partial<ValidationEntry> & { sessionId: string }): ValidationEntry {
  return {
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
    expiresAt: T + 60_000,
    idleTimeoutSeconds: 0,
    lastActivityAt: T,
    binding: { mode: "off" },
    idpSessionId: undefined,
    position: 1,
    ...overrides,
  };
}

describe("deadline index", () => {
  it("returns ids filed at or before the second of `now`, earliest buckets first, each once", () => {
    const index = createDeadlineIndex();
    index.add("c", T + 30_500);
    index.add("a", T + 10_000);
    index.add("b", T + 10_999);
    index.add("d", T + 90_000);
    expect(index.size).toBe(4);
    expect(index.takeUntil(T + 9_999)).toEqual([]);
    // Whole seconds: b (10.999 s) is in the same bucket as a and comes out with it; the caller re-checks.
    expect(index.takeUntil(T + 10_000)).toEqual(["a", "b"]);
    expect(index.takeUntil(T + 10_000)).toEqual([]);
    expect(index.takeUntil(T + 3_600_000)).toEqual(["c", "d"]);
    expect(index.size).toBe(0);
  });

  it("keeps thousands of scattered deadlines in order", () => {
    const index = createDeadlineIndex();
    const deadlines = Array.from({ length: 5_000 }, (_, i) => T + ((i * 7919) % 100_000) * 1000);
    for (const [i, deadline] of deadlines.entries()) index.add(`s${i}`, deadline);
    const out: number[] = [];
    for (let s = 0; s <= 101_000; s += 997) {
      const now = T + s * 1000;
      const taken = index.takeUntil(now).map((id) => deadlines[Number(id.slice(1))] as number);
      // Nothing later than `now`'s second comes out, and nothing due by then stays behind.
      for (const deadline of taken) expect(Math.floor(deadline / 1000)).toBeLessThanOrEqual(now / 1000);
      out.push(...taken);
      expect(out.length).toBe(deadlines.filter((d) => Math.floor(d / 1000) <= now / 1000).length);
    }
    expect(out).toHaveLength(5_000);
    expect(index.size).toBe(0);
  });

  it("deadlineOf is the earlier of the absolute and the idle deadline", () => {
    expect(deadlineOf({ expiresAt: T + 60_000, idleTimeoutSeconds: 0, lastActivityAt: T })).toBe(T + 60_000);
    expect(deadlineOf({ expiresAt: T + 60_000, idleTimeoutSeconds: 30, lastActivityAt: T })).toBe(T + 30_000);
    expect(deadlineOf({ expiresAt: T + 60_000, idleTimeoutSeconds: 30, lastActivityAt: T + 40_000 })).toBe(
      T + 60_000,
    );
  });
});

describe("indexReplica", () => {
  it("files new active sessions, not updates that push the deadline later, and never ended ones", () => {
    const index = createDeadlineIndex();
    const replica = indexReplica(createValidationReplica(), index);
    replica.offerSession(entry({ sessionId: "s1", expiresAt: T + 60_000 }));
    replica.offerSession(entry({ sessionId: "s1", expiresAt: T + 120_000, position: 2 }));
    replica.offerSession(entry({ sessionId: "s2", status: "expired", endReason: "expired_absolute" }));
    // An older position is refused by the replica and files nothing.
    replica.offerSession(entry({ sessionId: "s1", expiresAt: T + 10_000, position: 1 }));
    expect(index.size).toBe(1);
    expect(index.takeUntil(T + 60_000)).toEqual(["s1"]);
    expect(replica.getSession("s1")?.expiresAt).toBe(T + 120_000);
  });

  it("files a session again when its deadline moves earlier than where it is filed", () => {
    const index = createDeadlineIndex();
    const replica = indexReplica(createValidationReplica(), index);
    replica.offerSession(entry({ sessionId: "s1", expiresAt: T + 600_000 }));
    replica.offerSession(
      entry({ sessionId: "s1", expiresAt: T + 600_000, idleTimeoutSeconds: 30, position: 2 }),
    );
    expect(index.takeUntil(T + 30_000)).toEqual(["s1"]);
  });
});
