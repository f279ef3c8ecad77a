import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { LOOPBACK } from "./http.ts";

/**
 * Servers under test run in child processes, one event loop each, so the load generator never shares a
 * thread with them; the baseline server runs the same way so the ratio compares like with like.
 */

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

export type ChildServer = {
  name: string;
  pid: number;
  port: number;
  url: string;
  /** The last lines the child wrote (for error messages). */
  output(): string;
  stop(): Promise<void>;
};

/** A free loopback port (the tiny race before the child binds it is harmless here). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, LOOPBACK, () => {
      const address = server.address();
      server.close(() => {
        if (typeof address === "object" && address !== null) resolve(address.port);
        else reject(new Error("no port"));
      });
    });
  });
}

export type SpawnOptions = {
  name: string;
  /** Node arguments (script and its arguments), run from the repository root. */
  args: string[];
  env: Record<string, string>;
  /** A GET path answering 200 once the server is ready. */
  readyPath: string;
  readyTimeoutMs?: number;
  port?: number;
};

export async function startChildServer(options: SpawnOptions): Promise<ChildServer> {
  const port = options.port ?? (await freePort());
  // BENCH_PROFILE_DIR=<dir> writes a V8 CPU profile of every server process there (read it in Chrome DevTools).
  const profile = process.env.BENCH_PROFILE_DIR
    ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`]
    : [];
  const child: ChildProcess = spawn(process.execPath, [...profile, ...options.args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...options.env, HOST: LOOPBACK, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    if (lines.length > 40) lines.splice(0, lines.length - 40);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let exitCode: number | null | undefined;
  exited.then((code) => {
    exitCode = code;
  });
  const url = `http://${LOOPBACK}:${port}`;
  const server: ChildServer = {
    name: options.name,
    pid: child.pid ?? -1,
    port,
    url,
    output: () => lines.join("\n"),
    async stop() {
      if (exitCode !== undefined) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };

  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (exitCode !== undefined) {
      throw new Error(`${options.name} exited (${exitCode}) before it was ready:\n${server.output()}`);
    }
    try {
      const response = await fetch(`${url}${options.readyPath}`);
      await response.arrayBuffer();
      if (response.ok) return server;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`${options.name} was not ready within the deadline:\n${server.output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export const BENCH_ADMIN_KEY = "bench-admin-key-0123456789abcdef";
export const BENCH_PASSWORD = "bench-password-0123456789";

/** An Ed25519 signing key in PEM, for configurations that require one in distributed mode. */
export function benchJwtKey(): string {
  return generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

/** Environment of a distributed Tessera instance, as `npm start` reads it. */
export function tesseraEnv(options: {
  prefix: string;
  natsUrl: string;
  databaseUrl: string;
  extra?: Record<string, string>;
}): Record<string, string> {
  return {
    NATS_URL: options.natsUrl,
    DATABASE_URL: options.databaseUrl,
    TESSERA_PREFIX: options.prefix,
    TESSERA_ADMIN_KEY: BENCH_ADMIN_KEY,
    TESSERA_IDEMPOTENCY_SECRET: "bench-idempotency-secret",
    TESSERA_JWT_PRIVATE_KEY: benchJwtKey(),
    LOG_LEVEL: "warn",
    // The per-IP limits exist against brute force from many clients; the load generator is one IP. Set so
    // high they never trip, the limiters still run (and cost what they cost) on every request.
    TESSERA_RATE_LIMIT_VALIDATE_PER_IP: "1000000000",
    TESSERA_RATE_LIMIT_TOKEN_PER_IP: "1000000000",
    TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: "1000000000",
    ...options.extra,
  };
}

/** `npm start` in distributed mode, in a child process. */
export function startTesseraProcess(name: string, env: Record<string, string>): Promise<ChildServer> {
  return startChildServer({ name, args: ["bin/tessera.mjs", "serve"], env, readyPath: "/readyz" });
}

/**
 * The bare Fastify baseline (bench/servers/bare-fastify.ts), same Node flags and log level as Tessera. With
 * `durable`, it also serves POST /sessions-durable: one JetStream append, acknowledged, per request.
 */
export function startBareFastify(durable?: { natsUrl: string; stream: string }): Promise<ChildServer> {
  return startChildServer({
    name: "bare-fastify",
    args: ["--import", "tsx", "bench/servers/bare-fastify.ts"],
    env: {
      LOG_LEVEL: "warn",
      BENCH_PASSWORD,
      ...(durable ? { BENCH_NATS_URL: durable.natsUrl, BENCH_STREAM: durable.stream } : {}),
    },
    readyPath: "/ready",
  });
}

/** Runs the `tessera` CLI (e.g. `users add`) to completion with the given environment. */
export function runCli(args: string[], env: Record<string, string>, stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["bin/tessera.mjs", ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(output);
      else reject(new Error(`tessera ${args.join(" ")} exited ${code}: ${output.slice(-1500)}`));
    });
    child.stdin.end(stdin ?? "");
  });
}
