import type { Benchmark } from "../lib/bench.ts";
import { moduleExists } from "../lib/bench.ts";
import { compareHttp, comparisonResult, cpuNote } from "../lib/compare-http.ts";
import { withEnvironment } from "../lib/environment.ts";
import { httpJson } from "../lib/http.ts";
import { BENCH_ADMIN_KEY, startTesseraProcess, tesseraEnv } from "../lib/processes.ts";
import type { Target } from "../lib/report.ts";
import { createSessionsOverHttp } from "../lib/sessions.ts";

const TOKENS = 500;
const PROTOCOL = "2025-06-18";
const mcpHeaders = { "x-admin-key": BENCH_ADMIN_KEY, accept: "application/json, text/event-stream" };

/** The JSON-RPC message in a Streamable HTTP answer (plain JSON, or the data line of an SSE event). */
function rpcResult(body: unknown): unknown {
  if (typeof body !== "string") return body;
  const data = body
    .split("\n")
    .find((line) => line.startsWith("data:"))
    ?.slice(5);
  return data === undefined ? undefined : JSON.parse(data);
}

/**
 * Issue 6: the `validate-session` MCP tool over Streamable HTTP (`POST /mcp`, an MCP session opened with
 * x-admin-key, every call validating and touching that MCP session first) against the REST
 * `POST /v1/sessions/validate` of the same server with the same tokens.
 */
export const mcpValidate: Benchmark = {
  name: "mcp-validate",
  issue: 6,
  description: "tools/call validate-session over /mcp vs POST /v1/sessions/validate on the same server",
  unavailable: async () =>
    (await moduleExists("src/adapters/mcp/plugin.ts"))
      ? undefined
      : "the MCP endpoint is not in the tree yet",
  run: (options) =>
    withEnvironment("mcp", async (env) => {
      const tessera = await startTesseraProcess(
        "tessera",
        tesseraEnv({ prefix: env.prefix, natsUrl: env.natsUrl, databaseUrl: env.database.url }),
      );
      env.defer(() => tessera.stop());
      const sessions = await createSessionsOverHttp(tessera.url, TOKENS);

      const init = await httpJson(`${tessera.url}/mcp`, "POST", {
        headers: mcpHeaders,
        body: {
          jsonrpc: "2.0",
          id: 0,
          method: "initialize",
          params: {
            protocolVersion: PROTOCOL,
            capabilities: {},
            clientInfo: { name: "tessera-bench", version: "1" },
          },
        },
      });
      const sessionHeader = init.headers["mcp-session-id"];
      if (init.status !== 200 || typeof sessionHeader !== "string") {
        throw new Error(`initialize answered ${init.status}: ${JSON.stringify(init.body).slice(0, 300)}`);
      }
      const headers = { ...mcpHeaders, "mcp-session-id": sessionHeader, "mcp-protocol-version": PROTOCOL };
      await httpJson(`${tessera.url}/mcp`, "POST", {
        headers,
        body: { jsonrpc: "2.0", method: "notifications/initialized" },
      });
      const call = (token: string, id: number) =>
        JSON.stringify({
          jsonrpc: "2.0",
          id,
          method: "tools/call",
          params: { name: "validate-session", arguments: { token } },
        });
      const probe = await httpJson(`${tessera.url}/mcp`, "POST", {
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.parse(call(sessions[0]?.token ?? "", 1)),
      });
      const message = rpcResult(probe.body) as { result?: { isError?: boolean } } | undefined;
      const text = JSON.stringify(message ?? probe.body);
      if (
        probe.status !== 200 ||
        message?.result === undefined ||
        message.result.isError === true ||
        !text.includes("valid")
      ) {
        throw new Error(`validate-session answered ${probe.status}: ${text.slice(0, 300)}`);
      }

      const comparison = await compareHttp(
        options,
        {
          subject: {
            url: tessera.url,
            requests: sessions.map((s, i) => ({
              method: "POST",
              path: "/mcp",
              headers,
              body: call(s.token, i + 2),
            })),
            expectStatus: 200,
            serverPid: tessera.pid,
          },
          baseline: {
            url: tessera.url,
            requests: sessions.map((s) => ({
              method: "POST",
              path: "/v1/sessions/validate",
              body: JSON.stringify({ token: s.token }),
            })),
            expectStatus: 200,
            serverPid: tessera.pid,
          },
        },
        { rounds: 3 },
      );
      const target: Target = { kind: "none" };
      return [
        comparisonResult({
          bench: "mcp-validate",
          title: `validate-session tool over /mcp, ${TOKENS} tokens round-robin`,
          comparison,
          unit: { subject: "calls/s", baseline: "req/s" },
          subjectLabel: "Tessera, MCP",
          baselineLabel: "REST POST /v1/sessions/validate, same server",
          target,
          notes: cpuNote(comparison).map((note) => note.replace("bare Fastify", "REST")),
        }),
      ];
    }),
};
