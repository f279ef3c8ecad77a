import { createHash } from "node:crypto";
import { jetstream, StorageType } from "@nats-io/jetstream";
import { type KV, type KvEntry, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { ReplayStore } from "../../app/idp-ports.ts";
import type { Clock } from "../../domain/ports.ts";
import { isRevisionConflict } from "./validation-store.ts";

/**
 * The replay store in a NATS KV bucket `<prefix>_replay`. NATS 2.9 ignores per-key TTLs without an error,
 * so every value carries its own expiry (`exp`, epoch ms) and an expired entry reads as absent and may be
 * claimed again (compare-and-set on its revision). The bucket's max age only reclaims space: it is longer
 * than any expiry we record, so it never ends an entry early.
 *
 * Keys are sha256 digests of the caller's key: webhook ids and JWT ids are attacker-chosen strings that
 * need not be valid KV keys, and nothing secret should appear in a subject.
 */

export type KvReplayStoreOptions = {
  nc: NatsConnection;
  prefix: string;
  clock: Clock;
  replicas?: number | undefined;
  /** Longest expiry any caller records; the bucket's max age is this plus a day (default 31 days). */
  maxEntryAgeMs?: number | undefined;
};

export const replayBucketName = (prefix: string) => `${prefix}_replay`;

const MAX_CAS_ATTEMPTS = 16;
const DAY_MS = 86_400_000;

type Stored = { v: string; exp: number };

export async function createKvReplayStore(options: KvReplayStoreOptions): Promise<ReplayStore> {
  const { clock } = options;
  const maxEntryAgeMs = options.maxEntryAgeMs ?? 31 * DAY_MS;
  const kv: KV = await new Kvm(jetstream(options.nc)).create(replayBucketName(options.prefix), {
    history: 1,
    storage: StorageType.File,
    replicas: options.replicas ?? 1,
    ttl: maxEntryAgeMs + DAY_MS,
  });

  const read = async (key: string): Promise<{ entry: KvEntry | null; live: Stored | undefined }> => {
    const entry = await kv.get(key);
    if (entry === null || entry.operation !== "PUT") return { entry, live: undefined };
    const stored = decode(entry.value);
    return { entry, live: stored !== undefined && stored.exp > clock.now() ? stored : undefined };
  };
  const encode = (value: string, expiresAt: number) =>
    JSON.stringify({ v: value, exp: Math.min(expiresAt, clock.now() + maxEntryAgeMs) } satisfies Stored);

  return {
    async claim(rawKey, value, expiresAt) {
      const key = digestKey(rawKey);
      const data = encode(value, expiresAt);
      for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
        try {
          await kv.create(key, data);
          return { won: true, value };
        } catch (error) {
          if (!isRevisionConflict(error)) throw error;
        }
        const { entry, live } = await read(key);
        if (live !== undefined) return { won: false, value: live.v };
        if (entry === null) continue;
        // Present but expired (or unreadable): take it over, unless someone else does first.
        try {
          await kv.update(key, data, entry.revision);
          return { won: true, value };
        } catch (error) {
          if (!isRevisionConflict(error)) throw error;
        }
      }
      throw new Error("replay store: too many conflicting claims");
    },

    async get(rawKey) {
      return (await read(digestKey(rawKey))).live?.v;
    },

    async replace(rawKey, expected, next, expiresAt) {
      const key = digestKey(rawKey);
      for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
        const { entry, live } = await read(key);
        if (entry === null || live?.v !== expected) return false;
        try {
          await kv.update(key, encode(next, expiresAt), entry.revision);
          return true;
        } catch (error) {
          if (!isRevisionConflict(error)) throw error;
        }
      }
      return false;
    },

    async release(rawKey) {
      await kv.delete(digestKey(rawKey));
    },
  };
}

function digestKey(key: string): string {
  return `r.${createHash("sha256").update(key).digest("base64url")}`;
}

const decoder = new TextDecoder();

function decode(data: Uint8Array): Stored | undefined {
  try {
    const value = JSON.parse(decoder.decode(data)) as Partial<Stored>;
    return typeof value.v === "string" && typeof value.exp === "number"
      ? { v: value.v, exp: value.exp }
      : undefined;
  } catch {
    return undefined;
  }
}
