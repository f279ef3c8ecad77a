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
