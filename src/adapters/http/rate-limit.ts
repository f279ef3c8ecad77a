import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from "fastify";
import type { RateLimitCounter, RateLimitVerdict } from "../../app/rate-limit-counter.ts";
import { localFixedWindows } from "../memory/rate-limit-counter.ts";
import { handedOver } from "./fast-validate.ts";
import { HttpProblem } from "./problem.ts";

/**
 * Rate limits on the endpoints an attacker would hammer: the token endpoint (per client IP and per
 * username, so neither one address nor one account can be brute-forced) and validation (per IP). An
 * exceeded limit answers 429 with `Retry-After` (problem+json `rate_limited`; the token endpoint adds
 * RFC 6749 `error` members).
 *
 * The token endpoint counts through a RateLimitCounter: shared by every instance in distributed mode (NATS
 * KV), in memory in embedded mode. The validation limit counts in this instance's memory: it runs on every
 * validation, where a round trip would cost more than the validation itself, so behind a balancer with N
 * instances its effective limit is up to N times the setting.
 */

export type RateLimitSettings = {
  windowSeconds: number;
  /** Requests per window; 0 switches a limit off. */
  tokenPerIp: number;
  tokenPerUsername: number;
  validatePerIp: number;
};

type Check = (request: FastifyRequest) => Promise<void>;

export function rateLimited(retryAfterSeconds: number): HttpProblem {
  const seconds = Math.max(1, retryAfterSeconds);
  return new HttpProblem(
    429,
    "rate_limited",
    `Too many requests; retry in ${seconds} s`,
    { retry_after: seconds },
    { "retry-after": String(seconds) },
  );
}

const VALIDATE_ROUTE = "/v1/sessions/validate";
/**
 * The validation limit's counter: fixed windows per key in this process's memory, synchronous (see
 * localFixedWindows). Returns a check: undefined when the request is allowed, else the seconds until the
 * window ends.
 */
export function fixedWindowLimiter(
  max: number,
  windowMs: number,
  now: () => number = Date.now,
): (key: string) => number | undefined {
  const check = localFixedWindows(windowMs, now);
  return (key) => check(key, max);
}

const validationLimits = new WeakMap<FastifyInstance, (key: string) => number | undefined>();

/** The validation limit's counter on this app, for the fast path (undefined: no limit). */
export function validationRateLimitOf(app: FastifyInstance) {
  return validationLimits.get(app);
}

/**
 * Registers the validation limit. Must run before the routes are registered: the validation route is
 * picked up as it is added.
 */
export function rateLimitPlugin(settings: RateLimitSettings) {
  return async (app: FastifyInstance) => {
    if (settings.validatePerIp <= 0) return;
    const check = fixedWindowLimiter(settings.validatePerIp, settings.windowSeconds * 1000);
    validationLimits.set(app, check);
    const hook: onRequestHookHandler = (request, _reply, done) => {
      // Counted already by the fast path, which then handed the request over (fast-validate.ts).
      if (handedOver(request.raw)?.rateLimitCounted === true) {
        done();
        return;
      }
      // The address itself is the key (this limiter counts nothing else): no string built per request.
      const retryAfter = check(request.ip ?? "");
      done(retryAfter === undefined ? undefined : rateLimited(retryAfter));
    };
    app.addHook("onRoute", (route) => {
      if (route.url !== VALIDATE_ROUTE || route.method !== "POST") return;
      const existing = route.onRequest;
      route.onRequest =
        existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook];
    });
  };
}

/**
 * The token endpoint's limits, as a preHandler (the body is parsed by then, so the username is known):
 * the client address first, then the username when the request names one (compared case-insensitively,
 * as the directory does). A refused check counts nothing further. The counter's own failure (NATS away)
 * propagates: the login could not have been recorded either.
 */
export function tokenEndpointLimit(counter: RateLimitCounter, settings: RateLimitSettings): Check {
  const { tokenPerIp, tokenPerUsername } = settings;
  return async (request) => {
    if (tokenPerIp > 0) await enforce(counter.hit("ip", request.ip ?? "", tokenPerIp));
    if (tokenPerUsername > 0) {
      const username = (request.body as { username?: unknown } | null | undefined)?.username;
      if (typeof username === "string" && username !== "") {
        await enforce(counter.hit("user", username.toLowerCase(), tokenPerUsername));
      }
    }
  };
}

async function enforce(hit: Promise<RateLimitVerdict>): Promise<void> {
  const verdict = await hit;
  if (!verdict.allowed) throw rateLimited(verdict.retryAfterSeconds);
}
