import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInMemoryLeaseManager } from "../../src/adapters/memory/lease-manager.ts";
import { createKvLeaseManager, leaseBucketName } from "../../src/adapters/nats-kv/lease-manager.ts";
import type { LeaseHandle } from "../../src/domain/ports.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";
import { eventually } from "./fixtures.ts";

const prefix = uniquePrefix("vvl");
const TTL_MS = 1_200;
const RENEW_MS = 300;
/** Scheduling slack on a busy two-core machine. */
const SLACK_MS = 500;
let admin: NatsConnection;
let leaseNames = 0;

beforeAll(async () => {
  admin = await connectNats();
});

afterAll(async () => {
  await removeNatsPrefix(admin, prefix);
  await admin?.close();
});

/** Records when each holder's work starts and stops, and how many run at once. */
function createWorkLog() {
  const events: string[] = [];
  let running = 0;
  let maxRunning = 0;
  const work = (holder: string) => async (signal: AbortSignal) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    events.push(`start ${holder}`);
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
    events.push(`stop ${holder}`);
    running--;
  };
  return { events, work, maxRunning: () => maxRunning };
}

async function managers(names: string[]) {
  const connections: NatsConnection[] = [];
  const list = [];
  for (const holderId of names) {
    const nc = await connectNats();
    connections.push(nc);
    list.push({
      nc,
      manager: await createKvLeaseManager({ nc, prefix, holderId, ttlMs: TTL_MS, renewEveryMs: RENEW_MS }),
    });
  }
  return {
    list,
    async close() {
      for (const nc of connections) if (!nc.isClosed()) await nc.close();
    },
  };
}

