import { createHash } from "node:crypto";
import { jetstream, StorageType } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import { createKeyedMutex } from "../../app/keyed-mutex.ts";
import type { RateLimitCounter, RateLimitVerdict } from "../../app/rate-limit-counter.ts";
import type { Clock } from "../../domain/ports.ts";
import { natsFailure } from "../jetstream/unavailable.ts";
import { isRevisionConflict } from "./validation-store.ts";

/**
 * The token endpoint's rate-limit counters in a NATS KV bucket `<prefix>_ratelimit` that every instance
 * shares, so a limit holds for the deployment, not per instance.
 *
 * NATS 2.9 has no per-key TTL, so windows are aligned to the clock (`floor(now / window)`) and the
 * window's start is part of the key: every window counts in a fresh key, and the bucket's max age (two
 * windows) removes the old ones. Keys are `<limit>.<window start, epoch s>.<sha256(subject), 22 chars
 * base64url>`, so no address or username is stored. A value is the decimal count.
 *
 * A hit reads the count and writes count + 1 at the revision it read (create for a new key). Hits of one
 * key are serialised inside the process, so a conflict means another instance counted first — the loop
 * always makes progress somewhere; a hit that loses `MAX_ATTEMPTS` times in a row (someone is hammering
 * that key from several instances) is refused. A count at the limit is refused without a write, and
 * remembered until its window ends: counts only grow within a window, so a hammered key costs no round
 * trip at all once it is exhausted here.
 */

export type KvRateLimitCounterOptions = {
  nc: NatsConnection;
  prefix: string;
  windowSeconds: number;
  clock: Clock;
  /** Bucket replicas; 1 on a single server, 3 in a cluster. */
  replicas?: number;
};

export const rateLimitBucketName = (prefix: string) => `${prefix}_ratelimit`;

const LIMIT_NAME = /^[a-z]+$/;
/** Conflicts only come from other instances, each of which counted meanwhile; see above. */
const MAX_ATTEMPTS = 16;
/**
 * A login waits for its counters before anything else; during a NATS outage it should fail within a couple
 * of seconds (it could not append its event anyway) rather than the client's default 5 s.
 */
const REQUEST_TIMEOUT_MS = 2_000;
const MAX_REMEMBERED_EXHAUSTED = 10_000;

export async function createKvRateLimitCounter(
  options: KvRateLimitCounterOptions,
): Promise<RateLimitCounter> {
  const { clock } = options;
  const windowMs = options.windowSeconds * 1000;
  if (!(windowMs > 0)) throw new Error("rate-limit counter: the window must be positive");
  const js = jetstream(options.nc, { timeout: REQUEST_TIMEOUT_MS });
  const bucket = rateLimitBucketName(options.prefix);
  // Two windows: a key is written during its own window only, and must outlive that window.
  const maxAgeMs = 2 * windowMs;
  const kv = await new Kvm(js).create(bucket, {
    history: 1,
    storage: StorageType.File,
    replicas: options.replicas ?? 1,
    ttl: maxAgeMs,
  });
  await ensureMaxAge(options.nc, bucket, maxAgeMs);

  const serial = createKeyedMutex();
  /** Keys seen at a count of at least `count`, until their window ends (epoch ms). */
  const exhausted = new Map<string, { count: number; endsAt: number }>();
  const remember = (key: string, count: number, endsAt: number) => {
    if (exhausted.size >= MAX_REMEMBERED_EXHAUSTED) {
      const now = clock.now();
      for (const [old, seen] of exhausted) if (seen.endsAt <= now) exhausted.delete(old);
      const oldest = exhausted.keys().next().value;
      if (exhausted.size >= MAX_REMEMBERED_EXHAUSTED && oldest !== undefined) exhausted.delete(oldest);
    }
    exhausted.set(key, { count, endsAt });
  };

  const count = async (key: string, max: number, endsAt: number): Promise<RateLimitVerdict> => {
    const refused = (): RateLimitVerdict => ({
      allowed: false,
      retryAfterSeconds: Math.max(1, Math.ceil((endsAt - clock.now()) / 1000)),
    });
    const seen = exhausted.get(key);
    if (seen !== undefined && seen.count >= max && clock.now() < seen.endsAt) return refused();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await kv.get(key);
      const current = entry !== null && entry.operation === "PUT" ? decodeCount(entry.string()) : 0;
      if (current >= max) {
        remember(key, current, endsAt);
        return refused();
      }
      try {
        // A deleted or purged key still has a revision; updating at it keeps the compare-and-set exact.
        if (entry === null) await kv.create(key, String(current + 1));
        else await kv.update(key, String(current + 1), entry.revision);
        return { allowed: true };
      } catch (error) {
        if (!isRevisionConflict(error)) throw error;
      }
    }
    return { allowed: false, retryAfterSeconds: 1 };
  };

  return {
    async hit(limit, subject, max) {
      if (!LIMIT_NAME.test(limit)) throw new Error(`rate-limit counter: bad limit name ${limit}`);
      const start = Math.floor(clock.now() / windowMs) * windowMs;
      const key = `${limit}.${start / 1000}.${subjectDigest(subject)}`;
      try {
        return await serial.run(key, () => count(key, max, start + windowMs));
      } catch (error) {
        throw natsFailure("rate-limit store", error);
      }
    },
  };
}

/** 22 base64url characters (132 bits) of sha256: unique enough, and valid in a KV key. */
export function subjectDigest(subject: string): string {
  return createHash("sha256").update(subject, "utf8").digest("base64url").slice(0, 22);
}

/**
 * The KV client only sets the max age when it creates the bucket. A longer window configured later
 * needs a longer max age, or counts would vanish before their window ends; a shorter one keeps the
 * longer age (old keys just linger a little).
 */
async function ensureMaxAge(nc: NatsConnection, bucket: string, maxAgeMs: number): Promise<void> {
  const jsm = await jetstream(nc).jetstreamManager();
  const stream = `KV_${bucket}`;
  const info = await jsm.streams.info(stream);
  const wanted = nanos(maxAgeMs);
  const current = info.config.max_age;
  // 0 is "no limit": keys would never go away.
  if (current === 0 || current < wanted) await jsm.streams.update(stream, { max_age: wanted });
}

function decodeCount(text: string): number {
  const value = Number(text);
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}
