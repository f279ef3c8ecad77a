import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/**
 * @nats-io/jetstream 3.4's ordered consumer, when it recreates its server-side consumer (after a NATS
 * restart the old one is gone; also after a gap in delivery), keeps the count of messages its previous
 * pulls were still owed. Those pulls died with the old consumer, but the count stays: the first pull of
 * the new consumer asks only for `max_messages - owed` (38 of 1024, say), and once that many have
 * arrived the client still believes most of its window is outstanding and pulls no more. The consumer
 * then sits idle — the KV watch stops updating this instance's validation replica, the log followers
 * behind the projections stop — until two idle heartbeats are missed (30 s) and the client resets its
 * count. Seen with `test/integration/nats-restart.test.ts` (an invalidation on one instance not reaching
 * the other's memory within 20 s of a restart); the library's main branch has the same code.
 *
 * This zeroes that count (messages, bytes, requests) at the start of `reset()`, which is what
 * `resetPending` does once it has noticed: the new consumer's first pull asks for the whole window.
 * Like request-one-patch.ts it only patches the code it was written against (checked by fingerprint);
 * `orderedResetPatchApplied` tells which, and a test pins it for the locked version. The class is not
 * exported by the package, so its module is loaded by path (the same module instance the package uses).
 */

type Pending = { msgs: number; bytes: number; requests: number };

function applyPatch(): boolean {
  let prototype: { reset?: unknown } | undefined;
  try {
    const require = createRequire(import.meta.url);
    const lib = dirname(require.resolve("@nats-io/jetstream"));
    prototype = (require(join(lib, "consumer.js")) as { PullConsumerMessagesImpl?: { prototype: object } })
      .PullConsumerMessagesImpl?.prototype;
  } catch {
    return false;
  }
  const original = prototype?.reset;
  if (prototype === undefined || typeof original !== "function") return false;
  const source = Function.prototype.toString.call(original);
  const expected =
    source.includes("ordered_consumer_recreated") &&
    source.includes("this.pull(this.pullOptions())") &&
    !source.includes("pending.msgs = 0");
  if (!expected) return false;
  prototype.reset = function reset(this: { pending: Pending }) {
    this.pending.msgs = 0;
    this.pending.bytes = 0;
    this.pending.requests = 0;
    return original.call(this);
  };
  return true;
}

export const orderedResetPatchApplied: boolean = applyPatch();
