import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attachReplica, createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import { createKvValidationStore } from "../../src/adapters/nats-kv/validation-store.ts";
import type { ValidationEntry } from "../../src/projections/validation-entry.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";
import { eventually, sessionEntry } from "./fixtures.ts";

const prefix = uniquePrefix("vvh");
let nc: NatsConnection;
let peerNc: NatsConnection;

beforeAll(async () => {
  nc = await connectNats();
  peerNc = await connectNats();
});

afterAll(async () => {
  await removeNatsPrefix(nc, prefix);
  await peerNc?.close();
  await nc?.close();
});

/**
 * Every instance's watch sees every write, its own included. An entry the listener says it already holds
 * (at that position or later) is not decoded or delivered; everything newer still is.
 */
describe("KV watch of entries the listener already holds", () => {
  it("delivers only entries newer than what the listener holds", async () => {
    const storePrefix = `${prefix}a`;
    const writer = await createKvValidationStore({ nc: peerNc, prefix: storePrefix });
    const store = await createKvValidationStore({ nc, prefix: storePrefix });
    const held = new Map<string, number>();
    const delivered: string[] = [];
    const watch = await store.watch({
      onSession: (entry) => delivered.push(`${entry.sessionId}:${entry.position}`),
      onUser: () => {},
      holdsSession: (sessionId, position) => (held.get(sessionId) ?? -1) >= position,
    });
    try {
      const mine = sessionEntry({ position: 5 });
      const theirs = sessionEntry({ position: 6 });
      held.set(mine.sessionId, 5);
      await writer.putSession(mine);
      await writer.putSession(theirs);
      expect(await eventually(() => delivered.includes(`${theirs.sessionId}:6`))).toBe(true);
      // Ended later (position 9): newer than held, so delivered.
      await writer.putSession({ ...mine, status: "invalidated", endReason: "revoked", position: 9 });
      expect(await eventually(() => delivered.includes(`${mine.sessionId}:9`))).toBe(true);
      expect(delivered).toEqual([`${theirs.sessionId}:6`, `${mine.sessionId}:9`]);
    } finally {
      await watch.stop();
    }
  });

  it("keeps a replica exactly as before: own writes skipped, everyone else's applied", async () => {
    const storePrefix = `${prefix}b`;
    const writer = await createKvValidationStore({ nc: peerNc, prefix: storePrefix });
    const store = await createKvValidationStore({ nc, prefix: storePrefix });
    const replica = createValidationReplica();
    const attached = await attachReplica(store, replica);
    try {
      const own = sessionEntry({ position: 3 });
      replica.offerSession(own);
      const ownStored = replica.getSession(own.sessionId);
      const other = sessionEntry({ position: 4 });
      await writer.putSession(own);
      await writer.putSession(other);
      expect(await eventually(() => replica.getSession(other.sessionId) !== undefined)).toBe(true);
      // The held entry was not replaced by a decoded copy of itself.
      expect(replica.getSession(own.sessionId)).toBe(ownStored);
      const ended: ValidationEntry = {
        ...own,
        status: "expired",
        endReason: "expired_absolute",
        position: 8,
      };
      await writer.putSession(ended);
      expect(await eventually(() => replica.getSession(own.sessionId)?.position === 8)).toBe(true);
      expect(replica.getSession(own.sessionId)?.status).toBe("expired");
      expect(replica.getSession(other.sessionId)).toEqual(other);
    } finally {
      await attached.stop();
    }
  });
});
