import type { Benchmark } from "../lib/bench.ts";
import { moduleExists } from "../lib/bench.ts";
import { compareHttp, comparisonResult, cpuNote } from "../lib/compare-http.ts";
import { type BenchEnvironment, withEnvironment } from "../lib/environment.ts";
import { httpJson } from "../lib/http.ts";
import {
  BENCH_ADMIN_KEY,
  BENCH_PASSWORD,
  type ChildServer,
  runCli,
  startBareFastify,
  startTesseraProcess,
  tesseraEnv,
} from "../lib/processes.ts";
import type { Target } from "../lib/report.ts";

const USERNAME = "bench-login";

/** Issue 3 benchmarks need the token endpoint and `tessera users`. */
async function authMissing(): Promise<string | undefined> {
  const needed = [
    "src/adapters/http/routes/auth.ts",
    "src/cli-users.ts",
    "src/adapters/postgres/user-directory.ts",
  ];
  for (const path of needed) if (!(await moduleExists(path))) return `${path} is not in the tree yet`;
  return undefined;
}

/** A distributed Tessera process with one password user (created with `tessera users add`). */
async function tesseraWithUser(env: BenchEnvironment): Promise<ChildServer> {
  const vars = tesseraEnv({ prefix: env.prefix, natsUrl: env.natsUrl, databaseUrl: env.database.url });
  const tessera = await startTesseraProcess("tessera", vars);
  env.defer(() => tessera.stop());
  await runCli(["users", "add", USERNAME, "--roles", "user", "--password-stdin"], vars, BENCH_PASSWORD);
  return tessera;
}

const loginBody = `grant_type=password&username=${USERNAME}&password=${BENCH_PASSWORD}&scope=sessions%3Aread%20sessions%3Awrite`;
const form = { "content-type": "application/x-www-form-urlencoded" };

/**
 * Issue 3: password logins per second at the token endpoint (argon2id with Tessera's parameters, a session
 * created and an access JWT signed per login), against a bare Fastify route doing one argon2id verify
 * with the same parameters. argon2 dominates both; the ratio shows what the rest of a login adds.
 */
export const tokenLogin: Benchmark = {
  name: "token-login",
  issue: 3,
  description:
    "POST /v1/auth/token (password grant, argon2id) vs a bare Fastify route doing one argon2id verify",
  unavailable: authMissing,
  run: (options) =>
    withEnvironment("tokenlogin", async (env) => {
      const [tessera, bare] = await Promise.all([tesseraWithUser(env), startBareFastify()]);
      env.defer(() => bare.stop());
      const check = await httpJson(`${tessera.url}/v1/auth/token`, "POST", {
        body: { grant_type: "password", username: USERNAME, password: BENCH_PASSWORD },
      });
      if (check.status !== 200)
        throw new Error(`login answered ${check.status}: ${JSON.stringify(check.body)}`);
      const comparison = await compareHttp(
        options,
        {
          subject: {
            url: tessera.url,
            requests: [{ method: "POST", path: "/v1/auth/token", headers: form, body: loginBody }],
            expectStatus: 200,
            serverPid: tessera.pid,
          },
          baseline: {
            url: bare.url,
            requests: [{ method: "POST", path: "/login", headers: form, body: loginBody }],
            expectStatus: 200,
            serverPid: bare.pid,
          },
        },
        { rounds: 3, seconds: 3, warmupSeconds: 1, connections: 8 },
      );
      const target: Target = { kind: "none" };
      return [
        comparisonResult({
          bench: "token-login",
          title: "password logins at POST /v1/auth/token (argon2id 19 MiB, t=2, p=1)",
          comparison,
          unit: { subject: "logins/s", baseline: "logins/s" },
          baselineLabel: "bare Fastify + one argon2id verify",
          target,
          notes: cpuNote(comparison, "; argon2 runs on the libuv pool, so CPU per login counts every thread"),
        }),
      ];
    }),
};

/**
 * Issue 3: GET /v1/sessions/{id} authenticated with an access JWT (signature check, then the session must
 * be active) against the same request with x-admin-key, on the same server in the same run.
 */
export const jwtGet: Benchmark = {
  name: "jwt-get",
  issue: 3,
  description: "GET /v1/sessions/{id} with a Bearer access JWT vs the same with x-admin-key",
  unavailable: authMissing,
  run: (options) =>
    withEnvironment("jwtget", async (env) => {
      const tessera = await tesseraWithUser(env);
      const login = await httpJson(`${tessera.url}/v1/auth/token`, "POST", {
        body: { grant_type: "password", username: USERNAME, password: BENCH_PASSWORD },
      });
      const body = login.body as { access_token?: string; session_id?: string };
      if (login.status !== 200 || !body.access_token || !body.session_id) {
        throw new Error(`login answered ${login.status}: ${JSON.stringify(login.body)}`);
      }
      const path = `/v1/sessions/${body.session_id}`;
      const viaJwt = await httpJson(`${tessera.url}${path}`, "GET", {
        headers: { authorization: `Bearer ${body.access_token}` },
      });
      if (viaJwt.status !== 200) throw new Error(`GET with the JWT answered ${viaJwt.status}`);
      const comparison = await compareHttp(
        options,
        {
          subject: {
            url: tessera.url,
            requests: [{ method: "GET", path, headers: { authorization: `Bearer ${body.access_token}` } }],
            expectStatus: 200,
            serverPid: tessera.pid,
          },
          baseline: {
            url: tessera.url,
            requests: [{ method: "GET", path, headers: { "x-admin-key": BENCH_ADMIN_KEY } }],
            expectStatus: 200,
            serverPid: tessera.pid,
          },
        },
        { rounds: 3 },
      );
      const target: Target = { kind: "none" };
      return [
        comparisonResult({
          bench: "jwt-get",
          title: "GET /v1/sessions/{id} with a Bearer access JWT (EdDSA)",
          comparison,
          subjectLabel: "Tessera, JWT",
          baselineLabel: "same server and request, x-admin-key",
          target,
          notes: [],
        }),
      ];
    }),
};
