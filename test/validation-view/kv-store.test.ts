import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Kvm } from "@nats-io/kv";
import { type NatsConnection, connect as natsConnect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attachReplica, createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import {
  createKvValidationStore,
  validationBucketName,
} from "../../src/adapters/nats-kv/validation-store.ts";
import type { ValidationEntry } from "../../src/projections/validation-entry.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";
import { eventually, sessionEntry, userEntry } from "./fixtures.ts";

const prefix = uniquePrefix("vvk");
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

describe("NATS KV validation store", () => {
  it("creates its bucket with history 1 on file storage, and reopens it", async () => {
    const storePrefix = `${prefix}cfg`;
    const store = await createKvValidationStore({ nc, prefix: storePrefix });
    const entry = sessionEntry();
    await store.putSession(entry);
    const status = await (await new Kvm(nc).open(validationBucketName(storePrefix))).status();
    expect(status.history).toBe(1);
    expect(status.storage).toBe("file");
    const reopened = await createKvValidationStore({ nc: peerNc, prefix: storePrefix });
    expect(await reopened.getSession(entry.sessionId)).toEqual(entry);
  });

  it("watch ignores checkpoints, deletes and unreadable values; reads treat them as missing", async () => {
    const storePrefix = `${prefix}del`;
    const store = await createKvValidationStore({ nc, prefix: storePrefix });
    const kv = await new Kvm(nc).open(validationBucketName(storePrefix));
    const deleted = sessionEntry();
    await store.putSession(deleted);

    const delivered: string[] = [];
    const watch = await store.watch({
      onSession: (entry) => delivered.push(`s:${entry.sessionId}:${entry.position}`),
      onUser: (entry) => delivered.push(`u:${entry.userId}:${entry.position}`),
    });
    try {
      expect(delivered).toEqual([`s:${deleted.sessionId}:1`]);
      await kv.delete(`s.${deleted.sessionId}`);
      await store.setCheckpoint("validation", 9);
      const garbled = sessionEntry();
      await kv.put(`s.${garbled.sessionId}`, "{not json");
      // The watch is ordered: once this arrives, everything written before it has been seen or skipped.
      const marker = userEntry({ userId: "marker", position: 2 });
      await store.putUser(marker);
      expect(await eventually(() => delivered.length >= 2)).toBe(true);
      expect(delivered).toEqual([`s:${deleted.sessionId}:1`, "u:marker:2"]);

      expect(await store.getSession(deleted.sessionId)).toBeUndefined();
      expect(await store.getSession(garbled.sessionId)).toBeUndefined();
      expect(await store.getSession("not a valid key*")).toBeUndefined();
      // A correct entry replaces an unreadable one, and a deleted key can be written again.
      await store.putSession(garbled);
      await store.putSession({ ...deleted, position: 3 });
      expect(await store.getSession(garbled.sessionId)).toEqual(garbled);
      expect((await store.getSession(deleted.sessionId))?.position).toBe(3);
    } finally {
      await watch.stop();
    }
  });

  it("a putSession on one connection reaches a replica attached via another within 200 ms", async () => {
    const storePrefix = `${prefix}lat`;
    const writer = await createKvValidationStore({ nc, prefix: storePrefix });
    const reader = await createKvValidationStore({ nc: peerNc, prefix: storePrefix });
    const replica = createValidationReplica();
    const attached = await attachReplica(reader, replica);
    try {
      const samples: number[] = [];
      for (let i = 0; i < 25; i++) {
        const entry = sessionEntry({ position: i + 1 });
        const started = performance.now();
        const arrived = replica.waitForSession(entry.sessionId, entry.position, 2_000);
        await writer.putSession(entry);
        expect(await arrived).toBe(true);
        samples.push(performance.now() - started);
        expect(replica.getSession(entry.sessionId)).toEqual(entry);
      }
      samples.sort((a, b) => a - b);
      const p50 = samples[Math.floor(samples.length / 2)] ?? Number.NaN;
      const p90 = samples[Math.floor(samples.length * 0.9)] ?? Number.NaN;
      const max = samples.at(-1) ?? Number.NaN;
      console.log(
        `KV put -> replica on another connection: p50 ${p50.toFixed(2)} ms, p90 ${p90.toFixed(2)} ms, max ${max.toFixed(2)} ms`,
      );
      expect(p50).toBeLessThan(200);
      expect(p90).toBeLessThan(200);
    } finally {
      await attached.stop();
    }
  });
});

describe("NATS KV validation store: revisions learned from the watch", () => {
  /** Counts the KV reads of a bucket made by anyone (the JetStream API requests for its messages). */
  async function countReads(bucket: string) {
    const counter = await connectNats();
    let count = 0;
    const stream = `KV_${bucket}`;
    for (const subject of [
      `$JS.API.DIRECT.GET.${stream}`,
      `$JS.API.DIRECT.GET.${stream}.>`,
      `$JS.API.STREAM.MSG.GET.${stream}`,
    ]) {
      counter.subscribe(subject, {
        callback: () => {
          count++;
        },
      });
    }
    await counter.flush();
    return {
      get count() {
        return count;
      },
      close: () => counter.close(),
    };
  }

  it("an instance that watched an entry writes its ending with one update and no read", async () => {
    const storePrefix = `${prefix}obs`;
    const projection = await createKvValidationStore({ nc, prefix: storePrefix });
    const instance = await createKvValidationStore({ nc: peerNc, prefix: storePrefix });
    const replica = createValidationReplica();
    const attached = await attachReplica(instance, replica);
    const reads = await countReads(validationBucketName(storePrefix));
    try {
      const active = sessionEntry({ position: 3 });
      await projection.putSession(active);
      await replica.waitForSession(active.sessionId, 3, 2_000);
      const before = reads.count;
      const ended = { ...active, status: "invalidated" as const, endReason: "revoked" as const, position: 9 };
      await instance.putSession(ended);
      await peerNc.flush();
      await nc.flush();
      expect(reads.count - before).toBe(0);
      expect(await projection.getSession(active.sessionId)).toEqual(ended);
      // The projection then writes the same ending: its own known revision is stale, it reads and stops.
      await projection.putSession(ended);
      expect(await instance.getSession(active.sessionId)).toEqual(ended);
    } finally {
      await reads.close();
      await attached.stop();
    }
  });

  it("a revision that went stale after the watch saw it never lets an older entry win", async () => {
    const storePrefix = `${prefix}stale`;
    const other = await createKvValidationStore({ nc, prefix: storePrefix });
    const instance = await createKvValidationStore({ nc: peerNc, prefix: storePrefix });
    const replica = createValidationReplica();
    const attached = await attachReplica(instance, replica);
    const active = sessionEntry({ position: 3 });
    await other.putSession(active);
    await replica.waitForSession(active.sessionId, 3, 2_000);
    // The watch stops: what the other writer does next is not seen by the instance.
    await attached.stop();
    const renewed = { ...active, expiresAt: active.expiresAt + 60_000, position: 5 };
    await other.putSession(renewed);
    // Older than what is stored: the CAS on the watched revision fails, the read shows it is older, no write.
    await instance.putSession({ ...active, status: "invalidated", endReason: "revoked", position: 4 });
    expect(await other.getSession(active.sessionId)).toEqual(renewed);
    // Newer: written after the same conflict and read.
    const ended = { ...renewed, status: "invalidated" as const, endReason: "revoked" as const, position: 6 };
    await instance.putSession(ended);
    expect(await other.getSession(active.sessionId)).toEqual(ended);
  });
});

describe("NATS KV validation watch across a server restart", () => {
  let server: PrivateNats;
  let writerNc: NatsConnection;
  let watcherNc: NatsConnection;

  beforeAll(async () => {
    server = await startPrivateNats();
    writerNc = await server.connect();
    watcherNc = await server.connect();
  });

  afterAll(async () => {
    await writerNc?.close();
    await watcherNc?.close();
    await server?.destroy();
  });

  it("keeps delivering to the replica after NATS restarts", async () => {
    const writer = await createKvValidationStore({ nc: writerNc, prefix: "restart" });
    const reader = await createKvValidationStore({ nc: watcherNc, prefix: "restart" });
    const replica = createValidationReplica();
    const first = sessionEntry({ position: 1 });
    await writer.putSession(first);
    const attached = await attachReplica(reader, replica);
    try {
      expect(replica.getSession(first.sessionId)).toEqual(first);
      const reconnected = (async () => {
        for await (const status of watcherNc.status()) if (status.type === "reconnect") return true;
        return false;
      })();

      await server.restart();

      const second = sessionEntry({ position: 2 });
      const updated: ValidationEntry = { ...first, position: 3, status: "invalidated", endReason: "logout" };
      // The writer's connection needs a moment to come back; retry until the server takes the write.
      const wrote = await eventually(async () => {
        try {
          await writer.putSession(second);
          await writer.putSession(updated);
          return true;
        } catch {
          return false;
        }
      }, 15_000);
      expect(wrote).toBe(true);
      expect(await replica.waitForSession(second.sessionId, 2, 15_000)).toBe(true);
      expect(await replica.waitForSession(first.sessionId, 3, 15_000)).toBe(true);
      expect(replica.getSession(first.sessionId)?.status).toBe("invalidated");
      // Proves the watcher's connection really went through the restart.
      expect(await reconnected).toBe(true);
    } finally {
      await attached.stop();
    }
  }, 40_000);
});

type PrivateNats = { connect(): Promise<NatsConnection>; restart(): Promise<void>; destroy(): Promise<void> };

/** A NATS server of our own (same binary as the shared one), so restarting it disturbs no other test. */
async function startPrivateNats(): Promise<PrivateNats> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "tessera-nats-"));
  let child: ChildProcess | undefined;

  const start = async () => {
    child = spawn("/usr/sbin/nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
      stdio: "ignore",
    });
    const ready = await eventually(async () => {
      try {
        const probe = await natsConnect({ servers: `nats://127.0.0.1:${port}`, timeout: 500 });
        await probe.close();
        return true;
      } catch {
        return false;
      }
    }, 10_000);
    if (!ready) throw new Error("private nats-server did not start");
  };

  const stop = async () => {
    const running = child;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGTERM");
    await exited;
  };

  await start();
  return {
    connect: () =>
      natsConnect({
        servers: `nats://127.0.0.1:${port}`,
        noAsyncTraces: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
      }),
    async restart() {
      await stop();
      await start();
    },
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

/**
 * Every instance's watch sees every write, its own included. An entry the listener says it already holds
 * (at that position or later) is not decoded or delivered; everything newer still is.
 */
describe("KV watch of entries the listener already holds", () => {
  it("delivers only entries newer than what the listener holds", async () => {
    const storePrefix = `${prefix}helda`;
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
    const storePrefix = `${prefix}heldb`;
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
