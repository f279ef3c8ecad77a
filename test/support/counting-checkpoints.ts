import { createInMemoryValidationStore } from "../../src/adapters/memory/validation-store.ts";
import type { ValidationStore } from "../../src/app/ports.ts";

/** An in-memory validation store whose checkpoint reads and writes are counted (checkpointed followers). */
export function countingStore() {
  const store = createInMemoryValidationStore();
  const calls = { get: 0, set: 0 };
  const checkpoints: Pick<ValidationStore, "getCheckpoint" | "setCheckpoint"> = {
    getCheckpoint: (name) => {
      calls.get++;
      return store.getCheckpoint(name);
    },
    setCheckpoint: (name, position) => {
      calls.set++;
      return store.setCheckpoint(name, position);
    },
  };
  return { store, checkpoints, calls };
}
