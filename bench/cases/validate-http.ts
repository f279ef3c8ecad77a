import type { Benchmark } from "../lib/bench.ts";
import { compareHttp, comparisonResult, cpuNote } from "../lib/compare-http.ts";
import { withEnvironment } from "../lib/environment.ts";
import { httpJson } from "../lib/http.ts";
import { type ChildServer, startBareFastify, startTesseraProcess, tesseraEnv } from "../lib/processes.ts";
import type { Target } from "../lib/report.ts";
import { createSessionsOverHttp } from "../lib/sessions.ts";

const TOKENS = 1_000;
const TARGET: Target = { kind: "min-ratio", value: 0.9 };
const INFO: Target = { kind: "none" };

/** Issue 2: POST /v1/sessions/validate (distributed mode) against a bare Fastify route answering the same shape. */
export const validateHttp: Benchmark = {
  name: "validate-http",
  issue: 2,
  description:
    "POST /v1/sessions/validate with a valid token vs a bare Fastify POST returning the same JSON shape",
  run: (options) =>
    withEnvironment("validatehttp", async (env) => {
      const [tessera, bare] = await Promise.all([
        startTesseraProcess(
          "tessera",
          tesseraEnv({ prefix: env.prefix, natsUrl: env.natsUrl, databaseUrl: env.database.url }),
        ),
        startBareFastify(),
      ]);
      env.defer(() => tessera.stop());
      env.defer(() => bare.stop());

      options.log(`  creating ${TOKENS} sessions`);
      const sessions = await createSessionsOverHttp(tessera.url, TOKENS);
      const check = await httpJson(`${tessera.url}/v1/sessions/validate`, "POST", {
        body: { token: sessions[0]?.token },
      });
      if (check.status !== 200)
        throw new Error(`validate answered ${check.status}: ${JSON.stringify(check.body)}`);

      const bodies = sessions.map((s) => JSON.stringify({ token: s.token }));
      const against = (server: ChildServer, warmupSeconds?: number) =>
        compareHttp(
          options,
          {
            subject: {
              url: server.url,
              requests: bodies.map((body) => ({ method: "POST", path: "/v1/sessions/validate", body })),
              expectStatus: 200,
              serverPid: server.pid,
            },
            baseline: {
              url: bare.url,
              requests: bodies.map((body) => ({ method: "POST", path: "/validate", body })),
              expectStatus: 200,
              serverPid: bare.pid,
            },
          },
          { warmupSeconds },
        );
      const comparison = await against(tessera);
      // The same requests through the Fastify route alone (what the fast path saves), on a fresh instance
      // of the same deployment: its view of the sessions comes from the KV bucket.
      await tessera.stop();
      const fastifyOnly = await startTesseraProcess(
        "tessera-fastify-route",
        tesseraEnv({
          prefix: env.prefix,
          natsUrl: env.natsUrl,
          databaseUrl: env.database.url,
          extra: { TESSERA_HTTP_FAST_VALIDATE: "false" },
        }),
      );
      env.defer(() => fastifyOnly.stop());
      // A fresh process: a longer warm-up (JIT, its session cache, taking over the projection leases).
      const routeOnly = await against(fastifyOnly, 8);
      return [
        comparisonResult({
          bench: "validate-http",
          title: `POST /v1/sessions/validate, ${TOKENS} valid tokens round-robin`,
          comparison,
          baselineLabel: "bare Fastify POST, same JSON shape",
          target: TARGET,
          notes: cpuNote(comparison),
        }),
        comparisonResult({
          bench: "validate-http",
          title: `the same, through the Fastify route only (TESSERA_HTTP_FAST_VALIDATE=false)`,
          comparison: routeOnly,
          baselineLabel: "bare Fastify POST, same JSON shape",
          target: INFO,
          notes: cpuNote(routeOnly),
        }),
      ];
    }),
};
