import { JetStreamApiError, jetstream, StorageType } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { forEachBounded } from "../../app/for-each-bounded.ts";
import type { ValidationStore } from "../../app/ports.ts";
import type { UserValidationEntry, ValidationEntry } from "../../projections/validation-entry.ts";
import { isNatsConnected, natsDown } from "../jetstream/connection-state.ts";
import { natsFailure } from "../jetstream/unavailable.ts";
import {
  compactUserValidationEntry,
  compactValidationEntry,
  isUserValidationEntryLike,
  isValidationEntryLike,
} from "../memory/compact-validation-entry.ts";
import { trailingPosition } from "./position-peek.ts";
import { watchKvBucket } from "./watch-bucket.ts";

/**
 * The shared validation view in a NATS KV bucket `<prefix>_validation`. Keys: `s.<sessionId>`,
 * `u.<base64url(userId)>`, `cp.<name>` (projection checkpoints). History 1: only the current entry
 * matters, and on 2.9 nothing expires by itself (deadlines are fields checked on read).
 *
 * Writes are compare-and-set on the key's revision, so with any number of writers an entry with a lower
 * log position never replaces a newer one. The revision of keys this process wrote or saw through its
 * watch is remembered, so a write usually needs a single round trip: the projection runner's, and an
 * ending written through by any instance.
 */

export type KvValidationStoreOptions = {
  nc: NatsConnection;
  prefix: string;
  /** Bucket replicas; 1 on a single server, 3 in a cluster. */
  replicas?: number;
};

export function validationBucketName(prefix: string): string {
  return `${prefix}_validation`;
}

const SESSION_PREFIX = "s.";
const USER_PREFIX = "u.";
const CHECKPOINT_PREFIX = "cp.";
const KEY_TOKEN = /^[-\w=]+$/;
/** Conflicts only repeat while other writers keep winning; past this something is wrong. */
const MAX_CAS_ATTEMPTS = 32;
const MAX_KNOWN_REVISIONS = 50_000;
const FORGET_CONCURRENCY = 32;

const sessionKey = (sessionId: string) => `${SESSION_PREFIX}${sessionId}`;
const userKey = (userId: string) => `${USER_PREFIX}${Buffer.from(userId, "utf8").toString("base64url")}`;

export async function createKvValidationStore(options: KvValidationStoreOptions): Promise<ValidationStore> {
  const js = jetstream(options.nc);
  const bucket = validationBucketName(options.prefix);
  const kv = await new Kvm(js).create(bucket, {
    history: 1,
    storage: StorageType.File,
    replicas: options.replicas ?? 1,
  });
  const writer = createPositionedWriter(kv);

  return {
    async getSession(sessionId) {
      if (!KEY_TOKEN.test(sessionId)) return undefined;
      return decodeSession(await readValue(options.nc, kv, sessionKey(sessionId)));
    },
    async getUser(userId) {
      if (userId === "") return undefined;
      return decodeUser(await readValue(options.nc, kv, userKey(userId)));
    },
    async putSession(entry) {
      if (!KEY_TOKEN.test(entry.sessionId))
        throw new Error("validation store: session id is not a valid key");
      // An ended session has almost always been in the view while it was active: reading its revision
      // first saves a create that would fail (a round trip and an error) before the same read.
      const likelyStored = entry.status !== "active";
      await writer.put(sessionKey(entry.sessionId), entry.position, JSON.stringify(entry), likelyStored);
    },
    async putUser(entry) {
      if (entry.userId === "") throw new Error("validation store: empty user id");
      await writer.put(userKey(entry.userId), entry.position, JSON.stringify(entry));
    },
    async forgetSessions(sessionIds) {
      const jsm = await js.jetstreamManager();
      const stream = `KV_${bucket}`;
      // A stream purge of the key's subject leaves nothing behind; a KV purge would leave a marker per key.
      await forEachBounded(
        sessionIds.filter((id) => KEY_TOKEN.test(id)),
        FORGET_CONCURRENCY,
        async (id) => {
          writer.forget(sessionKey(id));
          await jsm.streams.purge(stream, { filter: `$KV.${bucket}.${sessionKey(id)}` });
        },
      );
    },
    watch(listener) {
      const holds = listener.holdsSession?.bind(listener);
      return watchKvBucket(options.nc, bucket, (key, data, revision) => {
        if (key.startsWith(SESSION_PREFIX)) {
          // Every instance sees every write, its own included (a create offers its entry locally, then the
          // projection writes the same one): an entry the listener already holds would change nothing,
          // so its position (all the writer needs, as readKnown) is read without decoding it.
          if (holds !== undefined) {
            const position = trailingPosition(data);
            if (position !== undefined && holds(key.slice(SESSION_PREFIX.length), position)) {
              writer.observe(key, revision, position);
              return;
            }
          }
          const entry = decodeSession(data);
          if (!entry) return;
          writer.observe(key, revision, entry.position);
          listener.onSession(entry);
        } else if (key.startsWith(USER_PREFIX)) {
          const entry = decodeUser(data);
          if (!entry) return;
          writer.observe(key, revision, entry.position);
          listener.onUser(entry);
        }
      });
    },
    async getCheckpoint(name) {
      const data = await readValue(options.nc, kv, checkpointKey(name));
      const parsed = data ? parseJson(data) : undefined;
      const position = (parsed as { position?: unknown } | undefined)?.position;
      return typeof position === "number" ? position : 0;
    },
    async setCheckpoint(name, position) {
      await kv.put(checkpointKey(name), JSON.stringify({ position }));
    },
  };
}

