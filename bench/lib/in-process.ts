import { loadConfig } from "../../src/config.ts";
import { createTessera, type Tessera } from "../../src/main.ts";
import type { BenchEnvironment } from "./environment.ts";
import { BENCH_ADMIN_KEY, tesseraEnv } from "./processes.ts";
import { type CreatedSession, pool } from "./sessions.ts";

/**
 * A distributed Tessera instance inside the bench process, for in-process figures (memory lookups,
 * propagation into this instance's replica). Wired exactly as `npm start` wires it.
 */
export async function startInProcess(
  env: BenchEnvironment,
  extra: Record<string, string> = {},
): Promise<Tessera> {
  const config = loadConfig(
    tesseraEnv({ prefix: env.prefix, natsUrl: env.natsUrl, databaseUrl: env.database.url, extra }),
  );
  const tessera = await createTessera(config);
  env.defer(() => tessera.close());
  return tessera;
}

/** Sessions created through the REST contract (app.inject: no socket), spread over `users` users. */
export async function createSessionsInProcess(
  tessera: Tessera,
  count: number,
  options: { users?: number; concurrency?: number } = {},
): Promise<CreatedSession[]> {
  const users = options.users ?? 100;
  return pool(count, options.concurrency ?? 64, async (i) => {
    const userId = `bench-user-${i % users}`;
    const response = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: { "x-admin-key": BENCH_ADMIN_KEY },
      payload: { user_id: userId, roles: ["user"] },
    });
    const body = response.json() as { session?: { id?: string }; token?: string };
    if (response.statusCode !== 201 || !body.token || !body.session?.id) {
      throw new Error(`create failed: ${response.statusCode} ${response.body.slice(0, 300)}`);
    }
    return { id: body.session.id, token: body.token, userId };
  });
}
