import type { NatsConnection } from "@nats-io/transport-node";
import {
  connectNats,
  createTestDatabase,
  NATS_URL,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../../test/support/services.ts";

/**
 * The real services a benchmark runs against, isolated like a test file: its own TESSERA_PREFIX (streams,
 * buckets, leases) and its own fresh Postgres database, both removed when the benchmark ends — also when
 * it fails or the run is interrupted.
 */

export type BenchEnvironment = {
  prefix: string;
  natsUrl: string;
  database: TestDatabase;
  /** Runs `cleanup` when the benchmark ends (last registered, first run). */
  defer(cleanup: () => Promise<void> | void): void;
};

const pending = new Set<() => Promise<void>>();

/** Runs every registered cleanup that has not run yet (used on SIGINT). */
export async function cleanupEverything(): Promise<void> {
  for (const cleanup of [...pending].reverse()) await cleanup();
}

export async function withEnvironment<T>(label: string, body: (env: BenchEnvironment) => Promise<T>) {
  const prefix = uniquePrefix(`bench${label.replace(/[^a-z]/gi, "").slice(0, 6)}`);
  const cleanups: Array<() => Promise<void> | void> = [];
  let done = false;
  const cleanup = async () => {
    if (done) return;
    done = true;
    pending.delete(cleanup);
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch (error) {
        console.error(`  cleanup step failed: ${String(error)}`);
      }
    }
  };
  pending.add(cleanup);
  try {
    const database = await createTestDatabase(`bench_${label.replace(/[^a-z]/gi, "").slice(0, 10)}`);
    cleanups.push(() => database.drop());
    cleanups.push(async () => {
      const nc: NatsConnection = await connectNats();
      try {
        await removeNatsPrefix(nc, prefix);
      } finally {
        await nc.close();
      }
    });
    return await body({
      prefix,
      natsUrl: NATS_URL,
      database,
      defer: (step) => {
        cleanups.push(step);
      },
    });
  } finally {
    await cleanup();
  }
}
