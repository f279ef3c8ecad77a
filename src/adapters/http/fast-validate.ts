import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import type { FastifyBaseLogger, preParsingHookHandler } from "fastify";
import type { SessionService } from "../../app/session-service.ts";
import { tracingEnabled } from "../../app/tracing.ts";
import type { ValidationOutcome, Validator } from "../../app/validator.ts";
import type { ExistingSession } from "../../domain/session-state.ts";
import type { ValidationEntry } from "../../projections/validation-entry.ts";
import type { FastCheck } from "../codec/fast-check.ts";
import { bearerToken } from "../session-ops/bearer-token.ts";
import { userOf, type ValidatedUser } from "../session-ops/valid-answer.ts";
import { INVALID_TOKEN_CHALLENGE } from "./problem.ts";
import type { RawRoute } from "./raw-routes.ts";
import type { LifecycleReply, LifecycleRequest, LifecycleStep } from "./request-lifecycle.ts";
import type { SessionView } from "./schemas.ts";

/**
 * POST /v1/sessions/validate for the request gateways send all day: a JSON body with a token that memory
 * judges. Such a request costs Tessera ~3 µs of its own work and Fastify ~10 µs of per-request machinery
 * (request and reply objects, a child logger, hook runners, the body parser, reply headers), so this path
 * answers it on the raw Node request, exactly as the Fastify route would: the same status, headers, body,
 * rate limit, latency metric and validation counters (test/http/fast-validate.test.ts compares the two).
 * The 200 answer's JSON is kept with the session view it was written from (validPayload).
 *
 * The token comes from the body, else from `Authorization: Bearer`, as on the route; a request without a
 * body (no content type, no or zero length) is judged at once. Anything else is handed to the Fastify
 * route, before or after the body was read: another content type, a chunked body, a body over the limit,
 * one that is not JSON, that names `__proto__`/`constructor` or that the body schema does not accept
 * unchanged, an IdP `jwt`, no token at all, a validation that needs I/O, a session whose view is not cached, a
 * rate-limited address, an active OpenTelemetry SDK (its spans keep their exact timing on the Fastify
 * path). A handed-over request carries what this path already did (handedOver): the body it read (replayed
 * to Fastify's parser), that the rate limit counted it, the validation outcome — so nothing is counted
 * twice. TESSERA_HTTP_FAST_VALIDATE=false switches this path off; so does LOG_LEVEL=debug or trace, where
 * Fastify logs every request.
 */

export type FastValidateDeps = {
  validator: Validator;
  service: SessionService;
  view: (session: ExistingSession) => SessionView;
  bodyLimit: number;
  /** The body schema's compiled predicate: true only where zod would accept the body unchanged. */
  acceptsBody: FastCheck;
  serializeValid: (answer: { valid: true; session: SessionView; user: ValidatedUser }) => string;
  serializeRefusal: (answer: { valid: false; reason: string }) => string;
  /** The validation rate limit's check (undefined: allowed, else seconds to wait); counts the request. */
  rateLimit?: ((ip: string) => number | undefined) | undefined;
  /** The app's static headers and lifecycle steps, read when the first request arrives (after start-up). */
  lifecycle: () => {
    headerNames: readonly string[];
    headerValues: readonly string[];
    onRequest: readonly LifecycleStep[];
    onResponse: readonly LifecycleStep[];
  };
  log: FastifyBaseLogger;
};

type ValidateBody = { token?: string; jwt?: string; client_ip?: string; user_agent?: string };
type HandOver = {
  /** What was read of the body (none for a request without one). */
  body: Buffer | undefined;
  rateLimitCounted: boolean;
  outcome?: ValidationOutcome | undefined;
};

const HANDED_OVER = Symbol("tessera.fastValidate.handedOver");
type Carrier = IncomingMessage & { [HANDED_OVER]?: HandOver };

/** What the fast path already did to a request it handed to the Fastify route, if it did. */
export function handedOver(request: IncomingMessage): HandOver | undefined {
  return (request as Carrier)[HANDED_OVER];
}

