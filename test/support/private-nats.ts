import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.ts";

/**
 * A nats-server of a test file's own (its own port and JetStream store directory), for tests that stop and
 * start it: the shared server on 4222 is never touched. `start` after `stop` reuses the store directory, so
 * streams, KV buckets and their contents survive the restart as they would in production.
 */

const NATS_SERVER = [
  process.env.NATS_SERVER_BIN,
  "/usr/sbin/nats-server",
  "/usr/local/bin/nats-server",
  "/usr/bin/nats-server",
]
  .filter((path): path is string => path !== undefined)
  .find((path) => existsSync(path));

export type PrivateNats = {
  port: number;
  url: string;
  /** SIGTERM (the server's graceful shutdown: clients are disconnected), returning once it has exited. */
  stop(): Promise<void>;
  /** Starts it again on the same port and store, returning once it accepts connections. */
  start(): Promise<void>;
  /** Stops it whatever state it is in and removes its store. Safe to call twice. */
  destroy(): Promise<void>;
};

export async function startPrivateNats(): Promise<PrivateNats> {
  if (NATS_SERVER === undefined) throw new Error("nats-server binary not found (set NATS_SERVER_BIN)");
  const binary = NATS_SERVER;
  const port = await freePort();
  const storeDir = await mkdtemp(join(tmpdir(), "tessera-nats-"));
  let server: ChildProcess | undefined;

  const accepting = () =>
    new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: "127.0.0.1", port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });

  const start = async () => {
    const child = spawn(binary, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir], {
      stdio: "ignore",
    });
    server = child;
    const deadline = Date.now() + 15_000;
    while (!(await accepting())) {
      if (child.exitCode !== null) throw new Error(`private nats-server exited (${child.exitCode})`);
      if (Date.now() > deadline) throw new Error("private nats-server did not start");
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };

  const stop = async () => {
    const running = server;
    server = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, "exit");
    running.kill("SIGTERM");
    await exited;
  };

  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    await stop();
    await rm(storeDir, { recursive: true, force: true });
  };

  try {
    await start();
  } catch (error) {
    await destroy();
    throw error;
  }
  return { port, url: `nats://127.0.0.1:${port}`, stop, start, destroy };
}
