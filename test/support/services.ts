import { randomBytes } from "node:crypto";
import { type NatsConnection, connect as natsConnect } from "@nats-io/transport-node";
import pg from "pg";

/**
 * Real services for integration tests. Each test file gets its own subject/stream/bucket prefix and its
 * own fresh database, and removes both afterwards. Under CI=true a missing service fails the run loudly;
 * locally it fails too, with the command that starts it, because a skipped integration test proves nothing.
 */

export const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
export const POSTGRES_ADMIN_URL =
  process.env.TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export function uniquePrefix(label = "t"): string {
  return `${label}${randomBytes(5).toString("hex")}`;
}

export async function connectNats(): Promise<NatsConnection> {
  try {
    return await natsConnect({ servers: NATS_URL, noAsyncTraces: true, timeout: 3_000 });
  } catch (error) {
    throw new Error(
      `NATS is not reachable at ${NATS_URL} (${String(error)}). Start it with: start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log`,
    );
  }
}

/** Deletes every stream and KV bucket whose name starts with the prefix (case-insensitive). */
export async function removeNatsPrefix(nc: NatsConnection, prefix: string): Promise<void> {
  const { jetstreamManager } = await import("@nats-io/jetstream");
  const jsm = await jetstreamManager(nc);
  const wanted = prefix.toUpperCase();
  for await (const info of jsm.streams.list()) {
    const name = info.config.name.toUpperCase();
    if (name.startsWith(wanted) || name.startsWith(`KV_${wanted}`))
      await jsm.streams.delete(info.config.name);
  }
}

export type TestDatabase = { url: string; name: string; drop(): Promise<void> };

export async function createTestDatabase(label = "tessera"): Promise<TestDatabase> {
  const name = `${label}_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(
      `PostgreSQL is not reachable at ${POSTGRES_ADMIN_URL} (${String(error)}). Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`,
    );
  }
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await client.end();
    },
  };
}
