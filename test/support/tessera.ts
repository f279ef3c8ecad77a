import { generateKeyPairSync } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { loadConfig } from "../../src/config.ts";
import type { Clock } from "../../src/domain/ports.ts";
import { createTessera, type Tessera, type TesseraOverrides } from "../../src/main.ts";
import {
  connectNats,
  createTestDatabase,
  NATS_URL,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "./services.ts";

export const ADMIN_KEY = "test-admin-key-0123456789";

/** One signing key per test process, shared by every instance it starts (as a deployment shares one). */
export const TEST_JWT_PRIVATE_KEY = generateKeyPairSync("ed25519")
  .privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();

/** An instance wired to the real NATS and Postgres, as `npm start` with NATS_URL and DATABASE_URL would. */
export async function startDistributed(options: {
  prefix: string;
  databaseUrl: string;
  env?: Record<string, string>;
  clock?: Clock;
}): Promise<Tessera> {
  const config = loadConfig({
    NATS_URL,
    DATABASE_URL: options.databaseUrl,
    TESSERA_PREFIX: options.prefix,
    TESSERA_ADMIN_KEY: ADMIN_KEY,
    TESSERA_IDEMPOTENCY_SECRET: "test-idempotency-secret",
    TESSERA_JWT_PRIVATE_KEY: TEST_JWT_PRIVATE_KEY,
    LOG_LEVEL: "silent",
    ...options.env,
  });
  return createTessera(config, options.clock ? { clock: options.clock } : {});
}

/** Two distributed instances sharing a fresh prefix and a fresh database, and what it takes to remove them. */
export type Pair = {
  a: Tessera;
  b: Tessera;
  prefix: string;
  database: TestDatabase;
  /** A connection of the test's own (for looking at streams and buckets directly). */
  nc: NatsConnection;
  /** Closes both instances, then removes the prefix's streams and buckets and drops the database. */
  close(): Promise<void>;
};

export async function startPair(
  label: string,
  options: { env?: Record<string, string>; clock?: Clock } = {},
): Promise<Pair> {
  const nc = await connectNats();
  const prefix = uniquePrefix(label);
  const database = await createTestDatabase();
  const started: Tessera[] = [];
  const close = async () => {
    for (const instance of started) await instance.close();
    await removeNatsPrefix(nc, prefix);
    await nc.close();
    await database.drop();
  };
  try {
    for (let i = 0; i < 2; i++) {
      started.push(await startDistributed({ prefix, databaseUrl: database.url, ...options }));
    }
  } catch (error) {
    await close().catch(() => {});
    throw error;
  }
  const [a, b] = started as [Tessera, Tessera];
  return { a, b, prefix, database, nc, close };
}

export async function startEmbedded(env: Record<string, string> = {}, overrides: TesseraOverrides = {}) {
  const config = loadConfig({ TESSERA_ADMIN_KEY: ADMIN_KEY, LOG_LEVEL: "silent", ...env });
  return createTessera(config, overrides);
}

export const adminHeaders = { "x-admin-key": ADMIN_KEY };

/** Creates a session over the admin API (roles ["user"] unless `body` says otherwise). */
export async function createSession(
  on: Tessera,
  userId: string,
  body: Record<string, unknown> = {},
): Promise<{ id: string; token: string }> {
  const response = await on.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: adminHeaders,
    payload: { user_id: userId, roles: ["user"], ...body },
  });
  if (response.statusCode !== 201) throw new Error(`create failed: ${response.statusCode} ${response.body}`);
  const created = response.json() as { session: { id: string }; token: string };
  return { id: created.session.id, token: created.token };
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Polls `check` until it returns true or the deadline passes; returns the elapsed ms or throws. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 5_000,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await check()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}
