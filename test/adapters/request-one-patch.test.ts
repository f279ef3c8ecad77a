import { jetstreamManager } from "@nats-io/jetstream";
import { RequestOne } from "@nats-io/nats-core/internal";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { connectNats } from "../../src/adapters/jetstream/connection.ts";
import { requestOnePatchApplied } from "../../src/adapters/jetstream/request-one-patch.ts";
import { NATS_URL, removeNatsPrefix, uniquePrefix } from "../support/services.ts";

const prefix = uniquePrefix("reqpatch");
let nc: NatsConnection;

beforeAll(async () => {
  nc = await connectNats(NATS_URL, "request-one-patch-test");
});

afterAll(async () => {
  await removeNatsPrefix(nc, prefix);
  await nc.close();
});

describe("the RequestOne patch", () => {
  it("applies to the locked nats-core version (an upgrade that changes its code must be looked at again)", () => {
    expect(requestOnePatchApplied).toBe(true);
  });

  it("answers requests without building a 'cancelled' error for each success", async () => {
    const cancel = vi.spyOn(RequestOne.prototype, "cancel");
    try {
      const subscription = nc.subscribe(`${prefix}.echo`, {
        callback: (_error, message) => {
          message.respond(message.data);
        },
      });
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) => nc.request(`${prefix}.echo`, `ping ${i}`, { timeout: 2_000 })),
      );
      expect(answers.map((answer) => answer.string())).toEqual(
        Array.from({ length: 20 }, (_, i) => `ping ${i}`),
      );
      expect(cancel).not.toHaveBeenCalled();
      subscription.unsubscribe();

      // JetStream's own requests go the same way.
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: `${prefix.toUpperCase()}_PATCH`, subjects: [`${prefix}.patch.>`] });
      const ack = await jsm.jetstream().publish(`${prefix}.patch.one`, "x");
      expect(ack.seq).toBe(1);
      expect(cancel).not.toHaveBeenCalled();
    } finally {
      cancel.mockRestore();
    }
  });

  it("still rejects a request nobody answers and one that times out", async () => {
    await expect(nc.request(`${prefix}.nobody`, "x", { timeout: 1_000 })).rejects.toMatchObject({
      name: "RequestError",
    });
    const silent = nc.subscribe(`${prefix}.silent`, { callback: () => {} });
    await expect(nc.request(`${prefix}.silent`, "x", { timeout: 200 })).rejects.toMatchObject({
      name: "TimeoutError",
    });
    silent.unsubscribe();
    // The connection still works afterwards.
    const echo = nc.subscribe(`${prefix}.after`, {
      callback: (_error, message) => {
        message.respond(message.data);
      },
    });
    expect((await nc.request(`${prefix}.after`, "ok", { timeout: 2_000 })).string()).toBe("ok");
    echo.unsubscribe();
  });
});
