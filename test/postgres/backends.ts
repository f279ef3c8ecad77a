import { afterAll, beforeAll } from "vitest";
import { type DatabaseHandle, openDatabase } from "../../src/adapters/postgres/database.ts";
import { createTestDatabase } from "../support/services.ts";

/** The two databases the read model runs on: a fresh real Postgres database, and in-memory PGlite. */
export type Backend = { name: string; open(): Promise<{ handle: DatabaseHandle; dispose(): Promise<void> }> };

export const backends: Backend[] = [
  {
    name: "postgres",
    async open() {
      const database = await createTestDatabase("tessera_rm");
      const handle = await openDatabase({ url: database.url, poolSize: 4 });
      return {
        handle,
        async dispose() {
          await handle.close();
          await database.drop();
        },
      };
    },
  },
  {
    name: "pglite",
    async open() {
      const handle = await openDatabase({ embedded: true });
      return { handle, dispose: () => handle.close() };
    },
  },
];

/**
 * Opens `backend` before the enclosing describe's tests and disposes of it after them; `onOpen` gets the
 * handle (to keep its `db`, build read models on it).
 */
export function useBackend(backend: Backend, onOpen: (handle: DatabaseHandle) => void): void {
  let dispose: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const opened = await backend.open();
    dispose = opened.dispose;
    onOpen(opened.handle);
  });
  afterAll(async () => {
    await dispose?.();
  });
}
