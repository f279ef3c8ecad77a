import { createFakeClock, type FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { loadConfig } from "../../src/config.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import type { Clock, TickSource } from "../../src/domain/ports.ts";
import { createTessera, type Tessera, type TesseraOverrides } from "../../src/main.ts";
import { NATS_URL } from "../support/services.ts";
import { ADMIN_KEY, TEST_JWT_PRIVATE_KEY } from "../support/tessera.ts";

// Shared with the other suites; the time suites import it from here.
export { createSession } from "../support/tessera.ts";

/** A round instant, so seconds and deadlines read plainly in assertions. */
export const T0 = Date.parse("2031-03-01T12:00:00.000Z");

export function fakeClockAt(start = T0): FakeClock {
  return createFakeClock(start);
}

export type StartOptions = {
  clock: Clock;
  env?: Record<string, string>;
  tickSource?: TickSource;
  embedded?: TesseraOverrides["embedded"];
};

/** An instance on the real NATS and Postgres, with a fake clock (and, unless given, its fake ticks). */
export function startDistributedAt(
  prefix: string,
  databaseUrl: string,
  options: StartOptions,
): Promise<Tessera> {
  const config = loadConfig({
    NATS_URL,
    DATABASE_URL: databaseUrl,
    TESSERA_PREFIX: prefix,
    TESSERA_ADMIN_KEY: ADMIN_KEY,
    TESSERA_IDEMPOTENCY_SECRET: "test-idempotency-secret",
    TESSERA_JWT_PRIVATE_KEY: TEST_JWT_PRIVATE_KEY,
    LOG_LEVEL: "silent",
    ...options.env,
  });
  return createTessera(config, { clock: options.clock, tickSource: options.tickSource });
}

/** An embedded instance (in-memory log, PGlite) with a fake clock. */
export function startEmbeddedAt(options: StartOptions): Promise<Tessera> {
  const config = loadConfig({ TESSERA_ADMIN_KEY: ADMIN_KEY, LOG_LEVEL: "silent", ...options.env });
  return createTessera(config, {
    clock: options.clock,
    tickSource: options.tickSource,
    embedded: options.embedded,
  });
}

export async function validate(on: Tessera, token: string) {
  const response = await on.app.inject({ method: "POST", url: "/v1/sessions/validate", payload: { token } });
  return { status: response.statusCode, body: response.json() as { valid: boolean; reason?: string } };
}

export async function eventsOf(on: Tessera, sessionId: string): Promise<RecordedEvent[]> {
  return (await on.log.readStream({ category: "session", id: sessionId })).events;
}

export async function typesOf(on: Tessera, sessionId: string): Promise<string[]> {
  return (await eventsOf(on, sessionId)).map((event) => event.type);
}
