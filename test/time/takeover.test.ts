import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUuidV7Generator, randomSecrets, systemClock } from "../../src/adapters/clock/system-clock.ts";
import { createManualTickSource } from "../../src/adapters/clock/tick-source.ts";
import { createJetStreamEventLog } from "../../src/adapters/jetstream/event-log.ts";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import { createKvLeaseManager, leaseBucketName } from "../../src/adapters/nats-kv/lease-manager.ts";
import { createAuditProjection } from "../../src/adapters/postgres/audit-projection.ts";
import { createAuditReadModel } from "../../src/adapters/postgres/audit-read-model.ts";
import { type DatabaseHandle, openDatabase } from "../../src/adapters/postgres/database.ts";
import { createSessionProjection } from "../../src/adapters/postgres/session-projection.ts";
import { createSessionReadModel } from "../../src/adapters/postgres/session-read-model.ts";
import { defaultPolicy } from "../../src/app/policy.ts";
import { createSessionService } from "../../src/app/session-service.ts";
import type { EventLog, LeaseHandle } from "../../src/domain/ports.ts";
import type { Tessera } from "../../src/main.ts";
import {
  CheckpointConflictError,
  type ProjectionTarget,
  runProjection,
  waitForCheckpoint,
} from "../../src/projections/runner.ts";
import { connectNats, createTestDatabase, removeNatsPrefix, uniquePrefix } from "../support/services.ts";
import { eventually } from "../support/tessera.ts";
import { startDistributedAt } from "./helpers.ts";
import { freshRebuild, snapshot } from "./read-models.ts";

/**
 * Exactly one runner per projection across instances, under a lease in NATS KV: when the leader goes
 * away mid-stream, another instance takes over from the checkpoint, and the read models end up equal to
 * a rebuild from position 1 — nothing skipped, nothing applied twice.
 */

let nc: NatsConnection;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  nc = await connectNats();
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  await nc?.close();
});

async function leaseHolder(prefix: string, name: string): Promise<string | undefined> {
  const kv = await new Kvm(nc).open(leaseBucketName(prefix));
  const entry = await kv.get(name);
  if (entry?.operation !== "PUT") return undefined;
  return (entry.json() as { holder: string }).holder;
}

function contiguous(positions: number[], end: number) {
  expect(positions).toEqual(Array.from({ length: end }, (_, i) => i + 1));
}

async function burst(service: { create: Tessera["service"]["create"] }, count: number, label: string) {
  for (let i = 0; i < count; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, count - i) }, (_, j) =>
        service.create(
          {
            userId: `${label}-${(i + j) % 10}`,
            username: label,
            kind: "api",
            roles: ["user"],
            groups: [],
            scope: [],
            metadata: {},
            principal: "admin",
          },
          { commandId: `${label}-${i + j}`, actor: { kind: "admin", id: "t" }, source: "rest" },
        ),
      ),
    );
  }
}

