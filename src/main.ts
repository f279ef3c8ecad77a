import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import pino, { type Logger } from "pino";
import { systemClock } from "./adapters/clock/system-clock.ts";
import type { Config } from "./config.ts";
import type { Clock, TickSource } from "./domain/ports.ts";
import { startApplication, type Tessera } from "./wiring/application.ts";
import { openInfrastructure, type SharedEmbeddedState } from "./wiring/infrastructure.ts";
import { loadStartupSecrets, type StartupSecrets } from "./wiring/startup-secrets.ts";

export type { Tessera } from "./wiring/application.ts";

export type TesseraOverrides = {
  clock?: Clock;
  logger?: Logger;
  /** Share one in-memory event log / store between embedded instances (tests of multi-instance behaviour). */
  embedded?: SharedEmbeddedState | undefined;
  /** Where ticks come from (default: the fake clock's own ticks for a FakeClock, else the wall clock). */
  tickSource?: TickSource | undefined;
  /** Keys and TLS files already loaded (the CLI loads them before anything else); loaded here otherwise. */
  secrets?: StartupSecrets | undefined;
};

/**
 * The composition root: the only place that knows which adapters exist. It opens the infrastructure of the
 * configured mode (src/wiring/infrastructure.ts: embedded wires the in-memory log and PGlite, distributed
 * wires JetStream, NATS KV and Postgres) and builds the service on it (src/wiring/application.ts).
 */
export async function createTessera(config: Config, overrides: TesseraOverrides = {}): Promise<Tessera> {
  // First: a bad key or an unreadable certificate must stop the start before anything is opened.
  const secrets = overrides.secrets ?? (await loadStartupSecrets(config));
  const clock = overrides.clock ?? systemClock;
  const logger = overrides.logger ?? pino({ level: config.logLevel, name: "tessera" });
  const instanceId = config.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const infrastructure = await openInfrastructure(config, {
    clock,
    logger,
    instanceId,
    shared: overrides.embedded,
  });
  // From here the application owns the infrastructure: it closes it last, also when starting fails.
  return startApplication(config, infrastructure, {
    clock,
    logger,
    instanceId,
    tickSource: overrides.tickSource,
    secrets,
  });
}
