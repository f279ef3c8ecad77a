import { Metadata, status } from "@grpc/grpc-js";
import type { HttpProblem } from "../http/problem.ts";
import { problemBody } from "../rpc/rpc-problem.ts";

/** A problem as a gRPC error: the code its REST status (and, for 409s, its stable code) stands for. */
export type GrpcError = { code: status; details: string; metadata: Metadata };

const BY_CODE: Partial<Record<string, status>> = {
  session_ended: status.FAILED_PRECONDITION,
  session_exists: status.ALREADY_EXISTS,
  // A per-user quota, in gRPC's words.
  session_limit_reached: status.RESOURCE_EXHAUSTED,
  // gRPC's guidance for a concurrency conflict: the client retries the whole operation.
  concurrency_conflict: status.ABORTED,
  idempotency_key_reused: status.FAILED_PRECONDITION,
};

const BY_STATUS: Record<number, status> = {
  400: status.INVALID_ARGUMENT,
  401: status.UNAUTHENTICATED,
  403: status.PERMISSION_DENIED,
  404: status.NOT_FOUND,
  409: status.FAILED_PRECONDITION,
  413: status.INVALID_ARGUMENT,
  422: status.INVALID_ARGUMENT,
  429: status.RESOURCE_EXHAUSTED,
  503: status.UNAVAILABLE,
};

export function grpcCodeOf(problem: HttpProblem): status {
  return BY_CODE[problem.code] ?? BY_STATUS[problem.status] ?? status.INTERNAL;
}

export function toGrpcError(problem: HttpProblem): GrpcError {
  const metadata = new Metadata();
  metadata.set("tessera-code", problem.code);
  metadata.set("tessera-problem-bin", Buffer.from(JSON.stringify(problemBody(problem)), "utf8"));
  return { code: grpcCodeOf(problem), details: problem.detail, metadata };
}
