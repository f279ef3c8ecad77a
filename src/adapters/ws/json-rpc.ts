import type { HttpProblem } from "../http/problem.ts";
import { problemBody } from "../rpc/rpc-problem.ts";

/**
 * JSON-RPC 2.0 framing for the WebSocket endpoint. Errors of the protocol itself use the spec's codes;
 * an operation's failure uses its REST status as the code (401, 403, 404, 409, 429, 503…), with the REST
 * problem (`code`, `detail`, extensions) as `data`, so a client handles both transports alike.
 */

export type JsonRpcId = string | number | null;

export type JsonRpcRequest = { id: JsonRpcId | undefined; method: string; params: unknown };

export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;
export const METHOD_NOT_FOUND = -32601;
export const INVALID_PARAMS = -32602;
export const INTERNAL_ERROR = -32603;

/** A message that is not a usable request, with the id to answer (null when none could be read). */
export class JsonRpcFailure extends Error {
  constructor(
    readonly id: JsonRpcId,
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "JsonRpcFailure";
  }
}

/** Reads one request; throws JsonRpcFailure for bad JSON, a batch, or a malformed envelope. */
export function parseRequest(text: string): JsonRpcRequest {
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    throw new JsonRpcFailure(null, PARSE_ERROR, "Parse error");
  }
  if (Array.isArray(message)) throw new JsonRpcFailure(null, INVALID_REQUEST, "Batches are not supported");
  if (typeof message !== "object" || message === null) {
    throw new JsonRpcFailure(null, INVALID_REQUEST, "Invalid Request");
  }
  const { jsonrpc, id, method, params } = message as Record<string, unknown>;
  const validId = id === undefined || id === null || typeof id === "string" || typeof id === "number";
  const answerTo: JsonRpcId = validId ? (id ?? null) : null;
  if (jsonrpc !== "2.0" || !validId || typeof method !== "string") {
    throw new JsonRpcFailure(answerTo, INVALID_REQUEST, "Invalid Request");
  }
  if (params !== undefined && (typeof params !== "object" || params === null || Array.isArray(params))) {
    throw new JsonRpcFailure(answerTo, INVALID_PARAMS, "params must be an object");
  }
  return { id: id as JsonRpcId | undefined, method, params };
}

export const resultMessage = (id: JsonRpcId, result: unknown) =>
  JSON.stringify({ jsonrpc: "2.0", id, result });

export const errorMessage = (id: JsonRpcId, code: number, message: string, data?: unknown) =>
  JSON.stringify({
    jsonrpc: "2.0",
    id,
    error: data === undefined ? { code, message } : { code, message, data },
  });

/** An operation's problem as a JSON-RPC error: invalid params keep the spec's code, the rest their status. */
export function problemMessage(id: JsonRpcId, problem: HttpProblem): string {
  if (problem.status === 400 && problem.code === "invalid_request") {
    return errorMessage(id, INVALID_PARAMS, "Invalid params", problemBody(problem));
  }
  if (problem.status >= 500 && problem.code === "internal_error") {
    return errorMessage(id, INTERNAL_ERROR, "Internal error", problemBody(problem));
  }
  return errorMessage(id, problem.status, problem.detail, problemBody(problem));
}
