import { readFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import autocannon from "autocannon";

/** Load only ever goes to this machine. */
export const LOOPBACK = "127.0.0.1";

export function assertLoopback(url: string): void {
  const { hostname } = new URL(url);
  if (hostname !== LOOPBACK)
    throw new Error(`Refusing to send load to ${hostname}: benchmarks target ${LOOPBACK} only`);
}

export type LoadRequest = {
  method: "GET" | "POST" | "DELETE";
  path: string;
  headers?: Record<string, string>;
  body?: string;
};

export type LoadOptions = {
  url: string;
  /** Requests are sent in this order, round-robin per connection (pre-built: no per-request work in the client). */
  requests: readonly LoadRequest[];
  /** Seconds; the run stops by itself. */
  durationSeconds: number;
  connections: number;
  pipelining: number;
  /** The status a successful request answers with. */
  expectStatus: number;
  /** The server's process id, to measure the CPU time it spends (Linux /proc). */
  serverPid?: number | undefined;
};

export type LoadResult = {
  /** Successful requests per second. */
  rate: number;
  ok: number;
  failed: number;
  p50Ms: number;
  p99Ms: number;
  /** Server CPU time per successful request (µs), when the server's pid was given. */
  serverCpuUsPerRequest: number | undefined;
  /** Share of one core the load generator (this process) used: near 1 means the client was the limit. */
  clientCpuShare: number;
};

/** User + system CPU time of a process in ms, from /proc (undefined where there is no /proc). */
export async function processCpuMs(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (clock ticks, 100 Hz).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

const MAX_DURATION_SECONDS = 30;

/**
 * One bounded autocannon run. A response with any other status than `expectStatus` counts as a failure,
 * and failures are reported, never folded into the rate.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  assertLoopback(options.url);
  const duration = Math.min(MAX_DURATION_SECONDS, Math.max(0.5, options.durationSeconds));
  let ok = 0;
  let failed = 0;
  const serverBefore = options.serverPid === undefined ? undefined : await processCpuMs(options.serverPid);
  const clientBefore = process.cpuUsage();
  const wallBefore = performance.now();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        pipelining: options.pipelining,
        duration,
        requests: options.requests.map((r) => ({
          method: r.method,
          path: r.path,
          headers: { ...(r.body === undefined ? {} : { "content-type": "application/json" }), ...r.headers },
          ...(r.body === undefined ? {} : { body: r.body }),
        })),
      },
      (error, done) => (error ? reject(error) : resolve(done)),
    );
    instance.on("response", (_client, statusCode) => {
      if (statusCode === options.expectStatus) ok++;
      else failed++;
    });
  });
  const clientCpu = process.cpuUsage(clientBefore);
  const wallMs = performance.now() - wallBefore;
  const serverAfter = options.serverPid === undefined ? undefined : await processCpuMs(options.serverPid);
  failed += result.errors;
  const seconds = result.duration > 0 ? result.duration : duration;
  return {
    rate: ok / seconds,
    ok,
    failed,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    serverCpuUsPerRequest:
      serverBefore === undefined || serverAfter === undefined || ok === 0
        ? undefined
        : ((serverAfter - serverBefore) * 1000) / ok,
    clientCpuShare: (clientCpu.user + clientCpu.system) / 1000 / wallMs,
  };
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

export type JsonResponse = {
  status: number;
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
};

/** A plain keep-alive JSON request (setup calls and latency probes, not load). */
export function httpJson(
  url: string,
  method: string,
  options: { headers?: Record<string, string>; body?: unknown } = {},
): Promise<JsonResponse> {
  assertLoopback(url);
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        agent,
        headers: {
          ...(payload === undefined
            ? {}
            : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }),
          ...options.headers,
        },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown = text;
          try {
            body = text.length > 0 ? JSON.parse(text) : undefined;
          } catch {
            // not JSON: keep the text
          }
          resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on("error", reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

export function closeHttpAgent(): void {
  agent.destroy();
}