/** The route's preParsing hook: a handed-over request's body, read by the fast path, is parsed again. */
export const replayHandedOverBody: preParsingHookHandler = (request, _reply, payload, done) => {
  const body = handedOver(request.raw)?.body;
  done(null, body === undefined ? payload : Readable.from([body], { objectMode: false }));
};

const ROUTE = "/v1/sessions/validate";
const JSON_TYPE = "application/json; charset=utf-8";

/** The app-wide parts of an answer, read when the first request arrives (after start-up). */
type Prepared = {
  staticHeaders: string[];
  onRequest: readonly LifecycleStep[];
  onResponse: readonly LifecycleStep[];
};
type Context = {
  deps: FastValidateDeps;
  counts: FastValidateCounts;
  prepared?: Prepared | undefined;
  written: WeakMap<SessionView, { entry: ValidationEntry; payload: string }>;
};

/** A request whose body is arriving. Module-level functions take it (no closures built per request). */
type Pending = {
  request: IncomingMessage;
  response: ServerResponse;
  next: () => void;
  counts: FastValidateCounts;
  started: number;
  ip: string;
  rateLimitCounted: boolean;
  body?: Buffer | undefined;
  chunks?: Buffer[] | undefined;
  judged?: ValidationOutcome | undefined;
};

/** How many requests this path answered and how many it handed to the Fastify route. */
export type FastValidateCounts = { answered: number; handedOver: number };

export function createFastValidate(deps: FastValidateDeps): { route: RawRoute; counts: FastValidateCounts } {
  const counts: FastValidateCounts = { answered: 0, handedOver: 0 };
  const context: Context = { deps, counts, written: new WeakMap() };
  const route: RawRoute = (request, response, next) => {
    const headers = request.headers;
    const type = headers["content-type"];
    const length = headers["content-length"];
    if (headers["transfer-encoding"] !== undefined || tracingEnabled()) {
      passOn(counts, next);
      return;
    }
    // No body at all (no content type, no length or 0): the route gets no body and reads the token from
    // the Authorization header, as gateways' auth subrequests send it.
    const bodiless = type === undefined && (length === undefined || length === "0");
    if (!bodiless) {
      const bytes = Number(length);
      if ((type !== "application/json" && type !== JSON_TYPE) || !(bytes > 0 && bytes <= deps.bodyLimit)) {
        passOn(counts, next);
        return;
      }
    }
    const started = performance.now();
    // Fastify's request.ip without a trusted proxy (the app's setting).
    const ip = request.socket.remoteAddress ?? "";
    let rateLimitCounted = false;
    if (deps.rateLimit !== undefined) {
      // A refusal is Fastify's to answer (429 problem); counting it there again changes nothing, the
      // window is full either way.
      if (deps.rateLimit(ip) !== undefined) {
        passOn(counts, next);
        return;
      }
      rateLimitCounted = true;
    }
    const pending: Pending = { request, response, next, counts, started, ip, rateLimitCounted };
    if (bodiless) {
      judge(context, pending, undefined);
      return;
    }
    request.on("data", (chunk: Buffer) => collect(pending, chunk));
    request.on("error", () => response.destroy());
    request.on("end", () => finish(context, pending));
  };
  return { route, counts };
}

/** Hands a request to the Fastify route untouched (nothing read, nothing counted). */
function passOn(counts: FastValidateCounts, next: () => void): void {
  counts.handedOver++;
  next();
}

function collect(pending: Pending, chunk: Buffer): void {
  if (pending.body === undefined) pending.body = chunk;
  else if (pending.chunks === undefined) pending.chunks = [pending.body, chunk];
  else pending.chunks.push(chunk);
}

function finish(context: Context, pending: Pending) {
  if (pending.chunks !== undefined) pending.body = Buffer.concat(pending.chunks);
  const parsed = parseBody(pending.body, context.deps.acceptsBody);
  if (parsed === undefined) handOver(pending);
  else judge(context, pending, parsed);
}

