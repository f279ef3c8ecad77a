import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUuidV7Generator, randomSecrets, systemClock } from "../../src/adapters/clock/system-clock.ts";
import { createJetStreamEventLog } from "../../src/adapters/jetstream/event-log.ts";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import { createKvValidationStore } from "../../src/adapters/nats-kv/validation-store.ts";
import { type DatabaseHandle, openDatabase } from "../../src/adapters/postgres/database.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import { createSessionReadModel } from "../../src/adapters/postgres/session-read-model.ts";
import type { CommandContext } from "../../src/app/command-handler.ts";
import { defaultPolicy } from "../../src/app/policy.ts";
import type { SessionReadModel, ValidationStore } from "../../src/app/ports.ts";
import { createRecycleProcessManager } from "../../src/app/recycle-process-manager.ts";
import { createSessionService, type SessionService } from "../../src/app/session-service.ts";
import { createUserService, type UserService } from "../../src/app/user-service.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import { catchUp, runProjection } from "../../src/projections/runner.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { eventually } from "../support/tessera.ts";

/**
 * The recycle process manager crashes in the middle of a fan-out, on the real JetStream log, NATS KV
 * (its checkpoint) and Postgres (the session read model it lists candidates from). A new one started
 * from the checkpoint finishes the job, and every session ends up recycled exactly once.
 */
let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let handle: DatabaseHandle;
let log: EventLog;
let store: ValidationStore;
let readModel: SessionReadModel;
let service: SessionService;
let users: UserService;
const projection = new AbortController();
let projecting: Promise<void>;

const ids = createUuidV7Generator(systemClock);
const context = (): CommandContext => ({
  commandId: ids.uuidv7(),
  actor: { kind: "admin", id: "test" },
  source: "rest",
});

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("pmcrash");
  database = await createTestDatabase();
  handle = await openDatabase({ url: database.url });
  log = await createJetStreamEventLog({ nc, prefix });
  store = await createKvValidationStore({ nc, prefix });
  readModel = createSessionReadModel(handle.db);
  const replica = createValidationReplica();
  service = createSessionService({
    log,
    clock: systemClock,
    ids,
    secrets: randomSecrets,
    policy: defaultPolicy,
    replica,
    readModel,
    idempotencySecret: "test",
  });
  users = createUserService({ log, clock: systemClock, ids, replica, readModel });
  // The session read model stays live throughout, as it would on some instance.
  projecting = runProjection({ log, target: createSessionProjection(handle.db), signal: projection.signal });
});

afterAll(async () => {
  projection.abort();
  await projecting;
  await handle?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

/** A log whose appends of SessionRecycled "crash the process" after `survive` of them went through. */
function crashingLog(inner: EventLog, survive: number, crash: () => void): EventLog {
  let recycled = 0;
  let dead = false;
  return {
    ...inner,
    async append(stream, event, metadata, options) {
      if (dead) throw new Error("process is dead");
      if (event.type !== "SessionRecycled") return inner.append(stream, event, metadata, options);
      const result = await inner.append(stream, event, metadata, options);
      if (++recycled > survive) {
        // The worst moment: the event is stored but the process dies before it learns so.
        dead = true;
        crash();
        throw new Error("simulated crash");
      }
      return result;
    },
  };
}

async function recycledEvents(sessionId: string) {
  const { events } = await log.readStream({ category: "session", id: sessionId });
  return events.filter((event) => event.type === "SessionRecycled");
}

describe("recycle process manager crash", () => {
  it("finishes the fan-out after a restart, recycling each session exactly once", async () => {
    const sessionIds: string[] = [];
    for (let i = 0; i < 24; i++) {
      const created = await service.create(
        {
          userId: "crash-user",
          username: "crash-user",
          kind: "api",
          roles: ["user"],
          groups: [],
          scope: [],
          metadata: {},
          principal: "admin",
        },
        context(),
      );
      sessionIds.push(created.session.sessionId);
    }
    const change = await users.changeClaims("crash-user", { roles: ["admin"], groups: [] }, context());
    const cause = change.event!;
    expect(cause.type).toBe("UserClaimsChanged");

    // First runner: dies after 7 recycles.
    const first = new AbortController();
    const crashing = createUserService({
      log: crashingLog(log, 7, () => first.abort()),
      clock: systemClock,
      ids,
      replica: createValidationReplica(),
      readModel,
      concurrency: 4,
    });
    const firstRun = runProjection({
      log,
      target: createRecycleProcessManager({ users: crashing, checkpoints: store }),
      signal: first.signal,
    });
    await eventually(() => first.signal.aborted, 10_000);
    await firstRun;
    const halfway = await Promise.all(sessionIds.map(recycledEvents));
    const doneBeforeCrash = halfway.filter((events) => events.length === 1).length;
    console.log(
      `process manager crashed after recycling ${doneBeforeCrash} of ${sessionIds.length} sessions`,
    );
    expect(doneBeforeCrash).toBeGreaterThanOrEqual(8);
    expect(doneBeforeCrash).toBeLessThan(sessionIds.length);
    expect(halfway.every((events) => events.length <= 1)).toBe(true);
    // The checkpoint did not move past the change: the next runner will handle it again.
    expect(await store.getCheckpoint("recycle")).toBeLessThan(cause.position);

    // Restart: a fresh process manager from the checkpoint.
    const second = new AbortController();
    const secondRun = runProjection({
      log,
      target: createRecycleProcessManager({
        users: createUserService({
          log,
          clock: systemClock,
          ids,
          replica: createValidationReplica(),
          readModel,
        }),
        checkpoints: store,
      }),
      signal: second.signal,
    });
    const end = await log.lastPosition();
    await eventually(async () => (await store.getCheckpoint("recycle")) >= end, 10_000);
    second.abort();
    await secondRun;

    for (const sessionId of sessionIds) {
      const events = await recycledEvents(sessionId);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({
        data: { reason: "claims_changed", causeEventId: cause.metadata.eventId },
      });
      expect(events[0]!.metadata.commandId).toBe(`fanout:${cause.metadata.eventId}:${sessionId}`);
    }

    // Replaying the whole log through a process manager that starts from zero appends nothing.
    const before = await log.lastPosition();
    const replay = createRecycleProcessManager({
      users: createUserService({
        log,
        clock: systemClock,
        ids,
        replica: createValidationReplica(),
        readModel,
      }),
      checkpoints: store,
      name: "recycle-replay",
    });
    await catchUp(log, replay);
    expect(await log.lastPosition()).toBe(before);
  });
});
