import type { SessionSlotStore, Slot, SlotList } from "../../app/session-limit.ts";

/** Embedded mode's slot lists: the same compare-and-set contract as the NATS KV bucket. */
export function createInMemorySessionSlotStore(): SessionSlotStore {
  const lists = new Map<string, SlotList>();
  return {
    async read(userId) {
      const list = lists.get(userId);
      return list ? { slots: [...list.slots], revision: list.revision } : { slots: [], revision: 0 };
    },
    async write(userId, slots: Slot[], expectedRevision) {
      const current = lists.get(userId)?.revision ?? 0;
      if (current !== expectedRevision) return false;
      lists.set(userId, { slots: [...slots], revision: current + 1 });
      return true;
    },
  };
}
