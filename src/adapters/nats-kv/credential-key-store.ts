import { jetstream, StorageType } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { WrappedKey } from "../../app/credential-crypto.ts";
import type { CredentialKeyStore, StoredKey } from "../../app/credential-vault.ts";
import { natsFailure } from "../jetstream/unavailable.ts";
import { isRevisionConflict } from "./validation-store.ts";

/**
 * Wrapped session data keys in the NATS KV bucket `<prefix>_credential_keys`, keyed by session id (a UUID
 * is a valid key). History 1 and file storage: a purge removes the value and every earlier revision from
 * the stream, leaving only a purge marker (no key material), which `compact` drops once it is old.
 */

export const credentialKeysBucketName = (prefix: string) => `${prefix}_credential_keys`;

export async function createKvCredentialKeyStore(options: {
  nc: NatsConnection;
  prefix: string;
  replicas?: number | undefined;
}): Promise<CredentialKeyStore> {
  const kv: KV & { purgeDeletes?: (olderMillis?: number) => Promise<unknown> } = await new Kvm(
    jetstream(options.nc),
  ).create(credentialKeysBucketName(options.prefix), {
    history: 1,
    storage: StorageType.File,
    replicas: options.replicas ?? 1,
  });
  const unavailable = (error: unknown) => {
    throw natsFailure("credential key store", error);
  };

  const read = async (sessionId: string): Promise<StoredKey | undefined> => {
    const entry = await kv.get(sessionId).catch(unavailable);
    if (entry === null || entry.operation !== "PUT") return undefined;
    const wrapped = decode(entry.value);
    return wrapped === undefined ? undefined : { wrapped, revision: entry.revision };
  };
  const get = async (sessionId: string) => (await read(sessionId))?.wrapped;

  return {
    async put(sessionId, wrapped) {
      await kv.put(sessionId, JSON.stringify(wrapped)).catch(unavailable);
    },
    get,
    read,
    async update(sessionId, wrapped, revision) {
      // Expected-last-subject-sequence: after a purge the subject's last message is the purge marker (or
      // nothing, once compacted), never `revision`, so a purged key stays purged.
      try {
        await kv.update(sessionId, JSON.stringify(wrapped), revision);
        return true;
      } catch (error) {
        if (isRevisionConflict(error)) return false;
        throw natsFailure("credential key store", error);
      }
    },
    async purge(sessionId) {
      if ((await get(sessionId)) === undefined) return false;
      await kv.purge(sessionId).catch(unavailable);
      return true;
    },
    async sessionIds() {
      const ids: string[] = [];
      for await (const key of await kv.keys().catch(unavailable)) ids.push(key);
      return ids;
    },
    async compact(olderThanMs) {
      await kv.purgeDeletes?.(olderThanMs).catch(unavailable);
    },
  };
}

const decoder = new TextDecoder();

function decode(data: Uint8Array): WrappedKey | undefined {
  try {
    const value = JSON.parse(decoder.decode(data)) as Partial<WrappedKey>;
    const { kid, iv, key, tag, at } = value;
    return typeof kid === "string" &&
      typeof iv === "string" &&
      typeof key === "string" &&
      typeof tag === "string" &&
      typeof at === "number"
      ? { kid, iv, key, tag, at }
      : undefined;
  } catch {
    return undefined;
  }
}
