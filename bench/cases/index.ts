import type { Benchmark } from "../lib/bench.ts";
import { jwtGet, tokenLogin } from "./auth.ts";
import { claimsRefusal } from "./claims-refusal.ts";
import { claimsRefusal1000 } from "./claims-refusal-1000.ts";
import { createHttp } from "./create-http.ts";
import { eventAppend } from "./event-append.ts";
import { expiryLateness } from "./expiry-lateness.ts";
import { mcpValidate } from "./mcp-validate.ts";
import { rebuild } from "./rebuild.ts";
import { replicaMemory } from "./replica-memory.ts";
import { revocation } from "./revocation.ts";
import { validateHttp } from "./validate-http.ts";
import { validateMemory } from "./validate-memory.ts";

/** Every benchmark, in the order a full run takes them. New ones slot in here. */
export const BENCHMARKS: readonly Benchmark[] = [
  validateHttp,
  validateMemory,
  createHttp,
  eventAppend,
  revocation,
  replicaMemory,
  tokenLogin,
  jwtGet,
  claimsRefusal,
  claimsRefusal1000,
  expiryLateness,
  mcpValidate,
  rebuild,
];
