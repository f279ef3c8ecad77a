import type { FastifyReply } from "fastify";
import type { ReadModelFreshness } from "../../app/ports.ts";

/** Response headers of every answer served from the Postgres read model (docs/architecture.md). */
export const READ_MODEL_POSITION_HEADER = "tessera-read-model-position";
export const READ_MODEL_BEHIND_HEADER = "tessera-read-model-behind";

/**
 * Says how current a listing or statistic is. A listing waits at most a second for the read model to
 * reach this instance's own writes and then answers anyway: a caller that needs its write in the answer
 * can tell from a non-zero `behind` that it is not there yet, and retry.
 */
export function setReadModelHeaders(reply: FastifyReply, freshness: ReadModelFreshness): void {
  reply.header(READ_MODEL_POSITION_HEADER, String(freshness.position));
  reply.header(READ_MODEL_BEHIND_HEADER, String(freshness.behind));
}