describe("projection leases", () => {
  it("two instances: the leader is closed mid-stream, the other finishes equal to a fresh rebuild", async () => {
    const prefix = uniquePrefix("lead");
    const database = await createTestDatabase();
    cleanups.push(async () => {
      await removeNatsPrefix(nc, prefix);
      await database.drop();
    });
    const options = { clock: systemClock, tickSource: createManualTickSource() };
    const a = await startDistributedAt(prefix, database.url, options);
    const b = await startDistributedAt(prefix, database.url, options);
    cleanups.push(() => b.close());
    cleanups.push(() => a.close());
    expect(await leaseHolder(prefix, "projection.sessions")).toBe(a.instanceId);
    expect(await leaseHolder(prefix, "projection.audit")).toBe(a.instanceId);

    await burst(a.service, 600, "lead");
    const end = await a.log.lastPosition();
    const atClose = await a.readModel.checkpoint();
    await a.close();

    expect(await waitForCheckpoint(b.readModel, end, 15_000)).toBe(true);
    const handle = await openDatabase({ url: database.url, poolSize: 2 });
    try {
      expect(await waitForCheckpoint(createAuditReadModel(handle.db), end, 15_000)).toBe(true);
      expect(await leaseHolder(prefix, "projection.sessions")).toBe(b.instanceId);
      const live = await snapshot(handle.db);
      expect(live.sessions).toHaveLength(600);
      contiguous(
        live.audit.map((row) => Number(row.position)),
        end,
      );
      expect(live).toEqual(await freshRebuild(b.log));
      // For the record: how far the old leader had got (the takeover is exercised however far that was).
      expect(atClose).toBeLessThanOrEqual(end);
    } finally {
      await handle.close();
    }
  });

  it("a leader that hangs and stops renewing is replaced; its late batch is refused, not applied twice", async () => {
    const prefix = uniquePrefix("hang");
    const database = await createTestDatabase();
    const ncOne = await connectNats();
    const ncTwo = await connectNats();
    const handles: DatabaseHandle[] = [];
    cleanups.push(async () => {
      for (const h of handles) await h.close();
      await ncTwo.close();
      await ncOne.close().catch(() => {});
      await removeNatsPrefix(nc, prefix);
      await database.drop();
    });
    handles.push(await openDatabase({ url: database.url, poolSize: 3 }));
    handles.push(await openDatabase({ url: database.url, poolSize: 3 }));
    const [one, two] = handles as [DatabaseHandle, DatabaseHandle];

    // The events, written before any runner starts, so the leader is certainly mid-stream when it hangs.
    const writerLog = await createJetStreamEventLog({ nc, prefix });
    const service = createSessionService({
      log: writerLog,
      clock: systemClock,
      ids: createUuidV7Generator(systemClock),
      secrets: randomSecrets,
      policy: { ...defaultPolicy, maxLifetimeSeconds: 86_400, retentionSeconds: 86_400 },
      replica: createValidationReplica(),
      readModel: createSessionReadModel(one.db),
      idempotencySecret: "s",
    });
    await burst(service, 400, "hang");
    const end = await writerLog.lastPosition();

    const lease = { ttlMs: 1_500, renewEveryMs: 300 };
    const leasesOne = await createKvLeaseManager({ nc: ncOne, prefix, holderId: "one", ...lease });
    const leasesTwo = await createKvLeaseManager({ nc: ncTwo, prefix, holderId: "two", ...lease });
    const logOne = await createJetStreamEventLog({ nc: ncOne, prefix, ensureStream: false });
    const logTwo = await createJetStreamEventLog({ nc: ncTwo, prefix, ensureStream: false });

    // Instance one applies three batches, then hangs inside the fourth (before writing anything).
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const lateResults: Array<"applied" | "refused" | string> = [];
    const hangingAfter = (target: ProjectionTarget, batches: number): ProjectionTarget => {
      let applied = 0;
      return {
        name: target.name,
        checkpoint: () => target.checkpoint(),
        async applyBatch(batch) {
          if (applied++ >= batches) {
            await gate;
            try {
              await target.applyBatch(batch);
              lateResults.push("applied");
            } catch (error) {
              lateResults.push(error instanceof CheckpointConflictError ? "refused" : String(error));
              throw error;
            }
            return;
          }
          await target.applyBatch(batch);
        },
      };
    };
    const run = (log: EventLog, target: ProjectionTarget) => (signal: AbortSignal) =>
      runProjection({ log, target, signal, batchSize: 50, backoff: { min: 20, max: 200 } });
    const held: LeaseHandle[] = [
      leasesOne.hold("projection.sessions", run(logOne, hangingAfter(createSessionProjection(one.db), 3))),
      leasesOne.hold("projection.audit", run(logOne, hangingAfter(createAuditProjection(one.db), 3))),
    ];
    await eventually(() => held.every((h) => h.isHolder()), 5_000);
    held.push(
      leasesTwo.hold("projection.sessions", run(logTwo, createSessionProjection(two.db))),
      leasesTwo.hold("projection.audit", run(logTwo, createAuditProjection(two.db))),
    );
    const sessions = createSessionReadModel(two.db);
    const audit = createAuditReadModel(two.db);
    await eventually(
      async () => (await sessions.checkpoint()) === 150 && (await audit.checkpoint()) === 150,
      5_000,
    );

    // The hung leader's process loses NATS: it cannot renew, so its lease runs out and two takes over.
    await ncOne.close();
    expect(await waitForCheckpoint(sessions, end, 15_000)).toBe(true);
    expect(await waitForCheckpoint(audit, end, 15_000)).toBe(true);
    expect(await leaseHolder(prefix, "projection.sessions")).toBe("two");

    // The zombie wakes up and tries to write its batch: the checkpoint has moved, so it is refused.
    release();
    await eventually(() => lateResults.length === 2, 5_000);
    expect(lateResults).toEqual(["refused", "refused"]);

    const live = await snapshot(two.db);
    contiguous(
      live.audit.map((row) => Number(row.position)),
      end,
    );
    expect(live.sessions).toHaveLength(400);
    expect(live).toEqual(await freshRebuild(writerLog));
    for (const h of held) await h.release();
    await writerLog.close();
    await logTwo.close();
  });
});
