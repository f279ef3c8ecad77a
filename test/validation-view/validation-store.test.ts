import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll } from "vitest";
import { createInMemoryValidationStore } from "../../src/adapters/memory/validation-store.ts";
import { createKvValidationStore } from "../../src/adapters/nats-kv/validation-store.ts";
import type { ValidationStore } from "../../src/app/ports.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";
import { describeValidationStoreContract, type StoreHarness } from "./store-contract.ts";

const prefix = uniquePrefix("vvs");
let nc: NatsConnection;
let peerNc: NatsConnection;
let buckets = 0;
const prefixOf = new WeakMap<ValidationStore, string>();

beforeAll(async () => {
  nc = await connectNats();
  peerNc = await connectNats();
});

afterAll(async () => {
  await removeNatsPrefix(nc, prefix);
  await peerNc?.close();
  await nc?.close();
});

describeValidationStoreContract(
  "NATS KV",
  (): StoreHarness => ({
    async open() {
      // A bucket per test keeps the watch tests' "everything current" exact; all share the file's prefix.
      const storePrefix = `${prefix}b${++buckets}`;
      const store = await createKvValidationStore({ nc, prefix: storePrefix });
      prefixOf.set(store, storePrefix);
      return store;
    },
    async openPeer(store) {
      const storePrefix = prefixOf.get(store);
      if (!storePrefix) throw new Error("unknown store");
      return createKvValidationStore({ nc: peerNc, prefix: storePrefix });
    },
  }),
);

describeValidationStoreContract(
  "in-memory",
  (): StoreHarness => ({
    open: async () => createInMemoryValidationStore(),
    openPeer: async (store) => store,
  }),
);
