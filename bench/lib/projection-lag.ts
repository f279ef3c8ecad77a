import { jetstreamManager } from "@nats-io/jetstream";
import pg from "pg";
import { createEventSubjects } from "../../src/adapters/jetstream/subjects.ts";
import { connectNats } from "../../test/support/services.ts";
import type { BenchEnvironment } from "./environment.ts";

export type ProjectionLag = {
  /** The event stream's last position when the load stopped. */
  lastPosition: number;
  /** How far each Postgres projection was behind it then. */
  behind: Record<string, number>;
  /** Time until every Postgres projection reached that position. */
  catchUpMs: number;
};

/**
 * How far the Postgres projections of an instance were behind the log when a load stopped, and how long
 * they took to catch up: work a throughput figure measured during the load does not contain.
 */
export async function measureProjectionLag(
  env: BenchEnvironment,
  timeoutMs = 120_000,
): Promise<ProjectionLag> {
  const nc = await connectNats();
  const client = new pg.Client({ connectionString: env.database.url });
  await client.connect();
  try {
    const jsm = await jetstreamManager(nc);
    const lastPosition = (await jsm.streams.info(createEventSubjects(env.prefix).streamName)).state.last_seq;
    const started = performance.now();
    const checkpoints = async () =>
      (
        await client.query<{ name: string; position: string }>(
          "SELECT name, position FROM projection_checkpoints",
        )
      ).rows;
    const first = await checkpoints();
    const behind = Object.fromEntries(first.map((row) => [row.name, lastPosition - Number(row.position)]));
    for (
      let rows = first;
      rows.some((row) => Number(row.position) < lastPosition);
      rows = await checkpoints()
    ) {
      if (performance.now() - started > timeoutMs) {
        throw new Error(`the projections did not reach position ${lastPosition} within ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return { lastPosition, behind, catchUpMs: performance.now() - started };
  } finally {
    await client.end();
    await nc.close();
  }
}
