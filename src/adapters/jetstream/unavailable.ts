import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import { DependencyUnavailableError } from "../../app/unavailable.ts";

/**
 * Which nats.js failures mean "the server or the connection is away" (restarting, a leader election, a
 * partition) rather than "this request is wrong": worth a retry, and answered as such at the edges. The
 * client wraps the telling error in a cause or two, so the chain is walked.
 */
export function isNatsUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 4; depth++) {
    if (
      current instanceof TimeoutError ||
      current instanceof NoRespondersError ||
      current instanceof ClosedConnectionError ||
      current instanceof DrainingConnectionError ||
      current instanceof ConnectionError ||
      (current instanceof RequestError && current.isNoResponders())
    ) {
      return true;
    }
    current = current.cause;
  }
  return false;
}

/** `error` as DependencyUnavailableError(`dependency`) when NATS is away, else unchanged. */
export function natsFailure(dependency: string, error: unknown): unknown {
  return isNatsUnavailable(error) ? new DependencyUnavailableError(dependency, error) : error;
}
