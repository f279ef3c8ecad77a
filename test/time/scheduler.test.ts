import { sql } from "kysely";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createFakeClock, type FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { createUuidV7Generator, randomSecrets } from "../../src/adapters/clock/system-clock.ts";
import { createInMemoryEventLog } from "../../src/adapters/memory/event-log.ts";
import { createInMemoryTickLog } from "../../src/adapters/memory/tick-log.ts";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import { type DatabaseHandle, openDatabase } from "../../src/adapters/postgres/database.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import { createSessionReadModel } from "../../src/adapters/postgres/session-read-model.ts";
import { createDeadlineIndex, type DeadlineIndex, indexReplica } from "../../src/app/deadline-index.ts";
import {
  createExpiryScheduler,
  type ExpireFn,
  type ExpiryScheduler,
} from "../../src/app/expiry-scheduler.ts";
import { defaultPolicy, type SessionPolicy } from "../../src/app/policy.ts";
import type { ValidationReplica } from "../../src/app/ports.ts";
import { createSessionService, type SessionService } from "../../src/app/session-service.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import { catchUp, runProjection, waitForCheckpoint } from "../../src/projections/runner.ts";
import { createTestDatabase, type TestDatabase } from "../support/services.ts";
import { T0 } from "./helpers.ts";

/**
 * The scheduler's due sessions come from two sources — this instance's deadline index (fed by its
 * replica) and the Postgres read model — so that neither a lagging read model nor a replica that has not
 * seen a session yet hides an overdue one. Here the pieces are wired by hand around a real in-memory log
 * and a real Postgres read model, so each source can be made to lag on purpose.
 */

const policy: SessionPolicy = { ...defaultPolicy, maxLifetimeSeconds: 86_400, retentionSeconds: 86_400 };

let database: TestDatabase;
let handle: DatabaseHandle;

beforeAll(async () => {
  database = await createTestDatabase("tessera_sched");
  handle = await openDatabase({ url: database.url, poolSize: 4 });
});

afterAll(async () => {
  await handle?.close();
  await database?.drop();
});

type Instance = {
  service: SessionService;
  replica: ValidationReplica;
  index: DeadlineIndex;
  scheduler: ExpiryScheduler;
  calls: string[];
  maxInFlight: () => number;
};

let clock: FakeClock;
let log: EventLog;

beforeEach(async () => {
  await sql`truncate sessions, projection_checkpoints`.execute(handle.db);
  clock = createFakeClock(T0);
  log = createInMemoryEventLog({ clock });
});

/** One "instance": its own replica + index + command cache over the shared log and read model. */
function instance(concurrency = 16): Instance {
  const index = createDeadlineIndex();
  const replica = indexReplica(createValidationReplica(), index);
  const readModel = createSessionReadModel(handle.db);
  const service = createSessionService({
    log,
    clock,
    ids: createUuidV7Generator(clock),
    secrets: randomSecrets,
    policy,
    replica,
    readModel,
    idempotencySecret: "secret",
  });
  const calls: string[] = [];
  let inFlight = 0;
  let max = 0;
  const expire: ExpireFn = async (sessionId, tick, context) => {
    calls.push(sessionId);
    inFlight++;
    max = Math.max(max, inFlight);
    try {
      return await service.expire(sessionId, tick, context);
    } finally {
      inFlight--;
    }
  };
  const scheduler = createExpiryScheduler({
    ticks: createInMemoryTickLog(),
    index,
    replica,
    readModel,
    expire,
    clock,
    concurrency,
  });
  return { service, replica, index, scheduler, calls, maxInFlight: () => max };
}

const context = { commandId: "c", actor: { kind: "admin", id: "t" }, source: "rest" } as const;

async function create(on: Instance, ttlSeconds: number, userId = "u") {
  const created = await on.service.create(
    {
      userId,
      username: userId,
      kind: "api",
      roles: [],
      groups: [],
      scope: [],
      ttlSeconds,
      metadata: {},
      principal: "admin",
    },
    { ...context, commandId: `create-${Math.random()}` },
  );
  return created.session.sessionId;
}

