import { beforeEach, describe, expect, it } from "vitest";
import { createFakeClock, type FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { createUuidV7Generator, randomSecrets } from "../../src/adapters/clock/system-clock.ts";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import { createInMemoryValidationStore } from "../../src/adapters/memory/validation-store.ts";
import { createEntryExpirer } from "../../src/app/entry-expiry.ts";
import type { ExpireFn } from "../../src/app/expiry-scheduler.ts";
import type { ValidationReplica, ValidationStore } from "../../src/app/ports.ts";
import { createSessionService, type SessionService } from "../../src/app/session-service.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import { entryTestPolicy, noReadModel, observerOf, readCountingLog } from "../support/entry-decisions.ts";
import { T0 } from "./helpers.ts";

/**
 * The scheduler's ExpireSession decided on the replica's entry and appended with the entry's position as
 * the expected version: one append and no read when the entry is current, the command proper (read,
 * decide) whenever the log has moved on — and never two SessionExpired for one session.
 */

let clock: FakeClock;
let log: EventLog;
let reads: number;

beforeEach(() => {
  clock = createFakeClock(T0);
  reads = 0;
  log = readCountingLog(clock, () => {
    reads++;
    return undefined;
  });
});

type Instance = {
  service: SessionService;
  replica: ValidationReplica;
  store: ValidationStore;
  expire: ExpireFn;
  conflicts: string[];
  commands: string[];
};

function instance(store: ValidationStore = createInMemoryValidationStore()): Instance {
  const replica = createValidationReplica();
  const ids = createUuidV7Generator(clock);
  const service = createSessionService({
    ...{ log, clock, ids, secrets: randomSecrets, policy: entryTestPolicy, replica, store },
    ...{ readModel: noReadModel, idempotencySecret: "secret" },
  });
  const conflicts: string[] = [];
  const commands: string[] = [];
  const expire = createEntryExpirer({
    ...{ log, clock, ids, replica, store },
    observer: { appended: () => {}, conflict: (stream) => conflicts.push(stream) },
    appendedAt: (position) => service.observe(position),
    command: (sessionId, tick, context) => {
      commands.push(sessionId);
      return service.expire(sessionId, tick, context);
    },
  });
  return { service, replica, store, expire, conflicts, commands };
}

const admin = { actor: { kind: "admin", id: "t" }, source: "rest" } as const;
const schedulerContext = (sessionId: string, tick: number) =>
  ({
    commandId: `expire:${sessionId}`,
    correlationId: `tick:${tick}`,
    causationId: `tick:${tick}`,
    actor: { kind: "system", id: "expiry-scheduler" },
    source: "scheduler",
  }) as const;

async function create(on: Instance, ttlSeconds = 60) {
  const created = await on.service.create(
    {
      ...{ userId: "u", username: "u", kind: "api", roles: [], groups: [], scope: [] },
      ...{ ttlSeconds, metadata: {}, principal: "admin" },
    },
    { ...admin, commandId: `create-${Math.random()}` },
  );
  return created.session.sessionId;
}

async function eventsOf(sessionId: string): Promise<RecordedEvent[]> {
  return (await log.readStream({ category: "session", id: sessionId })).events;
}

/** Another instance that has seen the session only through the shared view. */
const observer = (of: Instance, sessionId: string, store?: ValidationStore) =>
  observerOf(of, sessionId, () => instance(store));

describe("expiry decided on the replica's entry", () => {
  it("appends SessionExpired with one append and no read of the stream", async () => {
    const a = instance();
    const id = await create(a);
    const b = observer(a, id);
    clock.advance(61_000);
    reads = 0;
    const result = await b.expire(id, 42, schedulerContext(id, 42));
    await result.following;
    expect(reads).toBe(0);
    expect(b.commands).toEqual([]);
    expect(result.state.status).toBe("expired");
    expect(result.appended).toHaveLength(1);
    const events = await eventsOf(id);
    expect(events.map((e) => e.type)).toEqual(["SessionCreated", "SessionExpired"]);
    const expired = events[1];
    expect(expired?.metadata).toMatchObject({
      commandId: `expire:${id}`,
      correlationId: "tick:42",
      actor: { kind: "system", id: "expiry-scheduler" },
      source: "scheduler",
    });
    expect(expired?.data).toMatchObject({
      cause: "absolute",
      deadline: new Date(T0 + 60_000).toISOString(),
      expiredAt: new Date(T0 + 61_000).toISOString(),
      tick: 42,
    });
    // This instance's replica and the shared view hold it as expired at the new position.
    expect(b.replica.getSession(id)).toMatchObject({ status: "expired", position: expired?.position });
    expect(await b.store.getSession(id)).toMatchObject({ status: "expired", position: expired?.position });
    // The session service's own commands on it still see the log as it is (a stale cache re-reads).
    await expect(b.service.renew(id, 600, { ...admin, commandId: "late-renew" })).rejects.toThrow();
  });

  it("a renewal the entry has not seen: the conflict hands over to the command, which appends nothing", async () => {
    const a = instance();
    const id = await create(a);
    const b = observer(a, id);
    await a.service.renew(id, 600, { ...admin, commandId: "renew" });
    clock.advance(61_000);
    const result = await b.expire(id, 43, schedulerContext(id, 43));
    expect(b.conflicts).toEqual(["session"]);
    expect(b.commands).toEqual([id]);
    expect(result.appended).toEqual([]);
    expect(result.state).toMatchObject({ status: "active", expiresAt: T0 + 600_000 });
    expect((await eventsOf(id)).map((e) => e.type)).toEqual(["SessionCreated", "SessionRenewed"]);
  });

  it("an entry that is not due appends nothing and runs no command", async () => {
    const a = instance();
    const id = await create(a);
    clock.advance(59_000);
    const result = await a.expire(id, 44, schedulerContext(id, 44));
    expect(result).toMatchObject({ state: { status: "active" }, appended: [] });
    expect(a.commands).toEqual([]);
    expect(await eventsOf(id)).toHaveLength(1);
  });

  it("a session the replica does not hold, or holds as ended, goes to the command", async () => {
    const a = instance();
    const id = await create(a);
    const stranger = instance();
    clock.advance(61_000);
    const first = await stranger.expire(id, 45, schedulerContext(id, 45));
    expect(stranger.commands).toEqual([id]);
    expect(first.appended).toHaveLength(1);
    // a's replica still has it active; its append conflicts and its command finds it expired.
    const again = await a.expire(id, 46, schedulerContext(id, 46));
    expect(again.appended).toEqual([]);
    expect(again.state.status).toBe("expired");
    const ended = await a.expire(id, 47, schedulerContext(id, 47));
    expect(ended.appended).toEqual([]);
    expect(a.commands).toEqual([id, id]);
    expect((await eventsOf(id)).map((e) => e.type)).toEqual(["SessionCreated", "SessionExpired"]);
  });

  it("two instances expiring the same session at once append one SessionExpired", async () => {
    const shared = createInMemoryValidationStore();
    const a = instance(shared);
    const ids = [];
    for (let i = 0; i < 20; i++) ids.push(await create(a));
    const b = instance(shared);
    for (const id of ids) {
      const entry = a.replica.getSession(id);
      if (entry) b.replica.offerSession(entry);
    }
    clock.advance(61_000);
    const results = await Promise.all(
      ids.flatMap((id) => [a, b].map((on) => on.expire(id, 48, schedulerContext(id, 48)))),
    );
    expect(results.filter((r) => r.appended.length > 0)).toHaveLength(ids.length);
    for (const id of ids) {
      expect((await eventsOf(id)).map((e) => e.type)).toEqual(["SessionCreated", "SessionExpired"]);
    }
  });
});
