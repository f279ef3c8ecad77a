import type { Benchmark } from "../lib/bench.ts";
import { withEnvironment } from "../lib/environment.ts";
import { httpJson } from "../lib/http.ts";
import { BENCH_ADMIN_KEY } from "../lib/processes.ts";
import {
  latencyResult,
  leaseHolder,
  type Trial,
  timeUntilRefused,
  twoInstances,
  untilKnownToB,
} from "../lib/propagation.ts";
import { formatNumber, type Target } from "../lib/report.ts";
import { createSessionsOverHttp } from "../lib/sessions.ts";
import { percentile } from "../lib/stats.ts";

const TRIALS = 200;
const WARMUP = 20;
const TARGET: Target = { kind: "max", value: 10, unit: "ms p99" };

/**
 * Issue 2: revocation between two instances. `DELETE /v1/sessions/{id}` goes to instance A; the clock runs
 * from sending it until instance B refuses the token from memory. No baseline has a meaning here: the
 * figure is an absolute latency, judged at p99 over 200 trials.
 */
export const revocation: Benchmark = {
  name: "revocation",
  issue: 2,
  description: "invalidate on instance A until instance B's validateFromMemory refuses (p50/p99)",
  run: (options) =>
    withEnvironment("revocation", async (env) => {
      const { a, b } = await twoInstances(env);
      const trials = Math.max(50, Math.round(TRIALS * options.scale));
      const sessions = await createSessionsOverHttp(a.url, trials + WARMUP, { users: 50 });
      await untilKnownToB(b, sessions);

      const measured: Trial[] = [];
      for (const [i, session] of sessions.entries()) {
        const trial = await timeUntilRefused(b, session, async () => {
          const response = await httpJson(`${a.url}/v1/sessions/${session.id}`, "DELETE", {
            headers: { "x-admin-key": BENCH_ADMIN_KEY },
          });
          if (response.status !== 200) throw new Error(`DELETE answered ${response.status}`);
        });
        if (i >= WARMUP) measured.push(trial);
      }
      const holder = await leaseHolder(env.prefix, "validation");
      const refused = measured.map((t) => t.refusedMs);
      options.log(
        `  refused on B after p50 ${formatNumber(percentile(refused, 50))} ms, p99 ${formatNumber(percentile(refused, 99))} ms (validation projection lease: ${holder})`,
      );
      return [
        latencyResult({
          bench: "revocation",
          title: `DELETE on instance A → instance B refuses from memory, ${measured.length} trials`,
          trials: measured,
          target: TARGET,
          action: "DELETE",
          notes: [`validation projection lease held by ${holder} (A = bench-a, B = bench-b)`],
        }),
      ];
    }),
};
