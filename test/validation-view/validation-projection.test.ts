import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import { createInMemoryValidationStore } from "../../src/adapters/memory/validation-store.ts";
import {
  createKvValidationStore,
  validationBucketName,
} from "../../src/adapters/nats-kv/validation-store.ts";
import type { ValidationStore } from "../../src/app/ports.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import { CheckpointConflictError } from "../../src/projections/runner.ts";
import { isRevokedByUser } from "../../src/projections/validation-entry.ts";
import {
  createValidationProjection,
  VALIDATION_PROJECTION,
} from "../../src/projections/validation-projection.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";
import { createEventFactory, T0 } from "./fixtures.ts";

const prefix = uniquePrefix("vvp");
let nc: NatsConnection;
let buckets = 0;

beforeAll(async () => {
  nc = await connectNats();
});

afterAll(async () => {
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
});

/** Every key, value and revision in the bucket: a replay that writes anything at all changes this. */
async function dumpBucket(storePrefix: string): Promise<Record<string, string>> {
  const kv = await new Kvm(nc).open(validationBucketName(storePrefix));
  const dump: Record<string, string> = {};
  const keys: string[] = [];
  for await (const key of await kv.keys()) keys.push(key);
  for (const key of keys.sort()) {
    const entry = await kv.get(key);
    if (entry) dump[key] = `${entry.revision}:${entry.string()}`;
  }
  return dump;
}

/** A story of three sessions of two users, with renewals, touches, an ending and user-wide events. */
function story() {
  const events = createEventFactory(1);
  const [s1, s2, s3] = [
    "0194a000-0000-7000-8000-000000000001",
    "0194a000-0000-7000-8000-000000000002",
    "0194a000-0000-7000-8000-000000000003",
  ] as const;
  const batch1: RecordedEvent[] = [
    events.created(s1, "alice", T0),
    events.created(s2, "alice", T0 + 1_000),
    events.touched(s1, T0 + 60_000),
    events.created(s3, "bob", T0 + 2_000),
    events.renewed(s1, T0 + 120_000, T0 + 7_200_000),
  ];
  const batch2: RecordedEvent[] = [
    events.invalidated(s2, "alice", T0 + 130_000),
    events.revokedAll("alice", T0 + 140_000, s1),
    events.claimsChanged("bob", T0 + 150_000, ["admin"]),
    events.touched(s3, T0 + 160_000),
  ];
  return { s1, s2, s3, batch1, batch2, last: 9 };
}

type Backend = { label: string; open(): Promise<{ store: ValidationStore; dump(): Promise<unknown> }> };

const backends: Backend[] = [
  {
    label: "NATS KV",
    async open() {
      const storePrefix = `${prefix}b${++buckets}`;
      const store = await createKvValidationStore({ nc, prefix: storePrefix });
      return { store, dump: () => dumpBucket(storePrefix) };
    },
  },
  {
    label: "in-memory",
    async open() {
      const store = createInMemoryValidationStore();
      const dump = async () => {
        const sessions: unknown[] = [];
        const users: unknown[] = [];
        const watch = await store.watch({ onSession: (e) => sessions.push(e), onUser: (e) => users.push(e) });
        await watch.stop();
        return { sessions, users, checkpoint: await store.getCheckpoint(VALIDATION_PROJECTION) };
      };
      return { store, dump };
    },
  },
];

describe.each(backends)("validation projection on $label", (backend) => {
  it("folds sessions and users into entries and records the checkpoint", async () => {
    const { store } = await backend.open();
    const replica = createValidationReplica();
    const projection = createValidationProjection({ store, replica });
    const { s1, s2, s3, batch1, batch2, last } = story();
    expect(projection.name).toBe("validation");
    expect(await projection.checkpoint()).toBe(0);
    await projection.applyBatch(batch1);
    await projection.applyBatch(batch2);

    const one = await store.getSession(s1);
    expect(one).toMatchObject({ status: "active", userId: "alice", position: 5, expiresAt: T0 + 7_200_000 });
    expect(one?.lastActivityAt).toBe(T0 + 120_000);
    expect(await store.getSession(s2)).toMatchObject({
      status: "invalidated",
      endReason: "logout",
      position: 6,
    });
    expect(await store.getSession(s3)).toMatchObject({ lastActivityAt: T0 + 160_000, position: 9 });
    const alice = await store.getUser("alice");
    expect(alice?.position).toBe(7);
    expect(isRevokedByUser(alice, s1, T0)).toBe(false);
    expect(isRevokedByUser(alice, "another", T0 + 1)).toBe(true);
    expect((await store.getUser("bob"))?.claims).toEqual({ roles: ["admin"], groups: ["staff"] });
    expect(await store.getCheckpoint(VALIDATION_PROJECTION)).toBe(last);
    expect(await projection.checkpoint()).toBe(last);

    // Written entries reach this instance's replica at once, without waiting for the watch.
    expect(replica.getSession(s2)?.status).toBe("invalidated");
    expect(replica.getUser("bob")?.position).toBe(8);
  });

  it("applying the same events twice, by the same or a fresh runner, changes nothing", async () => {
    const { store, dump } = await backend.open();
    const { batch1, batch2 } = story();
    const projection = createValidationProjection({ store });
    await projection.checkpoint();
    await projection.applyBatch(batch1);
    await projection.applyBatch(batch2);
    const once = await dump();

    await projection.applyBatch(batch2);
    expect(await dump()).toEqual(once);

    // A fresh runner (empty cache) replaying everything from the start.
    const fresh = createValidationProjection({ store });
    await fresh.checkpoint();
    await fresh.applyBatch([...batch1, ...batch2]);
    await fresh.applyBatch(batch1);
    expect(await dump()).toEqual(once);
    expect(await store.getCheckpoint(VALIDATION_PROJECTION)).toBe(9);
  });

  it("refuses a batch when another runner moved the checkpoint, then continues from a fresh read", async () => {
    const { store } = await backend.open();
    const { s1, batch1, batch2 } = story();
    const a = createValidationProjection({ store });
    const b = createValidationProjection({ store });
    await a.checkpoint();
    await a.applyBatch(batch1);
    // b takes over and applies batch2; a's cached view of s1 is now stale.
    await b.checkpoint();
    await b.applyBatch(batch2);
    const events = createEventFactory(10);
    const touch = events.touched(s1, T0 + 200_000);
    await expect(a.applyBatch([touch])).rejects.toBeInstanceOf(CheckpointConflictError);
    expect(await a.checkpoint()).toBe(9);
    await a.applyBatch([touch]);
    expect(await store.getSession(s1)).toMatchObject({ position: 10, lastActivityAt: T0 + 200_000 });
    expect(await store.getCheckpoint(VALIDATION_PROJECTION)).toBe(10);
  });
});
