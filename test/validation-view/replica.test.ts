import { performance } from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { attachReplica, createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import { createInMemoryValidationStore } from "../../src/adapters/memory/validation-store.ts";
import { eventually, sessionEntry, T0, userEntry } from "./fixtures.ts";

describe("validation replica", () => {
  it("keeps the entry with the higher position", () => {
    const replica = createValidationReplica();
    const entry = sessionEntry({ position: 5 });
    replica.offerSession(entry);
    replica.offerSession({ ...entry, position: 4, status: "invalidated" });
    replica.offerSession({ ...entry, position: 5, status: "invalidated" });
    expect(replica.getSession(entry.sessionId)).toEqual(entry);
    replica.offerSession({ ...entry, position: 6, status: "expired", endReason: "expired_idle" });
    expect(replica.getSession(entry.sessionId)?.status).toBe("expired");
    expect(replica.size).toBe(1);

    const user = userEntry({ position: 3, revocations: [{ before: T0 }] });
    replica.offerUser(user);
    replica.offerUser({ ...user, position: 2, revocations: [] });
    expect(replica.getUser(user.userId)).toEqual(user);
    replica.offerUser({ ...user, position: 4, claims: { roles: ["admin"], groups: [] } });
    expect(replica.getUser(user.userId)?.claims).toEqual({ roles: ["admin"], groups: [] });
    expect(replica.getSession("unknown")).toBeUndefined();
  });

  it("waitForSession resolves when an offer reaches the position, and only then", async () => {
    const replica = createValidationReplica();
    const entry = sessionEntry({ position: 1 });
    const atThree = replica.waitForSession(entry.sessionId, 3, 5_000);
    const atTwo = replica.waitForSession(entry.sessionId, 2, 5_000);
    let threeSettled = false;
    void atThree.then(() => {
      threeSettled = true;
    });

    replica.offerSession(entry);
    replica.offerSession({ ...entry, position: 2 });
    expect(await atTwo).toBe(true);
    await Promise.resolve();
    expect(threeSettled).toBe(false);
    replica.offerSession({ ...entry, position: 4 });
    expect(await atThree).toBe(true);
    // Already there: resolves without waiting.
    expect(await replica.waitForSession(entry.sessionId, 4, 0)).toBe(true);
  });

  it("waitForSession resolves false after the timeout", async () => {
    const replica = createValidationReplica();
    replica.offerSession(sessionEntry({ sessionId: "s-1", position: 1 }));
    const started = performance.now();
    expect(await replica.waitForSession("s-1", 2, 60)).toBe(false);
    expect(await replica.waitForSession("s-missing", 1, 30)).toBe(false);
    expect(performance.now() - started).toBeGreaterThanOrEqual(85);
    // A late offer after a timed-out wait does no harm.
    replica.offerSession(sessionEntry({ sessionId: "s-1", position: 2 }));
    expect(replica.getSession("s-1")?.position).toBe(2);
  });

  it("attachReplica resolves with every current entry loaded, then follows live writes until stopped", async () => {
    const store = createInMemoryValidationStore();
    const initial = [sessionEntry({ position: 1 }), sessionEntry({ position: 2 })];
    for (const entry of initial) await store.putSession(entry);
    await store.putUser(userEntry({ userId: "u-att", position: 3 }));
    const replica = createValidationReplica();
    const attached = await attachReplica(store, replica);
    expect(replica.size).toBe(2);
    for (const entry of initial) expect(replica.getSession(entry.sessionId)).toEqual(entry);
    expect(replica.getUser("u-att")?.position).toBe(3);

    const live = sessionEntry({ position: 4 });
    await store.putSession(live);
    expect(await eventually(() => replica.getSession(live.sessionId) !== undefined)).toBe(true);
    await attached.stop();
    await store.putSession(sessionEntry({ position: 5 }));
    expect(replica.size).toBe(3);
  });

  it("shares role lists and keeps a session under 1 KiB", () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const count = 20_000;
    // Entries arrive as parsed JSON (as from the KV watch): every list and string is a fresh object.
    const payloads = Array.from({ length: count }, (_, i) =>
      JSON.stringify(
        sessionEntry({
          userId: `user-${i % 500}`,
          username: `name-${i % 500}`,
          roles: ["user", "viewer"],
          groups: i % 2 ? ["staff"] : [],
          scope: ["sessions:read", "sessions:write"],
          position: i + 1,
        }),
      ),
    );
    const replica = createValidationReplica();
    gc();
    const before = process.memoryUsage().heapUsed;
    for (const payload of payloads) replica.offerSession(JSON.parse(payload));
    gc();
    const perSession = (process.memoryUsage().heapUsed - before) / count;
    console.log(`replica memory: ${perSession.toFixed(0)} bytes per session`);
    expect(replica.size).toBe(count);
    expect(perSession).toBeLessThan(1024);

    const ids = payloads.map((p) => (JSON.parse(p) as { sessionId: string }).sessionId);
    const a = replica.getSession(ids[0] as string);
    const b = replica.getSession(ids[2] as string);
    expect(a?.roles).toBe(b?.roles);
    expect(Object.isFrozen(a?.roles)).toBe(true);
  });

  // How fast: the validate-memory benchmark (npm run bench), not a timed test.
  it("finds every session among ten thousand, looked up two million times", () => {
    const replica = createValidationReplica();
    const ids: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      const entry = sessionEntry({ position: i + 1 });
      ids.push(entry.sessionId);
      replica.offerSession(entry);
    }
    const lookups = 2_000_000;
    let found = 0;
    for (let i = 0; i < lookups; i++) {
      if (replica.getSession(ids[i % ids.length] as string)) found++;
    }
    expect(found).toBe(lookups);
  });
});
