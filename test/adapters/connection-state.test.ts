import type { NatsConnection, Status } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import {
  isNatsConnected,
  trackConnection,
  whenConnected,
} from "../../src/adapters/jetstream/connection-state.ts";
import { DependencyUnavailableError } from "../../src/app/unavailable.ts";

/** A connection whose status events the test emits (nats.js's status() is an async iterator). */
function fakeConnection() {
  const queue: Status[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  const nc = {
    isClosed: () => closed,
    status: () => ({
      async *[Symbol.asyncIterator]() {
        while (!closed) {
          const next = queue.shift();
          if (next !== undefined) yield next;
          else await new Promise<void>((resolve) => (wake = resolve));
        }
      },
    }),
  } as unknown as NatsConnection;
  const emit = async (type: "disconnect" | "reconnect") => {
    queue.push({ type, server: "127.0.0.1:4222" } as Status);
    wake?.();
    await new Promise((resolve) => setImmediate(resolve));
  };
  const close = async () => {
    closed = true;
    wake?.();
    await new Promise((resolve) => setImmediate(resolve));
  };
  trackConnection(nc);
  return { nc, emit, close };
}

describe("NATS connection state", () => {
  it("is up until a disconnect, and up again after the reconnect", async () => {
    const { nc, emit, close } = fakeConnection();
    expect(isNatsConnected(nc)).toBe(true);
    await emit("disconnect");
    expect(isNatsConnected(nc)).toBe(false);
    await emit("reconnect");
    expect(isNatsConnected(nc)).toBe(true);
    await close();
  });

  it("lets a caller wait out a reconnect within the grace", async () => {
    const { nc, emit, close } = fakeConnection();
    await expect(whenConnected(nc, "event log", 50)).resolves.toBeUndefined();
    await emit("disconnect");
    const waiting = whenConnected(nc, "event log", 5_000);
    setTimeout(() => void emit("reconnect"), 20);
    await expect(waiting).resolves.toBeUndefined();
    await close();
  });

  it("fails with DependencyUnavailableError once the grace passes, or the connection closes", async () => {
    const { nc, emit, close } = fakeConnection();
    await emit("disconnect");
    const started = performance.now();
    await expect(whenConnected(nc, "event log", 30)).rejects.toBeInstanceOf(DependencyUnavailableError);
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    const waiting = expect(whenConnected(nc, "validation store", 5_000)).rejects.toBeInstanceOf(
      DependencyUnavailableError,
    );
    await close();
    await waiting;
  });
});
