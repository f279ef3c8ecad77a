import { beforeEach, describe, expect, it } from "vitest";
import { createFakeClock, type FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { createUuidV7Generator, randomSecrets } from "../../src/adapters/clock/system-clock.ts";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import { createInMemoryValidationStore } from "../../src/adapters/memory/validation-store.ts";
import type { CommandContext } from "../../src/app/command-handler.ts";
import type { ValidationReplica, ValidationStore } from "../../src/app/ports.ts";
import { createSessionService, type SessionService } from "../../src/app/session-service.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import { entryTestPolicy, noReadModel, observerOf, readCountingLog } from "../support/entry-decisions.ts";

/**
 * InvalidateSession on an instance that has the session only through the validation view (created or
 * last changed through another instance, so not in its command cache): decided on the replica's entry and
 * appended at the entry's position, written through to the shared view as soon as the log has it, while
 * the stream is read for the answer. Whenever the entry is not the stream's current state the log refuses
 * the append and the ordinary path (read, decide, append) decides — one correct outcome, nothing lost.
 */

const T0 = Date.parse("2031-03-01T12:00:00.000Z");

let clock: FakeClock;
let log: EventLog;
let reads: number;
/** While set, stream reads wait for it: lets a test see what happened before a read answered. */
let readGate: Promise<void> | undefined;

beforeEach(() => {
  clock = createFakeClock(T0);
  reads = 0;
  readGate = undefined;
  log = readCountingLog(clock, () => {
    reads++;
    return readGate;
  });
});

type Instance = {
  service: SessionService;
  replica: ValidationReplica;
  store: ValidationStore;
  conflicts: string[];
};

function instance(store: ValidationStore = createInMemoryValidationStore()): Instance {
  const replica = createValidationReplica();
  const conflicts: string[] = [];
  const service = createSessionService({
    ...{ log, clock, ids: createUuidV7Generator(clock), secrets: randomSecrets, policy: entryTestPolicy },
    ...{ replica, store },
    ...{ readModel: noReadModel, idempotencySecret: "secret" },
    observer: { appended: () => {}, conflict: (stream) => conflicts.push(stream) },
  });
  return { service, replica, store, conflicts };
}

const context = (commandId: string): CommandContext => ({
  commandId,
  actor: { kind: "admin", id: "t" },
  source: "rest",
});

async function create(on: Instance) {
  const created = await on.service.create(
    {
      ...{ userId: "u", username: "alice", kind: "api", roles: ["user"], groups: [], scope: [] },
      ...{ client: "cli", userAgent: "test-agent", metadata: { team: "x" }, principal: "admin" },
    },
    context(`create-${Math.random()}`),
  );
  return created.session.sessionId;
}

async function eventsOf(sessionId: string): Promise<RecordedEvent[]> {
  return (await log.readStream({ category: "session", id: sessionId })).events;
}

/** Another instance that has seen the session only through the shared view (its cache is cold). */
const observer = (of: Instance, sessionId: string, store?: ValidationStore) =>
  observerOf(of, sessionId, () => instance(store));

describe("invalidation decided on the replica's entry", () => {
  it("one append at the entry's position, written through before the stream read answers", async () => {
    const a = instance();
    const id = await create(a);
    const b = observer(a, id);
    let release!: () => void;
    readGate = new Promise((resolve) => {
      release = resolve;
    });
    reads = 0;
    const ending = b.service.invalidate(id, "revoked_by_admin", context("delete-1"));
    // The shared view and this replica have the ending while the read for the answer is still held up.
    for (let i = 0; i < 50 && (await b.store.getSession(id))?.status !== "invalidated"; i++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    const written = await b.store.getSession(id);
    expect(written).toMatchObject({ status: "invalidated", endReason: "revoked_by_admin" });
    expect(b.replica.getSession(id)).toMatchObject({ status: "invalidated", position: written?.position });
    release();
    readGate = undefined;
    const ended = await ending;
    // One read (for the answer, alongside the append), no conflict, one event.
    expect(reads).toBe(1);
    expect(b.conflicts).toEqual([]);
    const events = await eventsOf(id);
    expect(events.map((e) => e.type)).toEqual(["SessionCreated", "SessionInvalidated"]);
    expect(events[1]?.metadata.commandId).toBe("delete-1");
    expect(events[1]?.data).toMatchObject({ sessionId: id, userId: "u", reason: "revoked_by_admin" });
    expect(written?.position).toBe(events[1]?.position);
    // The answer is the whole state, facts the entry does not hold included.
    expect(ended).toMatchObject({
      status: "invalidated",
      endReason: "revoked_by_admin",
      username: "alice",
      client: "cli",
      userAgent: "test-agent",
      metadata: { team: "x" },
      endedAt: T0,
    });
    // Cached now: a repeated DELETE answers from the state and appends nothing (idempotent).
    reads = 0;
    const again = await b.service.invalidate(id, "revoked", context("delete-2"));
    expect(again).toMatchObject({ status: "invalidated", endReason: "revoked_by_admin" });
    expect(reads).toBe(0);
    expect(await eventsOf(id)).toHaveLength(2);
  });

  it("a renewal the entry has not seen: the conflict hands over to the ordinary path, nothing lost", async () => {
    const a = instance();
    const id = await create(a);
    const b = observer(a, id);
    await a.service.renew(id, 600, context("renew"));
    const ended = await b.service.invalidate(id, "revoked", context("delete"));
    expect(b.conflicts).toEqual(["session"]);
    expect((await eventsOf(id)).map((e) => e.type)).toEqual([
      "SessionCreated",
      "SessionRenewed",
      "SessionInvalidated",
    ]);
    // Decided on the renewed state: the answer carries the renewal's expiry.
    expect(ended).toMatchObject({ status: "invalidated", endReason: "revoked", expiresAt: T0 + 600_000 });
    expect(await b.store.getSession(id)).toMatchObject({ status: "invalidated", expiresAt: T0 + 600_000 });
  });

  it("ended through another instance: nothing appended, the answer says how it ended", async () => {
    const a = instance();
    const id = await create(a);
    const b = observer(a, id);
    await a.service.invalidate(id, "logout", context("logout"));
    const ended = await b.service.invalidate(id, "revoked", context("delete"));
    expect(ended).toMatchObject({ status: "invalidated", endReason: "logout" });
    expect((await eventsOf(id)).map((e) => e.type)).toEqual(["SessionCreated", "SessionInvalidated"]);
    expect((await eventsOf(id))[1]?.data).toMatchObject({ reason: "logout" });
  });

  it("an overdue entry leaves the decision to the whole state, which records the expiry", async () => {
    const a = instance();
    const id = await create(a);
    const b = observer(a, id);
    clock.advance(61_000);
    const ended = await b.service.invalidate(id, "revoked", context("delete"));
    expect(ended).toMatchObject({ status: "expired", endReason: "expired_absolute" });
    expect(b.conflicts).toEqual([]);
    expect((await eventsOf(id)).map((e) => e.type)).toEqual(["SessionCreated", "SessionExpired"]);
  });

  it("a retried command that already landed appends nothing the second time", async () => {
    const a = instance();
    const id = await create(a);
    const b = observer(a, id);
    const c = observer(a, id);
    await b.service.invalidate(id, "revoked", context("delete-once"));
    // c still holds the entry as active: the retry of the same command finds it in the log.
    const retried = await c.service.invalidate(id, "revoked", context("delete-once"));
    expect(retried).toMatchObject({ status: "invalidated", endReason: "revoked" });
    expect((await eventsOf(id)).map((e) => e.type)).toEqual(["SessionCreated", "SessionInvalidated"]);
  });

  it("the same session ended on two instances at once: one SessionInvalidated, both answer it", async () => {
    const shared = createInMemoryValidationStore();
    const a = instance(shared);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await create(a));
    const b = instance(shared);
    const c = instance(shared);
    for (const id of ids) {
      const entry = a.replica.getSession(id);
      if (entry) {
        b.replica.offerSession(entry);
        c.replica.offerSession(entry);
      }
    }
    const results = await Promise.all(
      ids.flatMap((id) => [
        b.service.invalidate(id, "revoked", context(`b-${id}`)),
        c.service.invalidate(id, "revoked_by_admin", context(`c-${id}`)),
      ]),
    );
    // Both decided on the same entry: for each session one append won and the other met the conflict.
    expect(b.conflicts.length + c.conflicts.length).toBe(ids.length);
    for (const [index, id] of ids.entries()) {
      const events = await eventsOf(id);
      expect(events.map((e) => e.type)).toEqual(["SessionCreated", "SessionInvalidated"]);
      const ending = events[1];
      if (ending?.type !== "SessionInvalidated") throw new Error("no SessionInvalidated");
      const { reason } = ending.data;
      // Both answers report the one ending the log holds, and so does the shared view.
      expect(results[2 * index]).toMatchObject({ status: "invalidated", endReason: reason });
      expect(results[2 * index + 1]).toMatchObject({ status: "invalidated", endReason: reason });
      expect(await shared.getSession(id)).toMatchObject({ status: "invalidated", endReason: reason });
    }
  });
});
