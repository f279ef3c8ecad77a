import type { Benchmark, BenchOptions } from "../lib/bench.ts";
import { compareHttp, comparisonResult, cpuNote } from "../lib/compare-http.ts";
import { type BenchEnvironment, withEnvironment } from "../lib/environment.ts";
import { processCpuMs } from "../lib/http.ts";
import {
  BENCH_ADMIN_KEY,
  type ChildServer,
  startBareFastify,
  startTesseraProcess,
  tesseraEnv,
} from "../lib/processes.ts";
import { measureProjectionLag } from "../lib/projection-lag.ts";
import { leaseHolder } from "../lib/propagation.ts";
import { formatNumber, type Result, type Target } from "../lib/report.ts";
import { createSessionsOverHttp } from "../lib/sessions.ts";

const USERS = 200;
const TARGET: Target = { kind: "min-ratio", value: 0.5 };
const INFO: Target = { kind: "none" };
/** The projections that run under leases; the second topology waits until the other instance holds them. */
const PROJECTIONS = ["validation", "sessions", "audit", "recycle"];

/**
 * Issue 2: POST /v1/sessions with x-admin-key (decide, append to JetStream with the expected version,
 * answer with the token) against a bare Fastify POST answering the same shape. Every request creates a
 * real session. Two topologies: one instance that serves the requests and runs every projection (the
 * judged figure: a single-instance deployment, everything a create causes paid by the measured process),
 * and the serving instance of a pair whose other instance holds the projection leases (what each instance
 * of a cluster pays per create it serves; the projection work is then done once, elsewhere). A third row
 * measures the durable floor: the bare route plus one acknowledged JetStream append.
 */
export const createHttp: Benchmark = {
  name: "create-http",
  issue: 2,
  description: "POST /v1/sessions (x-admin-key) vs a bare Fastify POST returning the same JSON shape",
  run: async (options) => {
    const [single, floor] = await withEnvironment("createhttp", async (env) => {
      const tessera = await startTessera(env, "tessera");
      const judged = await measure(
        options,
        env,
        tessera,
        "one instance, which also runs every projection",
        TARGET,
      );
      await tessera.stop();
      return [judged, await measureDurableFloor(options, env)];
    });
    const pair = await withEnvironment("createpair", async (env) => {
      const holder = await startTessera(env, "tessera-projections");
      await untilHolding(env, "tessera-projections");
      const serving = await startTessera(env, "tessera-serving");
      return measure(
        options,
        env,
        serving,
        "the serving instance of two; the other holds the projection leases",
        INFO,
        holder,
      );
    });
    return [single, pair, floor];
  },
};

/**
 * The ceiling of the issue's create ratio for any service that appends durably before answering: the
 * bare route, plus one JetStream append of a SessionCreated acknowledged before the answer (no token, no
 * decision, no projections), against the bare route itself, in one process on the same machine.
 */
async function measureDurableFloor(options: BenchOptions, env: BenchEnvironment): Promise<Result> {
  const bare = await startBareFastify({ natsUrl: env.natsUrl, stream: `${env.prefix}_FLOOR` });
  env.defer(() => bare.stop());
  const comparison = await compareHttp(options, {
    subject: {
      url: bare.url,
      requests: requests("/sessions-durable"),
      expectStatus: 201,
      serverPid: bare.pid,
    },
    baseline: { url: bare.url, requests: requests("/sessions"), expectStatus: 201, serverPid: bare.pid },
  });
  return comparisonResult({
    bench: "create-http",
    title:
      "the durable floor: a bare Fastify POST that appends one SessionCreated to JetStream (acknowledged) before answering",
    comparison,
    subjectLabel: "bare Fastify + append",
    baselineLabel: "the same bare Fastify POST without the append",
    target: INFO,
    notes: [
      ...cpuNote(comparison, "; the NATS server's work is in its own process and is not counted", {
        subject: "with the append",
        baseline: "without",
      }),
      "no create that appends durably before it answers can have a higher ratio to the bare route on this machine",
    ],
  });
}

/** One create per user, round-robin, as an admin (the same requests for Tessera and the baselines). */
const BODIES = Array.from({ length: USERS }, (_, i) =>
  JSON.stringify({ user_id: `bench-user-${i}`, roles: ["user"], metadata: { source: "bench" } }),
);
const requests = (path: string) =>
  BODIES.map((body) => ({
    method: "POST" as const,
    path,
    headers: { "x-admin-key": BENCH_ADMIN_KEY },
    body,
  }));

async function startTessera(env: BenchEnvironment, name: string): Promise<ChildServer> {
  const server = await startTesseraProcess(
    name,
    tesseraEnv({
      prefix: env.prefix,
      natsUrl: env.natsUrl,
      databaseUrl: env.database.url,
      extra: { TESSERA_INSTANCE_ID: name },
    }),
  );
  env.defer(() => server.stop());
  return server;
}

async function untilHolding(env: BenchEnvironment, holder: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const holders = await Promise.all(PROJECTIONS.map((name) => leaseHolder(env.prefix, name)));
    if (holders.every((h) => h === holder)) return;
    if (Date.now() > deadline) throw new Error(`${holder} does not hold every projection lease: ${holders}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function measure(
  options: BenchOptions,
  env: BenchEnvironment,
  tessera: ChildServer,
  topology: string,
  target: Target,
  projectionsElsewhere?: ChildServer,
): Promise<Result> {
  const bare = await startBareFastify();
  env.defer(() => bare.stop());
  await createSessionsOverHttp(tessera.url, 1, { users: 1 });

  const elsewherePid = projectionsElsewhere?.pid;
  const cpuBefore = elsewherePid === undefined ? undefined : await processCpuMs(elsewherePid);
  const comparison = await compareHttp(options, {
    subject: {
      url: tessera.url,
      requests: requests("/v1/sessions"),
      expectStatus: 201,
      serverPid: tessera.pid,
    },
    baseline: { url: bare.url, requests: requests("/sessions"), expectStatus: 201, serverPid: bare.pid },
  });
  const lag = await measureProjectionLag(env);
  const cpuAfter = elsewherePid === undefined ? undefined : await processCpuMs(elsewherePid);
  const elsewhere =
    cpuBefore !== undefined && cpuAfter !== undefined
      ? `the instance holding the projections used ${formatNumber(((cpuAfter - cpuBefore) * 1000) / lag.lastPosition)} µs CPU per event in the log over the run (warm-ups and catch-up included)`
      : undefined;
  const behind = Object.entries(lag.behind)
    .map(([name, events]) => `${name} ${events}`)
    .join(", ");
  return comparisonResult({
    bench: "create-http",
    title: `POST /v1/sessions with x-admin-key, ${USERS} users round-robin: ${topology}`,
    comparison,
    baselineLabel: "bare Fastify POST, same JSON shape",
    target,
    notes: [
      ...cpuNote(comparison, "; the NATS server and Postgres work in their own processes and is not counted"),
      `when the load stopped (log at position ${formatNumber(lag.lastPosition)}) the Postgres projections were behind by: ${behind} events; caught up ${formatNumber(lag.catchUpMs)} ms later`,
      ...(elsewhere ? [elsewhere] : []),
    ],
  });
}
