import { jetstream, StorageType } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Clock, LeaseHandle, LeaseManager } from "../../domain/ports.ts";
import { systemClock } from "../clock/system-clock.ts";
import { isRevisionConflict } from "./validation-store.ts";

/**
 * Leases in the KV bucket `<prefix>_leases`: key = lease name, value = `{holder, expiresAt}`. Taking a
 * lease and renewing it are compare-and-set on the key's revision, so two instances can never both
 * believe they hold it. 2.9 has no per-key TTL, so expiry is the `expiresAt` field, compared with each
 * instance's clock (clocks are assumed to agree to well within a renew interval).
 *
 * The holder renews every `renewEveryMs` and stops its work (aborts the signal) as soon as a renewal
 * loses the compare-and-set, or fails while the next attempt would already be past expiry — so it stops
 * before a stand-by may take over. Stand-bys try every `renewEveryMs`, so a dead holder is replaced
 * within `ttlMs + renewEveryMs`. If the work ends on its own (it failed, say), the lease is released and
 * competed for again after `renewEveryMs`, so a crashed runner restarts here or on another instance.
 */

export type KvLeaseManagerOptions = {
  nc: NatsConnection;
  prefix: string;
  /** Unique per process (e.g. host, pid and a random suffix). */
  holderId: string;
  ttlMs?: number;
  renewEveryMs?: number;
  clock?: Clock;
  replicas?: number;
  /** Errors that are retried or that ended a work function; for logging. */
  onError?: (
    error: unknown,
    context: { name: string; during: "acquire" | "renew" | "release" | "work" },
  ) => void;
};

type LeaseValue = { holder: string; expiresAt: number };
type Held = { revision: number; expiresAt: number };

export function leaseBucketName(prefix: string): string {
  return `${prefix}_leases`;
}

export async function createKvLeaseManager(options: KvLeaseManagerOptions): Promise<LeaseManager> {
  const ttlMs = options.ttlMs ?? 6_000;
  const renewEveryMs = options.renewEveryMs ?? 2_000;
  if (!(renewEveryMs < ttlMs)) throw new Error("lease manager: renewEveryMs must be shorter than ttlMs");
  const clock = options.clock ?? systemClock;
  const onError = options.onError ?? (() => {});
  // Every KV call gives up within one renew interval, so a hung request cannot outlive the lease.
  const js = jetstream(options.nc, { timeout: Math.max(500, renewEveryMs) });
  const kv = await new Kvm(js).create(leaseBucketName(options.prefix), {
    history: 1,
    storage: StorageType.File,
    replicas: options.replicas ?? 1,
  });
  const active = new Set<string>();
  const encode = (expiresAt: number) =>
    JSON.stringify({ holder: options.holderId, expiresAt } satisfies LeaseValue);

  return {
    hold(name, work) {
      if (active.has(name)) throw new Error(`lease manager: ${name} is already held or awaited here`);
      active.add(name);
      const handle = holdLease({ kv, name, work, ttlMs, renewEveryMs, clock, encode, onError });
      return {
        isHolder: handle.isHolder,
        async release() {
          await handle.release();
          active.delete(name);
        },
      };
    },
  };
}

type HoldDeps = {
  kv: KV;
  name: string;
  work: (signal: AbortSignal) => Promise<void>;
  ttlMs: number;
  renewEveryMs: number;
  clock: Clock;
  encode: (expiresAt: number) => string;
  onError: NonNullable<KvLeaseManagerOptions["onError"]>;
};

function holdLease(deps: HoldDeps): LeaseHandle {
  const { kv, name, work, ttlMs, renewEveryMs, clock, encode, onError } = deps;
  let released = false;
  let held: Held | undefined;
  let controller: AbortController | undefined;
  let running: Promise<void> | undefined;
  let workEnded = false;
  let wake: (() => void) | undefined;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      wake = done;
    });

  const tryAcquire = async (): Promise<Held | undefined> => {
    const now = clock.now();
    const current = await kv.get(name);
    try {
      if (current?.operation !== "PUT") {
        return { revision: await kv.create(name, encode(now + ttlMs)), expiresAt: now + ttlMs };
      }
      const value = parseLease(current.value);
      if (value && value.expiresAt > now) return undefined;
      return {
        revision: await kv.update(name, encode(now + ttlMs), current.revision),
        expiresAt: now + ttlMs,
      };
    } catch (error) {
      if (isRevisionConflict(error)) return undefined;
      throw error;
    }
  };

  const startWork = () => {
    const c = new AbortController();
    controller = c;
    workEnded = false;
    running = Promise.resolve()
      .then(() => work(c.signal))
      .catch((error: unknown) => {
        if (!c.signal.aborted) onError(error, { name, during: "work" });
      })
      .finally(() => {
        workEnded = true;
        wake?.();
      });
  };

  /** Stops the work and waits for it, so no two instances ever run it at once. */
  const stopWork = async (reason: string) => {
    controller?.abort(new Error(`lease ${name}: ${reason}`));
    await running;
    controller = undefined;
    running = undefined;
  };

  const deleteIfOurs = async (lease: Held) => {
    try {
      await kv.delete(name, { previousSeq: lease.revision });
    } catch (error) {
      // A conflict means someone else holds it now: nothing of ours to remove.
      if (!isRevisionConflict(error)) onError(error, { name, during: "release" });
    }
  };

  const step = async () => {
    if (!held) {
      held = await tryAcquire();
      if (held && !released) startWork();
      return;
    }
    if (workEnded) {
      await stopWork("work ended");
      await deleteIfOurs(held);
      held = undefined;
      return;
    }
    const lease = held;
    try {
      const expiresAt = clock.now() + ttlMs;
      held = { revision: await kv.update(name, encode(expiresAt), lease.revision), expiresAt };
    } catch (error) {
      if (isRevisionConflict(error)) {
        held = undefined;
        await stopWork("taken over by another holder");
        return;
      }
      onError(error, { name, during: "renew" });
      if (clock.now() + renewEveryMs >= lease.expiresAt) {
        held = undefined;
        await stopWork("could not renew before expiry");
      }
    }
  };

  const loop = (async () => {
    while (!released) {
      try {
        await step();
      } catch (error) {
        onError(error, { name, during: held ? "renew" : "acquire" });
      }
      if (!released) await sleep(renewEveryMs);
    }
    await stopWork("released");
    if (held) await deleteIfOurs(held);
    held = undefined;
  })();

  return {
    isHolder: () => held !== undefined && controller !== undefined && !controller.signal.aborted,
    async release() {
      released = true;
      wake?.();
      await loop;
    },
  };
}

function parseLease(data: Uint8Array): LeaseValue | undefined {
  try {
    const value = JSON.parse(new TextDecoder().decode(data)) as Partial<LeaseValue>;
    return typeof value.expiresAt === "number" && typeof value.holder === "string"
      ? { holder: value.holder, expiresAt: value.expiresAt }
      : undefined;
  } catch {
    return undefined;
  }
}
