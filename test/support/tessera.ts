import { generateKeyPairSync } from "node:crypto";
import { loadConfig } from "../../src/config.ts";
import type { Clock } from "../../src/domain/ports.ts";
import { createTessera, type Tessera, type TesseraOverrides } from "../../src/main.ts";
import { NATS_URL } from "./services.ts";

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

export async function startEmbedded(env: Record<string, string> = {}, overrides: TesseraOverrides = {}) {
  const config = loadConfig({ TESSERA_ADMIN_KEY: ADMIN_KEY, LOG_LEVEL: "silent", ...env });
  return createTessera(config, overrides);
}

export const adminHeaders = { "x-admin-key": ADMIN_KEY };
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
