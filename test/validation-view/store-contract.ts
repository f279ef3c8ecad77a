import { describe, expect, it } from "vitest";
import type { ValidationStore } from "../../src/app/ports.ts";
import type { UserValidationEntry, ValidationEntry } from "../../src/projections/validation-entry.ts";
import { eventually, sessionEntry, shuffle, userEntry } from "./fixtures.ts";

/**
 * What every ValidationStore must do, run against the NATS KV bucket and the in-memory twin alike.
 * `open` gives a fresh, empty view and `openPeer` a second writer on the same view (for KV: another
 * connection), so concurrent-writer races are real ones.
 */
export type StoreHarness = {
  open(): Promise<ValidationStore>;
  openPeer(store: ValidationStore): Promise<ValidationStore>;
};

function collect(store: ValidationStore) {
  const sessions = new Map<string, ValidationEntry>();
  const users = new Map<string, UserValidationEntry>();
  const watching = store.watch({
    onSession: (entry) => sessions.set(entry.sessionId, entry),
    onUser: (entry) => users.set(entry.userId, entry),
  });
  return { sessions, users, watching };
}

export function describeValidationStoreContract(label: string, harness: () => StoreHarness) {
  describe(`ValidationStore contract: ${label}`, () => {
    it("returns undefined for unknown keys and a stored entry unchanged", async () => {
      const store = await harness().open();
      const entry = sessionEntry({
        binding: { mode: "ip+ua", ip: "192.0.2.7", userAgent: "ua/1" },
        endReason: undefined,
        idpSessionId: "idp-1",
      });
      expect(await store.getSession(entry.sessionId)).toBeUndefined();
      expect(await store.getUser("nobody")).toBeUndefined();
      await store.putSession(entry);
      expect(await store.getSession(entry.sessionId)).toEqual(entry);
    });

    it("keys users by any id, including ones with dots, wildcards and @", async () => {
      const store = await harness().open();
      const odd = userEntry({ userId: "a.b@c*>_ü", revocations: [{ before: 5, except: "x" }], position: 3 });
      const plain = userEntry({ userId: "a", claims: { roles: ["admin"], groups: [] }, position: 4 });
      await store.putUser(odd);
      await store.putUser(plain);
      expect(await store.getUser(odd.userId)).toEqual(odd);
      expect(await store.getUser(plain.userId)).toEqual(plain);
    });

    it("never lets an entry with an older or equal position replace a stored one", async () => {
      const store = await harness().open();
      const newer = sessionEntry({ position: 10, status: "invalidated", endReason: "logout" });
      await store.putSession(newer);
      await store.putSession({ ...newer, position: 9, status: "active", endReason: undefined });
      await store.putSession({ ...newer, position: 10, tokenHash: "other" });
      expect(await store.getSession(newer.sessionId)).toEqual(newer);
      await store.putSession({ ...newer, position: 11, lastActivityAt: newer.lastActivityAt + 1 });
      expect((await store.getSession(newer.sessionId))?.position).toBe(11);

      const user = userEntry({ userId: "u-order", position: 7, claims: { roles: ["b"], groups: [] } });
      await store.putUser(user);
      await store.putUser({ ...user, position: 6, claims: { roles: ["a"], groups: [] } });
      expect(await store.getUser(user.userId)).toEqual(user);
    });

    it("keeps the highest position when two writers race with shuffled positions", async () => {
      const store = await harness().open();
      const peer = await harness().openPeer(store);
      const base = sessionEntry();
      const user = userEntry({ userId: `racer-${base.sessionId}` });
      const positions = Array.from({ length: 40 }, (_, i) => i + 1);
      const odd = shuffle(positions.filter((p) => p % 2 === 1));
      const even = shuffle(positions.filter((p) => p % 2 === 0));
      const write = (writer: ValidationStore, order: number[]) =>
        Promise.all(
          order.map(async (position) => {
            await writer.putSession({ ...base, position, refreshGeneration: position });
            await writer.putUser({ ...user, position, revocations: [{ before: position }] });
          }),
        );
      await Promise.all([write(store, odd), write(peer, even)]);
      const stored = await store.getSession(base.sessionId);
      expect(stored?.position).toBe(40);
      expect(stored?.refreshGeneration).toBe(40);
      expect((await peer.getSession(base.sessionId))?.position).toBe(40);
      expect(await store.getUser(user.userId)).toEqual({
        ...user,
        position: 40,
        revocations: [{ before: 40 }],
      });
    });

    it("a writer that already wrote a key still never regresses it after a peer moved it on", async () => {
      const store = await harness().open();
      const peer = await harness().openPeer(store);
      const entry = sessionEntry({ position: 1 });
      await store.putSession(entry);
      await peer.putSession({ ...entry, position: 5 });
      // `store` remembers writing position 1; its next write must still lose to the peer's 5.
      await store.putSession({ ...entry, position: 3 });
      expect((await store.getSession(entry.sessionId))?.position).toBe(5);
      await store.putSession({ ...entry, position: 6 });
      expect((await peer.getSession(entry.sessionId))?.position).toBe(6);
    });

    it("watch delivers every current entry before resolving, then live ones", async () => {
      const store = await harness().open();
      const before = [sessionEntry({ position: 1 }), sessionEntry({ position: 2 })];
      for (const entry of before) await store.putSession(entry);
      await store.putUser(userEntry({ userId: "w-user", position: 3 }));
      await store.setCheckpoint("validation", 3);

      const seen = collect(store);
      const watch = await seen.watching;
      try {
        expect([...seen.sessions.keys()].sort()).toEqual(before.map((e) => e.sessionId).sort());
        expect(seen.users.get("w-user")?.position).toBe(3);

        const live = sessionEntry({ position: 4 });
        await store.putSession(live);
        await store.putUser(userEntry({ userId: "w-user", position: 5 }));
        await store.setCheckpoint("validation", 5);
        expect(
          await eventually(
            () => seen.sessions.has(live.sessionId) && seen.users.get("w-user")?.position === 5,
          ),
        ).toBe(true);
        expect(seen.sessions.get(live.sessionId)).toEqual(live);
        expect(seen.sessions.size).toBe(3);
      } finally {
        await watch.stop();
      }
    });

    it("watch on an empty view resolves at once and stop ends deliveries", async () => {
      const store = await harness().open();
      const seen = collect(store);
      const watch = await seen.watching;
      expect(seen.sessions.size).toBe(0);
      await watch.stop();
      await store.putSession(sessionEntry());
      // A second watcher that is still running proves the write was delivered to watchers at all.
      const other = collect(store);
      const otherWatch = await other.watching;
      expect(other.sessions.size).toBe(1);
      await otherWatch.stop();
      expect(seen.sessions.size).toBe(0);
    });

    it("stores checkpoints by name, 0 when unset", async () => {
      const store = await harness().open();
      expect(await store.getCheckpoint("validation")).toBe(0);
      await store.setCheckpoint("validation", 42);
      await store.setCheckpoint("other", 7);
      expect(await store.getCheckpoint("validation")).toBe(42);
      expect(await store.getCheckpoint("other")).toBe(7);
    });

    it("forgets the sessions it is told to, and only those: gone for reads, for new watchers and for writers", async () => {
      const store = await harness().open();
      const forgotten = sessionEntry({ status: "expired", position: 5 });
      const kept = sessionEntry({ position: 6 });
      const user = userEntry({ userId: "forget-user", position: 7 });
      await store.putSession(forgotten);
      await store.putSession(kept);
      await store.putUser(user);
      await store.setCheckpoint("validation", 7);

      await store.forgetSessions([forgotten.sessionId, "not-a-stored-session"]);
      expect(await store.getSession(forgotten.sessionId)).toBeUndefined();
      expect(await store.getSession(kept.sessionId)).toEqual(kept);
      expect(await store.getUser(user.userId)).toEqual(user);
      expect(await store.getCheckpoint("validation")).toBe(7);

      const watcher = collect(store);
      await watcher.watching;
      expect([...watcher.sessions.keys()]).toEqual([kept.sessionId]);
      (await watcher.watching).stop();

      // A later write of the forgotten session is stored: nothing holds on to the old revision.
      const later = { ...forgotten, position: 8 };
      await store.putSession(later);
      expect(await store.getSession(forgotten.sessionId)).toEqual(later);
    });
  });
}
