import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { systemClock } from "../adapters/clock/system-clock.ts";
import { connectNats } from "../adapters/jetstream/connection.ts";
import { createJetStreamEventLog } from "../adapters/jetstream/event-log.ts";
import { createJetStreamTickLog } from "../adapters/jetstream/time-stream.ts";
import { createInMemoryCredentialKeyStore } from "../adapters/memory/credential-key-store.ts";
import { createInMemoryEventLog } from "../adapters/memory/event-log.ts";
import { createInMemoryLeaseManager } from "../adapters/memory/lease-manager.ts";
import { createInMemoryReplayStore } from "../adapters/memory/replay-store.ts";
import { createInMemoryTickLog } from "../adapters/memory/tick-log.ts";
import { createInMemoryValidationStore } from "../adapters/memory/validation-store.ts";
import { createKvCredentialKeyStore } from "../adapters/nats-kv/credential-key-store.ts";
import { createKvLeaseManager } from "../adapters/nats-kv/lease-manager.ts";
import { createKvReplayStore } from "../adapters/nats-kv/replay-store.ts";
import { createKvValidationStore } from "../adapters/nats-kv/validation-store.ts";
import { type DatabaseHandle, openDatabase } from "../adapters/postgres/database.ts";
import type { CredentialKeyStore } from "../app/credential-vault.ts";
import type { ReplayStore } from "../app/idp-ports.ts";
import type { ValidationStore } from "../app/ports.ts";
import type { Config } from "../config.ts";
import type { Clock, EventLog, LeaseManager, TickLog } from "../domain/ports.ts";
import { createCloseStack } from "./close-stack.ts";

/**
 * Everything the application runs on that depends on the mode, opened and ready. Embedded mode keeps it in
 * one process (in-memory log, store, ticks and leases; PGlite); distributed mode opens NATS (JetStream, KV)
 * and Postgres, creating streams, buckets and tables as needed.
 */
export type Infrastructure = {
  log: EventLog;
  /** Where the validation view lives (every instance mirrors it in memory). */
  store: ValidationStore;
  leases: LeaseManager;
  /** The time stream (DESIGN §5). */
  ticks: TickLog;
  /** One-time claims: IdP webhook ids, logout tokens, IdP session bindings. */
  replay: ReplayStore;
  /** Wrapped data keys of sessions' upstream credentials (docs/credentials.md). */
  credentialKeys: CredentialKeyStore;
  database: DatabaseHandle;
  /** The NATS connection; undefined in embedded mode. */
  nc: NatsConnection | undefined;
  /** Closes what was opened, last opened first. */
  close(): Promise<void>;
};

/** State embedded instances share when a test runs several in one process. */
export type SharedEmbeddedState = { log: EventLog; store: ValidationStore; ticks?: TickLog | undefined };

export type InfrastructureRuntime = {
  clock: Clock;
  logger: Logger;
  instanceId: string;
  /** Embedded mode only: use these instead of fresh in-memory ones (the caller closes them). */
  shared?: SharedEmbeddedState | undefined;
};

export async function openInfrastructure(
  config: Config,
  runtime: InfrastructureRuntime,
): Promise<Infrastructure> {
  return config.mode === "embedded" ? openEmbedded(runtime) : openDistributed(config, runtime);
}

async function openEmbedded({ clock, logger, shared }: InfrastructureRuntime): Promise<Infrastructure> {
  logger.warn(
    "EMBEDDED MODE: in-memory event log and PGlite, one process, ALL STATE IS LOST ON EXIT. Set NATS_URL and DATABASE_URL for real use.",
  );
  const closers = createCloseStack(logger);
  try {
    const log = shared?.log ?? createInMemoryEventLog({ clock });
    if (!shared) closers.push(() => log.close());
    const store = shared?.store ?? createInMemoryValidationStore();
    const database = await openDatabase({ embedded: true });
    closers.push(() => database.close());
    return {
      log,
      store,
      leases: createInMemoryLeaseManager(),
      ticks: shared?.ticks ?? createInMemoryTickLog(),
      replay: createInMemoryReplayStore(clock),
      credentialKeys: createInMemoryCredentialKeyStore(),
      database,
      nc: undefined,
      close: closers.closeAll,
    };
  } catch (error) {
    await closers.closeAll();
    throw error;
  }
}

async function openDistributed(config: Config, runtime: InfrastructureRuntime): Promise<Infrastructure> {
  const { clock, logger, instanceId } = runtime;
  const closers = createCloseStack(logger);
  try {
    const nc = await connectNats(config.natsUrl ?? "", `tessera-${instanceId}`);
    closers.push(() => nc.drain().catch(() => nc.close()));
    const database = await openDatabase({
      url: config.databaseUrl ?? "",
      onPoolError: (error) => logger.warn({ err: error }, "postgres pool error"),
    });
    closers.push(() => database.close());
    const { prefix, natsReplicas: replicas } = config;
    // While NATS is away a request is answered 503 at once, not after the 5 s publish timeout.
    const log = await createJetStreamEventLog({ nc, prefix, replicas, failWhileDisconnected: true });
    const store = await createKvValidationStore({ nc, prefix, replicas });
    const leases = await createKvLeaseManager({
      nc,
      prefix,
      holderId: instanceId,
      // Leases are about whether a process is alive: wall time, even when the domain runs on a test clock
      // (a fake clock jumping an hour would otherwise hand every lease to whoever looks next).
      clock: systemClock,
      replicas,
      onError: (error, context) => logger.warn({ err: error, ...context }, "lease trouble"),
    });
    const ticks = await createJetStreamTickLog({
      nc,
      prefix,
      replicas,
      onError: (error) => logger.warn({ err: error }, "tick consumer retrying"),
    });
    const replay = await createKvReplayStore({ nc, prefix, clock, replicas });
    const credentialKeys = await createKvCredentialKeyStore({ nc, prefix, replicas });
    return { log, store, leases, ticks, replay, credentialKeys, database, nc, close: closers.closeAll };
  } catch (error) {
    await closers.closeAll();
    throw error;
  }
}
