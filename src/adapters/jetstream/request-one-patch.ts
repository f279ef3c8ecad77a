import { RequestOne } from "@nats-io/nats-core/internal";

/**
 * nats-core 3.4's single-response request (every JetStream publish ack, KV put, stream info, …) ends a
 * *successful* request by calling `cancel()`, which rejects the already-resolved promise with a new
 * `RequestError("cancelled")` — an Error with a captured stack trace that nobody sees. That was ~4 % of a
 * session create's CPU here and ~10 % of an append's client CPU; `noAsyncTraces` does not avoid it.
 *
 * This replaces only the success path of `RequestOne.resolver` with the same steps minus that Error
 * (stop the timer, resolve, unregister from the mux). Errors, timeouts and cancellations keep the
 * library's own code. It patches only the code it was written against (checked by fingerprint), so a
 * client upgrade that changes it leaves the library as it is; `requestOnePatchApplied` tells which, and a
 * test pins it for the locked version.
 */

type Resolver = (this: PatchedRequest, error: Error | null, message: unknown) => void;
type PatchedRequest = {
  timer?: { cancel(): void };
  deferred: { resolve(message: unknown): void };
  mux: { cancel(request: unknown): void };
};

function applyPatch(): boolean {
  const prototype = RequestOne.prototype as unknown as { resolver: Resolver; cancel: () => void };
  const original = prototype.resolver;
  if (typeof original !== "function" || typeof prototype.cancel !== "function") return false;
  const resolverSource = Function.prototype.toString.call(original);
  const cancelSource = Function.prototype.toString.call(prototype.cancel);
  const expected =
    resolverSource.includes("this.deferred.resolve(msg)") &&
    resolverSource.includes("this.cancel()") &&
    cancelSource.includes("this.mux.cancel(this)") &&
    cancelSource.includes('RequestError("cancelled")');
  if (!expected) return false;
  prototype.resolver = function resolver(this: PatchedRequest, error: Error | null, message: unknown) {
    if (error) return original.call(this, error, message);
    this.timer?.cancel();
    this.deferred.resolve(message);
    this.mux.cancel(this);
  };
  return true;
}

export const requestOnePatchApplied: boolean = applyPatch();
