import pino, { type Logger } from "pino";
import { type Config, loadConfig } from "../../src/config.ts";
import { ADMIN_KEY, TEST_JWT_PRIVATE_KEY } from "./tessera.ts";

/**
 * What the restart tests (a private Postgres or nats-server stopped under load) start their instances
 * with: no rate limits in the way of the load, one idempotency secret for all of them (an Idempotency-Key
 * retried on another instance derives the same token), and a logger that keeps what the instance said.
 */

export function outageConfig(services: { natsUrl: string; databaseUrl: string; prefix: string }): Config {
  return loadConfig({
    NATS_URL: services.natsUrl,
    DATABASE_URL: services.databaseUrl,
    TESSERA_PREFIX: services.prefix,
    TESSERA_ADMIN_KEY: ADMIN_KEY,
    TESSERA_IDEMPOTENCY_SECRET: "test-idempotency-secret",
    TESSERA_JWT_PRIVATE_KEY: TEST_JWT_PRIVATE_KEY,
    TESSERA_RATE_LIMIT_VALIDATE_PER_IP: "0",
    TESSERA_RATE_LIMIT_TOKEN_PER_IP: "0",
    TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: "0",
    LOG_LEVEL: "silent",
  });
}

export type LogLine = { level: number; msg?: string };

/** A warn-level logger whose lines go into `lines` (parsed), each with `extra` added. */
export function capturingLogger(lines: LogLine[], extra: Record<string, unknown> = {}): Logger {
  return pino(
    { level: "warn" },
    { write: (line: string) => void lines.push({ ...(JSON.parse(line) as LogLine), ...extra }) },
  );
}