/** Judges the token (the body's, else the Authorization header's) and answers, or hands over. */
function judge(context: Context, pending: Pending, body: ValidateBody | undefined) {
  const { deps } = context;
  const headers = pending.request.headers;
  try {
    const token = body?.token ?? bearerToken(headers.authorization);
    if (token === undefined || body?.jwt !== undefined) return handOver(pending);
    const facts = {
      ip: body?.client_ip ?? pending.ip,
      userAgent: body?.user_agent ?? headers["user-agent"],
    };
    const outcome = deps.validator.validateCached(token, facts);
    pending.judged = outcome;
    if (outcome === undefined) return handOver(pending);
    if (!outcome.valid) {
      const refusal = deps.serializeRefusal({ valid: false, reason: outcome.reason });
      return answer(context, pending, 401, refusal, INVALID_TOKEN_CHALLENGE);
    }
    const session = deps.service.cachedAtLeast(outcome.entry.sessionId, outcome.entry.position);
    if (session === undefined) return handOver(pending);
    return answer(context, pending, 200, validPayload(context, deps.view(session), outcome.entry));
  } catch (error) {
    // Nothing sent yet: the Fastify route answers (through its error handler if it fails the same way).
    if (!pending.response.headersSent) return handOver(pending);
    deps.log.error({ err: error }, "request errored");
  }
}

/**
 * The 200 answer's JSON. A gateway validates the same session's token again and again, and its answer
 * only changes when the session's view or its validation entry does (both are kept as the same objects
 * until then): the text is kept with the view it was written from.
 */
function validPayload(context: Context, view: SessionView, entry: ValidationEntry): string {
  const written = context.written.get(view);
  if (written !== undefined && written.entry === entry) return written.payload;
  const payload = context.deps.serializeValid({ valid: true, session: view, user: userOf(entry) });
  context.written.set(view, { entry, payload });
  return payload;
}

function handOver(pending: Pending): void {
  const { body, rateLimitCounted, judged } = pending;
  (pending.request as Carrier)[HANDED_OVER] = {
    body,
    rateLimitCounted,
    outcome: judged,
  };
  pending.counts.handedOver++;
  pending.next();
}

/** The body when it is one the Fastify route would accept unchanged, else undefined. */
function parseBody(body: Buffer | undefined, acceptsBody: FastCheck): ValidateBody | undefined {
  if (body === undefined) return undefined;
  const text = body.toString("utf8");
  // Fastify's parser refuses these keys (prototype poisoning) and words that answer itself.
  if (text.includes("__proto__") || text.includes("constructor")) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  // null is a valid body (the token then comes from the Authorization header): the route's case.
  return parsed !== null && acceptsBody(parsed) ? (parsed as ValidateBody) : undefined;
}

function prepare(deps: FastValidateDeps): Prepared {
  const { headerNames, headerValues, onRequest, onResponse } = deps.lifecycle();
  const staticHeaders: string[] = [];
  for (let i = 0; i < headerNames.length; i++) {
    staticHeaders.push(headerNames[i] as string, headerValues[i] as string);
  }
  return { staticHeaders, onRequest, onResponse };
}

/** Writes the answer as the route would, with the app's static headers and lifecycle steps. */
function answer(context: Context, pending: Pending, status: number, payload: string, challenge?: string) {
  context.prepared ??= prepare(context.deps);
  const { staticHeaders, onRequest, onResponse } = context.prepared;
  const request: LifecycleRequest = {
    method: "POST",
    headers: pending.request.headers,
    routeOptions: { url: ROUTE },
  };
  const reply: { -readonly [K in keyof LifecycleReply]: LifecycleReply[K] } = {
    statusCode: status,
    elapsedTime: 0,
  };
  for (const step of onRequest) step(request, reply);
  const headers = staticHeaders.slice();
  if (challenge !== undefined) headers.push("www-authenticate", challenge);
  headers.push("content-type", JSON_TYPE, "content-length", String(Buffer.byteLength(payload)));
  pending.response.writeHead(status, headers);
  pending.response.end(payload);
  context.counts.answered++;
  reply.elapsedTime = performance.now() - pending.started;
  // Like the app's onResponse hook: every step runs even if one fails, and a failure is logged.
  for (const step of onResponse) {
    try {
      step(request, reply);
    } catch (error) {
      context.deps.log.error({ err: error }, "request errored");
    }
  }
}
