import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "../../src/adapters/jetstream/connection.ts";
import { createJetStreamEventLog } from "../../src/adapters/jetstream/event-log.ts";
import { DependencyUnavailableError } from "../../src/app/unavailable.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import { sessionStream } from "../../src/domain/events.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import {
  metadata,
  newSessionId,
  sessionCreated,
  sessionTouched,
  waitUntil,
} from "../contract/event-fixtures.ts";
import { type PrivateNats, startPrivateNats } from "../support/private-nats.ts";
import { uniquePrefix } from "../support/services.ts";

/**
 * Restarting NATS under a running follower and an in-flight append. This file runs its own nats-server
 * (same binary, its own port and store directory) so restarting it does not disturb other test files
 * that share the server on 4222.
 */

let nats: PrivateNats | undefined;
let nc: NatsConnection;
let log: EventLog;
let logPrefix: string;
let publishRetries = 0;

const startServer = () => requireValue(nats).start();
const stopServer = () => requireValue(nats).stop();

function requireValue<T>(value: T | undefined): T {
  if (value === undefined) throw new Error("the private nats-server did not start");
  return value;
}

beforeAll(async () => {
  nats = await startPrivateNats();
  nc = await connectNats(nats.url, "event-log-restart-test", { reconnectTimeWait: 200 });
  logPrefix = uniquePrefix("rst");
  log = await createJetStreamEventLog({
    nc,
    prefix: logPrefix,
    publishTimeoutMs: 500,
    publishAttempts: 60,
    onPublishRetry: () => {
      publishRetries++;
    },
  });
});

afterAll(async () => {
  await log?.close();
  await nc?.close();
  await nats?.destroy();
});

describe("JetStream event log across a NATS restart", () => {
  it("keeps following and completes an append issued while the server was down", async () => {
    const sessionId = newSessionId();
    const stream = sessionStream(sessionId);
    await log.append(stream, sessionCreated(sessionId), metadata(), { expectedVersion: 0, messageId: "r1" });
    await log.append(stream, sessionTouched(sessionId, 1), metadata(), {
      expectedVersion: 1,
      messageId: "r2",
    });

    const seen: RecordedEvent[] = [];
    const follower = log.follow({ from: 1, batchSize: 10 }, async (batch) => {
      seen.push(...batch);
    });
    let settled = false;
    follower.done.finally(() => {
      settled = true;
    });
    await waitUntil(() => seen.length === 2, 10_000, "the backlog");

    await stopServer();
    // Issued while nothing listens: the client buffers it, the publish times out and is retried.
    const pending = log.append(stream, sessionTouched(sessionId, 2), metadata(), {
      expectedVersion: 2,
      messageId: "r3",
    });
    await waitUntil(() => publishRetries >= 1, 10_000, "a publish retry");
    await startServer();
    // The buffered first attempt may land too; the shared msg id keeps it to one event either way.
    expect((await pending).position).toBe(3);
    await log.append(stream, sessionTouched(sessionId, 3), metadata(), {
      expectedVersion: 3,
      messageId: "r4",
    });

    await waitUntil(() => seen.length === 4, 30_000, "events after the restart");
    expect(seen.map((e) => e.position)).toEqual([1, 2, 3, 4]);
    expect(settled).toBe(false);
    expect((await log.readStream(stream)).version).toBe(4);
    await follower.stop();
    expect(settled).toBe(true);
  }, 60_000);

  it("reports NATS being away as DependencyUnavailableError once the retries are spent", async () => {
    // A log that gives up after two attempts, on the same connection and stream.
    const impatient = await createJetStreamEventLog({
      nc,
      prefix: logPrefix,
      ensureStream: false,
      publishTimeoutMs: 300,
      publishAttempts: 2,
    });
    const sessionId = newSessionId();
    const stream = sessionStream(sessionId);
    await impatient.append(stream, sessionCreated(sessionId), metadata(), {
      expectedVersion: 0,
      messageId: "u1",
    });
    await stopServer();
    try {
      const failures = await Promise.all([
        impatient
          .append(stream, sessionTouched(sessionId, 1), metadata(), { expectedVersion: 1, messageId: "u2" })
          .catch((error: unknown) => error),
        impatient.readStream(stream).catch((error: unknown) => error),
        impatient.lastPosition().catch((error: unknown) => error),
      ]);
      for (const failure of failures) {
        expect(failure).toBeInstanceOf(DependencyUnavailableError);
        expect((failure as DependencyUnavailableError).dependency).toBe("event log");
      }
    } finally {
      await startServer();
      await impatient.close();
    }
    // Back (once the client has reconnected): the stream reads again; the buffered append may or may not
    // have landed, its msg id keeps it to one event.
    let version = 0;
    const deadline = Date.now() + 30_000;
    while (version < 1 && Date.now() < deadline) {
      version = await log.readStream(stream).then(
        (read) => read.version,
        () => 0,
      );
    }
    expect(version).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
