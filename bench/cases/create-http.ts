import type { Benchmark } from "../lib/bench.ts";
import { compareHttp, cpuNote } from "../lib/compare-http.ts";
import { withEnvironment } from "../lib/environment.ts";
import { BENCH_ADMIN_KEY, startBareFastify, startTesseraProcess, tesseraEnv } from "../lib/processes.ts";
import { measureProjectionLag } from "../lib/projection-lag.ts";
import { formatNumber, judge, type Target } from "../lib/report.ts";
import { createSessionsOverHttp } from "../lib/sessions.ts";

const USERS = 200;
const TARGET: Target = { kind: "min-ratio", value: 0.5 };

/**
 * Issue 2: POST /v1/sessions with x-admin-key (decide, append to JetStream with the expected version,
 * answer with the token) against a bare Fastify POST answering the same shape. Every request creates a
 * real session; the Postgres and KV projections run in the same process, as in production.
 */
export const createHttp: Benchmark = {
  name: "create-http",
  issue: 2,
  description: "POST /v1/sessions (x-admin-key) vs a bare Fastify POST returning the same JSON shape",
  run: (options) =>
    withEnvironment("createhttp", async (env) => {
      const [tessera, bare] = await Promise.all([
        startTesseraProcess(
          "tessera",
          tesseraEnv({ prefix: env.prefix, natsUrl: env.natsUrl, databaseUrl: env.database.url }),
        ),
        startBareFastify(),
      ]);
      env.defer(() => tessera.stop());
      env.defer(() => bare.stop());
      await createSessionsOverHttp(tessera.url, 1, { users: 1 });

      const bodies = Array.from({ length: USERS }, (_, i) =>
        JSON.stringify({ user_id: `bench-user-${i}`, roles: ["user"], metadata: { source: "bench" } }),
      );
      const comparison = await compareHttp(options, {
        subject: {
          url: tessera.url,
          requests: bodies.map((body) => ({
            method: "POST",
            path: "/v1/sessions",
            headers: { "x-admin-key": BENCH_ADMIN_KEY },
            body,
          })),
          expectStatus: 201,
          serverPid: tessera.pid,
        },
        baseline: {
          url: bare.url,
          requests: bodies.map((body) => ({
            method: "POST",
            path: "/sessions",
            headers: { "x-admin-key": BENCH_ADMIN_KEY },
            body,
          })),
          expectStatus: 201,
          serverPid: bare.pid,
        },
      });
      const lag = await measureProjectionLag(env);
      const behind = Object.entries(lag.behind)
        .map(([name, events]) => `${name} ${events}`)
        .join(", ");
      return [
        {
          bench: "create-http",
          title: `POST /v1/sessions with x-admin-key, ${USERS} users round-robin`,
          subject: {
            value: comparison.subjectRate,
            unit: "req/s",
            label: "Tessera",
            detail: comparison.subjectDetail,
          },
          baseline: {
            value: comparison.baselineRate,
            unit: "req/s",
            label: "bare Fastify POST, same JSON shape",
            detail: comparison.baselineDetail,
          },
          ratio: comparison.ratio,
          target: TARGET,
          pass: judge(TARGET, comparison.subjectRate, comparison.ratio),
          notes: [
            ...cpuNote(
              comparison,
              "; the NATS server and Postgres work in their own processes and is not counted",
            ),
            `when the load stopped (log at position ${formatNumber(lag.lastPosition)}) the Postgres projections were behind by: ${behind} events; caught up ${formatNumber(lag.catchUpMs)} ms later`,
          ],
        },
      ];
    }),
};