function checkpointKey(name: string): string {
  if (!KEY_TOKEN.test(name))
    throw new Error(`validation store: invalid checkpoint name ${JSON.stringify(name)}`);
  return `${CHECKPOINT_PREFIX}${name}`;
}

type Known = { revision: number; position: number };

function createPositionedWriter(kv: KV) {
  // Insertion-ordered, so the first key is the least recently written one.
  const known = new Map<string, Known>();
  const remember = (key: string, value: Known) => {
    known.delete(key);
    if (known.size >= MAX_KNOWN_REVISIONS) {
      const oldest = known.keys().next();
      if (!oldest.done) known.delete(oldest.value);
    }
    known.set(key, value);
  };

  const readKnown = async (key: string): Promise<Known | undefined> => {
    const entry = await kv.get(key);
    if (entry?.operation !== "PUT") return undefined;
    const parsed = parseJson(entry.value) as { position?: unknown } | undefined;
    // An unreadable value is treated as older than anything, so a correct entry replaces it.
    const position = typeof parsed?.position === "number" ? parsed.position : -1;
    return { revision: entry.revision, position };
  };

  const put = async (key: string, position: number, data: string, likelyStored = false): Promise<void> => {
    let current = known.get(key) ?? (likelyStored ? await readKnown(key) : undefined);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      if (current && current.position >= position) return;
      try {
        const revision = current ? await kv.update(key, data, current.revision) : await kv.create(key, data);
        remember(key, { revision, position });
        return;
      } catch (error) {
        if (!isRevisionConflict(error)) throw error;
        current = await readKnown(key);
        if (current) remember(key, current);
        else known.delete(key);
      }
    }
    throw new Error(
      `validation store: gave up writing ${key} after ${MAX_CAS_ATTEMPTS} conflicting attempts`,
    );
  };
  /**
   * A value seen through the watch. Remembering its revision lets this process's next write of the key
   * (an ending written through by an instance that does not run the projection) be one CAS update instead
   * of a read and an update. Never moves a known revision back: the watch may lag this process's writes.
   * A revision that is stale by the time of the write meets a conflict, and the write reads and retries.
   */
  const observe = (key: string, revision: number, position: number) => {
    const current = known.get(key);
    if (current !== undefined && current.revision >= revision) return;
    remember(key, { revision, position });
  };
  return { put, observe, forget: (key: string) => known.delete(key) };
}

export function isRevisionConflict(error: unknown): boolean {
  return error instanceof JetStreamApiError && (error.code === 10071 || error.code === 10164);
}

/**
 * A read fails as DependencyUnavailableError when NATS is away (validation answers 503, not 500), and at
 * once while the connection is known to be down rather than after the client's 5 s request timeout.
 */
async function readValue(nc: NatsConnection, kv: KV, key: string): Promise<Uint8Array | undefined> {
  if (!isNatsConnected(nc)) throw natsDown("validation store");
  const entry = await kv.get(key).catch((error: unknown) => {
    throw natsFailure("validation store", error);
  });
  return entry && entry.operation === "PUT" ? entry.value : undefined;
}

const decoder = new TextDecoder();

function parseJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
}

function decodeSession(data: Uint8Array | undefined): ValidationEntry | undefined {
  if (!data) return undefined;
  const value = parseJson(data);
  return isValidationEntryLike(value) ? compactValidationEntry(value) : undefined;
}

function decodeUser(data: Uint8Array | undefined): UserValidationEntry | undefined {
  if (!data) return undefined;
  const value = parseJson(data);
  return isUserValidationEntryLike(value) ? compactUserValidationEntry(value) : undefined;
}