/** Checks, for `ms`, that no two handles hold the lease at once. */
async function assertNeverBoth(handles: LeaseHandle[], ms: number) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    expect(handles.filter((h) => h.isHolder()).length).toBeLessThanOrEqual(1);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("KV lease manager", () => {
  it("lets one instance hold at a time and hands over within one renew interval on release", async () => {
    const name = `lease${++leaseNames}`;
    const { list, close } = await managers(["a", "b"]);
    const [a, b] = list as [(typeof list)[number], (typeof list)[number]];
    const log = createWorkLog();
    try {
      const ha = a.manager.hold(name, log.work("a"));
      expect(await eventually(() => ha.isHolder(), 3_000)).toBe(true);
      const hb = b.manager.hold(name, log.work("b"));
      await assertNeverBoth([ha, hb], TTL_MS + 2 * RENEW_MS);
      expect(ha.isHolder()).toBe(true);
      expect(hb.isHolder()).toBe(false);

      const released = Date.now();
      await ha.release();
      expect(await eventually(() => hb.isHolder(), 3_000)).toBe(true);
      const handover = Date.now() - released;
      console.log(`lease handover after release: ${handover} ms`);
      expect(handover).toBeLessThanOrEqual(RENEW_MS + SLACK_MS);
      expect(log.events).toEqual(["start a", "stop a", "start b"]);
      expect(log.maxRunning()).toBe(1);
      await hb.release();
      expect(log.events.at(-1)).toBe("stop b");
      // Released by its holder: the key is gone.
      const kv = await new Kvm(admin).open(leaseBucketName(prefix));
      expect((await kv.get(name))?.operation).not.toBe("PUT");
    } finally {
      await close();
    }
  });

  it("replaces a dead holder within ttl + renew interval, after the dead one stopped its work", async () => {
    const name = `lease${++leaseNames}`;
    const { list, close } = await managers(["a", "b"]);
    const [a, b] = list as [(typeof list)[number], (typeof list)[number]];
    const log = createWorkLog();
    try {
      const ha = a.manager.hold(name, log.work("a"));
      expect(await eventually(() => ha.isHolder(), 3_000)).toBe(true);
      const hb = b.manager.hold(name, log.work("b"));
      // Let b settle into stand-by, then a's process "dies": its connection is gone, it renews no more.
      await assertNeverBoth([ha, hb], 2 * RENEW_MS);
      const killed = Date.now();
      await a.nc.close();
      expect(await eventually(() => hb.isHolder(), TTL_MS + RENEW_MS + 3_000)).toBe(true);
      const takeover = Date.now() - killed;
      console.log(`lease takeover after the holder died: ${takeover} ms (ttl ${TTL_MS}, renew ${RENEW_MS})`);
      expect(takeover).toBeLessThanOrEqual(TTL_MS + RENEW_MS + SLACK_MS);
      // The dead holder gave up its work before the stand-by started: never two at once.
      expect(log.events).toEqual(["start a", "stop a", "start b"]);
      expect(ha.isHolder()).toBe(false);
      await ha.release();
      await hb.release();
    } finally {
      await close();
    }
  });

  it("stops the work when someone else takes the lease, and release then leaves their lease alone", async () => {
    const name = `lease${++leaseNames}`;
    const { list, close } = await managers(["a"]);
    const [a] = list as [(typeof list)[number]];
    const log = createWorkLog();
    try {
      const ha = a.manager.hold(name, log.work("a"));
      expect(await eventually(() => ha.isHolder(), 3_000)).toBe(true);
      const kv = await new Kvm(admin).open(leaseBucketName(prefix));
      const intruder = JSON.stringify({ holder: "intruder", expiresAt: Date.now() + 60_000 });
      await kv.put(name, intruder);
      expect(await eventually(() => !ha.isHolder(), 3_000)).toBe(true);
      expect(log.events).toEqual(["start a", "stop a"]);
      // Still unexpired, so `a` stays in stand-by rather than taking it back.
      await assertNeverBoth([ha], 3 * RENEW_MS);
      expect(ha.isHolder()).toBe(false);
      await ha.release();
      expect((await kv.get(name))?.string()).toBe(intruder);
    } finally {
      await close();
    }
  });

  it("releases the lease when the work ends on its own, so the work runs again", async () => {
    const name = `lease${++leaseNames}`;
    const errors: unknown[] = [];
    const nc = await connectNats();
    try {
      const manager = await createKvLeaseManager({
        nc,
        prefix,
        holderId: "solo",
        ttlMs: TTL_MS,
        renewEveryMs: RENEW_MS,
        onError: (error, context) => errors.push([context.during, (error as Error).message]),
      });
      let starts = 0;
      const handle = manager.hold(name, async (signal) => {
        starts++;
        if (starts === 1) throw new Error("runner crashed");
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      });
      expect(await eventually(() => starts === 2 && handle.isHolder(), 5_000)).toBe(true);
      expect(errors).toContainEqual(["work", "runner crashed"]);
      expect(() => manager.hold(name, async () => {})).toThrow(/already held/);
      await handle.release();
      expect(handle.isHolder()).toBe(false);
    } finally {
      await nc.close();
    }
  });
});

describe("in-memory lease manager", () => {
  it("holds at once, restarts work that ends on its own, and stops it on release", async () => {
    const errors: unknown[] = [];
    const manager = createInMemoryLeaseManager({
      restartDelayMs: 10,
      onError: (error) => errors.push(error),
    });
    const log = createWorkLog();
    let starts = 0;
    const handle = manager.hold("validation", async (signal) => {
      starts++;
      if (starts === 1) throw new Error("boom");
      await log.work("mem")(signal);
    });
    expect(await eventually(() => starts === 2 && handle.isHolder(), 2_000)).toBe(true);
    expect(errors).toHaveLength(1);
    expect(() => manager.hold("validation", async () => {})).toThrow(/already held/);
    await handle.release();
    expect(log.events).toEqual(["start mem", "stop mem"]);
    expect(handle.isHolder()).toBe(false);
    // Released names can be held again.
    const again = manager.hold("validation", log.work("again"));
    expect(again.isHolder()).toBe(true);
    await again.release();
  });
});
