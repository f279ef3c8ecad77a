import type { Benchmark } from "../lib/bench.ts";
import { moduleExists } from "../lib/bench.ts";
import { withEnvironment } from "../lib/environment.ts";
import { httpJson } from "../lib/http.ts";
import { BENCH_ADMIN_KEY } from "../lib/processes.ts";
import { twoInstances, untilKnownToB } from "../lib/propagation.ts";
import { formatNumber, judge, type Target } from "../lib/report.ts";
import { type CreatedSession, pool } from "../lib/sessions.ts";
import { percentile } from "../lib/stats.ts";

const SESSIONS = 200;
const TTL_SECONDS = 2;
const TARGET: Target = { kind: "none" };

/**
 * Issue 4: how late the scheduler ends a session after its deadline. Sessions with a 2 s lifetime are
 * created on instance A; the figure is the time from each session's `expires_at` until instance B's
 * replica holds it as expired (tick → scheduler → SessionExpired → KV projection → watch). Validation
 * itself refuses at the deadline whatever the scheduler does; this is how long the log and read models
 * lag behind it.
 */
export const expiryLateness: Benchmark = {
  name: "expiry-lateness",
  issue: 4,
  description: "from a session's expires_at until another instance holds it as expired (p50/p99)",
  unavailable: async () =>
    (await moduleExists("src/app/expiry-scheduler.ts"))
      ? undefined
      : "the expiry scheduler is not in the tree yet",
  run: (options) =>
    withEnvironment("expiry", async (env) => {
      const { a, b } = await twoInstances(env);
      const count = Math.max(50, Math.round(SESSIONS * options.scale));
      const sessions: CreatedSession[] = await pool(count, 32, async (i) => {
        const userId = `expiry-user-${i % 50}`;
        const response = await httpJson(`${a.url}/v1/sessions`, "POST", {
          headers: { "x-admin-key": BENCH_ADMIN_KEY },
          body: { user_id: userId, ttl_seconds: TTL_SECONDS },
        });
        const body = response.body as { session?: { id?: string }; token?: string };
        if (response.status !== 201 || !body.token || !body.session?.id) {
          throw new Error(
            `create answered ${response.status}: ${JSON.stringify(response.body).slice(0, 300)}`,
          );
        }
        return { id: body.session.id, token: body.token, userId };
      });
      await untilKnownToB(b, sessions);

      const lateness = await Promise.all(
        sessions.map(async (session) => {
          const deadline = Date.now() + 30_000;
          for (;;) {
            const entry = b.replica.getSession(session.id);
            if (entry && entry.status !== "active") return Date.now() - entry.expiresAt;
            if (Date.now() > deadline) throw new Error(`${session.id} was not expired 30 s after creation`);
            await b.replica.waitForSession(session.id, (entry?.position ?? 0) + 1, 1_000);
          }
        }),
      );
      const p99 = percentile(lateness, 99);
      const ms = (p: number) => formatNumber(percentile(lateness, p));
      return [
        {
          bench: "expiry-lateness",
          title: `expires_at → expired in another instance's memory, ${count} sessions with a ${TTL_SECONDS} s lifetime`,
          subject: {
            value: p99,
            unit: "ms p99",
            label: "Tessera",
            detail: `p50 ${ms(50)} ms, p90 ${ms(90)} ms, p99 ${ms(99)} ms, max ${formatNumber(Math.max(...lateness))} ms (ticks are one per second, so up to ~1 s is by design)`,
          },
          target: TARGET,
          pass: judge(TARGET, p99, undefined),
          notes: [],
        },
      ];
    }),
};
