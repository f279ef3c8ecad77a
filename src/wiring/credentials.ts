import { randomBytes } from "node:crypto";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { Authenticate } from "../adapters/http/authenticate.ts";
import { type CredentialSupport, credentialRoutes } from "../adapters/http/routes/credentials.ts";
import { createCredentialChecker } from "../app/credential-check.ts";
import { KEY_BYTES } from "../app/credential-crypto.ts";
import { createCredentialShredder } from "../app/credential-shredder.ts";
import {
  type CredentialKeyStore,
  type CredentialVault,
  createCredentialVault,
} from "../app/credential-vault.ts";
import type { ValidationStore } from "../app/ports.ts";
import type { Validator } from "../app/validator.ts";
import type { Config } from "../config.ts";
import type { Clock, EventLog, LeaseHandle, LeaseManager } from "../domain/ports.ts";
import type { ProjectionTarget } from "../projections/runner.ts";

/**
 * Upstream credentials kept only for a session's life (docs/credentials.md), put together: the vault (when
 * a master key is available), the login-time check, the shredder that destroys keys as sessions end (a
 * projection under a lease like the others), the orphan sweep (under its own lease) and the read route.
 */

/** How long a key may exist without its SessionCreated before the sweep takes it for an orphan. */
const ORPHAN_GRACE_MS = 10 * 60_000;
const SWEEP_EVERY_MS = 15 * 60_000;

export type Credentials = {
  support: CredentialSupport;
  shredder: ProjectionTarget;
  /** GET /v1/sessions/{id}/credentials. */
  routes(authenticate: Authenticate, validator: Validator): (app: FastifyInstance) => void;
  /**
   * Starts the orphan sweep under its lease (with TESSERA_CREDENTIALS_PREVIOUS_KEYS it also re-wraps keys
   * still under a previous master key); release the handle to stop it.
   */
  startSweep(leases: LeaseManager): LeaseHandle;
  /** One sweep (and rewrap pass) now, whoever holds the lease: tests. Failures are logged, not thrown. */
  sweepOnce(): Promise<void>;
};

export function createCredentials(deps: {
  config: Config;
  keys: CredentialKeyStore;
  checkpoints: Pick<ValidationStore, "getCheckpoint" | "setCheckpoint">;
  log: EventLog;
  clock: Clock;
  logger: Logger;
  /** After each sweep's rewrap pass: how many keys are still under a previous master key (a gauge). */
  onUnderPreviousKey?: (count: number) => void;
}): Credentials {
  const { config, keys, log, clock, logger } = deps;
  const masterKey = config.credentials.masterKey ?? ephemeralKey(config, logger);
  const previousKeys = config.credentials.previousKeys;
  const vault =
    masterKey === undefined
      ? undefined
      : createCredentialVault({ keys, masterKey, previousKeys, log, clock });
  const { validateUrl, validateTimeoutMs } = config.credentials;
  const support: CredentialSupport = {
    vault,
    check:
      validateUrl === undefined
        ? undefined
        : createCredentialChecker({ url: validateUrl, timeoutMs: validateTimeoutMs }),
  };
  // Runs without a master key too: purging needs none, and keys from an earlier configuration must still go.
  const shredder = createCredentialShredder({
    destroy: (sessionId) => keys.purge(sessionId),
    hasKey: async (sessionId) => (await keys.get(sessionId)) !== undefined,
    checkpoints: deps.checkpoints,
  });
  // After one pass with nothing left under a previous key, that key can leave TESSERA_CREDENTIALS_PREVIOUS_KEYS.
  const rewrap = async (rotating: CredentialVault) => {
    const { unreadableSessionIds, ...counts } = await rotating.rewrap();
    deps.onUnderPreviousKey?.(counts.underPreviousKey);
    logger.info(counts, "credential keys re-wrapped under the current master key");
    if (counts.unreadable > 0)
      logger.warn(
        { unreadable: counts.unreadable, sessionIds: unreadableSessionIds },
        "credential keys that open under no configured master key (left in place)",
      );
  };
  const sweepOnce = async () => {
    if (vault === undefined) return;
    try {
      const removed = await vault.sweep(ORPHAN_GRACE_MS);
      if (removed > 0) logger.info({ removed }, "credential keys swept (orphaned or ended sessions)");
      if (vault.rotating) await rewrap(vault);
    } catch (error) {
      logger.warn({ err: error }, "credential key sweep failed");
    }
  };
  return {
    support,
    shredder,
    routes: (authenticate, validator) => credentialRoutes({ support, authenticate, validator }),
    startSweep: (leases) =>
      leases.hold("credential_keys.sweep", async (signal) => {
        while (await pause(SWEEP_EVERY_MS, signal)) await sweepOnce();
      }),
    sweepOnce,
  };
}

/**
 * Embedded mode without TESSERA_CREDENTIALS_KEY: a key for this process only. Its log is in memory too, so
 * nothing readable is lost that was not lost anyway; distributed mode gets none (creates with credentials
 * are refused) because instances would not share it and a restart would strand every stored key.
 */
function ephemeralKey(config: Config, logger: Logger): Buffer | undefined {
  if (config.mode !== "embedded") return undefined;
  logger.warn(
    "TESSERA_CREDENTIALS_KEY is not set: upstream credentials are encrypted under a key generated for this process only and cannot be read after a restart",
  );
  return randomBytes(KEY_BYTES);
}

/** Waits `ms`; false as soon as `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    timer.unref?.();
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
