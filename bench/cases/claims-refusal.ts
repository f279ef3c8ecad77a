import type { Benchmark } from "../lib/bench.ts";
import { moduleExists } from "../lib/bench.ts";
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
import type { Target } from "../lib/report.ts";
import { createSessionsOverHttp } from "../lib/sessions.ts";

const TRIALS = 100;

/** Why a claims benchmark cannot run yet, or undefined once the claims route and the process manager exist. */
export async function recyclingUnavailable(): Promise<string | undefined> {
  return (await moduleExists("src/adapters/http/routes/recycle.ts")) &&
    (await moduleExists("src/app/recycle-process-manager.ts"))
    ? undefined
    : "the claims route and the recycling process manager are not in the tree yet";
}
const WARMUP = 10;
const TARGET: Target = { kind: "none" };

/**
 * Issue 5: a claims change on instance A (`PUT /v1/users/{id}/claims`: UserClaimsChanged, then the
 * recycling process manager recycles the user's sessions) until instance B refuses the user's session
 * token from memory. One user with one session per trial.
 */
export const claimsRefusal: Benchmark = {
  name: "claims-refusal",
  issue: 5,
  description: "PUT /v1/users/{id}/claims on instance A until instance B refuses the user's token (p50/p99)",
  unavailable: recyclingUnavailable,
  run: (options) =>
    withEnvironment("claims", async (env) => {
      const { a, b } = await twoInstances(env);
      const trials = Math.max(30, Math.round(TRIALS * options.scale));
      // One user per trial: each trial's change must find its user with the claims it started with.
      const sessions = await createSessionsOverHttp(a.url, trials + WARMUP, {
        users: trials + WARMUP,
        concurrency: 16,
        userPrefix: "claims-user-",
      });
      await untilKnownToB(b, sessions);

      const measured: Trial[] = [];
      for (const [i, session] of sessions.entries()) {
        const trial = await timeUntilRefused(b, session, async () => {
          const response = await httpJson(
            `${a.url}/v1/users/${encodeURIComponent(session.userId)}/claims`,
            "PUT",
            {
              headers: { "x-admin-key": BENCH_ADMIN_KEY },
              body: { roles: ["viewer"], groups: [] },
            },
          );
          if (response.status !== 200) throw new Error(`PUT claims answered ${response.status}`);
        });
        if (i >= WARMUP) measured.push(trial);
      }
      const holder = await leaseHolder(env.prefix, "validation");
      return [
        latencyResult({
          bench: "claims-refusal",
          title: `claims change on instance A → instance B refuses the user's token, ${measured.length} trials`,
          trials: measured,
          target: TARGET,
          action: "PUT claims",
          notes: [`validation projection lease held by ${holder} (A = bench-a, B = bench-b)`],
        }),
      ];
    }),
};
