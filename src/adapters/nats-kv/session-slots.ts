import { jetstream, StorageType } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { SessionSlotStore, Slot } from "../../app/session-limit.ts";
import { isRevisionConflict } from "./validation-store.ts";

/**
 * Per-user slot lists of the concurrent-session limit in a NATS KV bucket `<prefix>_slots`, one key per
 * user (`u.<base64url(userId)>`). Writes are create/update at the revision that was read, so the bucket
 * serialises racing reservations from every instance.
 */
export async function createKvSessionSlotStore(options: {
  nc: NatsConnection;
  prefix: string;
  replicas?: number;
}): Promise<SessionSlotStore> {
  const kv = await new Kvm(jetstream(options.nc)).create(`${options.prefix}_slots`, {
    history: 1,
    storage: StorageType.File,
    replicas: options.replicas ?? 1,
  });
  const keyOf = (userId: string) => `u.${Buffer.from(userId, "utf8").toString("base64url") || "_"}`;

  return {
    async read(userId) {
      const entry = await kv.get(keyOf(userId));
      if (!entry) return { slots: [], revision: 0 };
      // A deleted key still has a revision; writing at it keeps the compare-and-set exact.
      if (entry.operation !== "PUT") return { slots: [], revision: entry.revision };
      return { slots: decode(entry.string()), revision: entry.revision };
    },
    async write(userId, slots, expectedRevision) {
      const data = JSON.stringify(slots);
      try {
        if (expectedRevision === 0) await kv.create(keyOf(userId), data);
        else await kv.update(keyOf(userId), data, expectedRevision);
        return true;
      } catch (error) {
        if (isRevisionConflict(error)) return false;
        throw error;
      }
    },
  };
}

function decode(text: string): Slot[] {
  try {
    const value = JSON.parse(text) as unknown;
    if (!Array.isArray(value)) return [];
    return value.filter(
      (slot): slot is Slot =>
        typeof slot === "object" &&
        slot !== null &&
        typeof (slot as Slot).sessionId === "string" &&
        typeof (slot as Slot).reservedAt === "number",
    );
  } catch {
    return [];
  }
}
