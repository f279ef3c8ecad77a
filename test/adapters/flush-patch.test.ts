import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { connectNats } from "../../src/adapters/jetstream/connection.ts";
import { BUSY_REQUESTS, flushPatchApplied } from "../../src/adapters/jetstream/flush-patch.ts";
import { waitUntil } from "../contract/event-fixtures.ts";
import { NATS_URL, uniquePrefix } from "../support/services.ts";

const prefix = uniquePrefix("flushpatch");
let nc: NatsConnection;
let peer: NatsConnection;

beforeAll(async () => {
  nc = await connectNats(NATS_URL, "flush-patch-test");
  peer = await connectNats(NATS_URL, "flush-patch-peer");
});

afterAll(async () => {
  await nc.close();
  await peer.close();
});

/** The socket writes of a connection (the client's transport send). */
function spyOnWrites(connection: NatsConnection) {
  const transport = (connection as unknown as { protocol: { transport: { send(data: Uint8Array): void } } })
    .protocol.transport;
  return vi.spyOn(transport, "send");
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("the outbound flush patch", () => {
  it("applies to the locked nats-core version (an upgrade that changes its code must be looked at again)", () => {
    expect(flushPatchApplied).toBe(true);
  });

  it("on a quiet connection writes each command from a microtask, as the library does", async () => {
    const writes = spyOnWrites(nc);
    try {
      nc.publish(`${prefix}.quiet`, "one");
      await Promise.resolve();
      expect(writes).toHaveBeenCalledTimes(1);
    } finally {
      writes.mockRestore();
    }
  });

  it("on a busy connection sends what one turn publishes in one write, in order, by the end of the turn", async () => {
    // Requests left waiting for replies make the connection busy.
    const held: Array<() => void> = [];
    const waiting = peer.subscribe(`${prefix}.slow`, {
      callback: (_error, message) => {
        held.push(() => message.respond(message.data));
      },
    });
    const received: string[] = [];
    const subscription = peer.subscribe(`${prefix}.ordered`, {
      callback: (_error, message) => {
        received.push(message.string());
      },
    });
    await peer.flush();
    const pending = Array.from({ length: BUSY_REQUESTS }, (_, i) =>
      nc.request(`${prefix}.slow`, `slow ${i}`, { timeout: 5_000 }),
    );
    await waitUntil(() => held.length === BUSY_REQUESTS, 5_000, "the requests to arrive");
    const writes = spyOnWrites(nc);
    try {
      for (let i = 0; i < 20; i++) nc.publish(`${prefix}.ordered`, `m${i}`);
      // Still in the same turn (microtasks included): nothing written yet.
      await Promise.resolve();
      expect(writes).not.toHaveBeenCalled();
      await nextTurn();
      expect(writes).toHaveBeenCalledTimes(1);
      await waitUntil(() => received.length === 20, 5_000, "20 messages");
      expect(received).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
    } finally {
      writes.mockRestore();
      for (const respond of held) respond();
      await Promise.all(pending);
      subscription.unsubscribe();
      waiting.unsubscribe();
    }
  });

  it("keeps requests, flushes and large bursts working", async () => {
    const subscription = peer.subscribe(`${prefix}.echo`, {
      callback: (_error, message) => {
        message.respond(message.data);
      },
    });
    await peer.flush();
    try {
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) => nc.request(`${prefix}.echo`, `ping ${i}`, { timeout: 2_000 })),
      );
      expect(answers.map((answer) => answer.string())).toEqual(
        Array.from({ length: 50 }, (_, i) => `ping ${i}`),
      );
      await nc.flush();
      // Past the client's inline threshold within one turn: written as it fills, nothing lost.
      const big = new Uint8Array(64 * 1024);
      const burst = Array.from({ length: 40 }, (_, i) =>
        nc.request(`${prefix}.echo`, big, { timeout: 5_000 }).then(() => i),
      );
      expect(await Promise.all(burst)).toHaveLength(40);
    } finally {
      subscription.unsubscribe();
    }
  });
});
