import { httpJson } from "./http.ts";
import { BENCH_ADMIN_KEY } from "./processes.ts";

export type CreatedSession = { id: string; token: string; userId: string };

/** Runs `count` tasks with at most `concurrency` in flight. */
export async function pool<T>(count: number, concurrency: number, task: (i: number) => Promise<T>) {
  const results: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

/**
 * Sessions created through the public API with the admin key, spread over `users` users named
 * `<userPrefix><n>` (a benchmark that changes a user's state per trial picks a fresh prefix each time).
 */
export async function createSessionsOverHttp(
  baseUrl: string,
  count: number,
  options: { users?: number; concurrency?: number; userPrefix?: string } = {},
): Promise<CreatedSession[]> {
  const users = options.users ?? 100;
  const userPrefix = options.userPrefix ?? "bench-user-";
  return pool(count, options.concurrency ?? 32, async (i) => {
    const userId = `${userPrefix}${i % users}`;
    const response = await httpJson(`${baseUrl}/v1/sessions`, "POST", {
      headers: { "x-admin-key": BENCH_ADMIN_KEY },
      body: { user_id: userId, roles: ["user"] },
    });
    const body = response.body as { session?: { id?: string }; token?: string };
    if (response.status !== 201 || !body.token || !body.session?.id) {
      throw new Error(`create failed: ${response.status} ${JSON.stringify(response.body).slice(0, 300)}`);
    }
    return { id: body.session.id, token: body.token, userId };
  });
}