async function types(sessionId: string) {
  return (await log.readStream({ category: "session", id: sessionId })).events.map((e) => e.type);
}

describe("expiry scheduler sources", () => {
  it("expires a session the read model has not seen yet (from the index)", async () => {
    const a = instance();
    const id = await create(a, 60);
    clock.advance(60_000);
    const pass = await a.scheduler.runPass({ tick: 1 });
    expect(pass).toMatchObject({ due: 1, expired: 1, failed: 0 });
    expect(await types(id)).toEqual(["SessionCreated", "SessionExpired"]);
  });

  it("expires a session this instance's replica has never seen (from the read model)", async () => {
    const writer = instance();
    const id = await create(writer, 60);
    await catchUp(log, createSessionProjection(handle.db));
    const a = instance();
    expect(a.replica.getSession(id)).toBeUndefined();
    clock.advance(61_000);
    const pass = await a.scheduler.runPass({ tick: 2 });
    expect(pass).toMatchObject({ due: 1, expired: 1 });
    expect(await types(id)).toEqual(["SessionCreated", "SessionExpired"]);
  });

  it("skips read-model rows the replica knows are renewed, and the decider catches what neither knew", async () => {
    const a = instance();
    const known = await create(a, 60);
    const unknown = await create(a, 60);
    await catchUp(log, createSessionProjection(handle.db));
    // `known` is renewed here (the replica sees it); `unknown` by another instance whose write neither
    // this replica nor the (now stale) read model has seen.
    await a.service.renew(known, 600, { ...context, commandId: "r1" });
    const other = instance();
    await other.service.renew(unknown, 600, { ...context, commandId: "r2" });
    clock.advance(61_000);
    const pass = await a.scheduler.runPass({ tick: 3 });
    expect(a.calls).toEqual([unknown]);
    expect(pass).toMatchObject({ due: 1, expired: 0, failed: 0 });
    expect(await types(known)).toEqual(["SessionCreated", "SessionRenewed"]);
    expect(await types(unknown)).toEqual(["SessionCreated", "SessionRenewed"]);
    // Both are filed under their new deadline and expire there.
    clock.advance(600_000);
    expect(await a.scheduler.runPass({ tick: 4 })).toMatchObject({ due: 2, expired: 2 });
  });

  it("keeps at most `concurrency` ExpireSession commands in flight", async () => {
    const a = instance(4);
    for (let i = 0; i < 40; i++) await create(a, 30, `user-${i % 5}`);
    clock.advance(30_000);
    const pass = await a.scheduler.runPass({ tick: 5 });
    expect(pass).toMatchObject({ due: 40, expired: 40, failed: 0 });
    expect(a.maxInFlight()).toBe(4);
  });

  it("sweep pages through the whole read model and expires every overdue session once", async () => {
    const writer = instance();
    for (let i = 0; i < 1_200; i++) await create(writer, 30, `user-${i % 7}`);
    // A projection that keeps up, as it does in the service: the sweep waits for it between pages.
    const controller = new AbortController();
    const running = runProjection({
      log,
      target: createSessionProjection(handle.db),
      signal: controller.signal,
    });
    const a = instance();
    const readModel = createSessionReadModel(handle.db);
    const sweeper = createExpiryScheduler({
      ticks: createInMemoryTickLog(),
      index: a.index,
      replica: a.replica,
      readModel,
      expire: (id, tick, ctx) => a.service.expire(id, tick, ctx),
      clock,
      pageSize: 500,
      readModelCaughtUp: async (timeoutMs) =>
        waitForCheckpoint(readModel, await log.lastPosition(), timeoutMs),
    });
    try {
      clock.advance(31_000);
      expect(await sweeper.sweep(context)).toBe(1_200);
      await a.service.readYourWrites(5_000);
      expect(await readModel.overdueSessionIds(clock.now(), 10)).toEqual([]);
      expect(await sweeper.sweep(context)).toBe(0);
    } finally {
      controller.abort();
      await running;
    }
  });
});
